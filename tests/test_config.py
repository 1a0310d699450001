"""Configuration files: parsing, the dangerous-name refusal, discovery and precedence.

Every test runs in its own directory tree under ``tmp_path`` that starts with a
``.git`` directory, so discovery never reaches the repository's own files, and
with ``$SAFELOAD_CONFIG`` unset and the ``--config`` override cleared.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import pickle
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import safeload
from safeload import _config
from safeload._config import (
    CONFIG_ENV,
    ConfigError,
    DangerousConfigError,
    UnsafeConfigWarning,
    active_policy,
    find_config,
    load_config,
    read_config,
    set_config_path,
)
from safeload._policy import DANGEROUS_NAMES, Limits, Policy

FRACTION = pickle.dumps(fractions.Fraction(1, 3), protocol=2)  # needs fractions.Fraction, not allowed by default
NAME = "fractions.Fraction"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(root)
    set_config_path(None)
    _config.clear_cache()
    yield root
    set_config_path(None)
    _config.clear_cache()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def allow_toml(name: str = NAME, reason: str = "reviewed: plain rational number") -> str:
    return f'allow = [{{name = "{name}", reason = "{reason}"}}]\n'


# -- parsing ------------------------------------------------------------------------------


def test_safeload_toml_allow_and_limits(tmp_path: Path) -> None:
    path = write(tmp_path / "safeload.toml", allow_toml() + "[limits]\nmax_opcodes = 1234\nmax_zip_members = 7\n")
    policy = load_config(path)
    assert policy.allows(NAME)
    entry = policy.entries[NAME]
    assert entry.why == "reviewed: plain rational number" and entry.user
    assert policy.limits == Limits().replace(max_opcodes=1234, max_zip_members=7)
    assert all(policy.allows(n) for n in Policy.default().entries)  # extends, never replaces, the defaults
    assert safeload.loads(FRACTION, policy=policy) == fractions.Fraction(1, 3)


def test_pyproject_table_and_top_level_limits(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", f"""
        [project]
        name = "demo"
        [tool.safeload]
        {allow_toml()}
        max_nesting_depth = 42
    """)
    policy = load_config(path)
    assert policy.allows(NAME)
    assert policy.limits.max_nesting_depth == 42


def test_nullable_limit_disabled_with_false(tmp_path: Path) -> None:
    nullable = [f.name for f in dataclasses.fields(Limits) if "None" in str(f.type)]
    if not nullable:
        pytest.skip("no limit accepts None in this version")
    path = write(tmp_path / "safeload.toml", f"[limits]\n{nullable[0]} = false\n")
    assert getattr(load_config(path).limits, nullable[0]) is None
    path = write(tmp_path / "safeload.toml", "[limits]\nmax_opcodes = false\n")
    with pytest.raises(ConfigError, match="positive integer"):
        load_config(path)


def test_limits_are_enforced(tmp_path: Path) -> None:
    path = write(tmp_path / "safeload.toml", "[limits]\nmax_opcodes = 3\n")
    with pytest.raises(safeload.LimitExceededError):
        safeload.loads(pickle.dumps(list(range(100))), policy=load_config(path))


def test_colon_names_are_normalised(tmp_path: Path) -> None:
    path = write(tmp_path / "safeload.toml", allow_toml("fractions:Fraction"))
    assert load_config(path).allows(NAME)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('allow = ["fractions.Fraction"]\n', "needs a reason"),
        ('allow = [{name = "fractions.Fraction"}]\n', "needs a non-empty 'reason'"),
        ('allow = [{name = "fractions.Fraction", reason = "  "}]\n', "needs a non-empty 'reason'"),
        ('allow = [{name = "fractions.*", reason = "x"}]\n', "exact"),
        ('allow = [{name = "fractions", reason = "x"}]\n', "exact"),
        ('allow = [{name = "fractions.", reason = "x"}]\n', "exact"),
        ('allow = [{name = "a.B", reason = "x", why = "y"}]\n', "unknown key"),
        ('allow = [{name = "a.B", reason = "x"}, {name = "a:B", reason = "y"}]\n', "listed twice"),
        ('allow = "fractions.Fraction"\n', "must be an array"),
        ("allowed = []\n", "unknown key"),
        ("[limits]\nmax_opcodes = -1\n", "positive integer"),
        ("[limits]\nmax_opcodes = true\n", "positive integer"),
        ('[limits]\nmax_opcodes = "10"\n', "positive integer"),
        ("[limits]\nmax_bogus = 10\n", "unknown limit"),
        ("max_opcodes = 5\n[limits]\nmax_opcodes = 6\n", "both"),
        ('unsafe = "yes"\n', "true or false"),
        ("allow = [\n", "not valid TOML"),
    ],
)
def test_invalid_configs_are_refused(tmp_path: Path, body: str, match: str) -> None:
    path = write(tmp_path / "safeload.toml", body)
    with pytest.raises(ConfigError, match=match) as excinfo:
        load_config(path)
    assert isinstance(excinfo.value, safeload.SafeloadError)
    assert str(path) in str(excinfo.value)


def test_missing_file_and_pyproject_without_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    path = write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"no \[tool.safeload\] table"):
        load_config(path)


# -- dangerous names ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "builtins:exec",
                                  "os.execl", "pty.spawn", "runpy.run_path", "_pickle.load", "importlib.util.find_spec"])
def test_dangerous_names_are_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "safeload.toml", allow_toml(name, "trust me"))
    with pytest.raises(DangerousConfigError, match="unsafe = true") as excinfo:
        load_config(path)
    normalised = name.replace(":", ".")
    assert normalised in str(excinfo.value) and excinfo.value.names == (normalised,)
    assert isinstance(excinfo.value, safeload.SafeloadError)


@pytest.mark.parametrize("flag", ["unsafe", "acknowledge_unsafe"])
def test_acknowledged_dangerous_names_load_with_a_warning(tmp_path: Path, flag: str) -> None:
    path = write(tmp_path / "safeload.toml", f"{flag} = true\n" + allow_toml("os.system", "legacy test fixture"))
    with pytest.warns(UnsafeConfigWarning, match="os.system"):
        config = read_config(path)
    assert config.unsafe and config.policy().allows("os.system")


def test_is_dangerous_is_not_fooled_by_prefixes() -> None:
    assert _config.is_dangerous("os.path.join") and _config.is_dangerous("subprocess.run")
    assert not _config.is_dangerous("osmodule.Thing") and not _config.is_dangerous("mypkg.os.Thing")
    assert not _config.is_dangerous("fractions.Fraction") and not _config.is_dangerous("builtins.complex")


def test_unsafe_flag_alone_does_not_warn(tmp_path: Path) -> None:
    path = write(tmp_path / "safeload.toml", "unsafe = true\n" + allow_toml())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(path).allows(NAME)


def test_every_dangerous_name_is_refused(tmp_path: Path) -> None:
    body = "allow = [" + ", ".join(f'{{name = "{n}", reason = "x"}}' for n in sorted(DANGEROUS_NAMES)) + "]\n"
    with pytest.raises(DangerousConfigError) as excinfo:
        load_config(write(tmp_path / "safeload.toml", body))
    assert set(excinfo.value.names) == set(DANGEROUS_NAMES)


# -- discovery ------------------------------------------------------------------------------


def test_pyproject_discovered_from_nested_cwd(_isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _isolated
    write(root / "pyproject.toml", "[tool.safeload]\n" + allow_toml())
    nested = root / "src" / "pkg" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_config() == root / "pyproject.toml"
    assert active_policy().allows(NAME)
    assert safeload.loads(FRACTION) == fractions.Fraction(1, 3)  # no policy, no allow: the config applies


def test_pyproject_without_table_is_skipped(_isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _isolated
    write(root / "safeload.toml", allow_toml())
    write(root / "sub" / "pyproject.toml", "[project]\nname = 'sub'\n")
    monkeypatch.chdir(root / "sub")
    assert find_config() == root / "safeload.toml"


def test_safeload_toml_wins_in_the_same_directory(_isolated: Path) -> None:
    write(_isolated / "pyproject.toml", "[tool.safeload]\n")
    write(_isolated / "safeload.toml", allow_toml())
    assert find_config() == _isolated / "safeload.toml"


def test_nearest_config_wins(_isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(_isolated / "safeload.toml", allow_toml())
    write(_isolated / "sub" / "safeload.toml", "")
    monkeypatch.chdir(_isolated / "sub")
    assert not active_policy().allows(NAME)


def test_search_stops_at_the_git_root(tmp_path: Path, _isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "safeload.toml", allow_toml())  # above the repository: must not be found
    nested = _isolated / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_config() is None
    assert active_policy() is Policy.default()
    with pytest.raises(safeload.UnsafeModelError, match=NAME):
        safeload.loads(FRACTION)


def test_broken_discovered_config_fails_loudly(_isolated: Path) -> None:
    write(_isolated / "safeload.toml", allow_toml("os.system", "oops"))
    with pytest.raises(DangerousConfigError):
        safeload.loads(pickle.dumps(1))


def test_cache_follows_mtime(_isolated: Path) -> None:
    path = write(_isolated / "safeload.toml", "")
    first = active_policy()
    assert active_policy() is first  # cached
    path.write_text(allow_toml(), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert active_policy().allows(NAME)


# -- precedence -----------------------------------------------------------------------------


def test_precedence(_isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """explicit policy= > --config > $SAFELOAD_CONFIG > nearest file > defaults; allow= always extends."""
    write(_isolated / "safeload.toml", "[limits]\nmax_opcodes = 111\n")
    env_cfg = write(tmp_path / "env.toml", "[limits]\nmax_opcodes = 222\n")
    cli_cfg = write(tmp_path / "cli.toml", "[limits]\nmax_opcodes = 333\n")
    explicit = Policy.default().extended(limits=Limits().replace(max_opcodes=444))

    def opcodes() -> int:
        from safeload._load import effective_policy

        return effective_policy(None, ()).limits.max_opcodes

    assert opcodes() == 111
    monkeypatch.setenv(CONFIG_ENV, str(env_cfg))
    assert opcodes() == 222
    set_config_path(cli_cfg)
    assert opcodes() == 333
    from safeload._load import effective_policy

    assert effective_policy(explicit, ()).limits.max_opcodes == 444
    extended = effective_policy(None, [NAME])
    assert extended.allows(NAME) and extended.limits.max_opcodes == 333
    set_config_path(None)
    monkeypatch.delenv(CONFIG_ENV)
    (_isolated / "safeload.toml").unlink()
    assert opcodes() == Limits().max_opcodes


def test_explicit_policy_ignores_a_broken_config(_isolated: Path) -> None:
    write(_isolated / "safeload.toml", "allow = [\n")
    assert safeload.loads(pickle.dumps([1, 2]), policy=Policy.default()) == [1, 2]
    with pytest.raises(ConfigError):
        safeload.loads(pickle.dumps([1, 2]))


def test_allow_argument_extends_the_config(_isolated: Path) -> None:
    write(_isolated / "safeload.toml", allow_toml())
    both = pickle.dumps((fractions.Fraction(1, 2), __import__("decimal").Decimal("1.5")), protocol=2)
    with pytest.raises(safeload.UnsafeModelError, match="decimal.Decimal"):
        safeload.loads(both)
    assert safeload.loads(both, allow=["decimal.Decimal"])[0] == fractions.Fraction(1, 2)


def test_env_var_naming_a_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        active_policy()


# -- the pre-commit hook honours the project configuration ------------------------------------


def test_pre_commit_hook_definition() -> None:
    import re

    import yaml  # in the test extras: this test must run, not skip, on a clean install

    hooks_file = Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml"
    hooks = yaml.safe_load(hooks_file.read_text(encoding="utf-8"))
    (hook,) = [h for h in hooks if h["id"] == "safeload-scan"]
    assert hook["entry"] == "safeload scan" and hook["language"] == "python"
    pattern = re.compile(hook["files"])
    # every format scan judges (pickles, joblib, skops, torch checkpoints, numpy, formats
    # without a code path, Keras, tar archives), and nothing else
    for name in ("model.pkl", "a/b/Model.JOBLIB", "clf.joblib.gz", "m.skops", "x.pickle", "y.sav", "weights.npy",
                 "ckpt.pt", "m.safetensors", "m.onnx", "m.gguf", "m.h5", "models.tar.gz"):
        assert pattern.search(name), name
    for name in ("README.md", "train.py", "pyproject.toml", "data.csv", "notes.txt"):
        assert not pattern.search(name), name


def test_scan_cli_uses_discovered_config(_isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("safeload._cli")
    model = _isolated / "ratio.pkl"
    model.write_bytes(FRACTION)
    assert cli.main(["scan", str(model)]) == 1
    write(_isolated / "pyproject.toml", "[tool.safeload]\n" + allow_toml())
    _config.clear_cache()
    assert cli.main(["scan", str(model)]) == 0
    capsys.readouterr()


# -- discovery from the loaded file (config_path(near=...)) -------------------------------------


def test_config_of_the_files_own_project_wins_over_the_working_directorys(
        tmp_path: Path, _isolated: Path) -> None:
    write(_isolated / "safeload.toml", "")  # the working directory's project allows nothing extra
    other = tmp_path / "other"
    (other / ".git").mkdir(parents=True)
    write(other / "models" / "safeload.toml", allow_toml())
    model = other / "models" / "deep" / "m.pkl"
    model.parent.mkdir(parents=True)
    model.write_bytes(FRACTION)
    assert _config.config_path(model) == other / "models" / "safeload.toml"
    assert safeload.load(model) == fractions.Fraction(1, 3)
    with pytest.raises(safeload.UnsafeModelError):
        safeload.loads(FRACTION)  # bytes: the working directory's configuration


def test_working_directory_fallback_below_the_files_directory(
        tmp_path: Path, _isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model in a parent directory with no configuration of its own: the cwd's still applies."""
    write(_isolated / "sub" / "safeload.toml", allow_toml())
    model = _isolated / "m.pkl"
    model.write_bytes(FRACTION)
    monkeypatch.chdir(_isolated / "sub")
    assert _config.config_path(model) == _isolated / "sub" / "safeload.toml"


