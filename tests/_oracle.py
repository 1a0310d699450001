"""A reference model of CPython's unpickler that never runs anything (issue 11, part 1).

The walker (``safeload/_walker.py``) simulates the unpickler statically; every check only the
walker makes is only as good as its idea of which object an opcode acts on. This module is the
yardstick: ``Oracle`` subclasses the pure-Python ``pickle._Unpickler`` (CPython's own dispatch,
stack, mark stack and memo code), replaces ``find_class`` and every opcode that would call or
mutate something with inert records, and steps through a stream one opcode at a time so the
differential test (``tests/test_walker_oracle.py``) can hold the walker's view against it.

The reference semantics is CPython's C unpickler (``Modules/_pickle.c``), which ``load`` uses for
plain pickles over an in-memory buffer. Where ``pickle._Unpickler`` differs from it, the C
behaviour is modelled here and each override says why:

* FRAME: the C unpickler, reading from a buffer, checks that the frame's bytes exist and rewinds
  (frames are transparent); the Python one reads through an ``_Unframer``.
* INT / LONG / FLOAT / GET / PUT text arguments: C parses with ``strtol`` (base 0: ``010`` is
  octal, ``+1`` of length 3 is a bool), ``PyLong_FromString`` and ``PyOS_string_to_double``
  (no whitespace, no ``_``, overflow refused), stopping at a NUL byte.
* GLOBAL / INST: C refuses an empty module or name line.
* APPEND(S) / SETITEMS / ADDITEMS with nothing to add: C returns before it looks at the target.
* A readline without a newline fails (``loads`` has no file to read more from).
* POP with a MARK on top pops the mark in both; MEMOIZE writes at ``memo_len`` = the number of
  occupied slots in both (C's ``memo_len``, Python's ``len(memo)``), holes after PUT included.

Values on the simulated stack: ``OGlobal`` (find_class result: name after ``fix_imports``, origin),
``OObj`` (REDUCE/NEWOBJ/NEWOBJ_EX/OBJ/INST result, or the array a joblib wrapper BUILD becomes),
``OCont`` (list/dict/set, dict items kept), ``OFrozen``; immutable values are real Python values.
``canon`` turns either side's values into comparable terms: identities by origin, values by value.

For joblib streams (``joblib=True``), a BUILD on a ``NumpyArrayWrapper`` is followed by what
``NumpyArrayWrapper.read`` consumes: raw array bytes (after an optional padding byte), or for an
object dtype a nested pickle read by a fresh unpickler (fresh memo), modelled as a nested
``Oracle`` at ``depth + 1``.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import math
import pickle
import pickletools
import random
import re
import struct
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Divergence", "OCont", "OFrozen", "OGlobal", "OObj", "Oracle", "OracleRefused", "Outcome", "Step", "Unsure",
           "canon", "differential"]

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
# REDUCE of these builds an instance of its first argument (as the walker's guard kinds
# "reconstructor" / "new_obj" say): joblib recognises the wrapper by its type, whatever built it.
_BUILDS_FIRST_ARG = frozenset({"copyreg._reconstructor", "sklearn.metrics._dist_metrics.newObj",
                               "sklearn.neighbors._kd_tree.newObj", "sklearn.neighbors._ball_tree.newObj"})
#: A PUT index above this: the C unpickler resizes its memo array to 2x the index and may run out
#: of memory there; whether it does depends on the machine, so the oracle stops comparing.
MAX_SURE_MEMO_INDEX = 1 << 24


class OracleRefused(Exception):
    """CPython's unpickler raises at this opcode."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class Unsure(Exception):
    """What CPython does here depends on code the oracle does not run (or on the machine)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class OGlobal:
    """What find_class returned: the name after fix_imports, and the opcode that asked."""

    __slots__ = ("name", "origin")

    def __init__(self, name: str, origin: int) -> None:
        self.name = name
        self.origin = origin

    def __repr__(self) -> str:
        return f"OGlobal({self.name}@{self.origin})"


class OObj:
    """An inert record of a call or instantiation (``callee``: the class or function named)."""

    __slots__ = ("callee", "origin", "args", "state", "array")

    def __init__(self, callee: str | None, origin: int, args: Any = None) -> None:
        self.callee = callee
        self.origin = origin
        self.args = args
        self.state: Any = None
        self.array = False

    def __repr__(self) -> str:
        return f"OObj({self.callee}@{self.origin})"


class OCont:
    """A list, dict or set (dict items kept: joblib wrapper states and dtype states are read)."""

    __slots__ = ("kind", "origin", "items")

    def __init__(self, kind: str, origin: int) -> None:
        self.kind = kind
        self.origin = origin
        self.items: list[tuple[Any, Any]] = []

    def __repr__(self) -> str:
        return f"OCont({self.kind}@{self.origin})"


class OFrozen:
    """A FROZENSET result (the walker keeps no identity for these)."""

    __slots__ = ("origin",)

    def __init__(self, origin: int) -> None:
        self.origin = origin


_CHAR_CLASSES: tuple[Any, ...] = (
    lambda r: r.randint(0x20, 0x7E), lambda r: r.randint(0x80, 0x7FF), lambda r: r.randint(0x800, 0xD7FF),
    lambda r: 0x94, lambda r: 0x514, lambda r: 0x9494, lambda r: r.randint(0xD800, 0xDFFF),
    lambda r: r.randint(0x10000, 0x10FFFF),
)


def canon(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A comparable term for a value of the oracle *or* the walker (``safeload._walker``'s G/Obj/Cont/
    OTHER/Run-free values): objects by kind and origin, immutable values by type and value.

    ``budget``: tuple items still to expand in this term. A tuple DAG built through the memo is
    exponential to expand (malicious_samples' hash-tuple-dag-*); both sides expand in the same
    order, so they truncate at the same item and stay comparable."""
    if budget is None:
        budget = [4096]
    t = type(value)
    if t is str:
        return value
    if t is bool:
        return ("bool", value)
    if t is int:
        return ("int", value)
    if value is None:
        return ("None",)
    if t is float:
        return ("float", struct.pack(">d", value)) if not math.isnan(value) else ("float", "nan")
    if t in (bytes, bytearray, memoryview):
        return ("bytes", bytes(value))
    if t is tuple:
        budget[0] -= len(value)
        if depth > 64 or budget[0] < 0:
            return ("tuple", "deep", len(value))
        return ("tuple",) + tuple(canon(v, depth + 1, budget) for v in value)
    name = t.__name__
    if name in ("OGlobal", "G"):
        return ("G", value.name, value.origin)
    if name in ("OObj", "Obj"):
        return ("Obj", value.origin, value.callee)
    if name in ("OCont", "Cont"):
        return ("Cont", value.kind, value.origin)
    if name in ("OFrozen", "Frozen", "_Other"):
        return ("OTHER",)
    return ("?", name)


# -- C-exact parsing of protocol 0/1 text arguments ---------------------------------------------

_C_SPACE = b" \t\n\v\f\r"


def _strtol(s: bytes) -> tuple[int, int, bool]:
    """C ``strtol(s, &end, 0)`` on a NUL-terminated copy of the line: (value, end index, overflow)."""
    i = 0
    while i < len(s) and s[i] in _C_SPACE:
        i += 1
    neg = False
    if i < len(s) and s[i] in b"+-":
        neg = s[i] == 0x2D
        i += 1
    base = 10
    if s[i:i + 2] in (b"0x", b"0X") and i + 2 < len(s) and chr(s[i + 2]) in "0123456789abcdefABCDEF":
        base, i = 16, i + 2
    elif s[i:i + 1] == b"0":
        base = 8
    digits = "0123456789abcdef"[:base]
    j = i
    while j < len(s) and chr(s[j]).lower() in digits:
        j += 1
    if j == i:
        return 0, 0, False  # no conversion: end = the start of the string
    value = int(s[i:j], base) * (-1 if neg else 1)
    overflow = not (-(1 << 63) <= value < (1 << 63))
    return value, j, overflow


def _pylong(s: bytes, base: int) -> int:
    """``PyLong_FromString(s, NULL, base)``: stops at NUL; whitespace around, ``_`` between digits."""
    text = s.split(b"\0", 1)[0]
    try:
        return int(text, base)
    except ValueError:
        raise ValueError(f"invalid literal {text!r} for int() with base {base}") from None


_FLOAT = re.compile(rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:infinity|inf|nan))")
_FLOAT_EXP = re.compile(rb"[eE][+-]?[0-9]+")


def _c_float(line: bytes) -> float:
    """``PyOS_string_to_double(s, &end, OverflowError)`` then ``*end`` must be ``\\n`` or NUL."""
    m = _FLOAT.match(line)
    if m is None:
        raise ValueError("could not convert string to float")
    text = m.group()
    end = m.end()
    if end < len(line) and line[end] not in (0x0A, 0x00):
        raise ValueError("could not convert string to float")
    value = float(text)
    if math.isinf(value) and b"n" not in text.lower():
        raise OverflowError("float too large")
    return value


