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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from safeload._allowlist import DEFAULT_ENTRIES, Entry, Kind
from safeload._errors import UnsafeModelError

__all__ = [
    "ALIASES",
    "DANGEROUS_MODULES",
    "DANGEROUS_NAMES",
    "Limits",
    "Policy",
    "danger_reason",
    "is_dangerous",
    "refusal_message",
]

# -- the dangerous-name rule -----------------------------------------------------------------
#
# One rule for every way a caller widens the policy (allow=, patched(allow=), --allow, the
# configuration file): a *dangerous* name is refused unless the caller says allow_unsafe=True
# (config: unsafe = true), and a file that uses one is called malicious, never "allow it".
# It is allowlist-shaped where it can be: in the standard library only the value-type modules
# below are not dangerous, and in builtins only value types and exception classes.  For other
# packages it is a list of modules and entry points that run code, start processes, touch
# files or the network, or unpickle again.

#: Exact names that run code, import, reach arbitrary attributes or read files.
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
        # gadgets in otherwise harmless modules
        "operator.attrgetter",
        "operator.methodcaller",
        "operator.call",
        "_operator.attrgetter",
        "_operator.methodcaller",
        "_operator.call",
        "collections.namedtuple",  # builds source text and evals it
        "numpy.save",
        "numpy.savez",
        "numpy.savez_compressed",
        "numpy.savetxt",
        "numpy.loadtxt",
        "numpy.genfromtxt",
        "numpy.fromfile",
        "numpy.fromregex",
        "numpy.memmap",
        "numpy.DataSource",
        "numpy.ndarray.tofile",
        "numpy.ndarray.dump",
        "pandas.read_pickle",
        "pandas.eval",
        "torch.load",
        "sympy.sympify",
        "numexpr.evaluate",
    }
)

#: Modules (and their submodules) that exist to run code, start processes, touch files or the
#: network, or unpickle other data.  Standard-library modules outside ``_VALUE_STDLIB`` count too.
DANGEROUS_MODULES: frozenset[str] = frozenset({
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "runpy", "ctypes", "_ctypes", "marshal",
    "code", "codeop", "importlib", "shutil", "socket", "_socket", "pickle", "_pickle", "dill", "cloudpickle",
    "joblib", "sklearn.externals.joblib", "multiprocessing", "sys", "pdb", "bdb", "timeit", "cProfile",
    "profile", "trace", "webbrowser", "pydoc", "pkgutil", "imaplib", "smtplib", "urllib", "http", "ftplib",
    "tempfile", "glob", "io", "_io", "zipimport", "builtins", "__builtin__", "types", "copyreg", "codecs",
    "_codecs", "inspect", "gc", "signal", "threading", "_thread", "asyncio", "atexit",
    # third-party loaders, code runners and I/O
    "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format", "numpy.lib._datasource", "numpy.f2py",
    "numpy.distutils", "numpy.testing", "numpy.ctypeslib", "numpy.core.memmap", "numpy._core.memmap",
    "scipy.io", "scipy.weave", "pandas.io", "pandas.core.computation", "skops.io", "skops.hub_utils",
    "torch.serialization", "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension",
    "yaml", "jsonpickle", "numexpr", "sympy.parsing", "jinja2", "mako", "IPython", "requests", "urllib3",
    "httpx", "aiohttp", "fsspec", "smart_open", "boto3", "botocore", "paramiko", "pexpect", "sh", "plumbum",
    "docker", "setuptools", "pip", "pkg_resources", "Cython", "keras.saving", "tensorflow.io",
    "sklearn.utils._testing", "sklearn.utils.testing", "sklearn.datasets", "sklearn.externals",
    "scipy._lib._testutils", "pandas.testing", "pandas._testing",
})

#: The standard-library modules whose names are values (not dangerous unless listed above by name).
_VALUE_STDLIB: frozenset[str] = frozenset({
    "collections", "_collections", "datetime", "_datetime", "decimal", "_decimal", "_pydecimal", "fractions",
    "numbers", "enum", "ipaddress", "array", "math", "cmath", "statistics", "string", "re",
    "heapq", "bisect", "functools", "_functools", "itertools", "operator", "_operator", "typing",
})

#: Single value-type names from otherwise non-value standard-library modules.
_VALUE_STDLIB_NAMES: frozenset[str] = frozenset({"uuid.UUID", "uuid.SafeUUID", "types.SimpleNamespace"})

#: Builtins that are values: data types (exception classes are values too, see ``_builtin_is_value``).
_VALUE_BUILTINS: frozenset[str] = frozenset({
    "int", "float", "complex", "bool", "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
    "frozenset", "slice", "range", "object", "memoryview", "NotImplemented", "Ellipsis",
})

