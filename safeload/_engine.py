"""Execution engines: build the objects of a stream the walker already accepted.

* Plain pickle streams run on CPython's C unpickler, reading the in-memory
  buffer linearly (a ``peek`` that returns everything), so nothing here costs a
  Python call per opcode; the buffer reader learns the exact end position.
* joblib streams carry raw array bytes after each ``NumpyArrayWrapper``. The
  walker located every one of them (and proved each starts outside any frame),
  so ``run_joblib`` builds a copy of the stream with each array's bytes replaced
  by ``POP <k> BINPERSID`` and runs the C unpickler on it: memo slots and frame
  lengths are untouched, and the persistent-id hook hands out array ``k``. The
  pure-Python unpickler (as joblib itself uses) remains as ``run_joblib_py``,
  the reference the C path is tested against.

Both resolve globals through ``find_class`` against the walker's list of
approved names (defence in depth: a name the walker did not approve is
refused even if the policy would allow it).
"""

from __future__ import annotations

import mmap as mmap_module
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from safeload._containers import Buffer
from safeload._errors import MalformedModelError, UnsafeModelError
from safeload._policy import Policy
from safeload._textops import Decoding, parse_float, parse_get, parse_int, parse_long, parse_put
from safeload._walker import ArraySpan, Trace

__all__ = ["run_c", "run_joblib", "run_joblib_py"]


class _Resolver:
    """Maps each ``find_class`` call to the global occurrence the walker saw at that point.

    The unpickler asks for globals in stream order, once per GLOBAL / STACK_GLOBAL / INST it
    executes: exactly the walker's ``trace.globals``. A name asked for out of that order was never
    judged and is refused. An occurrence the stream calls (REDUCE / NEWOBJ / OBJ / INST, also
    through the memo) gets its guarded form; one that is only referenced gets the object itself,
    so what ``load`` returns is what ``pickle.load`` returns (e.g. a bare ``_codecs.encode``).
    """

    def __init__(self, policy: Policy, trace: Trace) -> None:
        self._policy = policy
        self._order = [((g.raw_module, g.raw_qualname), (g.module, g.qualname), node.called)
                       for g, node in zip(trace.globals, trace.nodes, strict=True)]
        self._next = 0
        self._cache: dict[tuple[tuple[str, str], bool], Any] = {}

    def __call__(self, module: str, name: str) -> Any:
        key = (module, name)
        k = self._next
        if k >= len(self._order) or self._order[k][0] != key:
            full = f"{module}.{name}"
            seen = ".".join(self._order[k][0]) if k < len(self._order) else "nothing"
            raise UnsafeModelError(f"the unpickler asked for {full} where the static check saw {seen}; refusing",
                                   names=[full])
        self._next = k + 1
        _, target, called = self._order[k]
        try:
            return self._cache[(key, called)]
        except KeyError:
            pass
        obj = self._policy.resolve(*target, guarded=called)
        self._cache[(key, called)] = obj
        return obj


class _WholeBuffer:
    """A file whose ``peek`` returns all remaining bytes: the C unpickler then reads linearly
    from memory and, when done, calls ``read(consumed)``, which tells us where it stopped."""

    def __init__(self, data: Buffer, pos: int) -> None:
        self._view = memoryview(data)
        self.pos = pos

    def peek(self, n: int = 0) -> memoryview:
        return self._view[self.pos:]

    def read(self, n: int = -1) -> bytes:
        # Only reached to skip what was consumed from peek(), or when the data is truncated.
        self.pos += max(n, 0)
        return b""

    def readline(self) -> bytes:
        return b""


def _refuse_persistent(pid: Any) -> Any:
    raise UnsafeModelError("persistent id in stream: refused")


class _CUnpickler(pickle.Unpickler):
    def __init__(self, file: _WholeBuffer, resolver: _Resolver, decoding: Decoding) -> None:
        super().__init__(file, fix_imports=decoding.fix_imports, encoding=decoding.encoding, errors=decoding.errors)
        self._resolver = resolver

    def find_class(self, module: str, name: str) -> Any:
        return self._resolver(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _refuse_persistent(pid)


def run_c(data: Buffer, trace: Trace, policy: Policy) -> Any:
    """Run the C unpickler over ``data[trace.start:]`` and check it stopped where the walker did."""
    reader = _WholeBuffer(data, trace.start)
    obj = _CUnpickler(reader, _Resolver(policy, trace), trace.decoding).load()
    if reader.pos != trace.end:
        raise MalformedModelError(
            f"the unpickler stopped at offset {reader.pos}, the static check at {trace.end}; refusing")
    return obj


class _MemFile:
    """A read-only file over the buffer: ``io.BytesIO`` would copy the whole (bytearray) buffer first."""

    def __init__(self, data: Buffer, pos: int) -> None:
        self._data = data
        self._view = memoryview(data)
        self._pos = pos

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        end = len(self._data) if n is None or n < 0 else min(start + n, len(self._data))
        self._pos = end
        return bytes(self._view[start:end])

    def readinto(self, buf: Any) -> int:
        chunk = self.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)

    def readline(self) -> bytes:
        end = self._data.find(b"\n", self._pos)
        return self.read(-1 if end < 0 else end + 1 - self._pos)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> int:
        self._pos = pos
        return pos