class _Reader:
    """The C unpickler's view of an in-memory buffer: exact reads, lines must end in a newline."""

    def __init__(self, data: Any, pos: int) -> None:
        self.data = data
        self.n = len(data)
        self.pos = pos

    def read(self, k: int) -> bytes:
        if k < 0 or self.pos + k > self.n:
            raise EOFError("pickle data was truncated")
        out = bytes(self.data[self.pos:self.pos + k])
        self.pos += k
        return out

    def readline(self) -> bytes:
        e = self.data.find(b"\n", self.pos) if isinstance(self.data, (bytes, bytearray)) else \
            bytes(self.data[self.pos:]).find(b"\n")
        if e < 0:
            raise EOFError("pickle data was truncated (no newline)")
        if not isinstance(self.data, (bytes, bytearray)):
            e += self.pos
        out = bytes(self.data[self.pos:e + 1])
        self.pos = e + 1
        return out


class Step:
    """Yielded before each opcode: where, which opcode, how deep (nested object-array pickles)."""

    __slots__ = ("depth", "offset", "opcode", "stopped", "oracle")

    def __init__(self, depth: int, offset: int, opcode: int, stopped: bool, oracle: Oracle) -> None:
        self.depth = depth
        self.offset = offset
        self.opcode = opcode
        self.stopped = stopped
        self.oracle = oracle


class _Memo(dict):  # type: ignore[type-arg]
    """The unpickler's memo, keeping each slot's canonical term as it is written."""

    def __init__(self) -> None:
        super().__init__()
        self.terms: dict[int, Any] = {}

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, value)
        self.terms[key] = canon(value)


def _unhashable(value: Any) -> bool:
    if isinstance(value, OCont):
        return True
    if isinstance(value, tuple):
        return any(_unhashable(v) for v in value)
    return isinstance(value, bytearray)


_PyUnpickler: Any = pickle._Unpickler  # the pure-Python unpickler (typeshed leaves it out)


