"""``load`` / ``loads``: read once, judge, then build with the matching engine."""

from __future__ import annotations

import copyreg
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from safeload._analysis import Analysis, analyse_or_raise
from safeload._containers import Buffer, read_source
from safeload._engine import run_c, run_joblib
from safeload._errors import LimitExceededError, MalformedModelError, SafeloadError, UnsafeModelError
from safeload._filling import Filling
from safeload._policy import Policy
from safeload._skops import load_skops
from safeload._walker import ArraySpan

__all__ = ["effective_policy", "load", "loads"]

_MMAP_MODES = (None, "r+", "r", "w+", "c")
# Types whose state the walker validated from the stream's bytes before it was built (see _walker.check_tree).
_WALKER_VALIDATED = frozenset({"sklearn.tree._tree.Tree"})


def effective_policy(policy: Policy | None, allow: Iterable[str] | Mapping[str, str]) -> Policy:
    if policy is None:
        from safeload._config import active_policy

        policy = active_policy()
    return policy.extended(allow)


def load(
    file: Any,
    *,
    allow: Iterable[str] | Mapping[str, str] = (),
    mmap_mode: str | None = None,
    policy: Policy | None = None,
) -> Any:
    """Load a pickle, joblib or skops model, refusing anything outside the policy."""
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}, got {mmap_mode!r}")
    if not isinstance(file, (str, os.PathLike, bytes, bytearray, memoryview)) and not hasattr(file, "read"):
        raise TypeError(f"expected a path or a binary file object, got {type(file).__name__}")
    pol = effective_policy(policy, allow)
    source = _guarded(lambda: read_source(file, pol.limits), None)
    try:
        return _guarded(lambda: _build(source.data, pol, source.name, source.path, mmap_mode, source.filling),
                        source.name)
    finally:
        source.close()


def loads(data: bytes | bytearray | memoryview, *, allow: Iterable[str] | Mapping[str, str] = (),
          policy: Policy | None = None) -> Any:
    """Load from bytes (same rules as ``load``)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"loads() expects bytes, got {type(data).__name__}")
    pol = effective_policy(policy, allow)
    return _guarded(lambda: _build(bytes(data), pol, "<bytes>", None, None), "<bytes>")


def _guarded(fn: Any, source: str | None) -> Any:
    """Turn every failure into a SafeloadError subclass with the file named."""
    where = f"{source}: " if source else ""
    try:
        return fn()
    except SafeloadError as exc:
        if isinstance(exc, UnsafeModelError) and exc.source is None:
            exc.source = source
        raise
    except (MemoryError, RecursionError) as exc:
        raise LimitExceededError(f"{where}{type(exc).__name__} while loading: the file asks for too much") from None
    except Exception as exc:  # noqa: BLE001 - the contract: nothing else escapes
        raise MalformedModelError(f"{where}cannot build the model: {type(exc).__name__}: {exc}") from exc


def _build(data: Buffer, policy: Policy, source: str, path: str | None, mmap_mode: str | None,
           filling: Filling | None = None) -> Any:
    if copyreg._inverted_registry:  # type: ignore[attr-defined]
        raise UnsafeModelError(
            "this process registered copyreg extension codes; the C unpickler would resolve them from a "
            "cache without asking safeload, so loading is refused")
    analysis = analyse_or_raise(data, policy, source, filling)
    if filling is not None:
        filling.finish()  # the whole file is in, and it did not change size while it was read
    if analysis.skops is not None:
        obj = load_skops(analysis.stream, policy, source, analysis.skops)
        prechecked: frozenset[str] = frozenset()
    else:
        obj = _run(analysis, policy, path if analysis.compression is None else None, mmap_mode)
        prechecked = _WALKER_VALIDATED
    _validate(obj, prechecked)
    return obj


def _run(analysis: Analysis, policy: Policy, path: str | None, mmap_mode: str | None) -> Any:
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
