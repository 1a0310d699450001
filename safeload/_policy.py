"""The policy: which exact global names a file may use, and the resource limits.

Names are plain ``"module.qualname"`` strings and are matched exactly: a name is
never allowed because its module, a prefix or a parent is allowed.  Each entry
has a *kind* that says how a pickle may use it (see ``_allowlist``), so that a
class that is only ever rebuilt with ``__new__`` cannot be called with
attacker-chosen arguments.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from safeload._allowlist import DEFAULT_ENTRIES, Entry, Kind
from safeload._errors import UnsafeModelError

__all__ = ["Limits", "Policy", "DANGEROUS_NAMES"]

# Names a configuration may only allow with an explicit acknowledgement.
DANGEROUS_NAMES: frozenset[str] = frozenset(
    {
        "builtins.eval",
        "builtins.exec",
        "builtins.compile",
        "builtins.open",
        "builtins.__import__",
        "builtins.getattr",
        "builtins.setattr",
        "builtins.globals",
        "builtins.breakpoint",
        "os.system",
        "os.popen",
        "os.execv",
        "os.execvp",
        "os.spawnv",
        "posix.system",
        "subprocess.Popen",
        "subprocess.run",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "subprocess.getoutput",
        "subprocess.getstatusoutput",
        "runpy._run_code",
        "runpy.run_path",
        "runpy.run_module",
        "pickle.loads",
        "pickle.load",
        "_pickle.loads",
        "marshal.loads",
        "types.FunctionType",
        "types.CodeType",
        "importlib.import_module",
        "ctypes.CDLL",
        "shutil.rmtree",
        "numpy.load",
        "joblib.load",
    }
)


@dataclass(frozen=True)
class Limits:
    """Resource bounds; the defaults never refuse a real scikit-learn model."""

    max_decompressed_bytes: int = 16 * 1024**3
    # Also cap inflation at max(256 MiB, ratio x compressed size); None disables the ratio cap.
    max_inflate_ratio: int | None = 100
    max_memo_entries: int = 50_000_000
    max_stack_depth: int = 100_000
    max_mark_depth: int = 10_000
    max_opcodes: int = 2_000_000_000
    max_nesting_depth: int = 5_000
    max_nested_pickles: int = 1_000_000
    max_zip_members: int = 10_000
    max_zip_bytes: int = 16 * 1024**3
    max_array_bytes: int = 64 * 1024**3

    def replace(self, **changes: Any) -> Limits:
        return dataclasses.replace(self, **changes)


def _split(name: str) -> tuple[str, str]:
    if ":" in name:
        module, _, qualname = name.partition(":")
        return module, qualname
    module, _, qualname = name.rpartition(".")
    return module, qualname


@dataclass(frozen=True)
class Policy:
    """An exact allowlist plus limits.  Build with ``Policy.default()``."""

    entries: Mapping[str, Entry] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def default(cls) -> Policy:
        return _DEFAULT

    def extended(
        self,
        allow: Iterable[str] | Mapping[str, str] = (),
        *,
        limits: Limits | None = None,
    ) -> Policy:
        """Return a copy that also allows ``allow`` (exact names, caller-trusted)."""
        reasons: Mapping[str, str]
        if isinstance(allow, Mapping):
            reasons = allow
        elif isinstance(allow, str):
            raise TypeError("allow must be a list of names, not a single string")
        else:
            reasons = {name: "allowed by the caller" for name in allow}
        if not reasons and limits is None:
            return self
        entries = dict(self.entries)
        for raw, why in reasons.items():
            if not isinstance(raw, str) or not raw or raw.endswith((".", ":")) or "*" in raw:
                raise ValueError(f"allow entries must be exact 'module.qualname' names, got {raw!r}")
            name = raw.replace(":", ".")
            if name not in entries:
                entries[name] = Entry(name, Kind.CALL, why, user=True)
        return Policy(entries, limits or self.limits)

    def kind(self, name: str) -> Kind | None:
        entry = self.entries.get(name)
        return entry.kind if entry is not None else None

    def allows(self, name: str) -> bool:
        return name in self.entries

    def resolve(self, module: str, qualname: str) -> Any:
        """Import and return an allowed name; never called for a refused one."""
        name = f"{module}.{qualname}"
        entry = self.entries.get(name)
        if entry is None:
            raise UnsafeModelError(refusal_message([name]), names=[name])
        obj = _import_exact(module, qualname)
        if entry.guard is not None:
            from safeload._guards import guard

            return guard(name, entry.guard, obj, self)
        return obj


def _import_exact(module: str, qualname: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnsafeModelError(
            f"allowed global {module}.{qualname} cannot be imported here: {exc}",
            names=[f"{module}.{qualname}"],
        ) from None
    if isinstance(obj, types.ModuleType):
        raise UnsafeModelError(f"{module}.{qualname} is a module, not an allowed global")
    return obj


def refusal_message(names: Iterable[str], source: str | None = None) -> str:
    names = sorted(set(names))
    where = f" in {source}" if source else ""
    listed = ", ".join(names)
    hint = ", ".join(repr(n) for n in names)
    return (
        f"refused to load{where}: it uses global(s) not in the allowlist: {listed}. "
        f"If you trust this file and these names, allow them explicitly: "
        f"safeload.load(..., allow=[{hint}])"
    )


_DEFAULT = Policy({e.name: e for e in DEFAULT_ENTRIES})
