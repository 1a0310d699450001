"""Where the active policy comes from: explicit argument, named config, nearest config, defaults.

A project states what it trusts next to its code, so every ``safeload.load``
call (and the CLI) in that project agrees without passing ``allow=`` around::

    # pyproject.toml                        # or safeload.toml (top-level keys)
    [tool.safeload]
    allow = [{name = "mypkg.features.Clipper", reason = "our own transformer, reviewed"}]
    [tool.safeload.limits]
    max_decompressed_bytes = 2_000_000_000

Precedence: an explicit ``policy=`` argument, then the file named by
``set_config_path()`` (the CLI's ``--config``) or ``$SAFELOAD_CONFIG``, then the
nearest ``safeload.toml`` / ``pyproject.toml`` with a ``[tool.safeload]`` table
from the loaded file's directory upward, like ruff and mypy (then from the working
directory upward, for a model kept outside the project; each search stops at a
directory holding ``.git`` and at the filesystem root), then ``Policy.default()``.
``allow=`` arguments always extend whichever policy wins.

Every allow entry needs a reason, because the file is what reviewers read.
Allowing a dangerous name (``_policy.is_dangerous``: ``os.system``,
``builtins.eval``, any name from a module that exists to run code or touch the
system, any standard-library name outside the value-type modules...) turns the
loader into a code runner, so it is refused unless the table also says
``unsafe = true`` (or ``acknowledge_unsafe = true``), and even then it warns.
``allow=`` and ``--allow`` apply the same rule (``allow_unsafe=True``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeload._errors import SafeloadError
from safeload._policy import DANGEROUS_MODULES, Limits, Policy, is_dangerous

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 ships without tomllib
    import tomli as tomllib

__all__ = [
    "CONFIG_ENV",
    "DANGEROUS_MODULES",
    "Config",
    "ConfigError",
    "DangerousConfigError",
    "UnsafeConfigWarning",
    "active_policy",
    "clear_cache",
    "config_path",
    "find_config",
    "is_dangerous",
    "load_config",
    "read_config",
    "set_config_path",
]

CONFIG_ENV = "SAFELOAD_CONFIG"
CONFIG_NAMES = ("safeload.toml", "pyproject.toml")  # in this order within one directory
_TABLE_KEYS = frozenset({"allow", "limits", "unsafe", "acknowledge_unsafe"})
_LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(Limits))
# Limits that accept None ("no cap"); TOML has no null, so `false` stands for it.
_NULLABLE_LIMITS = frozenset(f.name for f in dataclasses.fields(Limits) if "None" in str(f.type))
#: What tomllib raises on a file it cannot parse: besides TOMLDecodeError (and UnicodeDecodeError),
#: ValueError from int() on an integer of over 4300 digits and RecursionError on arrays or inline
#: tables nested past the recursion limit.  A project's config is found next to the scanned
#: file, so it may be the attacker's.
_TOML_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, RecursionError)


class ConfigError(SafeloadError):
    """A configuration file is missing, unreadable or invalid."""


class DangerousConfigError(ConfigError):
    """A configuration allows a known code-execution name without acknowledging it."""

    def __init__(self, message: str, names: tuple[str, ...]) -> None:
        super().__init__(message)
        self.names = names


class UnsafeConfigWarning(UserWarning):
    """A configuration deliberately allows known code-execution names."""


@dataclass(frozen=True)
class Config:
    """One parsed configuration: what it allows (name -> reason) and its limits."""

    path: Path
    allow: Mapping[str, str]
    limits: Limits
    unsafe: bool = False

    def policy(self) -> Policy:
        return Policy.default().extended(self.allow, limits=self.limits, allow_unsafe=self.unsafe)


# -- explicit override (the CLI's --config) ----------------------------------------------

_override: Path | None = None
_lock = threading.Lock()
_cache: dict[tuple[str, int, int], Policy] = {}
_table_cache: dict[tuple[str, int, int], bool] = {}


def set_config_path(path: str | os.PathLike[str] | None) -> None:
    """Use ``path`` as the configuration for this process (``None`` restores discovery).

    The CLI calls this for ``--config``; it takes precedence over ``$SAFELOAD_CONFIG``.
    """
    global _override
    _override = Path(path) if path is not None else None


# -- discovery -----------------------------------------------------------------------------


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def _has_table(path: Path) -> bool:
    """Whether a pyproject.toml has a [tool.safeload] table (cached per mtime, parsed leniently)."""
    try:
        key = _stat_key(path)
    except OSError:
        return False
    with _lock:
        cached = _table_cache.get(key)
    if cached is not None:
        return cached
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
        tool = doc.get("tool")
        found = isinstance(tool, dict) and "safeload" in tool
    except _TOML_ERRORS:
        # A broken pyproject.toml that may hold our table must not be skipped silently.
        found = _mentions_table(path)
    with _lock:
        _table_cache[key] = found
    return found


def _mentions_table(path: Path) -> bool:
    try:
        return "tool.safeload" in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def find_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest configuration file from ``start`` (default: the working directory) upward.

    In each directory ``safeload.toml`` wins over ``pyproject.toml``; a
    ``pyproject.toml`` counts only if it has a ``[tool.safeload]`` table.  The
    search ends after the first directory that holds ``.git`` (the project root).
    Plain ``os.path`` calls: this runs on every ``load``.
    """
    found, _ = _search(start)
    return found


