"""Drop-in fidelity and workflow security (issue 14): what a user of ``pickle.load`` /
``joblib.load`` expects from ``safeload.load``, and that no way of widening the policy
(``allow=``, ``patched(allow=)``, ``--allow``, the configuration) lets a code-execution
name through without an explicit acknowledgement.
"""

from __future__ import annotations

import errno
import fractions
import io
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from _canary import SAMPLES, load_manifest

import safeload
from safeload import _config, _containers
from safeload._policy import DANGEROUS_MODULES, DANGEROUS_NAMES, Policy, is_dangerous, refusal_message

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
FRACTION = pickle.dumps(fractions.Fraction(1, 3), protocol=2)
PLAIN = pickle.dumps({"a": [1, 2.5, "x"]}, protocol=4)
EVIL = SAMPLES / "s1_builtins_exec.pkl"


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory with no configuration around (a .git stops the search)."""
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(_config.CONFIG_ENV, raising=False)
    _config.set_config_path(None)
    _config.clear_cache()


# -- 1. one dangerous-name rule for every way of allowing ------------------------------------

DANGEROUS = sorted(DANGEROUS_NAMES) + [
    "posix.system", "os.path.join", "subprocess.Popen", "builtins.type", "builtins.print", "shutil.copy",
    "time.sleep", "uuid._get_command_stdout", "socket.create_connection", "joblib.numpy_pickle.load",
    "numpy.lib.format.read_array", "pandas.read_csv", "torch.serialization.load", "yaml.unsafe_load",
    "sklearn.datasets.dump_svmlight_file", "sklearn.utils._testing.assert_run_python_script_without_output",
    "mypkg.Model.__reduce__", "operator.methodcaller", "builtins.getattr",
]
BENIGN = ["fractions.Fraction", "decimal.Decimal", "collections.OrderedDict", "builtins.ValueError",
          "builtins.complex", "uuid.UUID", "mypkg.features.Clipper", "pandas.core.frame.DataFrame",
          "mypkg.SaveableModel", "sklearn.preprocessing._data.StandardScaler"]


@pytest.mark.parametrize("name", DANGEROUS)
def test_dangerous_names_are_dangerous(name: str) -> None:
    assert is_dangerous(name)


@pytest.mark.parametrize("name", BENIGN)
def test_value_names_are_not_dangerous(name: str) -> None:
    assert not is_dangerous(name)


def test_every_dangerous_module_is_dangerous_with_any_name() -> None:
    assert all(is_dangerous(f"{m}.Anything") for m in DANGEROUS_MODULES)


def test_every_stdlib_module_outside_the_value_modules_is_dangerous() -> None:
    """Allowlist-shaped: a new stdlib module is dangerous until someone says it holds values."""
    values = {"collections", "_collections", "datetime", "_datetime", "decimal", "_decimal", "_pydecimal",
              "fractions", "numbers", "enum", "ipaddress", "array", "math", "cmath", "statistics", "string",
              "re", "heapq", "bisect", "functools", "_functools", "itertools", "operator", "_operator", "typing"}
    for module in sys.stdlib_module_names:
        assert is_dangerous(f"{module}.Thing") == (module not in values), module


@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "numpy.load"])
def test_allow_refuses_dangerous_names_before_reading(name: str, tmp_path: Path) -> None:
    with pytest.raises(safeload.DangerousAllowError) as excinfo:
        safeload.load(tmp_path / "does-not-exist.pkl", allow=[name])
    assert excinfo.value.names == (name,) and isinstance(excinfo.value, ValueError)
    assert "allow_unsafe=True" in str(excinfo.value)
    with pytest.raises(safeload.DangerousAllowError):
        safeload.loads(FRACTION, allow={name: "I promise"})
    with pytest.raises(safeload.DangerousAllowError):
        Policy.default().extended([name])
    from safeload._load import effective_policy

    with pytest.raises(safeload.DangerousAllowError):
        effective_policy(None, [name])  # what the CLI's --allow goes through


def test_allow_unsafe_is_the_acknowledgement() -> None:
    pol = Policy.default().extended(["posix.system"], allow_unsafe=True)
    assert pol.allows("posix.system")
    assert safeload.loads(FRACTION, allow=["posix.system", "fractions.Fraction"], allow_unsafe=True) == \
        fractions.Fraction(1, 3)


def test_patched_allow_applies_the_same_rule() -> None:
    with pytest.raises(safeload.DangerousAllowError), safeload.patched(allow=["os.system"]):
        pass  # refused when the block is entered, not at the first load
    assert pickle.load is not safeload._patch._pickle_load  # nothing left patched
    with pytest.raises(safeload.DangerousAllowError):
        safeload.install(allow=["subprocess.Popen"])
    assert not safeload._patch.is_installed()
    with safeload.patched(allow=["os.system", "fractions.Fraction"], allow_unsafe=True):
        assert pickle.loads(FRACTION, fix_imports=True) == fractions.Fraction(1, 3)


def test_config_and_allow_share_the_rule(tmp_path: Path) -> None:
    cfg = tmp_path / "safeload.toml"
    cfg.write_text('allow = [{name = "time.sleep", reason = "x"}]\n')
    with pytest.raises(safeload.DangerousConfigError):
        safeload.load_config(cfg)
    cfg.write_text('unsafe = true\nallow = [{name = "time.sleep", reason = "x"}]\n')
    with pytest.warns(safeload.UnsafeConfigWarning):
        assert safeload.load_config(cfg).allows("time.sleep")


def test_names_that_cannot_exist() -> None:
    for bad in ["not a name", "mod.1abc", "mod..x", "a:b:c", "nodots", "pkg.*"]:
        with pytest.raises(ValueError):
            Policy.default().extended([bad])
    with pytest.warns(safeload.UnknownAllowWarning, match="no_such_package_zz"):
        pol = Policy.default().extended(["no_such_package_zz.Model"])
    assert pol.allows("no_such_package_zz.Model")


def test_refusal_of_a_dangerous_name_says_malicious_and_never_suggests_allowing() -> None:
    with pytest.raises(safeload.UnsafeModelError) as excinfo:
        safeload.load(EVIL)
    message = str(excinfo.value)
    assert "malicious" in message and "builtins.exec" in message
    assert "allow=" not in message and "--allow" not in message
    assert "allow=['mypkg.X']" in refusal_message(["mypkg.X"])
    assert "allow=" not in refusal_message(["mypkg.X"], hint=False)


CODE_RUNNING = [e for e in load_manifest() if e["effect"]["kind"] in ("canary", "write")]


@pytest.mark.parametrize("entry", CODE_RUNNING, ids=lambda e: e["file"])
def test_no_sample_that_runs_code_gets_an_allow_hint(entry: dict[str, Any]) -> None:
    """Over the whole corpus of code-running samples: a refusal by name names a dangerous
    global, and no message suggests allowing it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(safeload.SafeloadError) as excinfo:
            safeload.load(SAMPLES / entry["file"], **entry["load_kwargs"])
    exc = excinfo.value
    if isinstance(exc, safeload.UnsafeModelError) and exc.names:
        assert any(is_dangerous(n) for n in exc.names), exc.names
    assert "allow=" not in str(exc) and "--allow" not in str(exc)