class _WrapperStandIn:
    """What ``joblib.numpy_pickle.NumpyArrayWrapper`` resolves to: an inert placeholder."""

    __slots__ = ("__weakref__",)
    _safeload_standin = True

    def __reduce__(self) -> Any:
        raise TypeError("placeholder")


class _JoblibUnpickler(pickle._Unpickler):
    dispatch = pickle._Unpickler.dispatch.copy()
    stack: list[Any]

    def __init__(self, data: Buffer, trace: Trace, policy: Policy, mmap: Callable[[ArraySpan], Any] | None):
        self._buffer = data
        self._file = _MemFile(data, trace.start)
        d = trace.decoding
        super().__init__(self._file, fix_imports=d.fix_imports, encoding=d.encoding, errors=d.errors)
        self._resolver = _Resolver(policy, trace)
        self._policy = policy
        self._spans = {span.build_offset + 1: span for span in trace.arrays}
        self._mmap = mmap

    def find_class(self, module: str, name: str) -> Any:
        if f"{module}.{name}" == "joblib.numpy_pickle.NumpyArrayWrapper":
            self._resolver(module, name)  # still must be approved
            return _WrapperStandIn
        return self._resolver(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _refuse_persistent(pid)

    def load_build(self) -> None:
        stack = self.stack
        inst = stack[-2] if len(stack) >= 2 else None
        if not isinstance(inst, _WrapperStandIn):
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
            return
        stack.pop()  # the wrapper's state; the walker already read it
        pos = self._file.tell()
        span = self._spans.get(pos)
        if span is None:
            raise MalformedModelError(f"joblib array at offset {pos} was not located by the static check")
        stack[-1] = self._array(span)
        end = span.nested.end if span.nested is not None else span.data_offset + span.nbytes
        self._file.seek(end)

    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]

    # Text arguments as the C unpickler (and so the walker) parses them, not as pickle.py does.
    def _line(self) -> bytes:
        line: bytes = self.readline()  # type: ignore[attr-defined]
        if not line.endswith(b"\n"):
            raise MalformedModelError("pickle data was truncated")
        return line[:-1]

    def load_int(self) -> None:
        number, is_bool = parse_int(self._line())
        self.append(number == 1 if is_bool else number)  # type: ignore[attr-defined]

    def load_long(self) -> None:
        self.append(parse_long(self._line()))  # type: ignore[attr-defined]

    def load_float(self) -> None:
        self.append(parse_float(self._line()))  # type: ignore[attr-defined]

    def load_get(self) -> None:
        idx = parse_get(self._line())
        if idx not in self.memo:  # type: ignore[attr-defined]
            raise MalformedModelError(f"memo value not found at index {idx}")
        self.append(self.memo[idx])  # type: ignore[attr-defined]

    def load_put(self) -> None:
        idx = parse_put(self._line())
        self.memo[idx] = self.stack[-1]  # type: ignore[attr-defined]

    for _op, _fn in ((pickle.INT, load_int), (pickle.LONG, load_long), (pickle.FLOAT, load_float),
                     (pickle.GET, load_get), (pickle.PUT, load_put)):
        dispatch[_op[0]] = _fn  # type: ignore[assignment]
    del _op, _fn

    def _array(self, span: ArraySpan) -> Any:
        return _array(self._buffer, span, self._policy, self._mmap)


_VIEW_THRESHOLD = 1 << 16


def run_joblib_py(
    data: Buffer,
    trace: Trace,
    policy: Policy,
    mmap: Callable[[ArraySpan], Any] | None = None,
) -> Any:
    """The pure-Python joblib engine: one Python call per opcode (the reference for ``run_joblib``)."""
    unpickler = _JoblibUnpickler(data, trace, policy, mmap)
    obj = unpickler.load()
    end = unpickler._file.tell()
    if end != trace.end:
        raise MalformedModelError(f"the unpickler stopped at offset {end}, the static check at {trace.end}")
    return obj


