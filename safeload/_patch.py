"""Route existing ``pickle``/``joblib`` loading code through safeload without editing it.

``with safeload.patched(): model = joblib.load(path)`` replaces, for the
duration of the block, the module attributes user code calls:

* ``pickle.load`` / ``pickle.loads`` -> ``safeload.load`` / ``safeload.loads``
  (a seekable stream keeps ``pickle.load`` semantics: one pickle is read and the
  file is left just after it, so loops over a stream of pickles still work);
* ``pickle.Unpickler`` -> ``SafeUnpickler``, a subclass of the real (C)
  unpickler whose ``find_class`` only returns names the policy allows; a plain
  ``pickle.Unpickler(f).load()`` on a seekable file takes the full safeload path;
* ``joblib.load`` and ``joblib.numpy_pickle.load`` -> ``safeload.load``.

Only these attributes change.  ``_pickle`` itself, ``pickle._Unpickler`` and
references other modules captured *before* the patch (notably
``multiprocessing.reduction.ForkingPickler.loads`` and loky's ``loads``, which
are imported before patching for that reason) keep the real functions, so
multiprocessing, ``concurrent.futures`` and ``joblib.Parallel`` keep working
inside the block.  Worker processes are fresh interpreters or forks whose
inter-process traffic goes through those captured references.

Patching is process-wide, reference counted and thread-safe.  The *policy* of a
call is the innermost ``patched()`` block entered by the calling thread (or
asyncio task); a thread that entered none (e.g. a pool worker started inside a
block) uses the policy the latest ``install()`` and every open block agree on --
when they differ, only what all of them allow, with the smallest limits.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import contextvars
import copyreg
import dataclasses
import functools
import importlib
import importlib.util
import io
import sys
import threading
from _pickle import Unpickler as _CUnpickler
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from safeload._errors import UnsafeModelError
from safeload._load import effective_policy
from safeload._load import load as _safe_load
from safeload._load import loads as _safe_loads
from safeload._policy import Limits, Policy

__all__ = ["SafeUnpickler", "install", "is_installed", "patched", "uninstall"]

#: Modules that bind pickle functions at import time; imported before patching so they keep the real ones.
_PRELOAD: tuple[str, ...] = (
    "multiprocessing.reduction",
    "joblib",
    "joblib.numpy_pickle",
    "joblib._memmapping_reducer",
    "joblib.externals.loky.backend.reduction",
)


class _Entry:
    """One open ``patched()`` block or ``install()`` call: the policy its calls use."""

    __slots__ = ("allow", "allow_unsafe", "policy")

    def __init__(self, policy: Policy | None, allow: Iterable[str] | Mapping[str, str],
                 allow_unsafe: bool = False) -> None:
        self.policy = policy
        self.allow: Mapping[str, str] | tuple[str, ...] = (
            dict(allow) if isinstance(allow, Mapping) else tuple(_names(allow))
        )
        self.allow_unsafe = allow_unsafe

    def resolve(self, near: Any = None) -> Policy:
        # Resolved per call: with policy=None the configuration in effect now applies (found
        # from ``near``, the file being loaded, when it is a path).
        # allow= obeys the same dangerous-name rule as load(allow=) and the config file.
        return effective_policy(self.policy, self.allow, allow_unsafe=self.allow_unsafe, near=near)


def _names(allow: Iterable[str]) -> Iterator[str]:
    if isinstance(allow, str):
        raise TypeError("allow must be a list of names, not a single string")
    yield from allow


_lock = threading.RLock()
_installs: list[_Entry] = []  # install() calls not yet undone, in order
_blocks: list[_Entry] = []  # open patched() blocks, all threads
_saved: dict[tuple[str, str], Any] = {}
_context: contextvars.ContextVar[tuple[_Entry, ...]] = contextvars.ContextVar("safeload_patched", default=())


# -- the policy of a call -------------------------------------------------------------------


def _current_policy(near: Any = None) -> Policy:
    stack = _context.get()
    if stack:
        return stack[-1].resolve(near)
    with _lock:
        entries = _installs[-1:] + _blocks  # install() calls nest: the latest one counts
    policies: list[Policy] = []
    for entry in entries:
        pol = entry.resolve(near)
        if not any(pol is p or pol == p for p in policies):
            policies.append(pol)
    if not policies:
        return effective_policy(None, (), near=near)
    if len(policies) == 1:
        return policies[0]
    return _intersection(policies)


def _intersection(policies: list[Policy]) -> Policy:
    """What every policy allows (same kind and guard), under the smallest of each limit."""
    first, rest = policies[0], policies[1:]
    entries = {}
    for name, entry in first.entries.items():
        others = [p.entries.get(name) for p in rest]
        if all(o is not None and o.kind == entry.kind and o.guard == entry.guard for o in others):
            entries[name] = entry
    limits = Limits(**{f.name: min(getattr(p.limits, f.name) for p in policies)
                       for f in dataclasses.fields(Limits)})
    return Policy(entries, limits)


# -- replacements ------------------------------------------------------------------------------


def _pickle_load(file: Any, *, fix_imports: bool = True, encoding: str = "ASCII", errors: str = "strict",
                 buffers: Any = ()) -> Any:
    """``pickle.load`` while safeload's patch is active: the file is judged before anything runs."""
    name = getattr(file, "name", None)
    return _load_stream(file, _current_policy(name if isinstance(name, str) else None), fix_imports, encoding,
                        errors)