#: Function-name prefixes of loaders, writers, downloaders and runners in any package.
_GADGET_PREFIXES: tuple[str, ...] = ("read_", "load_", "dump", "save", "write", "fetch_", "download", "run_",
                                     "exec", "spawn")

#: Function names that are loader or execution entry points in any package.
_GADGET_FUNCS: frozenset[str] = frozenset({
    "load", "loads", "load_model", "unsafe_load", "full_load", "read_pickle", "system", "popen", "eval",
    "exec", "execfile", "compile", "open", "__import__", "import_module", "getattr", "setattr", "delattr",
    "urlopen", "urlretrieve", "fromfile", "tofile", "memmap", "rmtree", "check_output", "Popen",
})

#: joblib's array header class (also under scikit-learn's old vendored copy): a data holder that
#: safeload handles itself, so a file naming it is old, not malicious.
_DATA_HOLDERS: frozenset[str] = frozenset({
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
})

_CATEGORIES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "multiprocessing", "signal",
                "sh", "plumbum", "pexpect", "docker"}), "starts processes or changes the system"),
    (frozenset({"pickle", "_pickle", "dill", "cloudpickle", "joblib", "sklearn.externals.joblib", "marshal",
                "jsonpickle", "yaml", "skops.io", "torch.serialization", "numpy.lib.npyio",
                "numpy.lib._npyio_impl", "numpy.lib.format", "pandas.io", "scipy.io"}),
     "loads other data with its own (unrestricted) loader"),
    (frozenset({"runpy", "code", "codeop", "importlib", "pydoc", "pkgutil", "types", "ctypes", "_ctypes",
                "builtins", "__builtin__", "inspect", "gc", "zipimport", "numexpr", "sympy.parsing", "jinja2",
                "mako", "IPython", "Cython", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "setuptools",
                "pip", "pkg_resources", "torch.jit", "torch.package", "torch.utils.cpp_extension",
                "pandas.core.computation", "copyreg"}),
     "imports modules, evaluates code or reaches arbitrary attributes"),
)


def _module_prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _builtin_is_value(attr: str) -> bool:
    if attr in _VALUE_BUILTINS:
        return True
    import builtins

    obj = getattr(builtins, attr, None)
    return isinstance(obj, type) and issubclass(obj, BaseException)


def danger_reason(name: str) -> str | None:
    """Why allowing ``name`` would let a file run code or touch the system (``None``: not dangerous).

    Decided from the name alone; nothing is imported.
    """
    import sys

    name = name.replace(":", ".")
    if name in _DATA_HOLDERS or name in _VALUE_STDLIB_NAMES:
        return None
    module, _, qualname = name.rpartition(".")
    parts = name.split(".")
    if parts[0] in ("builtins", "__builtin__"):
        if len(parts) == 2 and _builtin_is_value(parts[1]):
            return None
        return f"{name} is a builtin that is not a value type (builtins evaluate code, import and open files)"
    for prefix in _module_prefixes(name):
        if prefix in DANGEROUS_MODULES:
            what = next((why for mods, why in _CATEGORIES if prefix in mods),
                        "runs code, starts processes, or touches files or the network")
            return f"{name} comes from module {prefix}, which {what}"
    if name in DANGEROUS_NAMES:
        return f"{name} runs code, reads or writes files, or loads other data with an unrestricted loader"
    top = parts[0]
    if top in getattr(sys, "stdlib_module_names", ()) and len(parts) > 1:
        if top not in _VALUE_STDLIB:
            return (f"{name} comes from the standard-library module {top}, which is not one of the value-type "
                    "modules (collections, datetime, decimal, fractions, ...)")
        if any(p.startswith("_") for p in parts[1:]):
            return f"{name} is a private helper of the standard library, not a value type"
    if any(p.startswith("__") and p.endswith("__") and len(p) > 4 for p in parts[1:]):
        return f"{name} names a special attribute, which reaches into object internals"
    if module and (qualname in _GADGET_FUNCS or qualname.startswith(_GADGET_PREFIXES)):
        return f"{name} is a loader or execution entry point"
    return None


def is_dangerous(name: str) -> bool:
    """Whether allowing ``name`` lets a file run code or touch the system (needs an explicit acknowledgement)."""
    return danger_reason(name) is not None