def _array(data: Buffer, span: ArraySpan, policy: Policy, mmap: Callable[[ArraySpan], Any] | None) -> Any:
    """The array a located span holds (as joblib's ``read_array`` builds it)."""
    if span.nested is not None:
        return run_c(data, span.nested, policy)
    if mmap is not None and span.allow_mmap:
        return mmap(span)
    count = span.nbytes // span.dtype.itemsize
    arr = np.frombuffer(data, dtype=span.dtype, count=count, offset=span.data_offset)
    arr = arr.reshape(span.shape[::-1]).transpose() if span.order == "F" else arr.reshape(span.shape)
    if not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))  # joblib's ensure_native_byte_order
    if isinstance(data, (bytearray, mmap_module.mmap)) and span.nbytes >= _VIEW_THRESHOLD:
        # Zero-copy view into the buffer read once from disk. Small arrays are copied so that a
        # tiny surviving array (classes_, ...) does not keep the whole file buffer alive; large
        # ones are usually either kept (then they are most of the buffer) or copied by their owner
        # (Tree.__setstate__) and dropped.
        return arr
    return arr.copy(order="K")


def _span_end(span: ArraySpan) -> int:
    return span.nested.end if span.nested is not None else span.data_offset + span.nbytes


def _without_arrays(data: Buffer, trace: Trace) -> bytes:
    """``data[trace.start:trace.end]`` with each array's bytes (from just after its BUILD, padding
    included, to its end) replaced by ``POP; BININT k; BINPERSID``.

    The walker refused any array whose bytes start inside a frame, so every replaced region lies
    between frames and no FRAME length changes; nothing replaced was ever memoized (joblib pushes
    the array without a PUT), so every memo slot keeps its number.
    """
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    pos = trace.start
    for k, span in enumerate(trace.arrays):
        cut, end = span.build_offset + 1, _span_end(span)
        if not pos <= cut <= end <= trace.end or view[cut - 1] != pickle.BUILD[0]:
            raise MalformedModelError(f"joblib array at offset {cut} does not follow a BUILD the static check saw; "
                                      "refusing")
        parts.append(view[pos:cut])
        parts.append(b"0J" + k.to_bytes(4, "little") + b"Q")
        pos = end
    parts.append(view[pos:trace.end])
    return b"".join(parts)


class _CJoblibUnpickler(pickle.Unpickler):
    """The C unpickler over a stream rewritten by ``_without_arrays``."""

    def __init__(self, file: _WholeBuffer, resolver: _Resolver, decoding: Decoding,
                 arrays: Callable[[int], Any]) -> None:
        super().__init__(file, fix_imports=decoding.fix_imports, encoding=decoding.encoding, errors=decoding.errors)
        self._resolver = resolver
        self._arrays = arrays
        # (a class is a reference cycle of its own: it holds this counter, not the unpickler, which
        # holds the file's bytes until the next collection otherwise)
        builds = self._builds = [0]

        class Wrapper(_WrapperStandIn):
            """A per-load stand-in that counts the BUILDs applied to wrappers."""

            __slots__ = ()

            def __setstate__(self, state: Any) -> None:
                builds[0] += 1

        self._wrapper = Wrapper

    @property
    def builds(self) -> int:
        return self._builds[0]

    def find_class(self, module: str, name: str) -> Any:
        if module == "joblib.numpy_pickle" and name == "NumpyArrayWrapper":
            self._resolver(module, name)  # still must be approved
            return self._wrapper
        return self._resolver(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return self._arrays(pid)


def run_joblib(
    data: Buffer,
    trace: Trace,
    policy: Policy,
    mmap: Callable[[ArraySpan], Any] | None = None,
) -> Any:
    """Build a joblib stream on the C unpickler: arrays come from the spans the walker located."""
    spans = trace.arrays
    stream = _without_arrays(data, trace)
    served = 0

    def arrays(pid: Any) -> Any:
        nonlocal served
        # Only our own BINPERSIDs exist (the walker refuses persistent ids), each in stream order.
        if type(pid) is not int or pid != served or pid >= len(spans):
            raise MalformedModelError("joblib arrays were not built in the order the static check located them")
        served += 1
        return _array(data, spans[pid], policy, mmap)

    reader = _WholeBuffer(stream, 0)
    unpickler = _CJoblibUnpickler(reader, _Resolver(policy, trace), trace.decoding, arrays)
    obj = unpickler.load()
    if reader.pos != len(stream):
        raise MalformedModelError("the unpickler stopped before the end the static check found; refusing")
    if served != len(spans) or unpickler.builds != len(spans):
        raise MalformedModelError(f"{unpickler.builds} joblib arrays were built where the static check located "
                                  f"{len(spans)}; refusing")
    return obj