def _pickle_loads(data: Any, /, *, fix_imports: bool = True, encoding: str = "ASCII", errors: str = "strict",
                  buffers: Any = ()) -> Any:
    """``pickle.loads`` while safeload's patch is active (bytes after the pickle are refused)."""
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    view = data if isinstance(data, (bytes, bytearray, memoryview)) else memoryview(data)
    if len(view) == 0:
        raise EOFError("Ran out of input")
    return _safe_loads(view, policy=_current_policy(), encoding=encoding, errors=errors, fix_imports=fix_imports)


def _joblib_load(filename: Any, mmap_mode: str | None = None, ensure_native_byte_order: Any = "auto") -> Any:
    """``joblib.load`` while safeload's patch is active (arrays always come back in native byte order)."""
    return _safe_load(filename, mmap_mode=mmap_mode, policy=_current_policy(filename))


def _seekable(file: Any) -> bool:
    try:
        seekable = getattr(file, "seekable", None)
        if seekable is not None and not seekable():
            return False
        file.tell()
        return callable(getattr(file, "seek", None))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _load_stream(file: Any, policy: Policy, fix_imports: bool = True, encoding: str = "ASCII",
                 errors: str = "strict") -> Any:
    """One pickle from ``file``: the full safeload path when the file can be re-positioned,
    else the names-only ``SafeUnpickler`` (pipes and sockets must not be read to EOF)."""
    if not callable(getattr(file, "read", None)) or not callable(getattr(file, "readline", None)):
        raise TypeError("file must have 'read' and 'readline' attributes")
    if not _seekable(file):
        unpickler = SafeUnpickler(file, fix_imports=fix_imports, encoding=encoding, errors=errors)
        unpickler._safeload_policy = policy
        return unpickler._restricted_load()
    start = file.tell()
    data = file.read()
    if isinstance(data, str):
        raise TypeError("file must be opened in binary mode ('rb')")
    if not data:
        raise EOFError("Ran out of input")
    # Errors name the file the caller opened, not "<bytes>".
    name = getattr(file, "name", None)
    options: dict[str, Any] = {"encoding": encoding, "errors": errors, "fix_imports": fix_imports,
                               "name": name if isinstance(name, str) else "<file object>"}
    try:
        return _safe_loads(data, policy=policy, **options)
    except UnsafeModelError:
        end = _first_pickle_end(data, policy, options)
        if end is None:
            raise
    obj = _safe_loads(memoryview(data)[:end], policy=policy, **options)
    file.seek(start + end)  # leave the rest (the next pickle of a stream) unread, as pickle.load does
    return obj