# -- public alias modules ----------------------------------------------------------------------
#
# Some allowed classes are also reachable under a public alias module that old pickles name
# (scipy's deprecated ``scipy.sparse.csr`` and friends; codecs re-exports _codecs).  numpy's
# ``numpy.core`` / ``numpy._core`` twins are listed in the allowlist itself (numpy 1.x wrote one,
# 2.x the other), so they need no alias here.  Each pair
# is exact and verified by tests/test_policy.py, which imports both and checks identity.  The
# alias is resolved to its target *by name*: the alias module is never imported (several emit
# deprecation warnings, and a name in a file must never choose what gets imported).

#: alias "module.qualname" -> (target module, target qualname)
ALIASES: Mapping[str, tuple[str, str]] = {
    **{f"scipy.sparse.{m}.{m}_matrix": (f"scipy.sparse._{m}", f"{m}_matrix")
       for m in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")},
    "scipy.sparse.lil.lil_array": ("scipy.sparse._lil", "lil_array"),
    **{f"scipy.sparse.{m}_{k}": (f"scipy.sparse._{m}", f"{m}_{k}")
       for m in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok") for k in ("matrix", "array")},
    "codecs.encode": ("_codecs", "encode"),
    "numpy.random.RandomState": ("numpy.random.mtrand", "RandomState"),
    "numpy.random.Generator": ("numpy.random._generator", "Generator"),
    "numpy.random.MT19937": ("numpy.random._mt19937", "MT19937"),
    "numpy.random.PCG64": ("numpy.random._pcg64", "PCG64"),
    "numpy.random.PCG64DXSM": ("numpy.random._pcg64", "PCG64DXSM"),
    "numpy.random.Philox": ("numpy.random._philox", "Philox"),
    "numpy.random.SFC64": ("numpy.random._sfc64", "SFC64"),
    "numpy.random.SeedSequence": ("numpy.random.bit_generator", "SeedSequence"),
}


class _Entries(Mapping[str, "Entry"]):
    """The policy's entries, read-only; an alias name finds its target's entry (never its own key)."""

    __slots__ = ("_data", "found")

    def __init__(self, data: Mapping[str, Entry]) -> None:
        self._data = dict(data)
        #: Every name ``get`` finds (entries and the aliases of entries): a plain dict, for the walker,
        #: which looks names up a few dozen times per file (a Python method call each, otherwise).
        self.found: dict[str, Entry] = dict(self._data)
        for alias, (module, qualname) in ALIASES.items():
            target = self._data.get(f"{module}.{qualname}")
            if target is not None and alias not in self._data:
                self.found[alias] = target

    def __getitem__(self, name: str) -> Entry:
        return self.found[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def get(self, name: str, default: Any = None) -> Any:
        return self.found.get(name, default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def holds(self, name: str) -> bool:
        """Whether ``name`` is an entry itself (not found through an alias)."""
        return name in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"_Entries({len(self._data)} names)"

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Entries):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == dict(other.items())


def _check_name(raw: object) -> str:
    """An exact ``module.qualname`` (``module:qualname`` accepted) or ValueError."""
    if not isinstance(raw, str) or not raw or raw.endswith((".", ":")) or "*" in raw:
        raise ValueError(f"allow entries must be exact 'module.qualname' names, got {raw!r}")
    if raw.count(":") > 1 or ("." not in raw and ":" not in raw):
        raise ValueError(f"allow entries must be exact 'module.qualname' names, got {raw!r}")
    name = raw.replace(":", ".")
    bad = [p for p in name.split(".") if not p.isidentifier()]
    if bad:
        raise ValueError(f"allow entry {raw!r} cannot name a Python global: {bad[0]!r} is not an identifier")
    return name


class UnknownAllowWarning(UserWarning):
    """An ``allow=`` name's top-level package is not installed here, so no file can load it here."""


_top_found: dict[str, bool] = {}


def _warn_if_missing(name: str) -> None:
    """Warn once per package when an allowed name's top-level package is not installed.

    A warning, not an error: a CI job may scan files for a package it does not install.
    ``find_spec`` on a top-level name runs no module code.
    """
    top = name.partition(".")[0]
    found = _top_found.get(top)
    if found is None:
        import importlib.util
        import sys

        try:
            found = top in sys.modules or importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        _top_found[top] = found
        if not found:
            import warnings

            warnings.warn(f"allow={name!r}: no module named {top!r} is installed here, so this name cannot be "
                          "loaded (a typo?)", UnknownAllowWarning, stacklevel=4)


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
    max_nesting_depth: int = 1_000  # tuples nested in a hashed value (CPython's pickler writes no deeper)
    max_hash_work: int = 10_000_000  # items hashed per stream, or 4 per byte of it if more (_hashwork)
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

    def __post_init__(self) -> None:
        if not isinstance(self.entries, _Entries):
            object.__setattr__(self, "entries", _Entries(self.entries))

    @classmethod
    def default(cls) -> Policy:
        return _DEFAULT

    def extended(
        self,
        allow: Iterable[str] | Mapping[str, str] = (),
        *,
        limits: Limits | None = None,
        allow_unsafe: bool = False,
    ) -> Policy:
        """Return a copy that also allows ``allow`` (exact names, caller-trusted).

        A dangerous name (see ``is_dangerous``: ``os.system``, ``builtins.eval``, ``numpy.load``...)
        raises ``DangerousAllowError`` unless ``allow_unsafe=True`` says the caller means to let
        files run code, the same rule as ``unsafe = true`` in the configuration file.  Names
        that are not identifiers raise ``ValueError``; names whose package is not installed warn.
        """
        reasons: Mapping[str, str]
        if isinstance(allow, Mapping):
            reasons = allow
        elif isinstance(allow, str):
            raise TypeError("allow must be a list of names, not a single string")
        else:
            reasons = {name: "allowed by the caller" for name in allow}
        if not reasons and limits is None:
            return self
        added: dict[str, str] = {}
        for raw, why in reasons.items():
            name = _check_name(raw)
            if name not in self.entries:
                added[name] = why
        dangerous = {n: r for n in sorted(added) if (r := danger_reason(n)) is not None}
        if dangerous and not allow_unsafe:
            from safeload._errors import DangerousAllowError

            listed = "; ".join(dangerous.values())
            raise DangerousAllowError(
                f"refusing to allow {', '.join(dangerous)}: {listed}. Allowing it lets any file run arbitrary "
                "code; a model file never needs it. If you really mean to run such files, pass "
                "allow_unsafe=True (--allow-unsafe on the command line, unsafe = true in [tool.safeload])",
                tuple(dangerous))
        entries = dict(self.entries.items())
        for name, why in added.items():
            _warn_if_missing(name)
            entries[name] = Entry(name, Kind.CALL, why, user=True)
        return Policy(entries, limits or self.limits)

    @property
    def lookup(self) -> dict[str, Entry]:
        """Every name the policy finds (its entries and their aliases) as a plain dict: the walker's."""
        entries = self.entries
        assert isinstance(entries, _Entries)  # (__post_init__)
        return entries.found

    def kind(self, name: str) -> Kind | None:
        entry = self.lookup.get(name)
        return entry.kind if entry is not None else None

    def allows(self, name: str) -> bool:
        return name in self.entries

    def resolve(self, module: str, qualname: str, *, guarded: bool = True) -> Any:
        """Import and return an allowed name; never called for a refused one.

        An alias name (``ALIASES``) imports its target, never the alias module. ``guarded=False``:
        the stream only references the name (the walker saw no call), so the plain object.
        """
        name = f"{module}.{qualname}"
        entry = self.entries.get(name)
        if entry is None:
            raise UnsafeModelError(refusal_message([name]), names=[name])
        if isinstance(self.entries, _Entries) and not self.entries.holds(name):
            module, qualname = ALIASES[name]
        obj = _import_exact(module, qualname)
        if entry.guard is not None and guarded:
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


def refusal_message(names: Iterable[str], source: str | None = None, *, hint: bool = True) -> str:
    """The message for a file refused because of ``names``.

    When any name is dangerous the file is called malicious and nothing suggests allowing
    anything; otherwise, with ``hint``, the exact ``allow=`` spelling is given (callers pass
    ``hint=False`` where allowing cannot help, e.g. a container ``load`` cannot open).
    """
    names = sorted(set(names))
    where = f" in {source}" if source else ""
    dangerous = {n: r for n in names if (r := danger_reason(n)) is not None}
    if dangerous:
        why = "; ".join(dangerous.values())
        others = [n for n in names if n not in dangerous]
        also = f" It also uses {', '.join(others)}, which the allowlist does not hold." if others else ""
        return (
            f"refused to load{where}: this file is malicious: it uses {', '.join(dangerous)} ({why}). "
            f"A model file never needs these names; loading it would run its code.{also} "
            "Do not allow these names; delete or quarantine the file and find out where it came from."
        )
    listed = ", ".join(names)
    message = f"refused to load{where}: it uses global(s) not in the allowlist: {listed}."
    if hint:
        spelled = ", ".join(repr(n) for n in names)
        message += (
            f" If you trust this file and these names, allow them explicitly: "
            f"safeload.load(..., allow=[{spelled}]) (also safeload.patched(allow=...), --allow, "
            "or an allow entry in [tool.safeload])"
        )
    return message


_DEFAULT = Policy({e.name: e for e in DEFAULT_ENTRIES})
