"""``load`` / ``loads``: read once, judge, then build with the matching engine."""

from __future__ import annotations

import codecs
import copyreg
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeload._analysis import Analysis, analyse_or_raise, build_npy
from safeload._containers import Buffer, read_source
from safeload._engine import run_c, run_joblib
from safeload._errors import (
    LimitExceededError,
    MalformedModelError,
    SafeloadError,
    SourceReadError,
    UnsafeModelError,
)
from safeload._filling import Filling
from safeload._mirrors import BUILD_VALIDATED
from safeload._policy import Policy
from safeload._skops import load_skops
from safeload._walker import ArraySpan

__all__ = ["effective_policy", "load", "loads"]

_MMAP_MODES = (None, "r+", "r", "w+", "c")
# Types whose state the walker validated from the stream's bytes before it was built: the walker also
# refuses an instance of one that no BUILD reached (_mirrors.BUILD_VALIDATED).
_WALKER_VALIDATED = BUILD_VALIDATED


def effective_policy(policy: Policy | None, allow: Iterable[str] | Mapping[str, str], *,
                     allow_unsafe: bool = False, near: Any = None) -> Policy:
    """``policy`` (or the configuration in effect for ``near``, the file being read) plus ``allow``.

    ``allow`` obeys the dangerous-name rule (``Policy.extended``): a name that lets a file run
    code raises ``DangerousAllowError`` unless ``allow_unsafe=True``.
    """
    if policy is None:
        from safeload._config import active_policy

        policy = active_policy(_config_anchor(near))
    return policy.extended(allow, allow_unsafe=allow_unsafe)


def _config_anchor(file: Any) -> str | None:
    """The path configuration discovery starts from: the file's own, when it is a path."""
    if isinstance(file, bytes):
        return os.fsdecode(file)
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        return path if isinstance(path, str) else os.fsdecode(path)
    return None


def load(
    file: Any,
    mmap_mode: str | None = None,
    *,
    allow: Iterable[str] | Mapping[str, str] = (),
    allow_unsafe: bool = False,
    policy: Policy | None = None,
    encoding: str = "ASCII",
    errors: str = "strict",
    fix_imports: bool = True,
) -> Any:
    """Load a pickle, joblib, skops or .npy/.npz model, refusing anything outside the policy.

    ``file``: a path (``str``, ``bytes`` or path-like, as ``open()`` takes) or a binary file
    object.  ``mmap_mode`` as ``joblib.load`` (second positional argument); ``encoding``,
    ``errors``, ``fix_imports`` as ``pickle.load`` (``encoding="latin1"`` for Python 2 pickles
    holding numpy arrays).  ``allow_unsafe=True`` is needed to allow a dangerous name.
    An unreadable path raises its ``OSError`` subclass (``FileNotFoundError``...), which is
    also a ``SafeloadError``.
    """
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}, got {mmap_mode!r}")
    if not isinstance(file, (str, os.PathLike, bytes, bytearray, memoryview)) and not hasattr(file, "read"):
        raise TypeError(f"expected a path or a binary file object, got {type(file).__name__}")
    if isinstance(file, (bytearray, memoryview)):
        raise TypeError(f"load() takes a path or a file object; use safeload.loads() for {type(file).__name__} data")
    options = _Options(encoding, errors, fix_imports)
    pol = effective_policy(policy, allow, allow_unsafe=allow_unsafe, near=file)
    source = _guarded(lambda: read_source(file, pol.limits, bytes_path=True), None)
    try:
        return _guarded(lambda: _build(source.data, pol, source.name, source.path, mmap_mode, source.filling,
                                       options), source.name)
    finally:
        source.close()