def _first_pickle_end(data: bytes | bytearray, policy: Policy, options: Mapping[str, Any]) -> int | None:
    """Where the first pickle ends, if the only objection to ``data`` is what follows it."""
    from safeload._containers import Format, sniff
    from safeload._errors import SafeloadError
    from safeload._walker import walk

    try:
        if sniff(data) is not Format.PICKLE:
            return None
        trace = walk(bytes(data), policy, joblib=True, encoding=options["encoding"], errors=options["errors"],
                     fix_imports=options["fix_imports"])
    except SafeloadError:
        return None
    if 0 < trace.end < len(data) and all(i.rule == "trailing-data" for i in trace.all_issues()):
        return trace.end
    return None


def _resolve(policy: Policy, module: str, name: str, fix_imports: bool) -> Any:
    if fix_imports:
        pair = _compat_pickle.NAME_MAPPING.get((module, name))
        if pair is not None:
            module, name = pair
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return policy.resolve(module, name)


class SafeUnpickler(_CUnpickler):
    """``pickle.Unpickler`` while safeload's patch is active.

    ``find_class`` returns only names the policy allows (Python 2 names are
    mapped first, as ``fix_imports`` does).  A subclass that overrides
    ``find_class`` may rename, but whatever it returns must still be an allowed
    global.  A plain instance reading a seekable file is loaded through the full
    safeload path (structure, limits, guards), not just by name.
    """

    def __init__(self, file: Any, *, fix_imports: bool = True, encoding: str = "ASCII", errors: str = "strict",
                 buffers: Any = ()) -> None:
        super().__init__(file, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers)
        self._safeload_file = file
        self._safeload_fix_imports = fix_imports
        self._safeload_encoding = encoding
        self._safeload_errors = errors
        self._safeload_policy = _current_policy()
        self._safeload_given: dict[int, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        user = cls.__dict__.get("find_class")
        if user is not None and not getattr(user, "_safeload_checked", False):
            cls.find_class = _checked_find_class(user)  # type: ignore[method-assign]

    def find_class(self, module: str, name: str) -> Any:
        obj = _resolve(self._safeload_policy, module, name, self._safeload_fix_imports)
        self._safeload_given[id(obj)] = obj
        return obj

    def load(self) -> Any:
        if self._safeload_plain() and _seekable(self._safeload_file):
            return _load_stream(self._safeload_file, self._safeload_policy, self._safeload_fix_imports,
                                self._safeload_encoding, self._safeload_errors)
        return self._restricted_load()

    def _safeload_plain(self) -> bool:
        """No subclass hooks: the full safeload path gives exactly what this instance would."""
        for klass in type(self).__mro__:
            if klass is SafeUnpickler:
                break
            if any(hook in vars(klass) for hook in ("find_class", "persistent_load", "load")):
                return False
        return not hasattr(self, "persistent_load")  # set on the instance

    def _restricted_load(self) -> Any:
        if copyreg._inverted_registry:  # type: ignore[attr-defined]
            raise UnsafeModelError(
                "this process registered copyreg extension codes; the unpickler would resolve them from a "
                "cache without asking find_class, so loading is refused")
        return super().load()


SafeUnpickler.find_class._safeload_checked = True  # type: ignore[attr-defined]


def _checked_find_class(user: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(user)
    def find_class(self: SafeUnpickler, module: str, name: str) -> Any:
        obj = user(self, module, name)
        return _check_returned(self, obj, module, name)

    find_class._safeload_checked = True  # type: ignore[attr-defined]
    return find_class


def _check_returned(self: SafeUnpickler, obj: Any, module: str, name: str) -> Any:
    """What a subclass's ``find_class`` returned must be an allowed global (guarded if the policy guards it)."""
    if self._safeload_given.get(id(obj)) is obj:
        return obj
    policy = self._safeload_policy
    real = _global_name(obj)
    if real is not None and policy.allows(real):
        resolved = _resolve_name(policy, real)
        if resolved is obj:
            return obj
        if getattr(resolved, "_fn", None) is obj:
            return resolved  # the policy guards this callable: hand out the guarded one
    shown = real if real is not None else f"a {type(obj).__name__} object"
    raise UnsafeModelError(
        f"{type(self).__name__}.find_class({module!r}, {name!r}) returned {shown}, which the safeload "
        "policy does not allow",
        names=[real if real is not None else f"{module}.{name}"],
    )


def _global_name(obj: Any) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return None


def _resolve_name(policy: Policy, full: str) -> Any:
    """``policy.resolve`` for a dotted name, split at its longest importable module prefix."""
    parts = full.split(".")
    for i in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:i])
        try:
            found = candidate in sys.modules or importlib.util.find_spec(candidate) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return policy.resolve(candidate, ".".join(parts[i:]))
    module, _, qualname = full.rpartition(".")
    return policy.resolve(module, qualname)