def test_nested_repository_stops_the_files_search(tmp_path: Path, _isolated: Path) -> None:
    write(_isolated / "safeload.toml", allow_toml())
    vendored = _isolated / "vendor" / "models"
    (vendored / ".git").mkdir(parents=True)
    model = vendored / "m.pkl"
    model.write_bytes(FRACTION)
    # The file's own repository has no configuration; the working directory (the outer project) does.
    assert _config.config_path(model) == _isolated / "safeload.toml"


def test_env_and_override_still_win_over_the_files_directory(
        tmp_path: Path, _isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(_isolated / "models" / "safeload.toml", allow_toml())
    explicit = write(tmp_path / "explicit.toml", "")
    monkeypatch.setenv(CONFIG_ENV, str(explicit))
    assert _config.config_path(_isolated / "models" / "m.pkl") == explicit


# -- configurations tomllib cannot parse --------------------------------------------------------

_DEEP = "[" * 100_000 + "]" * 100_000
_LONG_INT = "9" * 5000


@pytest.mark.parametrize(("body", "match"), [
    (f"max_opcodes = {_LONG_INT}\n", "not valid TOML: Exceeds the limit"),  # ValueError from int()
    (f"x = {_DEEP}\n", "not valid TOML: arrays or tables nested too deeply"),  # RecursionError
    ("x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n", "nested too deeply"),
], ids=["long-integer", "deep-arrays", "deep-tables"])
def test_what_tomllib_raises_besides_its_decode_error_is_a_config_error(
        _isolated: Path, body: str, match: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An integer of over 4300 digits (ValueError) and arrays nested past the recursion limit
    (RecursionError) escaped as tracebacks from load, scan and the CLI."""
    path = write(_isolated / "safeload.toml", body)
    with pytest.raises(ConfigError, match=match):
        load_config(path)
    model = _isolated / "m.pkl"
    model.write_bytes(pickle.dumps([1]))
    with pytest.raises(ConfigError, match=match):
        safeload.load(model)
    with pytest.raises(ConfigError, match=match):
        safeload.scan(model)
    cli = pytest.importorskip("safeload._cli")
    assert cli.main(["scan", str(model)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize("value", [_LONG_INT, _DEEP], ids=["long-integer", "deep-arrays"])
def test_a_pyproject_tomllib_cannot_parse_is_judged_by_its_text(_isolated: Path, value: str) -> None:
    """Discovery reads every pyproject.toml on the way up: one it cannot parse counts as ours only
    if it names [tool.safeload] (then loading says why it is broken); otherwise it is passed over."""
    model = _isolated / "m.pkl"
    model.write_bytes(pickle.dumps([1]))
    write(_isolated / "pyproject.toml", f"[tool.other]\ny = {value}\n")
    assert find_config(_isolated) is None
    assert safeload.load(model) == [1] and safeload.scan(model).verdict == "safe"
    write(_isolated / "pyproject.toml", f"[tool.safeload]\nmax_opcodes = {value}\n")
    _config.clear_cache()
    assert find_config(_isolated) == _isolated / "pyproject.toml"
    with pytest.raises(ConfigError, match="not valid TOML"):
        safeload.load(model)