def _search(start: str | os.PathLike[str] | None) -> tuple[Path | None, str | None]:
    """The nearest configuration and the last directory searched (where the search stopped)."""
    try:
        here = os.path.realpath(os.fspath(start) if start is not None else os.getcwd())
    except (OSError, ValueError):  # the working directory was deleted
        return None, None
    directory = here
    while True:
        candidate = os.path.join(directory, "safeload.toml")
        if os.path.isfile(candidate):
            return Path(candidate), directory
        candidate = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(candidate) and _has_table(Path(candidate)):
            return Path(candidate), directory
        if os.path.exists(os.path.join(directory, ".git")):
            return None, directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None, directory
        directory = parent


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def config_path(near: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file in effect: ``--config``, then ``$SAFELOAD_CONFIG``, then discovery.

    Discovery starts in the directory of ``near`` (the file being loaded or scanned), then,
    if nothing is found there, in the working directory.
    """
    if _override is not None:
        return _override
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    if near is not None:
        try:
            start: str | None = os.path.dirname(os.path.abspath(os.fspath(near)))
        except (OSError, ValueError, TypeError):
            start = None
        if start is not None:
            found, stopped = _search(start)
            if found is not None:
                return found
            try:
                cwd = os.path.realpath(os.getcwd())
            except OSError:
                return None
            real = os.path.realpath(start)
            # The working directory's search would walk a chain already searched: skip it.
            if stopped is not None and _within(real, cwd) and _within(cwd, stopped):
                return None
    return find_config()


# -- parsing -----------------------------------------------------------------------------


def _table(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"safeload configuration {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read safeload configuration {path}: {exc.strerror or exc}") from None
    except RecursionError:
        raise ConfigError(f"{path} is not valid TOML: arrays or tables nested too deeply to parse") from None
    except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        tool = doc.get("tool", {})
        table = tool.get("safeload") if isinstance(tool, dict) else None
        if table is None:
            raise ConfigError(f"{path} has no [tool.safeload] table")
        where = "[tool.safeload]"
    else:
        table = doc
        where = "the top level"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    return table


def _allow_entries(path: Path, raw: Any) -> dict[str, str]:
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: 'allow' must be an array of {{name = \"module.Name\", reason = \"...\"}} tables")
    allow: dict[str, str] = {}
    for i, item in enumerate(raw):
        where = f"{path}: allow[{i}]"
        if isinstance(item, str):
            raise ConfigError(f"{where} = {item!r} needs a reason: write {{name = {item!r}, reason = \"why it is safe\"}}")
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table with 'name' and 'reason'")
        unknown = set(item) - {"name", "reason"}
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {', '.join(sorted(unknown))} (expected 'name', 'reason')")
        name, reason = item.get("name"), item.get("reason")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where} needs a 'name' (an exact 'module.qualname')")
        name = name.strip()
        if name.endswith((".", ":")) or "*" in name or ("." not in name and ":" not in name) or " " in name:
            raise ConfigError(f"{where}: {name!r} is not an exact 'module.qualname' (no wildcards or bare modules)")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{where} ({name}) needs a non-empty 'reason' saying why it is safe")
        name = name.replace(":", ".")
        if name in allow:
            raise ConfigError(f"{where}: {name} is listed twice")
        allow[name] = reason.strip()
    return allow


def _limits(path: Path, table: Mapping[str, Any]) -> Limits:
    values: dict[str, int | None] = {}
    nested = table.get("limits", {})
    if not isinstance(nested, dict):
        raise ConfigError(f"{path}: 'limits' must be a table")
    top = {k: v for k, v in table.items() if k in _LIMIT_FIELDS}
    twice = sorted(set(nested) & set(top))
    if twice:
        raise ConfigError(f"{path}: limit(s) {', '.join(twice)} set both at the top level and in [limits]")
    for key, value in {**top, **nested}.items():
        if key not in _LIMIT_FIELDS:
            raise ConfigError(f"{path}: unknown limit {key!r}; known limits: {', '.join(sorted(_LIMIT_FIELDS))}")
        if value is False and key in _NULLABLE_LIMITS:
            values[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            extra = " (or false to disable it)" if key in _NULLABLE_LIMITS else ""
            raise ConfigError(f"{path}: limit {key} must be a positive integer{extra}, got {value!r}")
        values[key] = value
    return Limits().replace(**values)


def read_config(path: str | os.PathLike[str]) -> Config:
    """Parse and check one configuration file (no caching, warns on acknowledged danger)."""
    p = Path(path)
    table = _table(p)
    unknown = set(table) - _TABLE_KEYS - _LIMIT_FIELDS
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {', '.join(sorted(unknown))}; expected allow, limits, unsafe "
                          "or a limit name")
    flags = {k: table[k] for k in ("unsafe", "acknowledge_unsafe") if k in table}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{p}: {key} must be true or false, got {value!r}")
    unsafe = any(flags.values())
    allow = _allow_entries(p, table.get("allow", []))
    dangerous = tuple(sorted(n for n in allow if is_dangerous(n)))
    if dangerous and not unsafe:
        raise DangerousConfigError(
            f"{p} allows {', '.join(dangerous)}, which let a model file run arbitrary code; "
            "remove them, or set 'unsafe = true' in the same table if you really mean it",
            dangerous,
        )
    if dangerous:
        warnings.warn(
            f"safeload configuration {p} allows code-execution names ({', '.join(dangerous)}): "
            "files loaded under it can run arbitrary code",
            UnsafeConfigWarning,
            stacklevel=2,
        )
    return Config(p, allow, _limits(p, table), unsafe)


def load_config(path: str | os.PathLike[str]) -> Policy:
    """The policy a configuration file describes: the defaults, extended and limited by it."""
    return read_config(path).policy()


def _cached_policy(path: Path) -> Policy:
    try:
        key = _stat_key(path.resolve())
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise ConfigError(f"safeload configuration {path} does not exist") from None
        raise ConfigError(f"cannot read safeload configuration {path}: {exc.strerror or exc}") from None
    with _lock:
        policy = _cache.get(key)
    if policy is None:
        policy = load_config(path)
        with _lock:
            _cache[key] = policy
    return policy


def active_policy(near: str | os.PathLike[str] | None = None) -> Policy:
    """The policy ``load``/``scan`` use when no ``policy=`` is passed (cached per file and mtime).

    ``near``: the file being loaded; its configuration is searched from its directory upward.
    """
    path = config_path(near)
    if path is None:
        return Policy.default()
    return _cached_policy(path)


def clear_cache() -> None:
    """Forget parsed configurations (tests; files are re-read on mtime change anyway)."""
    with _lock:
        _cache.clear()
        _table_cache.clear()