def test_cli_allow_of_a_dangerous_name_does_not_turn_the_scan_green() -> None:
    evil = SAMPLES / "s3_ext_pickle_as.txt"  # subprocess.check_output
    proc = subprocess.run([sys.executable, "-m", "safeload", "scan", str(evil), "--allow",
                           "subprocess.check_output"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "subprocess.check_output" in proc.stderr + proc.stdout


# -- 2. OS errors keep their type; bytes are a path for load ---------------------------------


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.pkl"
    with pytest.raises(FileNotFoundError) as excinfo:
        safeload.load(path)
    exc = excinfo.value
    assert isinstance(exc, safeload.SafeloadError)
    assert exc.errno == errno.ENOENT and exc.filename == str(path)
    with pytest.raises(FileNotFoundError), safeload.patched():
        joblib.load(str(path))


def test_directory_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as excinfo:
        safeload.load(tmp_path)
    assert isinstance(excinfo.value, safeload.SafeloadError)


def test_permission_error_keeps_its_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(FRACTION)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make open() fail as it would for a user
        def denied(*args: Any, **kwargs: Any) -> int:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        monkeypatch.setattr(_containers.os, "open", denied)
    with pytest.raises(PermissionError) as excinfo:
        safeload.load(path)
    assert isinstance(excinfo.value, safeload.SafeloadError) and excinfo.value.errno == errno.EACCES


def test_scan_still_reports_an_unreadable_path(tmp_path: Path) -> None:
    report = safeload.scan(tmp_path / "missing.pkl")
    assert not report.safe


def test_bytes_are_a_path_for_load_and_data_for_loads(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(PLAIN)
    assert safeload.load(os.fsencode(path)) == pickle.loads(PLAIN)
    assert safeload.loads(PLAIN) == pickle.loads(PLAIN)
    with pytest.raises(FileNotFoundError):
        safeload.load(b"no-such-model.pkl")
    with pytest.raises(TypeError, match="loads"):
        safeload.load(bytearray(PLAIN))


# -- 3. pickle.load's keywords, joblib.load's positional mmap_mode -------------------------------


def _py2_array_pickle(arr: np.ndarray) -> bytes:
    """The protocol-2 stream Python 2 wrote for an int64 array (array bytes as a py2 str)."""
    raw = arr.tobytes()
    return (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02U\x01b"
            b"\x87q\x03Rq\x04(K\x01K" + bytes([arr.size]) + b"\x85q\x05cnumpy\ndtype\nq\x06U\x02i8K\x00K\x01"
            b"\x87Rq\x07(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x08b\x89U" + bytes([len(raw)])
            + raw + b"tq\tb.")


def test_python2_numpy_pickle_loads_with_latin1(tmp_path: Path) -> None:
    arr = np.array([0, 1, 2, 300], dtype=np.int64)
    data = _py2_array_pickle(arr)
    for encoding in ("latin1", "bytes"):  # 'bytes': the dtype's byte order arrives as b'<'
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            expected = pickle.loads(data, encoding=encoding)
        got = safeload.loads(data, encoding=encoding)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype
    path = tmp_path / "py2.pkl"
    path.write_bytes(data)
    np.testing.assert_array_equal(safeload.load(path, encoding="latin1"), arr)
    with safeload.patched(), open(path, "rb") as fh:
        np.testing.assert_array_equal(pickle.load(fh, encoding="latin1"), arr)


PY2_TEXT = b"\x80\x02}q\x00(U\x04caf\xe9q\x01U\x01xq\x02u."  # {'caf\xe9': 'x'} written by Python 2


@pytest.mark.parametrize("kwargs", [{"encoding": "latin1"}, {"encoding": "bytes"},
                                    {"encoding": "ascii", "errors": "replace"}, {"encoding": "utf-8",
                                                                                 "errors": "ignore"}])
def test_decoding_keywords_match_pickle(kwargs: dict[str, str]) -> None:
    expected = pickle.loads(PY2_TEXT, **kwargs)  # type: ignore[arg-type]
    got = safeload.loads(PY2_TEXT, **kwargs)  # type: ignore[arg-type]
    assert got == expected and [type(k) for k in got] == [type(k) for k in expected]


def test_default_encoding_fails_as_pickle_does() -> None:
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(PY2_TEXT)
    with pytest.raises(safeload.SafeloadError):
        safeload.loads(PY2_TEXT)


def test_fix_imports_false_does_not_remap_python2_names() -> None:
    data = b"\x80\x02c__builtin__\nset\n]\x85R."
    assert safeload.loads(data) == pickle.loads(data) == set()
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(data, fix_imports=False)
    with pytest.raises(safeload.UnsafeModelError):
        safeload.loads(data, fix_imports=False)


def test_unknown_encoding_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        safeload.loads(FRACTION, encoding="no-such-codec")


def test_joblib_mmap_mode_is_positional(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump({"w": np.arange(1000.0)}, path)
    got = safeload.load(path, "r")
    assert isinstance(got["w"], np.memmap) and got["w"].mode == "r"
    np.testing.assert_array_equal(got["w"], joblib.load(path, "r")["w"])


# -- 4. errors are pickle's errors ---------------------------------------------------------------


def test_truncated_files_raise_what_pickle_raises() -> None:
    """For every cut of real pickles, the safeload error is an instance of pickle's own exception."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.random.RandomState(0).rand(20, 3), np.arange(20) % 2)
    cuts = 0
    for protocol in range(6):
        data = pickle.dumps(model, protocol=protocol)
        for n in range(0, len(data) - 1, max(1, len(data) // 60)):
            with pytest.raises(Exception) as theirs:  # noqa: B017 - any of pickle's errors
                pickle.loads(data[:n])
            with pytest.raises(safeload.SafeloadError) as ours:
                safeload.loads(data[:n])
            assert isinstance(ours.value, theirs.type), (protocol, n, theirs.value, ours.value)
            cuts += 1
    assert cuts > 300


def test_truncated_and_corrupt_errors_under_patched() -> None:
    data = pickle.dumps({"a": list(range(100))}, protocol=4)
    with safeload.patched():
        with pytest.raises(EOFError):
            pickle.loads(b"")
        with pytest.raises(pickle.UnpicklingError):
            pickle.loads(data[:40])
        with pytest.raises((EOFError, pickle.UnpicklingError)):
            pickle.load(io.BytesIO(data[:-1]))
    assert issubclass(safeload.MalformedModelError, pickle.UnpicklingError)
    assert issubclass(safeload.TruncatedModelError, EOFError)


# -- 5. patched() names the file -----------------------------------------------------------------


def test_patched_errors_name_the_file() -> None:
    with safeload.patched(), open(EVIL, "rb") as fh, pytest.raises(safeload.UnsafeModelError) as excinfo:
        pickle.load(fh)
    assert str(EVIL) in str(excinfo.value) and "<bytes>" not in str(excinfo.value)
    assert excinfo.value.source == str(EVIL)


# -- 7. compressed mmap warning, lz4, .npy/.npz ---------------------------------------------------


def test_mmap_mode_on_a_compressed_file_warns_like_joblib(tmp_path: Path) -> None:
    path = tmp_path / "c.joblib"
    joblib.dump(np.arange(10), path, compress=3)
    with pytest.warns(UserWarning, match="compressed") as ours:
        got = safeload.load(path, mmap_mode="r")
    with pytest.warns(UserWarning, match="compressed"):
        joblib.load(path, mmap_mode="r")
    np.testing.assert_array_equal(got, np.arange(10))
    assert len(ours) == 1


def test_lz4_is_a_dependency_and_loads(tmp_path: Path) -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert any(d.replace(" ", "").startswith("lz4") for d in meta["project"]["dependencies"])
    path = tmp_path / "m.joblib.lz4"
    joblib.dump({"w": np.arange(50)}, path, compress="lz4")
    np.testing.assert_array_equal(safeload.load(path)["w"], np.arange(50))


def test_npy_returns_what_numpy_returns(tmp_path: Path) -> None:
    for arr in (np.arange(12.0).reshape(3, 4), np.asfortranarray(np.ones((2, 3), dtype=">i4")),
                np.array([b"ab", b"c"]), np.zeros((0,), dtype=[("a", "<f4"), ("b", "<i2")])):
        path = tmp_path / "a.npy"
        np.save(path, arr)
        got, expected = safeload.load(path), np.load(path, allow_pickle=False)
        assert type(got) is type(expected) and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_npz_returns_what_numpy_returns(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez_compressed(path, a=np.arange(3), b=np.eye(2))
    got, expected = safeload.load(path), np.load(path, allow_pickle=False)
    assert type(got) is type(expected) and sorted(got.files) == sorted(expected.files)
    for key in expected.files:
        np.testing.assert_array_equal(got[key], expected[key])


def test_object_arrays_go_through_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "o.npy"
    np.save(path, np.array([1, "x", None, fractions.Fraction(1, 2)], dtype=object), allow_pickle=True)
    with pytest.raises(safeload.UnsafeModelError, match="fractions.Fraction"):
        safeload.load(path)
    got = safeload.load(path, allow=["fractions.Fraction"])
    assert got.tolist() == [1, "x", None, fractions.Fraction(1, 2)]
    npz = tmp_path / "o.npz"
    np.savez(npz, plain=np.arange(2), objects=np.array([{"k": 1}], dtype=object))
    out = safeload.load(npz)
    assert out["objects"][0] == {"k": 1}
    np.testing.assert_array_equal(out["plain"], np.arange(2))


def test_evil_object_npy_is_refused_without_running(tmp_path: Path) -> None:
    header = np.lib.format.header_data_from_array_1_0(np.empty(1, dtype=object))
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    path = tmp_path / "evil.npy"
    marker = tmp_path / "ran"
    path.write_bytes(buf.getvalue() + b"cposix\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(safeload.UnsafeModelError, match="malicious"):
        safeload.load(path)
    assert not marker.exists()


# -- 8. packaging ----------------------------------------------------------------------------------


def test_license_and_metadata() -> None:
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    assert any(c.startswith("Topic :: Security") for c in meta["classifiers"])


def test_readme_install_line_works_today() -> None:
    readme = (REPO / "README.md").read_text()
    assert "pip install safeload " not in readme and "pip install safeload\n" not in readme
    assert "git+https://" in readme or "pip install ." in readme


def test_github_action_runs_the_scan() -> None:
    yaml = pytest.importorskip("yaml")
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    script = "\n".join(step.get("run", "") for step in action["runs"]["steps"])
    assert "safeload scan" in script and "pip install" in script
    assert {"paths", "format", "output"} <= set(action["inputs"])
    # inputs reach the script through the environment, never pasted into the shell text
    assert "${{ inputs." not in script


# -- 9. configuration from the file's directory ---------------------------------------------------


def test_config_is_found_from_the_loaded_files_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "safeload.toml").write_text('allow = [{name = "fractions.Fraction", reason = "values"}]\n')
    model = project / "models" / "m.pkl"
    model.write_bytes(FRACTION)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".git").mkdir()
    monkeypatch.chdir(elsewhere)
    assert safeload.load(model) == fractions.Fraction(1, 3)  # the project's config, found from the file
    copy = elsewhere / "m.pkl"
    copy.write_bytes(FRACTION)
    with pytest.raises(safeload.UnsafeModelError):
        safeload.load(copy)  # no config near this copy, nor in the working directory
    monkeypatch.chdir(project)
    assert safeload.load(copy) == fractions.Fraction(1, 3)  # falls back to the working directory's


def test_patched_finds_config_from_the_loaded_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".git").mkdir()
    (project / "safeload.toml").write_text('allow = [{name = "fractions.Fraction", reason = "values"}]\n')
    model = project / "m.pkl"
    model.write_bytes(FRACTION)
    with safeload.patched():
        assert joblib.load(str(model)) == fractions.Fraction(1, 3)
        with open(model, "rb") as fh:
            assert pickle.load(fh) == fractions.Fraction(1, 3)
        with pytest.raises(safeload.UnsafeModelError):
            pickle.loads(FRACTION)  # bytes have no directory: the working directory's (none) applies


def test_containers_load_cannot_open_get_no_allow_hint(tmp_path: Path) -> None:
    import tarfile
    import zipfile

    torch_like = tmp_path / "model.pt"
    with zipfile.ZipFile(torch_like, "w") as zf:
        zf.writestr("archive/data.pkl", FRACTION)
        zf.writestr("archive/version", b"3\n")
    archive = tmp_path / "models.tar"
    member = tmp_path / "m.pkl"
    member.write_bytes(FRACTION)
    with tarfile.open(archive, "w") as tf:
        tf.add(member, arcname="m.pkl")
    for path in (torch_like, archive):
        with pytest.raises(safeload.UnsupportedFormatError) as excinfo:
            safeload.load(path)
        assert "allow" not in str(excinfo.value) and str(path) in str(excinfo.value)


def test_convert_applies_the_dangerous_name_rule(tmp_path: Path) -> None:
    src = tmp_path / "m.pkl"
    src.write_bytes(PLAIN)
    with pytest.raises(safeload.DangerousAllowError):
        safeload.convert(src, tmp_path / "m.skops", allow=["os.system"])
    assert not (tmp_path / "m.skops").exists()


@pytest.mark.parametrize(("head", "word"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "PNG"),
    (b"\x89HDF\r\n\x1a\n" + bytes(64), "HDF5"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 12345\n", "LFS"),
])
def test_files_that_are_something_else_are_unsupported_not_malformed(tmp_path: Path, head: bytes, word: str) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(head)
    with pytest.raises(safeload.UnsupportedFormatError, match=word) as excinfo:
        safeload.load(path)
    assert "allow" not in str(excinfo.value) and not isinstance(excinfo.value, safeload.MalformedModelError)


def test_public_names_are_exported_lazily_and_completely() -> None:
    import subprocess
    import sys

    assert sorted(safeload.__all__) == sorted(safeload._EXPORTS)
    for name in safeload.__all__:
        assert getattr(safeload, name) is not None
    # `import safeload` (and so the CLI's --help/--version) imports none of the heavy libraries
    code = "import sys, safeload; print(sorted(m for m in ('numpy', 'sklearn', 'skops', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