# -- installing ------------------------------------------------------------------------------

_TARGETS: tuple[tuple[str, str, Any], ...] = (
    ("pickle", "load", _pickle_load),
    ("pickle", "loads", _pickle_loads),
    ("pickle", "Unpickler", SafeUnpickler),
    ("joblib", "load", _joblib_load),
    ("joblib.numpy_pickle", "load", _joblib_load),
)


def _apply() -> None:
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for module_name, attr, replacement in _TARGETS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        _saved[(module_name, attr)] = getattr(module, attr)
        setattr(module, attr, replacement)


def _restore() -> None:
    replacements = {(m, a): r for m, a, r in _TARGETS}
    for (module_name, attr), original in _saved.items():
        module = sys.modules.get(module_name)
        # Someone else may have replaced our function meanwhile; do not clobber theirs.
        if module is not None and getattr(module, attr, None) is replacements[(module_name, attr)]:
            setattr(module, attr, original)
    _saved.clear()


def _acquire(entry: _Entry, into: list[_Entry]) -> None:
    entry.resolve()  # fail now (bad allow name, invalid configuration), not at the first load
    with _lock:
        if not _installs and not _blocks:
            _apply()
        into.append(entry)


def _release(entry: _Entry, source: list[_Entry]) -> None:
    with _lock:
        for i in range(len(source) - 1, -1, -1):
            if source[i] is entry:
                del source[i]
                break
        if not _installs and not _blocks:
            _restore()


@contextlib.contextmanager
def patched(policy: Policy | None = None, allow: Iterable[str] | Mapping[str, str] = (), *,
            allow_unsafe: bool = False) -> Iterator[None]:
    """Within the block, ``pickle.load/loads/Unpickler`` and ``joblib.load`` go through safeload.

    Safe to nest and to use from several threads; the originals come back when
    the last block (and every ``install()``) has ended, also on exceptions.
    ``allow`` obeys the dangerous-name rule: ``allow_unsafe=True`` is needed for a
    name such as ``os.system`` (``DangerousAllowError`` when the block is entered).
    """
    entry = _Entry(policy, allow, allow_unsafe)
    _acquire(entry, _blocks)
    token_stack = _context.get() + (entry,)
    _context.set(token_stack)
    try:
        yield
    finally:
        _context.set(tuple(e for e in _context.get() if e is not entry))
        _release(entry, _blocks)


def install(policy: Policy | None = None, allow: Iterable[str] | Mapping[str, str] = (), *,
            allow_unsafe: bool = False) -> None:
    """Patch for the whole process until the matching ``uninstall()`` (calls are counted)."""
    _acquire(_Entry(policy, allow, allow_unsafe), _installs)


def uninstall() -> None:
    """Undo the most recent ``install()``; the originals return when nothing else is patching."""
    with _lock:
        if not _installs:
            raise RuntimeError("safeload.uninstall() called without a matching safeload.install()")
        _release(_installs[-1], _installs)


def is_installed() -> bool:
    """Whether the patch is active anywhere in the process (an ``install()`` or an open block)."""
    with _lock:
        return bool(_installs or _blocks)