class Oracle(_PyUnpickler):  # type: ignore[misc]
    """Step through one pickle stream as CPython's C unpickler would, running nothing."""

    dispatch: dict[int, Callable[[Any], None]] = dict(_PyUnpickler.dispatch)

    def __init__(self, data: Any, start: int = 0, *, joblib: bool = False, depth: int = 0) -> None:
        if isinstance(data, memoryview):
            data = data.tobytes()  # bytes.find for readline
        self._in = _Reader(data, start)
        self.data = data
        self.joblib = joblib
        self.depth = depth
        self.here = start  # offset of the opcode being executed
        self.end = -1  # offset after STOP
        self.result: Any = None
        self.nested: list[Oracle] = []
        self.memo = _Memo()
        self.encoding = "ASCII"
        self.errors = "strict"
        self.proto = 0
        self.fix_imports = True
        self._buffers = None
        self.read = self._in.read
        self.readline = self._in.readline
        self.metastack: list[list[Any]] = []
        self.stack: list[Any] = []
        self.append = self.stack.append

    # -- the state, as the walker's observer view shows it -----------------------------------
    def full_stack(self) -> list[Any]:
        out: list[Any] = []
        for seg in self.metastack:
            out.extend(seg)
        out.extend(self.stack)
        return out

    def marks(self) -> list[int]:
        """The C unpickler's mark stack: the stack length at each MARK."""
        out: list[int] = []
        total = 0
        for seg in self.metastack:
            total += len(seg)
            out.append(total)
        return out

    def memo_len(self) -> int:
        return len(self.memo)

    def memo_terms(self) -> dict[int, Any]:
        return self.memo.terms

    # -- stepping ---------------------------------------------------------------------------
    def steps(self) -> Iterator[Step]:
        """Yield before every opcode (and once after STOP, ``stopped``); raise OracleRefused / Unsure."""
        dispatch = self.dispatch
        while True:
            self.here = here = self._in.pos
            op = self.data[here] if here < self._in.n else -1
            yield Step(self.depth, here, op, False, self)
            if op < 0:
                raise OracleRefused(here, "pickle data was truncated (no STOP)")
            self._in.pos += 1
            if op == 0x2E:  # STOP: C pops the value (it must sit above the top mark)
                if not self.stack:
                    raise OracleRefused(here, "STOP with an empty stack (underflow)")
                self.result = self.stack[-1]
                self.end = self._in.pos
                yield Step(self.depth, self.end, op, True, self)
                return
            fn = dispatch.get(op)
            if fn is None:
                raise OracleRefused(here, f"invalid load key {op:#x}")
            try:
                fn(self)
            except (OracleRefused, Unsure):
                raise
            except Exception as exc:  # noqa: BLE001 - any exception is what CPython would raise here
                raise OracleRefused(here, f"{type(exc).__name__}: {exc}") from None
            if self.nested:  # a joblib object array, read by a nested unpickler with a fresh memo
                sub = self.nested.pop()
                yield from sub.steps()
                self._in.pos = sub.end

    def run(self) -> Any:
        """Run to STOP (for checks outside the walker comparison)."""
        for _ in self.steps():
            pass
        return self.result

    # -- globals ----------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> OGlobal:
        # C find_class: fix_imports mapping for protocols < 3 (same tables as pickle.py)
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return OGlobal(f"{module}.{name}", self.here)

    def _two_lines(self) -> tuple[str, str]:
        # C load_global / load_inst: each line needs at least one byte before its newline
        module = self.readline()
        if len(module) < 2:
            raise pickle.UnpicklingError("pickle data was truncated")
        name = self.readline()
        if len(name) < 2:
            raise pickle.UnpicklingError("pickle data was truncated")
        return module[:-1].decode("utf-8"), name[:-1].decode("utf-8")

    def load_global(self) -> None:
        module, name = self._two_lines()
        self.append(self.find_class(module, name))
    dispatch[pickle.GLOBAL[0]] = load_global

    def load_inst(self) -> None:
        # C takes the mark first, then reads the lines
        if not self.metastack:
            raise pickle.UnpicklingError("could not find MARK")
        module, name = self._two_lines()
        klass = self.find_class(module, name)
        args = self.pop_mark()
        self.append(OObj(klass.name, self.here, tuple(args)))
    dispatch[pickle.INST[0]] = load_inst

    def load_obj(self) -> None:
        args = self.pop_mark()
        if not args:
            raise pickle.UnpicklingError("stack underflow in OBJ")
        cls = args.pop(0)
        self._callable(cls)
        self.append(OObj(cls.name if isinstance(cls, OGlobal) else None, self.here, tuple(args)))
    dispatch[pickle.OBJ[0]] = load_obj

    def _callable(self, func: Any) -> None:
        if not isinstance(func, (OGlobal, OObj)):
            raise TypeError(f"{type(func).__name__} object is not callable")

    # -- calls and instantiation: inert records -------------------------------------------------
    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self._callable(func)
        if type(args) is not tuple:  # C: PyObject_CallObject needs a tuple
            raise TypeError("argument list must be a tuple")
        callee = func.name if isinstance(func, OGlobal) else None
        if callee in _BUILDS_FIRST_ARG and args and isinstance(args[0], OGlobal):
            callee = args[0].name
        self.stack[-1] = OObj(callee, self.here, args)
    dispatch[pickle.REDUCE[0]] = load_reduce

    def _new(self, kwargs: Any) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(args) is not tuple:
            raise pickle.UnpicklingError("NEWOBJ expected an arg tuple")
        if kwargs is not None and not (isinstance(kwargs, OCont) and kwargs.kind == "dict"):
            raise pickle.UnpicklingError("NEWOBJ_EX kwargs must be a dict")
        if not isinstance(cls, OGlobal):  # an OObj could be a type only if something ran
            raise pickle.UnpicklingError("NEWOBJ class argument isn't a type object")
        self.append(OObj(cls.name, self.here, args))

    def load_newobj(self) -> None:
        self._new(None)
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        self._new(kwargs)
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, OObj):
            inst.state = state
        elif not isinstance(inst, OGlobal):
            # C: setstate / __dict__ update on a plain value fails (AttributeError / TypeError)
            if isinstance(inst, OCont) or state is not None:
                raise Unsure(self.here, f"BUILD on a {type(inst).__name__}")
        if self.joblib and isinstance(inst, OObj) and inst.callee == WRAPPER and not inst.array:
            self._joblib_array(inst)
    dispatch[pickle.BUILD[0]] = load_build

    # -- containers: tagged with their origin -------------------------------------------------
    def load_empty_list(self) -> None:
        self.append(OCont("list", self.here))
    dispatch[pickle.EMPTY_LIST[0]] = load_empty_list

    def load_empty_dictionary(self) -> None:
        self.append(OCont("dict", self.here))
    dispatch[pickle.EMPTY_DICT[0]] = load_empty_dictionary

    def load_empty_set(self) -> None:
        self.append(OCont("set", self.here))
    dispatch[pickle.EMPTY_SET[0]] = load_empty_set

    def load_list(self) -> None:
        self.pop_mark()
        self.append(OCont("list", self.here))
    dispatch[pickle.LIST[0]] = load_list

    def load_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("odd number of items for DICT")
        d = OCont("dict", self.here)
        self._setitems(d, items)
        self.append(d)
    dispatch[pickle.DICT[0]] = load_dict

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        if any(_unhashable(x) for x in items):
            raise TypeError("unhashable type")
        self.append(OFrozen(self.here))
    dispatch[pickle.FROZENSET[0]] = load_frozenset

    def _setitems(self, target: Any, items: list[Any]) -> None:
        if not items:
            return  # C: "nothing to do" before the target is looked at
        if isinstance(target, OCont):
            if target.kind == "list":
                raise Unsure(self.here, "SETITEM(S) on a list")  # list[i] = v works for an index in range
            if target.kind != "dict":
                raise TypeError(f"{target.kind} does not support item assignment")
            for k in items[::2]:
                if _unhashable(k):
                    raise TypeError("unhashable type")
            target.items.extend(zip(items[::2], items[1::2], strict=True))
        elif not isinstance(target, (OObj, OGlobal)):
            raise TypeError(f"{type(target).__name__} does not support item assignment")

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems(self.stack[-1], [key, value])
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        if not self.stack:  # C do_setitems: the target must sit above the fence, even for no items
            raise pickle.UnpicklingError("stack underflow in SETITEMS")
        if len(items) % 2:
            raise pickle.UnpicklingError("odd number of items for SETITEMS")
        self._setitems(self.stack[-1], items)
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def _add(self, kind: str, items: list[Any]) -> None:
        target = self.stack[-1]
        if isinstance(target, OCont):
            if target.kind != kind:
                raise AttributeError(f"{target.kind} has no {'append' if kind == 'list' else 'add'}")
            if kind == "set" and any(_unhashable(x) for x in items):
                raise TypeError("unhashable type")
        elif not isinstance(target, (OObj, OGlobal)):
            raise AttributeError(f"{type(target).__name__} has no append/add")

    def load_append(self) -> None:
        value = self.stack.pop()
        if not self.stack:
            raise pickle.UnpicklingError("stack underflow in APPEND")
        self._add("list", [value])
    dispatch[pickle.APPEND[0]] = load_append

    def _mark_then_add(self, kind: str) -> None:
        items = self.pop_mark()
        if not self.stack:  # C: the target index must lie above the (new) fence
            raise pickle.UnpicklingError("stack underflow")
        if items:  # C: "nothing to do" returns before the target is looked at
            self._add(kind, items)

    def load_appends(self) -> None:
        self._mark_then_add("list")
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_additems(self) -> None:
        self._mark_then_add("set")
    dispatch[pickle.ADDITEMS[0]] = load_additems

    # -- framing and buffers as the C unpickler reads an in-memory buffer ----------------------
    def load_frame(self) -> None:
        size = int.from_bytes(self.read(8), "little")
        if size > (1 << 63) - 1:
            raise OverflowError("FRAME length exceeds system's maximum")
        if self._in.pos + size > self._in.n:
            raise EOFError("pickle data was truncated")
        # C: _Unpickler_Read(frame_len) then next_read_idx -= frame_len: the frame is transparent
    dispatch[pickle.FRAME[0]] = load_frame

    def load_bytearray8(self) -> None:
        size = int.from_bytes(self.read(8), "little")
        self.append(bytearray(self.read(size)))  # read() checks the bytes exist before allocating
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def _refused(self) -> None:
        raise Unsure(self.here, "persistent id / extension / out-of-band buffer: needs the caller's hooks")
    for _op in (pickle.PERSID, pickle.BINPERSID, pickle.EXT1, pickle.EXT2, pickle.EXT4,
                pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        dispatch[_op[0]] = _refused

    # -- text arguments, parsed as _pickle.c parses them ----------------------------------------
    def _line(self) -> bytes:
        line = self.readline()
        if len(line) < 2:
            raise pickle.UnpicklingError("pickle data was truncated")
        return line

    def load_int(self) -> None:
        line = self._line()
        nul = line.find(b"\0")
        s = line if nul < 0 else line[:nul]  # C works on a NUL-terminated copy
        x, end, overflow = _strtol(s)
        if overflow or (end < len(s) and s[end] != 0x0A):
            self.append(_pylong(line, 0))  # "could not convert string to int" on failure
        elif len(line) == 3 and x in (0, 1):
            self.append(bool(x))
        else:
            self.append(x)
    dispatch[pickle.INT[0]] = load_int

    def load_long(self) -> None:
        line = self._line()
        if line[-2:-1] == b"L":
            line = line[:-2] + b"\0"
        self.append(_pylong(line, 0))
    dispatch[pickle.LONG[0]] = load_long

    def load_float(self) -> None:
        self.append(_c_float(self._line()))
    dispatch[pickle.FLOAT[0]] = load_float

    def load_string(self) -> None:
        data = self.readline()[:-1]
        if len(data) >= 2 and data[0] == data[-1] and data[0] in b"\"'":
            data = data[1:-1]
        else:
            raise pickle.UnpicklingError("the STRING opcode argument must be quoted")
        self.append(codecs.escape_decode(data)[0].decode("ascii"))
    dispatch[pickle.STRING[0]] = load_string

    def load_get(self) -> None:
        idx = _pylong(self._line(), 10)
        if idx not in self.memo:
            raise pickle.UnpicklingError(f"Memo value not found at index {idx}")
        self.append(self.memo[idx])
    dispatch[pickle.GET[0]] = load_get

    def _put(self, idx: int) -> None:
        if not self.stack:
            raise pickle.UnpicklingError("stack underflow in PUT")
        if idx < 0:
            raise ValueError("negative PUT argument")
        if idx > MAX_SURE_MEMO_INDEX:
            raise Unsure(self.here, f"PUT at {idx}: the C memo table grows to twice that")
        self.memo[idx] = self.stack[-1]

    def load_put(self) -> None:
        line = self._line()
        if not self.stack:  # C looks at the stack before it parses the index
            raise pickle.UnpicklingError("stack underflow in PUT")
        self._put(_pylong(line, 10))
    dispatch[pickle.PUT[0]] = load_put

    def load_binput(self) -> None:
        self._put(self.read(1)[0])
    dispatch[pickle.BINPUT[0]] = load_binput

    def load_long_binput(self) -> None:
        self._put(int.from_bytes(self.read(4), "little"))
    dispatch[pickle.LONG_BINPUT[0]] = load_long_binput

    # -- joblib ---------------------------------------------------------------------------------
    def _joblib_array(self, wrapper: OObj) -> None:
        """joblib's NumpyUnpickler.load_build: pop the wrapper, read the array after BUILD, push it."""
        here = self.here
        state = wrapper.state
        if not (isinstance(state, OCont) and state.kind == "dict"):
            raise Unsure(here, "wrapper state is not a dict")
        fields = {k: v for k, v in state.items if isinstance(k, str)}
        shape = fields.get("shape")
        if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
            raise Unsure(here, "wrapper shape")
        dtype = _dtype(fields.get("dtype"))
        if dtype is None:
            raise Unsure(here, "wrapper dtype cannot be evaluated")
        array = OObj("numpy.ndarray", here)
        array.array = True
        self.stack[-1] = array
        if dtype.hasobject:
            sub = Oracle(self.data, self._in.pos, joblib=False, depth=self.depth + 1)
            self.nested = [sub]
            return
        align = fields.get("numpy_array_alignment_bytes")
        if align is not None:
            self._in.pos += 1 + self.read(1)[0]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        if self._in.pos + nbytes > self._in.n:
            raise EOFError("array data truncated")
        self._in.pos += nbytes


def _concrete(value: Any, depth: int = 0) -> Any:
    if depth > 16:
        raise ValueError("too deep")
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    if isinstance(value, tuple):
        return tuple(_concrete(v, depth + 1) for v in value)
    if isinstance(value, OCont) and value.kind == "dict":
        return {_concrete(k, depth + 1): _concrete(v, depth + 1) for k, v in value.items}
    if isinstance(value, OObj) and value.callee == "numpy.dtype":
        dt = _dtype(value)
        if dt is None:
            raise ValueError("dtype")
        return dt
    raise ValueError(f"cannot evaluate {type(value).__name__}")


def _dtype(value: Any) -> np.dtype[Any] | None:
    """Evaluate a pickled numpy dtype (REDUCE numpy.dtype + BUILD state) without trusting it: the
    walker's own state and layout checks run first (numpy's ``__setstate__`` trusts its argument)."""
    from safeload._mirrors import _check_dtype_layout, _check_dtype_state

    if not (isinstance(value, OObj) and value.callee in ("numpy.dtype",) and isinstance(value.args, tuple)):
        return None
    try:
        args = _concrete(value.args)
        if not args or not isinstance(args[0], (str, bytes)) or len(args) > 3:
            return None
        dt: np.dtype[Any] = np.dtype(*args)
        if value.state is not None:
            st = _concrete(value.state)
            _check_dtype_state(st)
            dt.__setstate__(st)  # type: ignore[attr-defined]
            _check_dtype_layout(dt)
        return dt
    except Exception:  # noqa: BLE001 - not evaluable: the caller stops comparing
        return None


# -- the differential property ----------------------------------------------------------------------

def _walker_unread() -> Any:
    from safeload import _walker

    return _walker.UNREAD


def _never(data: Any, i: int, *rest: Any) -> tuple[int, int]:
    """A one-step matcher that never matches (any of the three signatures): opcode by opcode."""
    return i, 0


class Matchers(NamedTuple):
    """The walker's one-step matchers, by the module attribute each replaces."""

    run: Callable[[Any, int, int], tuple[int, int]]  # MEMOIZE vocabulary runs: _walker._match_run
    put_run: Callable[[Any, int, int, int], tuple[int, int]]  # protocol 1-3 PUT runs: _match_put_run
    values: Callable[[Any, int, int, Any], tuple[int, int]]  # batches of plain values: _match_values
    # and the readers of a taken run: _expand (all of it), _offsets / _text (one memo read)
    expand: Callable[[Any, Any], tuple[list[Any], list[str]]]
    offsets: Callable[[Any, Any, int], list[int]]
    text: Callable[[Any, int, Any, int], str]

    def install(self, setattr_: Callable[[Any, str, Any], Any] = setattr) -> None:
        """Set them on ``safeload._walker`` (``setattr_``: e.g. ``monkeypatch.setattr``)."""
        from safeload import _walker

        for name, fn in self._asdict().items():
            setattr_(_walker, f"_match_{name}" if name in ("run", "put_run", "values") else f"_{name}", fn)


def _matchers() -> dict[str, Matchers]:
    from safeload import _walker as w

    readers = (w._python_expand, w._python_offsets, w._python_text)
    out = {"regex": Matchers(w._regex_run, w._python_put_run, w._python_values, *readers),
           "none": Matchers(_never, _never, _never, *readers)}
    if getattr(w, "_speedups", None) is not None:
        out["compiled"] = Matchers(w._compiled_run, w._compiled_put_run, w._compiled_values,
                                   w._compiled_expand, w._compiled_offsets, w._compiled_text)
    return out


#: The walker's one-step matchers the property is held for: "compiled" (safeload._speedups), "regex"
#: (the pure-Python fallback: regular expressions and loops) and "none" (opcode by opcode).
MATCHERS = _matchers()


#: Opcodes the walker may take in one step (a vocabulary run, protocol 4 or 1-3; a batch of plain
#: values from its MARK to the SETITEMS / APPENDS / ADDITEMS that takes it): the oracle steps through
#: them, and compares the whole state where the walker stops next.
RUN_OPS = frozenset({0x8C, 0x94, 0x4B, 0x4D, 0x4A, 0x58, 0x71, 0x72,
                     0x28, 0x4E, 0x88, 0x89, 0x47, 0x68, 0x6A, 0x75, 0x65, 0x90})
#: Opcodes that act on objects below the top: the whole stack is compared before each of them.
TARGET_OPS = frozenset(b"bRo\x81\x92iseu\x90a\x93\x85\x86\x87tld\x91.0122")
_GETS = frozenset(b"ghj")
_WIDE_STACK = 4096


class Divergence(Exception):
    """The walker's machine state differs from CPython's (the property fails)."""


@dataclass
class Outcome:
    """One stream through both: how many walker steps were compared, and how it ended."""

    steps: int = 0
    full: int = 0
    walker_end: int = -1
    divergence: str | None = None
    unsure: str | None = None
    lenient: str | None = None  # the walker went on past an opcode CPython refuses (see observer)

    @property
    def ok(self) -> bool:
        return self.divergence is None


def _first_difference(a: list[Any], b: list[Any]) -> str:
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"at {k}: walker {x!r} != CPython {y!r}"
    return f"lengths: walker {len(a)} != CPython {len(b)}"


def _memo_difference(a: dict[int, Any], b: dict[int, Any]) -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<empty>") != b.get(k, "<empty>"):
            return f"slot {k}: walker {a.get(k, '<empty>')!r} != CPython {b.get(k, '<empty>')!r}"
    return "?"


def differential(data: Any, policy: Any, *, joblib: bool = False, walk: Callable[..., Any] | None = None,
                 every: int = 1, memo_every: int = 1) -> Outcome:
    """Walk ``data`` with an observer that steps the oracle in lockstep and compares, before every
    walker step, the offset, ``memo_len`` and the mark stack, and (every ``every`` steps, before every
    opcode that acts on a target, after every memo read and at STOP) the whole stack; the memo every
    ``memo_every`` steps and at STOP. While the stack is wider than ``_WIDE_STACK`` (50,000 keys
    under one MARK), the whole stack is compared every ``len // 64`` steps instead, since each
    comparison copies it. Comparison ends where the walker stops, where the oracle is unsure,
    or where CPython refuses an opcode the walker goes past (``Outcome.lenient``).

    ``walk``: ``safeload._walker.walk`` or a mutated copy's (the mutation tests)."""
    if walk is None:
        from safeload._walker import walk as walk_
        walk = walk_
    oracle = Oracle(data, 0, joblib=joblib)
    gen = oracle.steps()
    out = Outcome()
    previous = -1
    # Terms by identity for this stream (objects kept alive so ids are not reused). Every kind canon
    # reads is fixed once built (G/Obj/Cont fields are set in __init__, tuples are immutable), so a
    # term never goes stale; bytearrays, whose bytes could change, are left out.
    terms: dict[int, tuple[Any, Any]] = {}
    seen = [-(1 << 62), 0]  # the step and the stack length of the last full comparison

    def term(value: Any) -> Any:
        hit = terms.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        made = canon(value)
        if type(value) is not bytearray:
            terms[id(value)] = (value, made)
        return made

    def observer(offset: int, view: Any) -> None:
        nonlocal previous
        if out.unsure is not None or out.lenient is not None:
            return
        while True:
            try:
                st = next(gen)
            except StopIteration:
                raise Divergence(f"walker steps at offset {offset} after CPython's STOP") from None
            except OracleRefused as exc:
                # CPython raises there and builds nothing more; the walker judging further is harmless
                # (it refuses no less), so this ends the comparison without failing it.
                out.lenient = f"walker steps at offset {offset} past offset {exc.offset}, where CPython " \
                              f"refuses ({exc.reason})"
                return
            except Unsure as exc:
                out.unsure = str(exc)
                return
            if st.depth == view.depth and st.offset == offset and st.stopped == view.stopped:
                break
            if st.depth == view.depth and st.offset < offset and not st.stopped and st.opcode in RUN_OPS:
                continue  # inside a vocabulary run the walker took in one step
            raise Divergence(f"walker steps at depth {view.depth} offset {offset}{' (stopped)' * view.stopped}, "
                             f"CPython at depth {st.depth} offset {st.offset}{' (stopped)' * st.stopped}")
        o = st.oracle
        where = f"depth {view.depth} offset {offset} (before {pickle_name(st.opcode)})"
        if view.memo_len() != o.memo_len():
            raise Divergence(f"{where}: memo_len walker {view.memo_len()} != CPython {o.memo_len()}")
        if view.marks() != o.marks():
            raise Divergence(f"{where}: marks walker {view.marks()} != CPython {o.marks()}")
        k = out.steps
        out.steps += 1
        wide = seen[1] > _WIDE_STACK  # (both views copy the stack: keep the comparisons linear)
        if view.stopped or k - seen[0] >= (max(every, seen[1] // 64) if wide else every):
            out.full += 1
            a = [term(x) for x in view.stack()]
            b = [term(x) for x in o.full_stack()]
            if a != b:
                raise Divergence(f"{where}: stack {_first_difference(a, b)}")
            seen[:] = [k, len(a)]
        elif not wide and (st.opcode in TARGET_OPS or previous in _GETS):
            # Between full comparisons: the stack length, the top four values and the value under
            # the top MARK (what SETITEMS/APPENDS/ADDITEMS act on); a GET's value is then on top.
            sa, sb = view.stack(), o.full_stack()
            if len(sa) != len(sb):
                raise Divergence(f"{where}: stack length walker {len(sa)} != CPython {len(sb)}")
            marks = o.marks()
            for p in {*range(max(0, len(sb) - 4), len(sb)), *(m - 1 for m in marks[-1:] if m > 0)}:
                if term(sa[p]) != term(sb[p]):
                    raise Divergence(f"{where}: stack[{p}] walker {term(sa[p])!r} != CPython {term(sb[p])!r}")
        if view.stopped or k % memo_every == 0:
            bm = o.memo_terms()
            # a slot the walker did not keep (no GET in the file can read it): it must exist in CPython's
            unread = _walker_unread()
            am = {i: (bm.get(i, "<not in CPython's memo>") if x is unread else term(x))
                  for i, x in view.memo().items()}
            if am != bm:
                raise Divergence(f"{where}: memo {_memo_difference(am, bm)}")
        previous = st.opcode if not view.stopped else -1

    try:
        trace = walk(data, policy, joblib=joblib, observer=observer)
        out.walker_end = trace.end
    except Divergence as exc:
        out.divergence = str(exc)
    return out


def pickle_name(op: int) -> str:
    return _NAMES.get(op, f"{op:#04x}")


_NAMES: dict[int, str] = {o.code.encode("latin1")[0]: o.name for o in pickletools.opcodes}


# -- a grammar of valid streams ---------------------------------------------------------------------

#: (module, name) pairs for GLOBAL / STACK_GLOBAL / INST: names outside the allowlist (refused, but the
#: walk goes on), a NEW class, and Python 2 names that fix_imports renames below protocol 3.
GLOBAL_NAMES = (("mod", "Cls"), ("pkg.sub", "Thing"), ("sklearn.linear_model._logistic", "LogisticRegression"),
                ("__builtin__", "object"), ("copy_reg", "_reconstructor"), ("UserDict", "UserDict"),
                ("m", "a.b"))
#: numpy dtypes as pickled: (type string, state) with itemsize as the last character of the string.
_DTYPES = (("f8", (3, "<", None, None, None, -1, -1, 0)), ("u1", (3, "|", None, None, None, -1, -1, 0)),
           ("i4", (3, ">", None, None, None, -1, -1, 0)), ("O8", (3, "|", None, None, None, -1, -1, 63)))
_SAMPLE_TEXTS = ("", "a", "w", "\x94", "\u0514", "\u9400", "\ud800", "\U0001f600", "key\n", "\\", "'\"")


class Grammar:
    """Emit one valid pickle stream (protocol ``proto``) from the choices of ``rnd``.

    The stream is kept as a list of whole opcodes, then cut into FRAMEs at opcode boundaries
    (protocol 4+). Beside the stack shape, the generator tracks the memo exactly as CPython does
    (MEMOIZE writes at ``len(memo)``, PUT anywhere), with each slot's value kind, so memo reads can be
    aimed into, across and just past vocabulary runs and dict keys stay hashable.
    """

    def __init__(self, rnd: random.Random, proto: int, budget: int = 40, joblib: bool = False,
                 globals_: bool = True) -> None:
        self.r = rnd
        self.proto = proto
        self.joblib = joblib and proto >= 2  # NumpyArrayWrapper arrays (their bytes follow the BUILD)
        self.globals = globals_  # False: a nested object-array pickle, loaded by joblib for real
        self.units: list[bytes] = []
        self.raw: set[int] = set()  # indices of units that are array bytes: never inside a FRAME
        # Half the protocol 4+ streams memoize with MEMOIZE only, as pickle writes them: the walker
        # keeps runs lazy until the first PUT, so reads into lazy runs happen only in these.
        self.puts = proto < 4 or rnd.random() < 0.5
        # Half of the others write their first PUT only after a vocabulary run: the walker keeps the
        # MEMOIZE runs lazy past it, counted in memo_len (session 24).
        self.late_puts = proto >= 4 and self.puts and rnd.random() < 0.5
        self.memo: dict[int, tuple[bool, str | None]] = {}  # slot -> (hashable, text if a str)
        self.runs: list[tuple[int, int]] = []  # (first slot, count) of each vocabulary run emitted
        self.last_put = -1  # the slot of the last PUT run entry
        self.budget = budget

    # -- primitives ----------------------------------------------------------------------------
    def emit(self, *units: bytes) -> None:
        self.units.extend(units)

    def text(self, max_bytes: int = 255) -> str:
        r = self.r
        k = r.random()
        if k < 0.3:
            t = r.choice(_SAMPLE_TEXTS)
        elif k < 0.55:
            t = "".join(r.choices("abcxyz_0123456789", k=r.choice((1, 2, 3, 8, r.randint(0, 255)))))
        elif k < 0.8:
            # per character: one of eight classes (ASCII, 2-, 3-byte, three fixed code points, a lone
            # surrogate, 4-byte), drawn class first so only the drawn class costs a random number
            t = "".join(chr(_CHAR_CLASSES[c](r)) for c in r.choices(range(8), k=r.randint(0, 90)))
        else:
            t = "x" * r.randint(0, 255)
        raw = t.encode("utf-8", "surrogatepass")[:max_bytes]
        if _decodes(raw):
            return raw.decode("utf-8", "surrogatepass")
        return t.encode("ascii", "ignore")[:max_bytes].decode()  # the cut fell inside a character

    def small_int(self) -> tuple[bytes, int]:
        r = self.r
        w = r.choice((1, 1, 2, 4))
        if w == 1:
            v = r.choice((0, 1, 0x94, 0x8C, 0xFF, r.randint(0, 255)))
            return b"K" + bytes([v]), v
        if w == 2:
            v = r.choice((0x9494, 0x9400, 0x0094, 0x948C, r.randint(0, 0xFFFF)))
            return b"M" + v.to_bytes(2, "little"), v
        v = r.choice((-1, 0x94949494 - (1 << 32), 0x00940000, -0x6B6B6B6C, r.randint(-(1 << 31), (1 << 31) - 1)))
        return b"J" + v.to_bytes(4, "little", signed=True), v

    def slot_read(self, idx: int) -> bytes:
        if self.proto == 0 or (self.proto < 2 and self.r.random() < 0.3):
            return b"g%d\n" % idx
        if idx < 256 and self.r.random() < 0.7:
            return b"h" + bytes([idx])
        return b"j" + idx.to_bytes(4, "little")

    def pick_slot(self, hashable: bool = False, text: bool = False) -> int | None:
        """A memo slot to read: often inside the last runs (first, middle, last entry) or just past."""
        slots = [k for k, (h, t) in self.memo.items() if (h or not hashable) and (t is not None or not text)]
        if not slots:
            return None
        r = self.r
        if self.runs and r.random() < 0.6:
            first, count = r.choice(self.runs[-3:])
            want = r.choice((first, first + 1, first + count // 2, first + count - 1, first + count,
                             first + count + 1, first - 1))
            if want in slots:
                return want
        return r.choice(slots[-6:] if r.random() < 0.5 else slots)

    # -- memo writes ----------------------------------------------------------------------------
    def remember(self, kind: tuple[bool, str | None]) -> None:
        """MEMOIZE or PUT the value on top (its ``kind``)."""
        r = self.r
        if self.proto >= 4 and (not self.puts or (self.late_puts and not self.runs) or r.random() < 0.6):
            self.emit(b"\x94")
            self.memo[len(self.memo)] = kind
            return
        n = len(self.memo)
        idx = r.choice((n, n, n + 1, n + r.randint(2, 5), r.randint(0, 300), r.choice(list(self.memo) or [0])))
        if self.proto == 0 or (self.proto == 1 and r.random() < 0.3):
            self.emit(b"p%d\n" % idx)
        elif idx < 256 and r.random() < 0.7:
            self.emit(b"q" + bytes([idx]))
        else:
            self.emit(b"r" + idx.to_bytes(4, "little"))
        self.memo[idx] = kind

    def noise(self, kind: tuple[bool, str | None]) -> None:
        """Opcodes that leave the top value where it is (and may memoize it or read the memo)."""
        r = self.r
        for _ in range(r.choice((0, 0, 1, 1, 2, 3))):
            k = r.randrange(9)
            if k <= 2:
                self.remember(kind)
            elif k == 3 and self.memo:
                slot = self.pick_slot()
                assert slot is not None
                self.emit(self.slot_read(slot), b"0")  # GET, POP
            elif k == 4:
                self.emit(b"(", b"0")  # MARK, POP: C pops the mark
            elif k == 5:
                self.emit(b"2")  # DUP
                if self.proto >= 4 and r.random() < 0.5:
                    self.emit(b"\x94")
                    self.memo[len(self.memo)] = kind
                self.emit(b"0")
            elif k == 6 and self.budget > 0:
                self.value(3)
                self.emit(b"0")  # value, POP, then (maybe) MEMOIZE our value again
                if r.random() < 0.5:
                    self.remember(kind)
            elif k == 7 and self.budget > 0:
                self.emit(b"(")
                for _ in range(r.randint(0, 3)):
                    self.value(3)
                self.emit(b"1")  # POP_MARK
                if r.random() < 0.5:
                    self.remember(kind)
            elif k == 8 and self.proto >= 4:
                self.emit(b"(", b"1")  # empty MARK / POP_MARK

    # -- values ---------------------------------------------------------------------------------
    def value(self, depth: int) -> tuple[bool, str | None]:
        """Emit opcodes that push exactly one value; return (hashable, text if a str)."""
        self.budget -= 1
        r = self.r
        p = self.proto
        choices = ["scalar", "scalar", "text"]
        if depth < 4 and self.budget > 0:
            choices += ["tuple", "list", "dict"] + (["set"] if p >= 4 else []) + (["run", "run"] if p >= 1 else [])
            if self.globals:
                choices += ["obj", "obj", "global"]
            if self.joblib:
                choices += ["array", "array", "array"]
        if self.memo:
            choices += ["get", "get"]
        what = r.choice(choices)
        kind: tuple[bool, str | None]
        if what == "scalar":
            kind = self.scalar()
        elif what == "text":
            t = self.text()
            self.emit(self.text_unit(t))
            kind = (True, t)
        elif what == "get":
            slot = self.pick_slot()
            assert slot is not None
            self.emit(self.slot_read(slot))
            kind = self.memo[slot]
        elif what == "tuple":
            kind = self.tuple_(depth)
        elif what == "list":
            kind = self.list_(depth)
        elif what == "dict":
            kind = self.dict_(depth)
        elif what == "set":
            kind = self.set_(depth)
        elif what == "run":
            kind = self.run(depth)
        elif what == "global":
            self.global_(depth)
            kind = (True, None)
        elif what == "array":
            self.joblib_array(depth)
            kind = (False, None)
        else:
            kind = self.obj(depth)
        self.noise(kind)
        return kind

    def text_unit(self, t: str) -> bytes:
        raw = t.encode("utf-8", "surrogatepass")
        p = self.proto
        r = self.r
        if p == 0:
            esc = t.replace("\\", "\\u005c").replace("\0", "\\u0000").replace("\n", "\\u000a") \
                .replace("\r", "\\u000d").replace("\x1a", "\\u001a")
            return b"V" + esc.encode("raw-unicode-escape") + b"\n"
        if p >= 4 and len(raw) < 256 and r.random() < 0.7:
            return b"\x8c" + bytes([len(raw)]) + raw
        if p >= 4 and r.random() < 0.2:
            return b"\x8d" + len(raw).to_bytes(8, "little") + raw
        return b"X" + len(raw).to_bytes(4, "little") + raw

    def scalar(self) -> tuple[bool, str | None]:
        r = self.r
        p = self.proto
        k = r.randrange(8)
        if k == 0:
            self.emit(b"N")
        elif k == 1:
            yes = r.random() < 0.5
            self.emit((b"\x88" if yes else b"\x89") if p >= 2 else (b"I01\n" if yes else b"I00\n"))
        elif k == 2:
            unit, _ = self.small_int()
            self.emit(unit if p >= 1 else b"I%d\n" % r.randint(-(1 << 40), 1 << 40))
        elif k == 3:
            v = r.choice((0, -1, 1 << 70, -(1 << 64), r.randint(-(1 << 100), 1 << 100)))
            if p >= 2:
                raw = pickle.encode_long(v)
                self.emit(b"\x8a" + bytes([len(raw)]) + raw)
            else:
                self.emit(b"L%dL\n" % v)
        elif k == 4:
            f = r.choice((0.0, -0.0, 1.5, 1e300, float("inf"), float("nan"), r.random()))
            self.emit(b"G" + struct.pack(">d", f) if p >= 1 else b"F" + repr(f).encode() + b"\n")
        elif k == 5:
            b = bytes(r.randrange(256) for _ in range(r.choice((0, 1, 5, 255, 300))))
            if p >= 3:
                if len(b) < 256 and r.random() < 0.5:
                    self.emit(b"C" + bytes([len(b)]) + b)
                elif p >= 5 and r.random() < 0.3:
                    self.emit(b"\x96" + len(b).to_bytes(8, "little") + b)
                    return (False, None)  # a bytearray
                elif p >= 4 and r.random() < 0.3:
                    self.emit(b"\x8e" + len(b).to_bytes(8, "little") + b)
                else:
                    self.emit(b"B" + len(b).to_bytes(4, "little") + b)
            else:
                self.emit(b"N")
        elif k == 6:  # a protocol 0-2 str (ASCII)
            s = "".join(chr(r.randint(0x20, 0x7e)) for _ in range(r.choice((0, 3, 20))))
            if p == 0:
                self.emit(b"S" + repr(s).encode("ascii") + b"\n")
                return (True, s)
            self.emit(b"U" + bytes([len(s)]) + s.encode() if len(s) < 256 and r.random() < 0.5
                      else b"T" + len(s).to_bytes(4, "little") + s.encode())
            return (True, s)
        else:
            self.emit(b")")
        return (True, None)

    def items(self, depth: int, hashable_pairs: bool = False) -> bool:
        """Values after a MARK (pairs when ``hashable_pairs``: keys hashable); are all hashable?"""
        ok = True
        for _ in range(self.r.choice((0, 1, 2, 3, 5))):
            if hashable_pairs:
                self.hashable_value(depth + 1)
            ok = self.value(depth + 1)[0] and ok
        return ok

    def hashable_value(self, depth: int) -> None:
        for _ in range(4):
            mark = len(self.units), dict(self.memo), list(self.runs), self.budget
            if self.value(depth)[0]:
                return
            del self.units[mark[0]:]  # roll back an unhashable key
            self.memo, self.runs, self.budget = mark[1], mark[2], mark[3]
        self.emit(b"N")

    def tuple_(self, depth: int) -> tuple[bool, str | None]:
        r = self.r
        n = r.choice((0, 1, 2, 3, 4))
        if self.proto >= 2 and 1 <= n <= 3 and r.random() < 0.7:
            ok = all([self.value(depth + 1)[0] for _ in range(n)])
            self.emit(bytes([0x84 + n]))
            return (ok, None)
        if n == 0 and self.proto >= 1:
            self.emit(b")")
            return (True, None)
        self.emit(b"(")
        ok = self.items(depth)
        self.emit(b"t")
        return (ok, None)

    def list_(self, depth: int) -> tuple[bool, str | None]:
        r = self.r
        if self.proto == 0 or r.random() < 0.2:
            self.emit(b"(")
            self.items(depth)
            self.emit(b"l")
        else:
            self.emit(b"]")
        self.fill(depth, "list")
        return (False, None)

    def dict_(self, depth: int) -> tuple[bool, str | None]:
        r = self.r
        if self.proto == 0 or r.random() < 0.2:
            self.emit(b"(")
            self.items(depth, hashable_pairs=True)
            self.emit(b"d")
        else:
            self.emit(b"}")
        self.fill(depth, "dict")
        return (False, None)

    def set_(self, depth: int) -> tuple[bool, str | None]:
        if self.r.random() < 0.3:
            self.emit(b"(")
            for _ in range(self.r.randint(0, 3)):
                self.hashable_value(depth + 1)
            self.emit(b"\x91")  # FROZENSET
            return (True, None)
        self.emit(b"\x8f")
        self.fill(depth, "set")
        return (False, None)

    def fill(self, depth: int, kind: str) -> None:
        """APPEND(S) / SETITEM(S) / ADDITEMS on the container on top, maybe memoized first."""
        r = self.r
        if r.random() < 0.5:
            self.remember((False, None))
        if r.random() < 0.15:
            self.wide(kind)
        for _ in range(r.choice((0, 1, 1, 2))):
            if kind == "list":
                if r.random() < 0.4:
                    self.value(depth + 1)
                    self.emit(b"a")
                else:
                    self.emit(b"(")
                    self.items(depth)
                    self.emit(b"e")
            elif kind == "dict":
                if r.random() < 0.4:
                    self.hashable_value(depth + 1)
                    self.value(depth + 1)
                    self.emit(b"s")
                else:
                    self.emit(b"(")
                    self.items(depth, hashable_pairs=True)
                    self.emit(b"u")
            else:
                self.emit(b"(")
                for _ in range(r.randint(0, 3)):
                    self.hashable_value(depth + 1)
                self.emit(b"\x90")

    def plain(self) -> bytes:
        """One opcode that pushes a plain value (what the walker may count in one step)."""
        r = self.r
        if self.proto == 0:
            return b"N"
        k = r.random()
        if k < 0.3:
            return b"N"
        if k < 0.4 and self.proto >= 2:
            return r.choice((b"\x88", b"\x89"))
        if k < 0.5:
            return b"G" + struct.pack(">d", r.choice((0.5, -0.0, float("nan"), float("inf"), r.random())))
        return self.small_int()[0]

    def wide(self, kind: str) -> None:
        """Batches of plain values past the walker's kept-items caps (64 pairs, 4,096 list items), which
        it takes in one step: for a list sometimes memo reads among them, sometimes a value that is not
        plain in the middle of a batch (then it goes opcode by opcode)."""
        r = self.r
        if kind == "dict":
            batches = [2 * r.choice((64, 65, 70))] + [2 * r.randint(8, 60) for _ in range(r.randint(1, 3))]
        elif kind == "list":  # past 4,096 items in batches of at most 120 (the oracle compares the whole
            # stack at every step: one batch of 4,096 values would cost 16 M comparisons)
            batches = [r.randint(16, 120) for _ in range(r.choice((1, 2, 3, 40)))]
            if len(batches) == 40:
                batches += [120] * (35 - sum(batches) // 120) + [r.randint(16, 120) for _ in range(3)]
        else:
            batches = [r.randint(16, 120) for _ in range(r.randint(1, 3))]
        for n in batches:
            self.emit(b"(")
            for k in range(n):
                if kind == "list" and self.memo and r.random() < 0.1:
                    slot = self.pick_slot()
                    if slot is not None:
                        self.emit(self.slot_read(slot))
                        continue
                if r.random() < 0.005 and (kind == "list" or (kind == "dict" and k % 2)):
                    self.value(1)  # breaks the batch (not a key: it may be unhashable)
                    continue
                self.emit(self.plain())
            self.emit({"list": b"e", "dict": b"u"}.get(kind, b"\x90"))

    def run(self, depth: int) -> tuple[bool, str | None]:
        """A vocabulary run (>= 8 entries of SHORT_BINUNICODE, MEMOIZE, BININT*, or in protocols 1-3 of
        BINUNICODE, BINPUT/LONG_BINPUT, BININT*) in a dict, tuple or list, with memo reads into it (pairs, so the dict's items stay even) and breaks in between."""
        r = self.r
        end = r.choice(("dict", "dict", "tuple", "popmark", "list", "dictop"))
        if end == "dict":
            self.emit(b"}")
            if r.random() < 0.7:
                if self.proto < 4:
                    self.remember((False, None))
                else:
                    self.emit(b"\x94")
                    self.memo[len(self.memo)] = (False, None)
        elif end == "list":
            self.emit(b"]")
        self.emit(b"(")
        n = r.choice((8, 9, 12, 30, r.randint(8, 120)))
        # protocols 1-3 write BINUNICODE + BINPUT/LONG_BINPUT entries; some protocol 4+ streams too
        put_style = 1 <= self.proto <= 3 or (self.puts and r.random() < 0.3)
        first, count = len(self.memo), 0
        if put_style:  # one past the highest slot (as pickle writes), or memo_len (below it if holes)
            first = max(self.memo) + 1 if self.memo and r.random() < 0.8 else len(self.memo)
        for _ in range(n):
            k = r.random()
            if k < 0.08 and self.memo:  # a read into this run (or an earlier one), then a value
                slot = self.pick_slot(hashable=True)
                if count and r.random() < 0.5:  # an entry of this very run
                    slot = r.choice((first, first + count - 1, first + r.randrange(count)))
                if slot is not None:
                    self.emit(self.slot_read(slot))
                    self.emit(self.small_int()[0])
                    if end == "list":
                        self.emit(b"0")  # keep the list's items whatever they are
                    continue
            if k < 0.12 and end != "list":  # an entry that breaks the pattern (MEMOIZE on the value)
                t = self.text()
                if self.proto < 4:
                    self.emit(self.text_unit(t))
                    self.remember((True, t))
                    self.emit(self.small_int()[0])
                    self.remember((True, None))
                    continue
                self.emit(self.text_unit(t), b"\x94", self.small_int()[0], b"\x94")
                self.memo[len(self.memo)] = (True, t)
                self.memo[len(self.memo)] = (True, None)
                continue
            t = self.text()
            raw = t.encode("utf-8", "surrogatepass")
            if put_style:
                self.put_entry(t, raw, first, count, first + count if self.last_put == first + count - 1
                               or not count else max(self.memo) + 1)
                if self.last_put == first + count:
                    count += 1
                continue
            self.emit(b"\x8c" + bytes([len(raw)]) + raw, b"\x94", self.small_int()[0])
            if first + count == len(self.memo):
                count += 1
            self.memo[len(self.memo)] = (True, t)
        if count:
            self.runs.append((first, count))
        if end in ("dict", "dictop"):
            self.emit(b"u" if end == "dict" else b"d")
            return (False, None)
        if end == "list":
            self.emit(b"e")
            return (False, None)
        if end == "tuple":
            self.emit(b"t")
            return (True, None)
        self.emit(b"1")  # POP_MARK: the entries go, the memo stays
        return self.value(depth + 1)

    def put_entry(self, t: str, raw: bytes, first: int, count: int, idx: int) -> None:
        """One protocol 1-3 vocabulary entry: mostly PUT to slot ``idx`` (the next of the run),
        sometimes to a slot that breaks it: memo_len, a slot already taken (inside this or an earlier
        run), or one further on (a hole)."""
        r = self.r
        top = max(self.memo) + 1 if self.memo else 0
        if r.random() < 0.12:
            idx = r.choice((len(self.memo), top + 1, top + r.randint(2, 9), first, first + count // 2,
                            r.choice(list(self.memo) or [0])))
        if idx < 256 and r.random() < 0.7:
            put = b"q" + bytes([idx])
        else:
            put = b"r" + idx.to_bytes(4, "little")
        self.emit(b"X" + len(raw).to_bytes(4, "little") + raw, put, self.small_int()[0])
        self.memo[idx] = (True, t)
        self.last_put = idx

    def global_(self, depth: int) -> None:
        r = self.r
        module, name = r.choice(GLOBAL_NAMES)
        if self.proto >= 4 and r.random() < 0.7:
            for part in (module, name):
                slot = self.pick_slot(text=True) if r.random() < 0.3 else None
                if slot is not None:
                    self.emit(self.slot_read(slot))  # memo tricks feeding STACK_GLOBAL
                else:
                    self.emit(self.text_unit(part))
                    if r.random() < 0.5:
                        self.remember((True, part))
            self.emit(b"\x93")
        else:
            self.emit(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def obj(self, depth: int) -> tuple[bool, str | None]:
        r = self.r
        p = self.proto
        how = r.choice(["reduce", "reduce"] + (["inst"] if p <= 1 else []) + (["obj"] if 1 <= p <= 3 else [])
                       + (["newobj"] if p >= 2 else []) + (["newobj_ex"] if p >= 4 else []))
        if how == "inst":
            module, name = r.choice(GLOBAL_NAMES)
            self.emit(b"(")
            self.items(depth)
            self.emit(b"i" + module.encode() + b"\n" + name.encode() + b"\n")
        elif how == "obj":
            self.emit(b"(")
            self.global_(depth)
            self.items(depth)
            self.emit(b"o")
        else:
            self.global_(depth)
            if r.random() < 0.3:
                self.remember((True, None))
            self.args(depth)
            if how == "newobj_ex":
                self.dict_(depth + 1)
            self.emit({"reduce": b"R", "newobj": b"\x81", "newobj_ex": b"\x92"}[how])
        if r.random() < 0.3:
            self.remember((True, None))
        for _ in range(r.choice((0, 0, 1, 1, 2))):  # BUILD (twice: a second state)
            self.value(depth + 1)
            self.emit(b"b")
        if r.random() < 0.2:
            self.fill(depth, r.choice(("list", "dict")))  # APPENDS / SETITEMS on an object
        return (True, None)

    def args(self, depth: int) -> None:
        self.tuple_(depth + 1)

    def joblib_array(self, depth: int) -> None:
        """A NumpyArrayWrapper as joblib writes it (NEWOBJ, BUILD with its state dict), then the
        array's bytes after an alignment padding, or for an object dtype a nested pickle."""
        r = self.r
        code, state = r.choice(_DTYPES)
        self.stack_global("joblib.numpy_pickle", "NumpyArrayWrapper")
        self.emit(b")", b"\x81")
        if r.random() < 0.5:
            self.remember((True, None))
        self.emit(b"}")
        if r.random() < 0.5:
            self.remember((False, None))
        self.emit(b"(")
        shape = tuple(r.choice((0, 1, 2, 3, 7)) for _ in range(r.choice((0, 1, 1, 2))))
        fields: list[tuple[str, Callable[[], None]]] = [
            ("subclass", lambda: self.stack_global("numpy", r.choice(("ndarray", "ndarray", "matrix")))),
            ("shape", lambda: self.emit(*self.shape_units(shape))),
            ("order", lambda: self.emit(self.text_unit(r.choice("CF")))),
            ("dtype", lambda: self.dtype_units(code, state)),
            ("allow_mmap", lambda: self.emit(b"\x89" if code == "O8" or r.random() < 0.5 else b"\x88")),
        ]
        align = r.random() < 0.7 and code != "O8"
        if align:
            fields.append(("numpy_array_alignment_bytes", lambda: self.emit(b"K\x10")))
        r.shuffle(fields)
        for key, emit_value in fields:
            self.emit(self.text_unit(key))
            if r.random() < 0.3:
                self.remember((True, key))
            emit_value()
        self.emit(b"u", b"b")  # SETITEMS, BUILD: the wrapper becomes the array
        count = 1
        for d in shape:
            count *= d
        if code == "O8":
            nested = Grammar(r, r.choice((2, 3, 4, 5)), max(3, self.budget // 3), globals_=False)
            self.raw.add(len(self.units))
            self.emit(nested.stream())
            self.budget -= 5
            return
        pad = r.randint(0, 15) if align else -1
        itemsize = int(code[-1])
        self.raw.add(len(self.units))
        self.emit((bytes([pad]) + b"\xff" * pad if pad >= 0 else b"") + r.randbytes(count * itemsize))

    def stack_global(self, module: str, name: str) -> None:
        if self.proto >= 4:
            self.emit(self.text_unit(module), self.text_unit(name), b"\x93")
        else:
            self.emit(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def shape_units(self, shape: tuple[int, ...]) -> list[bytes]:
        ints = [b"K" + bytes([d]) for d in shape]
        if 1 <= len(shape) <= 3:
            return ints + [bytes([0x84 + len(shape)])]
        return [b"("] + ints + [b"t"] if shape else [b")"]

    def dtype_units(self, code: str, state: tuple[Any, ...]) -> None:
        self.stack_global("numpy", "dtype")
        self.emit(self.text_unit(code), b"\x89", b"\x88", b"\x87", b"R")
        if self.r.random() < 0.5:
            self.remember((True, None))
        self.emit(b"(K\x03" + self.text_unit(state[1]) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK"
                  + bytes([state[7]]) + b"t", b"b")

    # -- the stream -----------------------------------------------------------------------------
    def stream(self) -> bytes:
        r = self.r
        for _ in range(r.choice((1, 1, 2, 3))):
            if r.random() < 0.2:
                self.emit(b"(")  # a MARK left open (STOP ignores what lies below its value)
            self.value(0)
        self.emit(b".")
        body = self.units
        head = b"\x80" + bytes([self.proto]) if self.proto >= 2 else b""
        if self.proto < 4 or r.random() < 0.2:
            return head + b"".join(body)  # (a nested pickle's frames are its own)
        out = [head]
        k = 0
        raw = sorted(self.raw)
        while k < len(body):  # frames cut at opcode boundaries; some opcodes outside any frame
            if r.random() < 0.15 or k in self.raw:
                out.append(body[k])  # array bytes follow their BUILD outside any frame, as joblib writes
                k += 1
                continue
            m = k + r.choice((1, 2, 3, 5, 8, 20, 60, 200, len(body)))
            m = min([m] + [x for x in raw if x > k])
            chunk = b"".join(body[k:m])
            out.append(b"\x95" + len(chunk).to_bytes(8, "little") + chunk)
            k = m
        return b"".join(out)


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


def generate(rnd: random.Random, proto: int | None = None, budget: int | None = None, joblib: bool = False) -> bytes:
    """One valid stream from the grammar (protocol and size drawn from ``rnd`` unless given); with
    ``joblib``, a joblib file's stream (protocol 2+) with NumpyArrayWrapper arrays in it."""
    if proto is None:
        proto = rnd.choice((2, 3, 4, 4, 5, 5)) if joblib else rnd.choice((0, 1, 2, 3, 4, 4, 5, 5))
    return Grammar(rnd, proto, rnd.choice((5, 15, 40, 80)) if budget is None else budget, joblib).stream()


class _Stand:
    """What CPython's real unpickler gets from find_class when checking generated streams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, x: Any) -> None:
        pass

    def extend(self, x: Any) -> None:
        pass

    def add(self, x: Any) -> None:
        pass

    def __setitem__(self, k: Any, v: Any) -> None:
        pass


class StandInUnpickler(pickle.Unpickler):
    """CPython's C unpickler, with every global a harmless class: generated streams must load."""

    classes: dict[str, type] = {}
    proto = 0  # of the stream (set by the caller): names are mapped as the C find_class maps them

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        key = f"{module}.{name}"
        if key not in self.classes:
            self.classes[key] = type("StandIn", (_Stand,), {"name": key})
        return self.classes[key]


def cpython_loads(data: bytes) -> Any:
    import io

    return StandInUnpickler(io.BytesIO(data)).load()


# -- mutated walkers: the property must catch them ----------------------------------------------------

#: (old, new) textual patches of safeload/_walker.py, each a known way to get the memo or marks wrong
#: (a list of such pairs where one mistake spans two places).
MUTATIONS: dict[str, tuple[str, str] | list[tuple[str, str]]] = {
    # Round 1: a read that materialises a lazy run leaves its slots counted twice. (Since session 24 a
    # read decodes one entry and the run stays lazy; the mutant puts round 1's read back too.)
    "double-count": [("mlen += 1  # ORACLE-MUTATION-POINT",
                      "mlen = len(memo) + sum(r.count for r in lazy.values())  # ORACLE-MUTATION-POINT"),
                     ("return _run_text(data, lazy[first], idx - first)  # ORACLE-MUTATION-POINT-READ",
                      "for k, text in enumerate(_expand(data, lazy[first])[1]):\n"
                      "                    memo.setdefault(first + k, text)\n"
                      "                return memo[idx]")],
    # A read into a run that decodes the wrong entry (an off-by-one in the run's index).
    "read-next-entry": ("return _run_text(data, lazy[first], idx - first)  # ORACLE-MUTATION-POINT-READ",
                        "return _run_text(data, lazy[first], min(idx - first + 1, lazy[first].count - 1))"),
    # The first PUT forgets the slots of the MEMOIZE runs that stay lazy: memo_len falls short.
    "flush-forgets-runs": ("lazy_total = sum(run.count for run in lazy.values())  # ORACLE-MUTATION-POINT-FLUSH",
                           "lazy_total = 0"),
    # Moving a lazy PUT run into the memo without giving back its slots: memo_len counts them twice.
    "put-run-double-count": ("lazy_total -= run.count  # ORACLE-MUTATION-POINT-PUT",
                             "pass  # ORACLE-MUTATION-POINT-PUT"),
    # A PUT into a lazy PUT run's slot that leaves the run lazy: its value and memo_len go wrong.
    "put-into-run-unsettled": ("if lazy and idx < hi:\n                        settle(idx)",
                               "if False:\n                        settle(idx)"),
    # A PUT run taken at memo_len instead of one past the highest slot: it can cover occupied slots.
    "put-run-at-memo-len": ("j, count = match_put_run(data, i, fend if fend < avail else avail, hi)",
                            "j, count = match_put_run(data, i, fend if fend < avail else avail, mlen)"),
    # A PUT that does not update memo_len: the next MEMOIZE lands on the PUT's slot.
    "put-not-counted": ("self.put(i, idx, ops, stack, fence, memo)\n                    mlen = len(memo) + lazy_total + skipped",
                        "self.put(i, idx, ops, stack, fence, memo)"),
    # A batch of plain values taken in one step that stops before the opcode that took them: that
    # SETITEMS / APPENDS / ADDITEMS then runs again, on the items of the MARK below.
    "values-terminator-again": ("i = j + 1  # ORACLE-MUTATION-POINT-VALUES", "i = j  # ORACLE-MUTATION-POINT-VALUES"),
    # Memo pruning (slots no GET can read are not kept; the tests run these with _PRUNE_AT = 0): a
    # slot dropped at the prune, or at a MEMOIZE, that memo_len forgets after the first PUT; and a
    # PUT or MEMOIZE into a dropped slot that counts it twice.
    "prune-forgets-slots": ("skipped += 1  # ORACLE-MUTATION-POINT-PRUNE", "pass"),
    "skip-forgets-slot": ("skipped += 1  # ORACLE-MUTATION-POINT-SKIP", "pass"),
    "write-into-skipped-counted-twice": ("skipped -= 1  # ORACLE-MUTATION-POINT-FILL", "pass"),
    # Real walks keep slots 0-255 (BINGET's, not looked for) at the prune and at every MEMOIZE.
    "binget-slot-dropped-at-prune": ("k >= kept and k not in reads", "k not in reads"),
    "binget-slot-not-kept-at-memoize": ("elif mlen < kept or mlen in reads:", "elif mlen in reads:"),
    # POP that ignores a MARK on top (C pops the mark): the walker then refuses valid streams.
    "pop-ignores-mark": ("if len(marks) > _PAD and marks[-1] == len(stack):", "if False:"),
}


def mutant(name: str) -> types.ModuleType:
    """A copy of safeload/_walker.py with mutation ``name`` applied, exec'd as its own module."""
    patches = MUTATIONS[name]
    import safeload

    # The source file, not _walker.__file__: the installed walker may be compiled by mypyc.
    path = Path(safeload.__file__).resolve().parent / "_walker.py"
    source = path.read_text(encoding="utf-8")
    for old, new in patches if isinstance(patches, list) else [patches]:
        assert source.count(old) == 1, f"mutation {name}: the walker no longer contains {old!r}"
        source = source.replace(old, new)
    module = types.ModuleType(f"safeload._walker_mutant_{name.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(source, f"<walker mutant {name}>", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def cpython_shape(value: Any, ids: dict[int, int], depth: int = 0) -> Any:
    """A term for a value CPython's real unpickler built (stand-in globals), comparable with
    :func:`oracle_shape`: objects by kind and identity class (numbered in order of first sight)."""
    if isinstance(value, (str, bool, int, float, bytes)) or value is None:
        return canon(value)
    if isinstance(value, tuple):
        return ("tuple",) + tuple(cpython_shape(v, ids, depth + 1) for v in value) if depth < 64 else ("deep",)
    if isinstance(value, type) and issubclass(value, _Stand):
        return ("G", value.name, ids.setdefault(id(value), len(ids)))  # type: ignore[attr-defined]
    if isinstance(value, _Stand):
        return ("Obj", ids.setdefault(id(value), len(ids)))
    if isinstance(value, (list, dict, set)):
        return ("Cont", type(value).__name__, ids.setdefault(id(value), len(ids)))
    if isinstance(value, frozenset):
        return ("frozenset",)
    if isinstance(value, bytearray):
        return ("bytearray", bytes(value))
    return ("?", type(value).__name__)


def oracle_shape(value: Any, ids: dict[Any, int], depth: int = 0) -> Any:
    """The same for the oracle's values: identity is the origin (a global: the name, as find_class
    returns one object per name)."""
    if isinstance(value, (str, bool, int, float, bytes)) or value is None:
        return canon(value)
    if isinstance(value, tuple):
        return ("tuple",) + tuple(oracle_shape(v, ids, depth + 1) for v in value) if depth < 64 else ("deep",)
    if isinstance(value, OGlobal):
        return ("G", value.name, ids.setdefault(("G", value.name), len(ids)))
    if isinstance(value, OObj):
        return ("Obj", ids.setdefault(("O", value.origin), len(ids)))
    if isinstance(value, OCont):
        return ("Cont", value.kind, ids.setdefault(("O", value.origin), len(ids)))
    if isinstance(value, OFrozen):
        return ("frozenset",)
    if isinstance(value, bytearray):
        return ("bytearray", bytes(value))
    return ("?", type(value).__name__)


def cpython_memo_and_result(data: bytes) -> tuple[Any, Any]:
    """CPython's own memo after loading ``data`` (C unpickler, stand-in globals) and its result,
    as terms; the oracle's :meth:`Oracle.shapes` must give the same."""
    import io

    u = StandInUnpickler(io.BytesIO(data))
    # the C find_class applies fix_imports before importing; an overriding find_class gets raw names
    u.proto = data[1] if data[:1] == b"\x80" else 0
    result = u.load()
    ids: dict[int, int] = {}
    memo = u.memo.copy()
    return {k: cpython_shape(memo[k], ids) for k in sorted(memo)}, cpython_shape(result, ids)


def oracle_memo_and_result(data: bytes) -> tuple[Any, Any]:
    o = Oracle(data)
    result = o.run()
    ids: dict[Any, int] = {}
    return {k: oracle_shape(o.memo[k], ids) for k in sorted(o.memo)}, oracle_shape(result, ids)


def joblib_loads(data: bytes) -> Any:
    """joblib's own reading of a generated joblib stream (NumpyUnpickler: arrays read after their
    BUILD, object arrays through a nested unpickler), with stand-ins for every global that is not
    numpy's or joblib's own: generated joblib streams must load."""
    import io

    from joblib.numpy_pickle import NumpyUnpickler

    class StandInNumpyUnpickler(NumpyUnpickler):  # type: ignore[misc]
        classes = StandInUnpickler.classes

        def find_class(self, module: str, name: str) -> Any:
            if module in ("numpy", "joblib.numpy_pickle"):
                return super().find_class(module, name)
            return StandInUnpickler.find_class(self, module, name)

    u = StandInNumpyUnpickler("<generated>", io.BytesIO(data), ensure_native_byte_order=False)
    return u.load()  # (the pure-Python unpickler sets .proto from PROTO: fix_imports as in C)