def loads(data: bytes | bytearray | memoryview, *, allow: Iterable[str] | Mapping[str, str] = (),
          allow_unsafe: bool = False, policy: Policy | None = None, encoding: str = "ASCII",
          errors: str = "strict", fix_imports: bool = True, name: str = "<bytes>") -> Any:
    """Load from bytes (same rules and keywords as ``load``; ``name`` is what errors call the data)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"loads() expects bytes, got {type(data).__name__}")
    pol = effective_policy(policy, allow, allow_unsafe=allow_unsafe)
    options = _Options(encoding, errors, fix_imports)
    return _guarded(lambda: _build(bytes(data), pol, name, None, None, None, options), name)


@dataclass(frozen=True)
class _Options:
    """``pickle.load``'s decoding keywords, checked as ``pickle.load`` checks them."""

    encoding: str = "ASCII"
    errors: str = "strict"
    fix_imports: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.encoding, str) or not isinstance(self.errors, str):
            raise TypeError("encoding and errors must be strings")
        if self.encoding != "bytes":
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise LookupError(f"unknown encoding: {self.encoding}") from None

    def walker(self) -> dict[str, Any]:
        """Keywords for the walker (the engines decode as the trace says); only the non-default ones."""
        out: dict[str, Any] = {}
        if self.encoding != "ASCII":
            out["encoding"] = self.encoding
        if self.errors != "strict":
            out["errors"] = self.errors
        if not self.fix_imports:
            out["fix_imports"] = False
        return out


_DEFAULT_OPTIONS = _Options()


def _guarded(fn: Any, source: str | None) -> Any:
    """Turn every failure into a SafeloadError subclass with the file named."""
    where = f"{source}: " if source else ""
    try:
        return fn()
    except SourceReadError:
        raise  # already names the file, and keeps its OSError subclass
    except SafeloadError as exc:
        if isinstance(exc, UnsafeModelError) and exc.source is None:
            exc.source = source
        raise
    except (MemoryError, RecursionError) as exc:
        raise LimitExceededError(f"{where}{type(exc).__name__} while loading: the file asks for too much") from None
    except Exception as exc:  # noqa: BLE001 - the contract: nothing else escapes
        raise MalformedModelError(f"{where}cannot build the model: {type(exc).__name__}: {exc}") from exc


def _build(data: Buffer, policy: Policy, source: str, path: str | None, mmap_mode: str | None,
           filling: Filling | None = None, options: _Options = _DEFAULT_OPTIONS) -> Any:
    if copyreg._inverted_registry:  # type: ignore[attr-defined]
        raise UnsafeModelError(
            "this process registered copyreg extension codes; the C unpickler would resolve them from a "
            "cache without asking safeload, so loading is refused")
    analysis = analyse_or_raise(data, policy, source, filling, **options.walker())
    if filling is not None:
        filling.finish()  # the whole file is in, and it did not change size while it was read
    if mmap_mode is not None and (analysis.compression is not None or analysis.skops is not None):
        kind = f"{analysis.compression}-compressed" if analysis.compression else "skops"
        warnings.warn(f'mmap_mode "{mmap_mode}" is not compatible with {kind} file {source}. '
                      f'"{mmap_mode}" flag will be ignored.', stacklevel=4)
    if analysis.skops is not None:
        obj = load_skops(analysis.stream, policy, source, analysis.skops)
        prechecked: frozenset[str] = frozenset()
    elif analysis.npy is not None:
        return build_npy(analysis, policy)
    else:
        obj = _run(analysis, policy, path if analysis.compression is None else None, mmap_mode, options)
        prechecked = _WALKER_VALIDATED
    _validate(obj, prechecked)
    return obj


def _run(analysis: Analysis, policy: Policy, path: str | None, mmap_mode: str | None,
         options: _Options = _DEFAULT_OPTIONS) -> Any:
    trace = analysis.trace
    assert trace is not None
    if not analysis.is_joblib:
        return run_c(analysis.stream, trace, policy)
    mapper = None
    if mmap_mode is not None and path is not None:
        mode = "r+" if mmap_mode == "w+" else mmap_mode
        size = os.path.getsize(path)

        def mapper(span: ArraySpan) -> Any:
            if span.dtype.hasobject:
                raise UnsafeModelError("object arrays cannot be memory-mapped")
            if span.data_offset + span.nbytes > size:
                raise MalformedModelError("memory-mapped array extends past the end of the file")
            return np.memmap(path, dtype=span.dtype, mode=mode, offset=span.data_offset,
                             shape=span.shape, order=span.order)  # type: ignore[call-overload]

    return run_joblib(analysis.stream, trace, policy, mapper)


def _validate(obj: Any, prechecked: frozenset[str]) -> None:
    from safeload._validate import validate

    validate(obj, prechecked=prechecked)
