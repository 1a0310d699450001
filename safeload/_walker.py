"""The opcode walker: judges a pickle stream without executing it.

It reads the bytes exactly the way CPython's unpickler does when it is given the
whole buffer (linearly), simulates the stack and the memo closely enough to know
which global every GLOBAL / STACK_GLOBAL / INST names (after ``fix_imports``
remapping), which value every BUILD, REDUCE and NEWOBJ acts on, and where the
stream ends.  Both ``scan`` and ``load`` run it first, so their verdicts agree by
construction; ``load`` then executes only a stream the walker accepted.

This module is the machine model only: which value each opcode acts on. What ``load``'s
runtime guards and validators would say about those values is judged by the static mirrors
in ``_mirrors`` (called from ``call``/``instantiate``/``build``); the values themselves are
``_simulated``'s.

Rules beyond what CPython checks (each refused, never guessed around):
* an opcode argument that starts inside a FRAME and ends past it, and a FRAME
  that begins before the previous one is used up (CPython's C and Python
  unpicklers read these differently, see python/cpython#154848);
* BUILD / SETITEM / APPEND on a global (it would mutate a class or function);
* REDUCE of a name whose kind is not CALL, NEWOBJ of a VALUE;
* EXT1/2/4, PERSID/BINPERSID, NEXT_BUFFER/READONLY_BUFFER;
* any byte after STOP (stacked pickles, appended archives);
* memo indices beyond the number of opcodes read so far, and the size limits.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import gc
import math
import re
import struct
import sys
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any, Final

from mypy_extensions import i64

from safeload._allowlist import Entry, Kind
from safeload._containers import Buffer
from safeload._filling import Filling
from safeload._keyhash import VALUE_HASHED, collidable, may_collide
from safeload._mirrors import (
    BUILD_VALIDATED,
    DICT_SUBCLASSES,
    NAMEDTUPLES,
    StaticChecks,
    unhashable,
    wrapper_state,
)
from safeload._policy import Limits, Policy
from safeload._simulated import (
    LIMIT,
    MALFORMED,
    UNSAFE,
    ArraySpan,
    Cont,
    Frozen,
    G,
    GlobalRef,
    Issue,
    Obj,
    Run,
    Trace,
)
from safeload._textops import Decoding, long_text, parse_float, parse_get, parse_int, parse_put

try:
    from safeload import _speedups
except ImportError:  # installed without a C compiler: the regular expressions below do the same job, slower
    _speedups = None  # type: ignore[assignment]

__all__ = ["LIMIT", "MALFORMED", "UNSAFE", "ArraySpan", "GlobalRef", "Issue", "Trace", "walk"]

WRAPPER: Final = "joblib.numpy_pickle.NumpyArrayWrapper"
# The policy's kinds as compiled statics: ``_NEW`` is an attribute lookup on an Enum class,
# which goes through EnumType.__getattr__'s slow slot (~0.14 us each, three per NEWOBJ: most of its cost).
_NEW: Final = Kind.NEW
#: (a module constant: compiled, ``memoryview`` itself is looked up in the builtins module at every use)
_MEMORYVIEW: Final = memoryview
_CALL: Final = Kind.CALL
_VALUE: Final = Kind.VALUE
_LEGACY_WRAPPERS = frozenset(
    {
        "joblib.numpy_pickle_compat.NDArrayWrapper",
        "joblib.numpy_pickle_compat.ZNDArrayWrapper",
        "joblib.numpy_pickle.NDArrayWrapper",
        "joblib.numpy_pickle.ZNDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.ZNDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle_compat.NDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle_compat.ZNDArrayWrapper",
    }
)
_DICT_CAP: Final = 64
_LIST_CAP: Final = 4096
_BINFLOAT: Final = struct.Struct(">d")  # what CPython's _PyFloat_Unpack8 reads
# 8-byte operands (FRAME, BINUNICODE8 & co.), read in place after the bounds check: an
# ``int.from_bytes`` of a slice cost a slice and a method lookup per read. Shorter operands are read
# from the loop's window (``_u32``, ``_i32``).
_U64: Final = struct.Struct("<Q").unpack_from


class _Stop(Exception):
    """Internal: the walk cannot continue."""


class _View:
    """What an observer (the differential oracle in the tests) sees before each opcode.

    ``stack()`` and ``memo()`` expand vocabulary runs; nothing here changes the walk."""

    __slots__ = ("depth", "stack", "marks", "memo", "memo_len", "stopped")

    def __init__(self, depth: int, stack: Any, marks: Any, memo: Any, memo_len: Any) -> None:
        self.depth = depth
        self.stack = stack
        self.marks = marks
        self.memo = memo
        self.memo_len = memo_len
        self.stopped = False


#: ``observer(offset, view)``: called before every opcode the walker executes (a vocabulary run is
#: one step) and once after STOP with ``view.stopped`` set. Tests only; ``None`` costs nothing.
Observer = Callable[[int, _View], None]


def _entry_head() -> bytes:
    """SHORT_BINUNICODE (no 0x94 in the text: counting 0x94 counts entries) then MEMOIZE.

    The regular expressions are the pure-Python path; safeload/_speedups.c, when built, counts
    entries one by one instead and has no need to exclude 0x94.
    """
    lengths = b"|".join(re.escape(bytes([ln])) + (b"[^\\x94]{%d}" % ln) for ln in range(256) if ln != 0x94)
    return b"\\x8c(?:" + lengths + b")\\x94"


_MIN_RUN: Final = 8  # shorter runs go opcode by opcode
_PAD: Final = 8  # placeholders below the stack's floor (see _Walker._loop)
_HEAD: Final = _entry_head()
_CLEAN_INT = b"(?:K[^\\x94]|M[^\\x94]{2}|J[^\\x94]{4})"  # BININT1/2/BININT without a 0x94 byte
_ANY_INT = b"(?:K.|M.{2}|J.{4})"
# Possessive (3.11+): an entry never needs to be given back, so the engine keeps no
# backtracking state per entry (~30% faster on a 500,000-word vocabulary).
_POSSESSIVE = b"+" if sys.version_info >= (3, 11) else b""
# A run of clean entries is counted by its 0x94 bytes (one MEMOIZE each). ``tail`` takes one
# more entry whose integer may contain 0x94 (values such as 148 or 0x94xx): it ends the run
# instead of breaking it, and is counted on its own.
_RUN = re.compile(b"(?:" + _HEAD + _CLEAN_INT + b"){%d,}" % _MIN_RUN + _POSSESSIVE
                  + b"(?P<tail>" + _HEAD + _ANY_INT + b")?", re.DOTALL)
# Where such integers come in a row (0x9400..0x94ff), a run of any entries, counted by findall.
_ANY_ENTRY = re.compile(_HEAD + _ANY_INT, re.DOTALL)
_ANY_RUN = re.compile(b"(?:" + _HEAD + _ANY_INT + b"){%d,}" % _MIN_RUN + _POSSESSIVE, re.DOTALL)


def _regex_run(data: Any, i: int, end: int) -> tuple[int, int]:
    """(stop, count) of the run at ``i`` within ``end``, or (i, 0): the pure-Python path."""
    m = _RUN.match(data, i, end)
    if m is not None:
        j = m.end()
        tail = m.start("tail")
        return j, (data[i:j].count(b"\x94") if tail < 0 else data[i:tail].count(b"\x94") + 1)
    m = _ANY_RUN.match(data, i, end)  # integers containing 0x94 in a row (0x9400..0x94ff): count one by one
    if m is not None:
        j = m.end()
        return j, len(_ANY_ENTRY.findall(data, i, j))
    return i, 0


def _compiled_run(data: Any, i: int, end: int) -> tuple[int, int]:
    """The same, by safeload/_speedups.c: any entries (0x94 bytes included), counted one by one,
    stopping before a text the unpickler could not decode (the opcode path then reports it)."""
    j, count = _speedups.count_entries(data, i, end)
    return (j, count) if count >= _MIN_RUN else (i, 0)


#: Chosen once; tests swap it to hold both paths to the same walk.
_match_run = _regex_run if _speedups is None else _compiled_run

_INT_WIDTH: Final = {0x4B: 1, 0x4D: 2, 0x4A: 4}


def _python_put_run(data: Any, i: int, end: int, first: int) -> tuple[int, int]:
    """(stop, count) of the protocol 1-3 run at ``i`` within ``end`` whose k-th PUT writes slot
    ``first + k``, or (i, 0): entries BINUNICODE <text> BINPUT|LONG_BINPUT <index> BININT*."""
    count = 0
    p = i
    end = min(end, len(data))
    while end - p >= 5 and data[p] == 0x58:
        put = p + 5 + int.from_bytes(data[p + 1:p + 5], "little")
        if end - put < 2:
            break
        if data[put] == 0x71:
            after = put + 2
        elif data[put] == 0x72 and end - put >= 5:
            after = put + 5
        else:
            break
        if int.from_bytes(data[put + 1:after], "little") != first + count or after >= end:
            break
        w = _INT_WIDTH.get(data[after], 0)
        if not w or end - (after + 1) < w:
            break
        try:
            str(data[p + 5:put], "utf-8", "surrogatepass")
        except UnicodeDecodeError:
            break  # left to the opcode-by-opcode path, which reports it
        p = after + 1 + w
        count += 1
    return (p, count) if count >= _MIN_RUN else (i, 0)


def _compiled_put_run(data: Any, i: int, end: int, first: int) -> tuple[int, int]:
    """The same, by safeload/_speedups.c."""
    j, count = _speedups.count_put_entries(data, i, end, first)
    return (j, count) if count >= _MIN_RUN else (i, 0)


#: Chosen once, like _match_run.
_match_put_run = _python_put_run if _speedups is None else _compiled_put_run

# A batch of plain values between a MARK and the SETITEMS / APPENDS / ADDITEMS that takes them (a
# wide dict of integers, an object array of Nones, a big set): once the container keeps no more of
# its items, the walker only counts them, in one step (issue 11: 10^7 of them cost seconds opcode by
# opcode). Each opcode below pushes exactly one value; a memo read only where ``memo`` is given (a
# list's items: never hashed) and its slot is filled.
_MIN_VALUES: Final = 16  # shorter batches go opcode by opcode
_VALUE_WIDTH: Final = {0x4E: 0, 0x88: 0, 0x89: 0, 0x4B: 1, 0x4D: 2, 0x4A: 4, 0x47: 8}  # NONE, NEWTRUE/FALSE, BININT*, BINFLOAT
_GET_WIDTH: Final = {0x68: 1, 0x6A: 4}  # BINGET, LONG_BINGET


def _python_values(data: Any, i: int, end: int, memo: dict[int, Any] | None) -> tuple[int, int]:
    """(stop, count) of the plain values at ``i`` within ``end``, or (i, 0): the pure-Python path."""
    end = min(end, len(data))
    p = i
    count = 0
    while p < end:
        op = data[p]
        w = _VALUE_WIDTH.get(op, -1)
        if w < 0 and memo is not None:
            w = _GET_WIDTH.get(op, -1)
            if w > 0 and (end - (p + 1) < w or int.from_bytes(data[p + 1:p + 1 + w], "little") not in memo):
                break
        if w < 0 or end - (p + 1) < w:
            break
        p += 1 + w
        count += 1
    return (p, count) if count >= _MIN_VALUES else (i, 0)


def _compiled_values(data: Any, i: int, end: int, memo: dict[int, Any] | None) -> tuple[int, int]:
    """The same, by safeload/_speedups.c."""
    j, count = _speedups.count_values(data, i, end, memo)
    return (j, count) if count >= _MIN_VALUES else (i, 0)


#: Chosen once, like _match_run.
_match_values = _python_values if _speedups is None else _compiled_values


def _entry(data: Any, p: int, put: bool) -> tuple[int, int, int]:
    """Where the run entry at ``p`` has its text (start, end) and its integer opcode: BINUNICODE
    <len4> <text> BINPUT <1> | LONG_BINPUT <4> with ``put``, else SHORT_BINUNICODE <len1> <text>
    MEMOIZE; then BININT1 / BININT2 / BININT. (The run matchers checked the entry: the Python
    reading of safeload/_speedups.c's next_entry.)"""
    if put:
        end = p + 5 + int.from_bytes(data[p + 1:p + 5], "little")
        return p + 5, end, end + (2 if data[end] == 0x71 else 5)
    end = p + 2 + data[p + 1]
    return p + 2, end, end + 1


def _int_width(op: int) -> int:
    return 1 if op == 0x4B else (2 if op == 0x4D else 4)


def _python_expand(data: Any, run: Run) -> tuple[list[Any], list[str]]:
    """Parse a run entry by entry: its stack values and the strings it memoized."""
    values: list[Any] = []
    strings: list[str] = []
    p = run.start
    while p < run.end:
        start, end, j = _entry(data, p, run.put)
        text = str(data[start:end], "utf-8", "surrogatepass")
        op = data[j]
        w = _int_width(op)
        values.append(text)
        values.append(int.from_bytes(data[j + 1:j + 1 + w], "little", signed=(op == 0x4A)))
        strings.append(text)
        p = j + 1 + w
    return values, strings


def _compiled_expand(data: Any, run: Run) -> tuple[list[Any], list[str]]:
    """The same, by safeload/_speedups.c (20x faster: 200,000 runs read back in reverse, the
    resource case of issue 11, spent most of their walk here)."""
    return _speedups.expand_run(data, run.start, run.end, run.put)


#: Chosen once, like _match_run; tests/test_speedups.py holds the two to the same result.
_expand = _python_expand if _speedups is None or not hasattr(_speedups, "expand_run") else _compiled_expand


def _python_offsets(data: Any, run: Run, stride: int) -> list[int]:
    """The offsets of entries 0, stride, 2*stride... of ``run``."""
    out: list[int] = []
    p = run.start
    k = 0
    while p < run.end:
        if k % stride == 0:
            out.append(p)
        p = _next_entry(data, p, run.put)
        k += 1
    return out


def _python_text(data: Any, at: int, run: Run, skip: int) -> str:
    """The text of the entry ``skip`` entries after the one at ``at`` in ``run``."""
    for _ in range(skip):
        at = _next_entry(data, at, run.put)
    start, end, _j = _entry(data, at, run.put)
    return str(data[start:end], "utf-8", "surrogatepass")


def _next_entry(data: Any, p: int, put: bool) -> int:
    j = _entry(data, p, put)[2]
    return j + 1 + _int_width(data[j])


#: Entries between two offsets of a run's index (Run.index): a memo read into a run decodes one
#: entry after stepping over fewer than this many, and a run of n entries keeps n / _STRIDE offsets.
_STRIDE: Final = 32


def _compiled_offsets(data: Any, run: Run, stride: int) -> list[int]:
    """The same, by safeload/_speedups.c."""
    return _speedups.run_offsets(data, run.start, run.end, run.put, stride)


def _compiled_text(data: Any, at: int, run: Run, skip: int) -> str:
    """The same, by safeload/_speedups.c."""
    return _speedups.run_text(data, at, run.end, run.put, skip)


#: Chosen once, like _match_run.
_offsets = _python_offsets if _speedups is None or not hasattr(_speedups, "run_offsets") else _compiled_offsets
_text = _python_text if _speedups is None or not hasattr(_speedups, "run_text") else _compiled_text


def _run_text(data: Any, run: Run, k: int) -> str:
    """What a memo read of the run's k-th slot gives, without materialising the run: its texts
    stay in the file until an opcode writes into its slots (issue 11: 200,000 runs read back in
    reverse, 13 MB, held 1.6 M strings in the walker's memo, 314 MiB, where reading it takes 12)."""
    if run.count <= _STRIDE:
        return _text(data, run.start, run, k)
    index = run.index
    if index is None:
        index = run.index = _offsets(data, run, _STRIDE)
    return _text(data, index[k // _STRIDE], run, k % _STRIDE)


#: A memo of more entries than this (and the whole file in) is pruned to the slots a GET could read.
#: Real models stay below it (a 1,000-tree forest memoizes ~24,000 objects); tests set it to 0.
_PRUNE_AT = 100_000
#: Above this many candidate slots, or 0x67 bytes to parse as text GETs (one Python step each; a
#: protocol 0 file, or a lot of text), the memo is kept whole: no saving.
_MAX_READ_CANDIDATES = 1 << 16
_MAX_TEXT_GETS = 50_000
#: Slots below this are never pruned, so that BINGET (one operand byte, slots 0-255) need not be
#: looked for; tests set it to 0 to prune those too.
_ALWAYS_KEPT = 256
#: What ``memo_view`` (the tests' oracle) shows for an occupied slot that was not kept.
UNREAD: Any = type("Unread", (), {})()


def _memo_reads(data: Any, n: int, floor: int = 0) -> set[int] | None:
    """Every memo index from ``floor`` up that a GET in ``data[:n]`` could read: the byte after every
    0x68 (BINGET), the four after every 0x6A (LONG_BINGET), the text after every 0x67 (GET) parsed as
    the walker parses it (a few indexes below ``floor`` may be returned too). A superset of the reads
    of every stream in the file (nested joblib pickles too), since every real GET is such a byte,
    wherever the opcodes start; None if there are too many candidates. The walker keeps slots 0-255
    (``floor`` 256), so BINGETs are not looked for: finding the byte after every 0x68 was most of
    this search's cost (5 million of them in a file of 10**6 small objects)."""
    import numpy as np

    a = np.frombuffer(data, dtype=np.uint8, count=n)
    out: set[int] = set()
    texts: list[int] = []
    step = 1 << 22  # bounded temporaries: a file of 0x6A bytes costs 8 index bytes per byte of a chunk
    for lo in range(0, n, step):
        hi = min(n, lo + step + 4)  # (an operand may run past the chunk)
        chunk = a[lo:hi]
        ops = chunk[:min(step, n - lo)]  # the bytes an opcode may start at in this chunk
        if floor < 256:
            at = np.flatnonzero(ops == 0x68)
            at = at[at + 1 < len(chunk)]
            out.update(np.flatnonzero(np.bincount(chunk[at + 1], minlength=256)).tolist())
        at = np.flatnonzero(ops == 0x6A)
        at = at[at + 4 < len(chunk)]
        idx = np.unique(chunk[at + 1].astype(np.int64) | chunk[at + 2].astype(np.int64) << 8
                        | chunk[at + 3].astype(np.int64) << 16 | chunk[at + 4].astype(np.int64) << 24)
        more = np.flatnonzero(ops == 0x67)
        if len(out) + len(idx) > _MAX_READ_CANDIDATES or len(texts) + len(more) > _MAX_TEXT_GETS:
            return None  # (before the candidates become Python ints: the set stays small)
        out.update(idx.tolist())
        texts.extend((lo + more).tolist())
    out.update(_text_reads(data, n, texts))
    return out


def _text_reads(data: Any, n: int, texts: list[int]) -> set[int]:
    """The indexes the GET texts after the 0x67 bytes at ``texts`` (ascending) parse to.

    A text runs to its newline, cut at a NUL (``_textops._cstr``), and one that reaches the next
    0x67 holds a ``g``, never part of a number: so each text is looked for only up to the next
    candidate, and the search and the copies read each byte of the file at most three times.
    (Searching each text to its newline read and copied the rest of the file once per candidate:
    500 0x67 bytes before a 1 MB blob took 20 s, and the cost grows with both, for a file that plain
    pickle loads in milliseconds.)"""
    out: set[int] = set()
    last_newline = data.rfind(b"\n", 0, n)
    for k, p in enumerate(texts):
        if p >= last_newline:
            break  # no newline ends this text (nor any later one): the GET is truncated
        q = texts[k + 1] if k + 1 < len(texts) else n
        end = data.find(b"\n", p + 1, q)
        nul = data.find(b"\0", p + 1, q if end < 0 else end)
        if nul >= 0:
            end = nul  # the C parser stops at the NUL (kept: ``_cstr`` cuts there); a newline follows
        if end < 0:
            continue  # the text reaches the next 0x67
        try:
            out.add(parse_get(bytes(data[p + 1:end + (nul >= 0)])))
        except (ValueError, OverflowError):
            continue
    return out


def _entry_follows(data: bytes, p: int, put: int, width: int, end: int) -> bool:
    """Is the text that ends at ``p`` followed by its memo opcode (``put``, whose operand is ``width``
    bytes; LONG_BINPUT after BINPUT's 0x71 takes 4) and a BININT*? Necessary for the first entry of a
    run, so a False spares the matcher's call; both run matchers check the whole entry again."""
    if p >= end:
        return False
    op = data[p]
    if op == 0x72 and put == 0x71:
        width = 4
    elif op != put:
        return False
    p += 1 + width
    return p < end and (data[p] == 0x4B or data[p] == 0x4D or data[p] == 0x4A)


def _u32(b: bytes, k: int) -> int:
    """The little-endian unsigned 32-bit operand at ``b[k:k + 4]`` (native reads, no struct call)."""
    return b[k] | b[k + 1] << 8 | b[k + 2] << 16 | b[k + 3] << 24


def _i32(b: bytes, k: int) -> int:
    """The little-endian signed 32-bit operand at ``b[k:k + 4]``, as BININT and LONG4 read it."""
    v = _u32(b, k)
    return v - (1 << 32) if v >= 1 << 31 else v


_ABSENT: Final = object()
#: Compiled by mypyc (then native arithmetic beats a struct call; as plain Python it does not).
_NATIVE: Final = not __file__.endswith(".py")
#: 2**(e - 1075) for every biased exponent e of a double (e = 0, a subnormal, scales as e = 1 does).
_SCALE: Final = [math.ldexp(1.0, max(e, 1) - 1075) for e in range(2047)]


def _f64(b: bytes, k: i64) -> float:
    """The big-endian IEEE 754 double at ``b[k:k + 8]`` (BINFLOAT), as CPython's _PyFloat_Unpack8
    reads it, computed natively: a struct call was ~660 instructions per float, compiled. The
    significand (< 2**53) times a power of two is exact for every finite value; infinities and
    NaNs (whose payload this would not keep) go through struct (tests/test_speedups.py)."""
    # (i64: compiled, native arithmetic instead of tagged ints; every value here is < 2**53)
    hi = i64(b[k]) << 24 | i64(b[k + 1]) << 16 | i64(b[k + 2]) << 8 | i64(b[k + 3])
    lo = i64(b[k + 4]) << 24 | i64(b[k + 5]) << 16 | i64(b[k + 6]) << 8 | i64(b[k + 7])
    e = (hi >> 20) & 0x7FF
    if e == 0x7FF:
        return float(_BINFLOAT.unpack_from(b, k)[0])
    m = (hi & 0xFFFFF) << 32 | lo
    if e:
        m |= 1 << 52
    x = float(m) * _SCALE[e]
    return -x if hi >> 31 else x


def _spent(rule: str, severity: str, offset: int, message: str) -> _Stop:
    """What a finished walk's closures hold instead of the walker's bound ``fatal`` (they are never
    called again: holding the walker would keep it, and its trace, in their reference cycle)."""
    return _Stop()


def _c(data: Any, i: int) -> str:
    return f"{data[i]:#04x}"


_DEFAULT_DECODING = Decoding()


class _Walker:
    def __init__(self, data: Buffer, start: int, policy: Policy, joblib: bool, depth: int,
                 filling: Filling | None = None, observer: Observer | None = None,
                 decoding: Decoding = _DEFAULT_DECODING) -> None:
        self.observer = observer
        self.decoding = decoding
        self.data = data
        self.n = len(data)
        self.filling = filling  # data still arriving: wait before touching bytes past filling.avail
        self.policy = policy
        self.lookup: dict[str, Entry] = policy.lookup
        self.limits: Limits = policy.limits
        self.joblib = joblib
        self.depth = depth
        self.trace = Trace(start=start, decoding=decoding)
        #: A PyTorch checkpoint's pickle (``_torch``): BINPERSID names a storage instead of being refused.
        self.storage_ids = False
        self.checks = StaticChecks(policy, data, filling, self.trace.issues)
        self.seen: dict[tuple[str, str], str] = {}
        self.nested_count = 0
        # Lists: their items are charged as if hashed into one dict (see list_items). A batch of
        # memo reads into a list is counted without looking at what it reads, so it may read any slot
        # only while the memo holds nothing that could share a hash (``keyed_memo``; after that, one
        # slot that holds no such value: ``one_slot``): no big int, float,
        # frozenset, value-hashed object or tuple (any tuple: 2-tuples of ints below 2**61 that
        # share one hash are found by solving CPython's tuple hash for the second item).
        self.keyed_memo = False

    # -- reporting -------------------------------------------------------------
    def issue(self, rule: str, severity: str, offset: int, message: str, names: tuple[str, ...] = ()) -> None:
        self.trace.issues.append(Issue(rule, severity, offset, message, names))

    def fatal(self, rule: str, severity: str, offset: int, message: str) -> _Stop:
        self.issue(rule, severity, offset, message)
        return _Stop()

    # -- globals ---------------------------------------------------------------
    def resolve(self, raw_module: str, raw_name: str, offset: int, opcode: str, proto: int) -> G:
        module, name = raw_module, raw_name
        if proto < 3 and self.decoding.fix_imports:
            pair = _compat_pickle.NAME_MAPPING.get((module, name))
            if pair is not None:
                module, name = pair
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        previous = self.seen.setdefault((raw_module, raw_name), full)
        if previous != full:
            self.issue("ambiguous-name", UNSAFE, offset,
                       f"{raw_module}.{raw_name} resolves to both {previous} and {full}", (full,))
        entry = self.lookup.get(full)
        kind = entry.kind if entry is not None else None
        allowed = kind is not None
        self.trace.globals.append(GlobalRef(full, module, name, raw_module, raw_name, offset, opcode, allowed))
        if not allowed:
            if full in _LEGACY_WRAPPERS:
                self.issue("joblib-legacy", UNSAFE, offset,
                           f"legacy joblib array wrapper {full}: joblib would open a side file "
                           "named by the pickle with allow_pickle=True; re-save the model with a current joblib", (full,))
            else:
                self.issue("disallowed-global", UNSAFE, offset, f"global {full} is not in the allowlist", (full,))
        g = G(full, kind, offset)
        self.trace.nodes.append(g)
        return g

    # -- the walk ----------------------------------------------------------------
    def run(self, pos: int) -> Trace:
        try:
            self._run(pos)
        except _Stop:
            pass
        except (IndexError, ValueError, TypeError, KeyError, UnicodeDecodeError, OverflowError, MemoryError,
                RecursionError, struct.error) as exc:
            self.issue("malformed", MALFORMED, pos, f"cannot parse pickle stream: {type(exc).__name__}: {exc}")
        self.checks.finish()
        return self.trace

    def _run(self, start: int) -> None:  # noqa: C901 - one dispatch loop, on purpose
        try:
            self._loop(start)
        except IndexError:
            raise self.fatal("truncated", MALFORMED, start,
                             "pickle data was truncated or the stack underflowed") from None

    def _loop(self, start: int) -> None:  # noqa: C901
        data = self.data
        n = self.n
        limits = self.limits
        max_stack = limits.max_stack_depth + _PAD
        max_marks = limits.max_mark_depth + _PAD
        max_ops = limits.max_opcodes
        # The stack starts with _PAD placeholders below its floor: a list reallocates on every pop that
        # leaves it under half its allocation, which a stack of 0-3 items does at each push/pop pair
        # (a third of the walk of a stream of NONE/POP pairs). Nothing reads below ``fence``.
        stack: list[Any] = [None] * _PAD
        # Positions in ``stack`` of MARKs, as CPython keeps them (not on the stack), above _PAD entries
        # that hold the floor (a list of 0-1 items reallocated at each MARK/POP_MARK pair, as the stack did).
        marks: list[int] = [_PAD] * _PAD
        fence = _PAD
        # The memo, modelled on CPython's C unpickler: ``mlen`` is its ``memo_len`` (the number of
        # occupied slots; MEMOIZE writes at that index). ``memo`` holds materialised slots; ``lazy``
        # holds vocabulary runs taken in one step, each occupying ``run.count`` slots from ``first``.
        # While ``use_runs`` is on, no PUT has happened, so the slots are exactly [0, mlen): MEMOIZE
        # adds one, a run adds ``count``, a read changes nothing. From the first PUT on, ``mlen`` is
        # recomputed as ``len(memo)`` plus ``lazy_total``, the slots of the lazy runs (a PUT above
        # memo_len leaves a hole, and MEMOIZE into an occupied slot does not count). A PUT run
        # (protocols 1-3) is taken only at ``hi``, one past the highest slot ever written, so its
        # slots are free. ``memo`` never holds a key inside a lazy run: a PUT or a MEMOIZE that lands
        # in one first moves the run into ``memo`` (settle); a read decodes the one entry it reads.
        memo: dict[int, Any] = {}
        # first memo index -> run. Runs are taken at ``mlen`` (MEMOIZE) or ``hi`` (PUT), so firsts
        # only grow and runs never overlap: ``starts`` lists them in order (a settled run's first
        # stays, harmlessly) and a slot's run is found by bisection. (A linear search here made
        # 60,000 runs read back in reverse cost 30 s on a 3.9 MB file.)
        lazy: dict[int, Run] = {}
        starts: list[int] = []
        mlen = 0
        lazy_total = 0  # slots held by lazy runs (kept up to date only once ``use_runs`` is off)
        # Slots no GET in the file can read (``_memo_reads``) are not kept: a model of 10**6 small
        # objects memoizes each, reads back almost none, and kept them all to the end of the walk
        # (issue 11: scan held 574 MiB for a 36 MB file). Decided once the memo passes ``prune_at``
        # entries (the whole file read by then); only while no PUT has come (slots are dense). ``skipped``
        # counts the occupied slots not kept, all below ``base`` (``mlen`` at the first PUT).
        reads: set[int] | None = None
        prune_at = _PRUNE_AT
        kept = _ALWAYS_KEPT  # slots 0..kept-1 are never pruned
        skipped = 0
        base = 0
        hi = 0  # after the first PUT: one past the highest memo slot written
        match_put_run = _match_put_run
        match_values = _match_values
        max_memo = limits.max_memo_entries
        use_runs = True
        match_run = _match_run
        proto = 0
        big = n + 1
        fend = big  # end of the current frame; ``big`` when outside a frame
        ops = 0
        i = start
        trace = self.trace
        fatal = self.fatal
        decoding = self.decoding
        # Bytes [0, avail) are in. The loop refills when i reaches ``soft``, so every opcode whose
        # arguments fit in _MARGIN reads filled bytes; longer reads go through need()/line().
        filling = self.filling
        avail = n if filling is None else filling.wait(start + _AHEAD)
        fill_soft = n + 1 if avail >= n else avail - _MARGIN
        # With an observer (tests: the differential oracle), the loop top runs before every opcode.
        observer = self.observer
        soft = -1 if observer is not None else fill_soft

        def more(e: int) -> None:
            nonlocal avail, soft, fill_soft
            assert filling is not None
            avail = filling.wait(e)
            fill_soft = n + 1 if avail >= n else avail - _MARGIN
            soft = -1 if observer is not None else fill_soft

        def fix_top(k: int = 1) -> None:
            """Make the top ``k`` places (above the fence) values: a Run among them stands for its
            2*count values, not one item (TUPLE2/3 read two and three; campaign seed 11, case 430845)."""
            for p in range(len(stack) - 1, max(fence, len(stack) - k) - 1, -1):
                if type(stack[p]) is Run:
                    stack[p:p + 1] = _expand(data, stack[p])[0]
                    return  # at least 16 values now fill every one of the top k places (k <= 3)

        def plain(items: list[Any]) -> list[Any]:
            if not any(type(x) is Run for x in items):
                return items
            out: list[Any] = []
            for x in items:
                out.extend(_expand(data, x)[0] if type(x) is Run else (x,))
            return out

        def run_at(idx: int) -> int:
            """The first slot of the lazy run holding slot ``idx``, or -1."""
            k = bisect_right(starts, idx) - 1
            if k >= 0:
                first = starts[k]
                run = lazy.get(first)
                if run is not None and idx < first + run.count:
                    return first
            return -1

        def settle(idx: int) -> None:
            """After the first PUT: move the lazy run holding slot ``idx`` (if any) into ``memo``."""
            nonlocal lazy_total
            first = run_at(idx)
            if first >= 0:
                run = lazy.pop(first)
                for n, text in enumerate(_expand(data, run)[1]):
                    memo[first + n] = text
                lazy_total -= run.count  # ORACLE-MUTATION-POINT-PUT (memo_len is unchanged)

        def memo_get(i: int, idx: int) -> Any:
            try:
                return memo[idx]
            except KeyError:
                pass
            first = run_at(idx)
            if first >= 0:
                # The run's slots were counted in ``mlen`` when it was taken; a read only looks
                # into one of them, and the run stays lazy. (Round 1 counted them again here:
                # every later MEMOIZE landed elsewhere than in CPython; tests/test_walker_oracle.py
                # re-introduces that. Session 24 stopped materialising the run into ``memo``.)
                return _run_text(data, lazy[first], idx - first)  # ORACLE-MUTATION-POINT-READ
            raise fatal("memo", MALFORMED, i, f"memo value not found at index {idx}")

        def flush_lazy() -> None:
            """The first PUT: memo indices must be exact from here on, so ``mlen`` is recomputed from
            ``memo`` and ``lazy_total``; the MEMOIZE runs stay lazy, counted there (slots are dense
            so far, so ``hi`` is ``mlen``)."""
            nonlocal use_runs, hi, lazy_total, base
            lazy_total = sum(run.count for run in lazy.values())  # ORACLE-MUTATION-POINT-FLUSH
            use_runs = False
            hi = base = mlen

        def prune() -> None:
            """The memo is large: keep only the slots a GET in the file could read. The candidates need
            the whole file, so the rest of the read is waited for here (a walker that had run ahead of
            the reader once kept all 10**6 objects of a 36 MB file, 598 MiB, until the read ended)."""
            nonlocal reads, prune_at, skipped
            if avail < n:
                more(n)
            reads = _memo_reads(data, n, kept)
            if reads is None:  # too many candidates to be worth it: keep everything, never ask again
                prune_at = big
                return
            for k in [k for k in memo if k >= kept and k not in reads]:
                del memo[k]
                skipped += 1  # ORACLE-MUTATION-POINT-PRUNE

        def fill_skipped(idx: int) -> None:
            """A write into a slot that was not kept (occupied, below ``base``) makes it kept again."""
            nonlocal skipped
            if skipped and idx < base and idx not in memo:
                skipped -= 1  # ORACLE-MUTATION-POINT-FILL

        def memo_view() -> dict[int, Any]:
            out = dict(memo)
            for first, run in lazy.items():
                for k, text in enumerate(_expand(data, run)[1]):
                    out.setdefault(first + k, text)
            if skipped:  # occupied, not kept: the oracle checks the slot exists, not its value
                for k in range(mlen if use_runs else base):
                    out.setdefault(k, UNREAD)
            return out

        def marks_view() -> list[int]:
            # ``marks`` are positions in ``stack``, where a Run is one item; CPython's count its values
            return [m - _PAD + sum(2 * x.count - 1 for x in stack[_PAD:m] if type(x) is Run) for m in marks[_PAD:]]

        view = _View(self.depth, lambda: plain(stack[_PAD:]), marks_view, memo_view, lambda: mlen)

        def pop(i: int) -> Any:
            if len(stack) <= fence:
                raise fatal("stack-underflow", MALFORMED, i, "stack underflow")
            top = stack.pop()
            if type(top) is Run:  # expand it (its last value is the top) and pop that
                stack.extend(_expand(data, top)[0])
                top = stack.pop()
            return top

        def pop_mark(i: int) -> list[Any]:
            nonlocal fence
            if len(marks) <= _PAD:
                raise fatal("no-mark", MALFORMED, i, "could not find MARK")
            k = marks.pop()
            fence = marks[-1]
            items = stack[k:]
            del stack[k:]
            return items

        def line_end(s: int) -> int:
            e = data.find(b"\n", s, avail)
            while e < 0 and avail < n:
                searched = avail
                more(avail + _AHEAD)
                e = data.find(b"\n", searched, avail)
            if e < 0:
                raise fatal("truncated", MALFORMED, s, "pickle data was truncated (unterminated line)")
            return e

        def line(s: int) -> tuple[bytes, int]:
            e = line_end(s)
            return bytes(_MEMORYVIEW(data)[s:e]), e + 1  # one copy, whatever ``data`` is

        def c_text(s: int, e: int, op: int) -> bytes:
            """The C string a numeric text opcode parses, copied once: its line up to the first NUL
            (LONG: a trailing 'L' is one). A line may be as long as the file: scan's memory is held
            to twice the file's, and a copy cut later was a third (LONG of 10**8 digits: 293 MiB)."""
            end = e - 1 if op == 0x4C and e > s and data[e - 1] == 0x4C else e
            nul = data.find(b"\0", s, end)
            return bytes(_MEMORYVIEW(data)[s:nul if nul >= 0 else end])

        def need(i: int, e: int) -> None:
            if e > avail:
                if e > n:
                    raise fatal("truncated", MALFORMED, i, "pickle data was truncated")
                more(e)

        # The opcodes' own bytes are read from ``win``, a ``bytes`` copy of [wbase, wbase + _WINDOW):
        # compiled, ``win[k]`` is a native read, where ``data[i]`` on a bytearray or an mmap was a
        # boxed index, a generic subscript and an unboxed result (~30% of the walk of many small
        # objects). Invariant: while ``i < wsoft``, [i, i + _MARGIN) is in the window (or the window
        # reaches the end of the data), so every read of an opcode and its short operands (at most
        # 263 bytes past ``i``) finds its byte there; longer reads use ``data``.
        try:
            win = b""
            wbase = 0
            wsoft = -1
            while True:
                if i >= soft or i >= wsoft:
                    if i >= soft:
                        if observer is not None:
                            observer(i, view)
                        if i >= fill_soft:
                            more(i + _AHEAD)
                    if i >= wsoft:
                        wend = avail if avail < i + _WINDOW else i + _WINDOW
                        win = bytes(_MEMORYVIEW(data)[i:wend])
                        wbase = i
                        wsoft = wend - _MARGIN if wend < n else big
                op = win[i - wbase]
                ops += 1
                # ---- hot data opcodes first: a push, a bounds check, nothing else ------------
                if op == 0x8C:  # SHORT_BINUNICODE
                    # a run starts with an entry: <text> MEMOIZE BININT*; most texts (attribute names)
                    # are not one, and two byte reads are cheaper than asking the matcher
                    if use_runs and _entry_follows(win, i + 2 + win[i + 1 - wbase] - wbase, 0x94, 0,
                                                   (fend if fend < avail else avail) - wbase):
                        j, count = match_run(data, i, fend if fend < avail else avail)
                        if count:
                            ops += 3 * count - 1  # the real opcode count, however the run was split
                            run = Run(i, j, count)
                            lazy[mlen] = run
                            starts.append(mlen)
                            mlen += count
                            stack.append(run)
                            i = j
                            continue
                    j = i + 2 + win[i + 1 - wbase]
                    if j > fend:
                        fend = self.frame_units(i, fend, (1, 1), big)
                    if j > n:
                        raise fatal("truncated", MALFORMED, i, "pickle data was truncated")
                    stack.append(str(win[i + 2 - wbase:j - wbase], "utf-8", "surrogatepass"))
                    i = j
                    continue
                if op == 0x94:  # MEMOIZE
                    if len(stack) <= fence:
                        raise fatal("stack-underflow", MALFORMED, i, "MEMOIZE on an empty stack")
                    if type(stack[-1]) is Run:
                        fix_top()
                    if not self.keyed_memo and type(stack[-1]) is not str and type(stack[-1]) is not Cont:
                        self.note_memo(stack[-1])
                    if use_runs:  # dense: slot mlen was free
                        if reads is None:
                            memo[mlen] = stack[-1]
                            if len(memo) > prune_at:
                                prune()
                        elif mlen < kept or mlen in reads:
                            memo[mlen] = stack[-1]
                        else:
                            skipped += 1  # ORACLE-MUTATION-POINT-SKIP
                        mlen += 1  # ORACLE-MUTATION-POINT (round 1 used len(memo) + the lazy runs' slots)
                    else:  # after a PUT: slot mlen may already be occupied (then memo_len stays)
                        if lazy and mlen < hi:
                            settle(mlen)
                        fill_skipped(mlen)
                        memo[mlen] = stack[-1]
                        if mlen >= hi:
                            hi = mlen + 1
                        mlen = len(memo) + lazy_total + skipped
                    i += 1
                    continue
                if op == 0x4B:  # BININT1
                    j = i + 2
                    if j > fend:
                        fend = self.frame_units(i, fend, (1,), big)
                    stack.append(win[i + 1 - wbase])
                    i = j
                    continue
                if op == 0x4D or op == 0x4A:  # BININT2, BININT
                    j = i + (3 if op == 0x4D else 5)
                    if j > fend:
                        fend = self.frame_units(i, fend, (1,), big)
                    if j > avail:  # (inline test: need() is a closure call)
                        need(i, j)
                    k = i + 1 - wbase
                    stack.append(win[k] | win[k + 1] << 8 if op == 0x4D else _i32(win, k))
                    i = j
                    continue
                if op == 0x68 or op == 0x6A:  # BINGET, LONG_BINGET
                    j = i + (2 if op == 0x68 else 5)
                    if j > fend:
                        fend = self.frame_units(i, fend, (1,), big)
                    if j > avail:
                        need(i, j)
                    idx = win[i + 1 - wbase] if op == 0x68 else _u32(win, i + 1 - wbase)
                    v = memo.get(idx, _ABSENT)  # (one lookup; a memoized value may be None)
                    stack.append(v if v is not _ABSENT else memo_get(i, idx))
                    i = j
                    continue
                if op == 0x28:  # MARK
                    if len(marks) >= max_marks:
                        raise fatal("limit-marks", LIMIT, i, f"more than {max_marks - _PAD} nested MARKs")
                    if len(stack) > fence:
                        # a batch of plain values for a container that keeps no more items: count it
                        target = stack[-1]
                        if type(target) is Obj or (type(target) is Cont and (target.kind != "dict" or len(
                                target.flat) >= 2 * _DICT_CAP)):  # (a dict keeps its first pairs: no batch)
                            e = fend if fend < avail else avail
                            j, count = match_values(data, i + 1, e, None if type(target) is not Cont
                                                    or target.kind != "list" else memo if not self.keyed_memo
                                                    else self.one_slot(data, i + 1, e, memo))
                            if count and j < e and len(stack) + count <= max_stack \
                                    and self.take_values(target, data[j], count):
                                ops += count + 1  # the values and the opcode that took them
                                if ops > max_ops:
                                    raise fatal("limit-opcodes", LIMIT, i, f"more than {max_ops} opcodes")
                                i = j + 1  # ORACLE-MUTATION-POINT-VALUES (past the opcode that took them)
                                continue
                    fence = len(stack)
                    marks.append(fence)
                    i += 1
                    continue
                if op == 0x75 or op == 0x65:  # SETITEMS, APPENDS
                    # (pop_mark(i) and fix_top() inlined on their common paths: a closure call is a
                    # Python-level vectorcall, even compiled)
                    if len(marks) > _PAD:
                        k = marks.pop()
                        fence = marks[-1]
                        items = stack[k:]
                        del stack[k:]
                    else:
                        items = pop_mark(i)  # (raises)
                    if op == 0x75 and _values(items) % 2:
                        raise fatal("odd-setitems", MALFORMED, i, "odd number of items for SETITEMS")
                    if len(stack) > fence and type(stack[-1]) is Run:
                        fix_top()
                    if op == 0x75:
                        self.setitems(i, stack, fence, items)
                    else:
                        self.appends(i, stack, fence, _values(items), items)
                    i += 1
                    continue
                if ops > max_ops:
                    raise fatal("limit-opcodes", LIMIT, i, f"more than {max_ops} opcodes")
                if op == 0x71 or op == 0x72:  # BINPUT, LONG_BINPUT
                    j = i + (2 if op == 0x71 else 5)
                    if j > fend:
                        fend = self.frame_units(i, fend, (1,), big)
                    if j > avail:
                        need(i, j)
                    idx = win[i + 1 - wbase] if op == 0x71 else _u32(win, i + 1 - wbase)
                    if use_runs:
                        flush_lazy()  # (the runs stay lazy: a PUT into one settles it, next)
                    if lazy and idx < hi:
                        settle(idx)
                    fill_skipped(idx)
                    fix_top()
                    self.put(i, idx, ops, stack, fence, memo)
                    mlen = len(memo) + lazy_total + skipped
                    if idx >= hi:
                        hi = idx + 1
                    i = j
                elif op == 0x95:  # FRAME
                    j = i + 9
                    if j > avail:
                        need(i, j)
                    if fend != big and i < fend:
                        raise fatal("frame-overlap", UNSAFE, i, "FRAME begins before the end of the current frame")
                    flen = _U64(data, i + 1)[0]
                    if j + flen > n:
                        raise fatal("frame-truncated", MALFORMED, i, f"FRAME claims {flen} bytes but only {n - j} remain")
                    fend = j + flen if flen else big
                    i = j
                elif op == 0x7D or op == 0x5D or op == 0x8F:  # EMPTY_DICT, EMPTY_LIST, EMPTY_SET
                    stack.append(Cont("dict" if op == 0x7D else ("list" if op == 0x5D else "set"), i))
                    i += 1
                elif op == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                    i += 1
                elif op == 0x85 or op == 0x86 or op == 0x87:  # TUPLE1/2/3
                    k = op - 0x84
                    fix_top(k)
                    if len(stack) - k < fence:
                        raise fatal("stack-underflow", MALFORMED, i, "stack underflow in TUPLEn")
                    t = tuple(stack[-k:])
                    del stack[-k:]
                    self.nested(i, t)
                    stack.append(t)
                    i += 1
                elif op == 0x74:  # TUPLE
                    t = tuple(plain(pop_mark(i)))
                    if self.nested(i, t) and len(t) > _TUPLE_CHARGED:
                        self.list_items(i, None, t)
                    stack.append(t)
                    i += 1
                elif op == 0x4E:  # NONE
                    stack.append(None)
                    i += 1
                elif op == 0x88 or op == 0x89:  # NEWTRUE, NEWFALSE
                    stack.append(op == 0x88)
                    i += 1
                elif op == 0x58 or op == 0x42 or op == 0x54 or op == 0x8D or op == 0x8E or op == 0x96:
                    # BINUNICODE, BINBYTES, BINSTRING (4-byte length), BINUNICODE8, BINBYTES8, BYTEARRAY8
                    w = 4 if op in (0x58, 0x42, 0x54) else 8
                    if i + 1 + w > avail:
                        need(i, i + 1 + w)
                    ln = (_i32(win, i + 1 - wbase) if op == 0x54 else _u32(win, i + 1 - wbase)) if w == 4 \
                        else _U64(data, i + 1)[0]
                    if op == 0x58 and not use_runs and hi <= ops and ln < _SHORT_TEXT and _entry_follows(
                            win, i + 5 + ln - wbase, 0x71, 2, (fend if fend < avail else avail) - wbase):
                        # a protocol 1-3 vocabulary run: its PUTs write slots hi, hi + 1, ... (all free)
                        j, count = match_put_run(data, i, fend if fend < avail else avail, hi)
                        if count and hi + count <= max_memo:
                            ops += 3 * count - 1
                            run = Run(i, j, count, True)
                            lazy[hi] = run
                            starts.append(hi)
                            lazy_total += count
                            hi += count
                            mlen += count
                            stack.append(run)
                            i = j
                            continue
                    if ln < 0:
                        raise fatal("negative-length", MALFORMED, i, "negative byte count")
                    j = i + 1 + w + ln
                    if j > fend:
                        fend = self.frame_units(i, fend, (1, w), big)
                    if j > avail:
                        need(i, j)
                    if op == 0x58 or op == 0x8D:  # (decoded from a view: no copy of a long text first)
                        stack.append(str(_MEMORYVIEW(data)[i + 1 + w:j], "utf-8", "surrogatepass"))
                    elif op == 0x54:
                        stack.append(decoding.string(_MEMORYVIEW(data)[i + 1 + w:j]))
                    else:  # bytes and in-band buffers: a zero-copy view, never a copy of big payloads
                        stack.append(_MEMORYVIEW(data)[i + 1 + w:j])
                    i = j
                elif op == 0x43 or op == 0x55:  # SHORT_BINBYTES, SHORT_BINSTRING
                    if i + 2 > avail:
                        need(i, i + 2)
                    j = i + 2 + win[i + 1 - wbase]
                    if j > fend:
                        fend = self.frame_units(i, fend, (1, 1), big)
                    if j > avail:
                        need(i, j)
                    stack.append(_MEMORYVIEW(data)[i + 2:j] if op == 0x43
                                 else decoding.string(_MEMORYVIEW(data)[i + 2:j]))
                    i = j
                elif op == 0x47:  # BINFLOAT
                    j = i + 9
                    if j > fend:
                        fend = self.frame_units(i, fend, (1,), big)
                    if j > avail:
                        need(i, j)
                    stack.append(_f64(win, i + 1 - wbase) if _NATIVE else _BINFLOAT.unpack_from(win, i + 1 - wbase)[0])
                    i = j
                elif op == 0x8A or op == 0x8B:  # LONG1, LONG4
                    w = 1 if op == 0x8A else 4
                    if i + 1 + w > avail:
                        need(i, i + 1 + w)
                    ln = win[i + 1 - wbase] if op == 0x8A else _i32(win, i + 1 - wbase)
                    if ln < 0:
                        raise fatal("negative-length", MALFORMED, i, "LONG pickle has negative byte count")
                    j = i + 1 + w + ln
                    if j > fend:
                        fend = self.frame_units(i, fend, (1, w), big)
                    if j > avail:
                        need(i, j)
                    stack.append(int.from_bytes(data[i + 1 + w:j], "little", signed=True))
                    i = j
                elif op == 0x80:  # PROTO
                    if i + 2 > avail:
                        need(i, i + 2)
                    proto = win[i + 1 - wbase]
                    if proto > 5:
                        raise fatal("protocol", MALFORMED, i, f"unsupported pickle protocol: {proto}")
                    trace.protocol = max(trace.protocol, proto)
                    i += 2
                elif op == 0x93:  # STACK_GLOBAL
                    name = pop(i)
                    module = pop(i)
                    if type(name) is not str or type(module) is not str:
                        self.issue("unresolved-global", UNSAFE, i,
                                   "STACK_GLOBAL operands are not plain strings; the name cannot be judged statically")
                        raise _Stop()
                    stack.append(self.resolve(module, name, i, "STACK_GLOBAL", proto))
                    i += 1
                elif op == 0x63 or op == 0x69:  # GLOBAL, INST
                    mod_b, j = line(i + 1)
                    name_b, j = line(j)
                    if j > fend:
                        fend = self.frame_units(i, fend, (1, len(mod_b) + 1), big)
                    if not mod_b or not name_b:
                        raise fatal("truncated", MALFORMED, i, "pickle data was truncated (empty GLOBAL line)")
                    g = self.resolve(mod_b.decode("utf-8"), name_b.decode("utf-8"), i,
                                     "GLOBAL" if op == 0x63 else "INST", proto)
                    if op == 0x63:
                        stack.append(g)
                    else:
                        stack.append(self.instantiate(i, g, plain(pop_mark(i))))
                    i = j
                elif op == 0x52:  # REDUCE
                    args = pop(i)
                    func = pop(i)
                    stack.append(self.call(i, func, args))
                    i += 1
                elif op == 0x81 or op == 0x92:  # NEWOBJ, NEWOBJ_EX
                    kwargs = pop(i) if op == 0x92 else None
                    # (pop(i) inlined where the top is a plain value above the fence, the common case)
                    args = stack.pop() if len(stack) > fence and type(stack[-1]) is not Run else pop(i)
                    cls = stack.pop() if len(stack) > fence and type(stack[-1]) is not Run else pop(i)
                    stack.append(self.new(i, cls, args, kwargs))
                    i += 1
                elif op == 0x6F:  # OBJ
                    items = plain(pop_mark(i))
                    if not items:
                        raise fatal("stack-underflow", MALFORMED, i, "OBJ without a class")
                    stack.append(self.instantiate(i, items[0], items[1:]))
                    i += 1
                elif op == 0x62:  # BUILD
                    state = stack.pop() if len(stack) > fence and type(stack[-1]) is not Run else pop(i)
                    if len(stack) > fence and type(stack[-1]) is Run:
                        fix_top()
                    if len(stack) <= fence:
                        raise fatal("stack-underflow", MALFORMED, i, "BUILD without an object")
                    problem = self.checks.rehash_problem(state)
                    if problem is not None:
                        raise fatal(problem[0], problem[1], i, problem[2])
                    array = self.build(i, stack[-1], state, fend if fend != big else 0)
                    i += 1
                    if array is not None:
                        stack[-1] = array[0]
                        i = array[1]
                elif op == 0x61:  # APPEND
                    self.appends(i, stack, fence, 1, [pop(i)])
                    i += 1
                elif op == 0x73:  # SETITEM
                    value = pop(i)
                    key = pop(i)
                    self.setitems(i, stack, fence, [key, value])
                    i += 1
                elif op == 0x90:  # ADDITEMS
                    items = pop_mark(i)
                    fix_top()
                    if len(stack) > fence:
                        self.hashed(i, items, "a set item", stack[-1])  # (a run is not among ADDITEMS items: its text is a key)
                    self.appends(i, stack, fence, _values(items), None, "ADDITEMS")  # a run is its values
                    i += 1
                elif op == 0x91:  # FROZENSET
                    items = plain(pop_mark(i))
                    fz = Frozen(items)
                    self.hashed(i, items, "a frozenset item", fz)  # (counted against it: rehashed later, it costs again)
                    stack.append(fz)
                    i += 1
                elif op == 0x6C or op == 0x64:  # LIST, DICT
                    items = plain(pop_mark(i))
                    c = Cont("list" if op == 0x6C else "dict", i)
                    if op == 0x64:
                        if len(items) % 2:
                            raise fatal("odd-dict", MALFORMED, i, "odd number of items for DICT")
                        self.hashed(i, items[::2], "a dict key", c)
                        c.flat = items[: 2 * _DICT_CAP]
                    else:
                        self.list_items(i, c, items)
                        c.flat = items[:_LIST_CAP]
                        if len(items) > _LIST_CAP:
                            _overflow(c, items[_LIST_CAP:])
                    c.count = len(items) // 2 if op == 0x64 else len(items)  # a dict counts pairs, as SETITEMS does
                    stack.append(c)
                    i += 1
                elif op == 0x30:  # POP: pops a MARK if one sits on top, as CPython does
                    if len(marks) > _PAD and marks[-1] == len(stack):
                        marks.pop()
                        fence = marks[-1]
                    elif len(stack) > fence and type(stack[-1]) is not Run:
                        stack.pop()  # (the common case without a closure call)
                    else:
                        pop(i)
                    i += 1
                elif op == 0x31:  # POP_MARK (pop_mark inlined: a closure call is a vectorcall, even compiled)
                    if len(marks) > _PAD:
                        k = marks.pop()
                        fence = marks[-1]
                        if len(stack) > k:
                            del stack[k:]
                    else:
                        pop_mark(i)  # (raises)
                    i += 1
                elif op == 0x32:  # DUP
                    if len(stack) > fence and type(stack[-1]) is Run:
                        fix_top()
                    if len(stack) <= fence:
                        raise fatal("stack-underflow", MALFORMED, i, "DUP on an empty stack")
                    stack.append(stack[-1])
                    i += 1
                elif op == 0x2E:  # STOP
                    fix_top()
                    if len(stack) <= fence:
                        raise fatal("stack-underflow", MALFORMED, i, "STOP with an empty stack")
                    trace.end = i + 1
                    trace.opcodes = ops
                    trace.root = stack[-1]
                    if observer is not None:
                        view.stopped = True
                        observer(i + 1, view)
                    return
                elif op in _TEXT_OPS:
                    e = line_end(i + 1)
                    j = e + 1
                    raw = c_text(i + 1, e, op) if op in _C_TEXT_OPS else b""  # (STRING, UNICODE: a view below)
                    if j > fend:
                        fend = self.frame_units(i, fend, (1,), big)
                    if op == 0x70:
                        try:
                            idx = parse_put(raw)
                        except (ValueError, OverflowError):
                            idx = -1  # text_op refuses it, after its own checks
                        if use_runs:  # PUT: memo indices must be exact from here on
                            flush_lazy()
                        if lazy and 0 <= idx < hi:
                            settle(idx)
                        if idx >= 0:
                            fill_skipped(idx)
                        if idx >= hi:
                            hi = idx + 1
                    fix_top()
                    if op == 0x67:  # GET
                        stack.append(memo_get(i, parse_get(raw)))
                        i = j
                        continue
                    self.text_op(i, op, raw if op in _C_TEXT_OPS else _MEMORYVIEW(data)[i + 1:e], e - i - 1,
                                 op == 0x53 and data.find(b"\\", i + 1, e) >= 0, stack, fence, memo, ops)
                    if op == 0x70:
                        mlen = len(memo) + lazy_total + skipped
                    i = j
                elif op in (0x82, 0x83, 0x84):
                    raise fatal("ext", UNSAFE, i, "EXT opcode: resolves a global through the copyreg extension registry")
                elif op == 0x51:
                    if not self.storage_ids:
                        raise fatal("persid", UNSAFE, i, "BINPERSID opcode: persistent ids are not allowed in model files")
                    self.storage_id(i, pop(i))
                    stack.append(Obj(None, origin=i))  # what torch's persistent_load returns: a storage
                    i += 1
                elif op in (0x97, 0x98):
                    raise fatal("out-of-band", UNSAFE, i, "out-of-band buffer opcode (NEXT_BUFFER/READONLY_BUFFER)")
                else:
                    raise fatal("bad-opcode", MALFORMED, i, f"invalid load key {_c(data, i)}")
                if len(stack) > max_stack:
                    raise fatal("limit-stack", LIMIT, i, f"stack deeper than {max_stack - _PAD}")
        finally:
            # The closures above and their shared environment are a reference cycle; what it holds
            # (the file's bytes, the memo and stack, and through the bound ``fatal`` this walker and
            # its trace: every simulated object) would wait for the next collection. Dropped here,
            # they are freed as soon as the caller lets go of the trace.
            data = b""
            memo = {}
            lazy = {}
            stack = []
            marks = []
            starts = []
            reads = None
            filling = None
            observer = None
            fatal = _spent

    # -- helpers for the less frequent opcodes ------------------------------------
    def frame_units(self, i: int, fend: int, widths: tuple[int, ...], big: int) -> int:
        """The op at ``i`` ends past ``fend``: legal if the frame was used up or a read unit starts there.

        Returns the new frame end (``big``: outside any frame)."""
        if fend >= big or i >= fend:
            return big
        b = i
        for w in widths:
            b += w
            if b == fend:
                return big
            if b > fend:
                break
        raise self.fatal("frame-crossing", UNSAFE, i,
                         f"opcode at offset {i} reads past the end of its frame at offset {fend}: "
                         "CPython's unpicklers disagree on what such a stream contains")

    def put(self, i: int, idx: int, ops: int, stack: list[Any], fence: int, memo: dict[int, Any]) -> None:
        if len(stack) <= fence:
            raise self.fatal("stack-underflow", MALFORMED, i, "PUT on empty stack")
        if idx < 0:
            raise self.fatal("memo", MALFORMED, i, "negative PUT argument")
        if idx > ops or idx >= self.limits.max_memo_entries:
            # Not fatal: the walker allocates nothing, so keep going and report every problem.
            self.issue("limit-memo", LIMIT, i,
                             f"memo index {idx} is beyond anything the stream could have stored "
                             "(the C unpickler would allocate a memo table of that size)")
        memo[idx] = stack[-1]
        self.note_memo(stack[-1])

    def text_op(self, i: int, op: int, raw: Any, length: int, escaped: bool, stack: list[Any], fence: int,
                memo: dict[int, Any], ops: int) -> None:
        """``raw``: for INT, LONG, FLOAT and PUT the line's C string, copied (``length``: the whole
        line's); for STRING and UNICODE a view of the line, decoded without a copy of its own
        (STRING's escapes are undone first only when it has a backslash: ``escaped``)."""
        push = stack.append
        if op == 0x49:  # INT
            number, is_bool = parse_int(raw, length)
            if is_bool:  # two statements, not a conditional expression: mypyc would type that as int
                push(number == 1)
            else:
                push(number)
        elif op == 0x4C:  # LONG
            if not length:
                raise ValueError("pickle data was truncated")
            push(long_text(raw))
        elif op == 0x46:  # FLOAT
            push(parse_float(raw))
        elif op == 0x53:  # STRING
            if len(raw) < 2 or raw[0] != raw[-1] or raw[0] not in b"'\"":
                raise self.fatal("bad-string", MALFORMED, i, "the STRING opcode argument must be quoted")
            push(self.decoding.string(codecs.escape_decode(raw[1:-1])[0] if escaped else raw[1:-1]))
        elif op == 0x56:  # UNICODE
            push(str(raw, "raw-unicode-escape"))
        elif op == 0x70:  # PUT
            if len(stack) <= fence:
                raise self.fatal("stack-underflow", MALFORMED, i, "PUT on empty stack")
            self.put(i, parse_put(raw), ops, stack, fence, memo)
        elif op == 0x50:  # PERSID
            raise self.fatal("persid", UNSAFE, i, "PERSID opcode: persistent ids are not allowed in model files")

    def storage_id(self, i: int, pid: Any) -> None:
        """A checkpoint's BINPERSID (``storage_ids``): torch's weights-only unpickler accepts only a
        tuple whose first item is "storage" (its ``persistent_load`` ASCII-decodes bytes first)."""
        if not (type(pid) is tuple and pid and (pid[0] == "storage" if type(pid[0]) is str
                                               else type(pid[0]) is bytes and pid[0] == b"storage")):
            self.issue("persid", UNSAFE, i, "persistent id that is not a ('storage', ...) record: "
                       "torch.load(weights_only=True) refuses it")

    def setitems(self, i: int, stack: list[Any], fence: int, items: list[Any]) -> None:
        if len(stack) <= fence:
            raise self.fatal("stack-underflow", MALFORMED, i, "SETITEM(S) without a target")
        target = stack[-1]
        if isinstance(target, G):
            self.issue("mutate-global", UNSAFE, i, f"SETITEM(S) on the global {target.name}", (target.name,))
        elif isinstance(target, Cont):
            if target.kind != "dict":  # a list takes integer indices in range only, a set no items at all
                raise self.fatal("bad-target", MALFORMED, i, f"SETITEM(S) on a {target.kind}")
            self.fill_dict(i, target, items)
        elif not isinstance(target, Obj):
            raise self.fatal("bad-target", MALFORMED, i, f"SETITEM(S) on a {type(target).__name__}")
        elif type(target.args) is Cont and target.callee in DICT_SUBCLASSES:
            self.fill_dict(i, target.args, items)  # (a Bunch: dict.__setitem__ on its items, kept for the twin)
        else:  # (an OrderedDict, a Counter: their items are not modelled, but CPython hashes the keys)
            self.hashed(i, _keys_beside_runs(items), "a dict key", target)

    def nested(self, i: int, t: tuple[Any, ...]) -> bool:
        """Refuse a tuple nested past the limit (StaticChecks.nesting_problem); a flat one costs a
        few type tests per item. True if ``t`` holds a tuple or a value that can share a hash: its
        items are then worth charging as a list's (list_items)."""
        keyed = False
        for x in t:
            if type(x) is tuple or (type(x) is Obj and x.callee in NAMEDTUPLES):
                problem = self.checks.nesting_problem(t)
                if problem is not None:
                    raise self.fatal("limit-tuple-depth", LIMIT, i, problem)
                return True
            if not keyed and self.keyed(x):
                keyed = True
        return keyed

    def keyed(self, x: Any) -> bool:
        """Could ``x`` share its hash with another, unequal value (a float: with a few dozen)?"""
        return type(x) is float or _may_share_hash(x)

    def one_slot(self, data: Any, i: int, end: int, memo: dict[int, Any]) -> dict[int, Any] | None:
        """The memo a batch of memo reads into a list may read once the memo holds a value that can
        share a hash: only the slot its first opcode reads, if that slot holds none (an object array
        of one shared dict is one such batch: numpy pickles memoize their dtype, a value-hashed
        object, and 10**7 reads went opcode by opcode, 3x slower). Repeats of one object cost one
        hash and an identity test each wherever they are inserted."""
        op = data[i] if i < end else -1
        if op == 0x68 and i + 2 <= end:
            idx = data[i + 1]
        elif op == 0x6A and i + 5 <= end:
            idx = _u32(bytes(data[i + 1:i + 5]), 0)
        else:
            return None
        v = memo.get(idx, _ABSENT)
        if v is _ABSENT or self.keyed(v):
            return None
        return {idx: v}

    def note_memo(self, v: Any) -> None:
        """A value MEMOIZE or PUT stores: after a keyed one, a list batch reads one slot (``one_slot``)."""
        if not self.keyed_memo and self.keyed(v):
            self.keyed_memo = True

    def list_items(self, i: int, target: Cont | None, items: Sequence[Any]) -> None:
        """Charge the items a list (or a tuple: ``target`` None) receives as if inserted into one dict:
        a model's lists and object arrays reach inference code that hashes them (``LabelEncoder.transform``
        and ``MultiLabelBinarizer.transform`` build a dict of ``classes_``, the encoders a set of
        ``categories_``), and n items built to share one hash cost n**2/2 comparisons there, at every
        call. Unhashable items are skipped (a list may hold them; a dict of them fails, not hangs)."""
        keys = [x for x in items if type(x) is not Run and type(x) is not str and _may_share_hash(x)]
        if keys:
            what = "a list item" if target is not None else "a tuple item"
            # First the cost of hashing them: a tuple DAG shared through the memo takes 2**60 steps
            # (a flat tuple costs its length, bounded by the file: not measured, not kept).
            checks = self.checks
            costly = [x for x in keys if type(x) is not tuple or checks.holds_tuples(x)]
            problem = checks.hash_problem(costly, what, skip_unhashable=True) if costly else None
            if problem is None:
                problem = checks.collision_problem(target, keys, what, list_items=True)
            if problem is not None:
                raise self.fatal(problem[0], problem[1], i, problem[2])

    def hashed(self, i: int, values: list[Any], what: str, container: Any) -> None:
        """Refuse ``values`` CPython is about to hash into ``container`` (None: a new one) if that
        fails or would not end: unhashable, nested too deep or too costly to hash
        (StaticChecks.hash_problem), or built to share hashes (collision_problem). Strings and
        small numbers, the common keys, cost one type test each."""
        types = _types_of(values)
        problem = None
        if types & (_T_CONT | _T_TUPLE | _T_OBJ | _T_FROZEN):
            problem = self.checks.hash_problem(values, what)
        if problem is None and (types & (_T_TUPLE | _T_OBJ | _T_FROZEN) or (
                types & _T_INT and may_collide(values))):
            problem = self.checks.collision_problem(container, values, what)
        if problem is not None:
            rule, severity, message = problem
            raise self.fatal(rule, severity, i, message)

    def fill_dict(self, i: int, target: Cont, items: list[Any]) -> None:
        """SETITEM(S) of ``items`` (pairs and vocabulary runs) into a dict."""
        types = _types_of(items)
        runs = bool(types & _T_RUN)
        total = _values(items) if runs else len(items)  # even: the SETITEMS opcode checked it
        if types & (_T_RUN | _T_CONT | _T_TUPLE | _T_OBJ | _T_INT | _T_FROZEN):
            self.hashed(i, _keys_beside_runs(items) if runs else items[::2], "a dict key", target)
        whole = target.whole()
        target.count += total // 2
        room = 2 * _DICT_CAP - len(target.flat)
        if runs and whole and total <= room:
            # a small dict (a short vocabulary) is kept whole for the static model; a large one
            # stays partial, its runs unexpanded (the walk's speed on vocabularies)
            items = [v for x in items for v in (_expand(self.data, x)[0] if type(x) is Run else (x,))]
            runs = False
        if target.vocab is None and (runs or total > room) and not target.mixed:
            # past the cap (or a vocabulary run): from here on the twin has only this record
            target.vocab = []
            if whole:
                _record_vocabulary(target, list(target.flat))
            else:
                target.mixed = True
        if target.vocab is not None and not target.mixed:
            _record_vocabulary(target, items)
        if room > 0 and not runs:
            target.flat.extend(items if total <= room else items[:room])

    def take_values(self, target: Any, op: int, count: int) -> bool:
        """Apply opcode ``op`` (the one after a batch of ``count`` plain values) to ``target``, as
        setitems/appends would, if it keeps none of the values and cannot fail on them; else False
        (the batch then goes opcode by opcode)."""
        if type(target) is not Cont:  # an object's items are not modelled (setitems/appends ignore them)
            if type(target) is Obj and type(target.args) is Cont:
                return False  # (a Bunch's items are: setitems keeps them)
            return op == 0x65 or op == 0x90 or (op == 0x75 and not count % 2)
        kind = target.kind
        if kind == "dict":
            if op != 0x75 or count % 2 or len(target.flat) < 2 * _DICT_CAP:
                return False
            target.count += count // 2
            target.mixed = True
        elif kind == "list":
            if op != 0x65 or (target.count == len(target.flat) and len(target.flat) + count <= _LIST_CAP):
                return False
            target.count += count
        else:
            if op != 0x90:
                return False
            target.count += count
        return True

    def appends(self, i: int, stack: list[Any], fence: int, count: int, items: list[Any] | None = None,
                what: str = "APPEND(S)") -> None:
        if len(stack) <= fence:
            raise self.fatal("stack-underflow", MALFORMED, i, f"{what} without a target")
        target = stack[-1]
        if isinstance(target, G):
            self.issue("mutate-global", UNSAFE, i, f"{what} on the global {target.name}", (target.name,))
        elif isinstance(target, Cont):
            if target.kind != ("set" if what == "ADDITEMS" else "list"):  # a dict has no append, a list no add
                raise self.fatal("bad-target", MALFORMED, i, f"{what} on a {target.kind}")
            # A list keeps its first items (the static model reads lists of estimators and arrays); a
            # run's values are not kept, so a list holding one stays partial (count > kept).
            if items is not None and target.kind == "list":
                self.list_items(i, target, items)
                if target.count == len(target.flat) and len(target.flat) + len(items) <= _LIST_CAP \
                        and not _types_of(items) & _T_RUN:
                    target.flat.extend(items)
                else:
                    _overflow(target, items)
            target.count += count
        elif not isinstance(target, Obj):
            raise self.fatal("bad-target", MALFORMED, i, f"{what} on a {type(target).__name__}")

    def call(self, i: int, func: Any, args: Any) -> Obj:
        if not isinstance(func, G):
            raise self.fatal("call-non-global", UNSAFE, i,
                             "REDUCE calls a value that is not an allowed global (only named callables may be called)")
        if not isinstance(args, tuple):
            raise self.fatal("bad-args", MALFORMED, i, "REDUCE arguments must be a tuple")
        func.called = True
        if func.kind is None:
            return Obj(func.name, origin=i)
        if func.kind is not _CALL:
            self.issue("call-not-callable", UNSAFE, i,
                       f"{func.name} is allowed only as a {func.kind.value} and may not be called with arguments",
                       (func.name,))
            return Obj(func.name, origin=i)
        name = func.name
        self.checks.check_guard(i, name, args)
        entry = self.lookup.get(name)
        if entry is not None and entry.guard in _BUILDS_FIRST_ARG and args and isinstance(args[0], G):
            cls_name = args[0].name  # copyreg._reconstructor / newObj: an instance of args[0]
            base = args[1].name if len(args) == 3 and isinstance(args[1], G) else None
            if cls_name in NAMEDTUPLES and base == "builtins.tuple":
                items = args[2]  # protocols 0-1: tuple.__new__(cls, items)
                if type(items) is Cont and items.kind == "list" and items.complete():
                    items = tuple(items.flat)
                if isinstance(items, tuple):
                    return Obj(cls_name, items, i)
            if cls_name == "builtins.frozenset" and base == "builtins.frozenset":
                return Obj(cls_name, (args[2],), i)  # frozenset.__new__(frozenset, items): it hashes by value
            if cls_name in DICT_SUBCLASSES and len(args) == 3 and isinstance(args[1], G) \
                    and args[1].name == "builtins.dict":  # protocols 0-1: dict.__init__(obj, items), a copy
                items = args[2]
                copied = Cont("dict", i)
                if type(items) is Cont and items.kind == "dict" and items.whole() and items.vocab is None:
                    copied.flat.extend(items.flat)
                    copied.count = items.count
                else:
                    copied.count = 1  # (items it cannot copy: not whole, so the twin leaves it unknown)
                return Obj(cls_name, copied, i)
            return self.made(Obj(cls_name, origin=i))
        return self.made(Obj(name, args if name in _KEEP_ARGS else None, i))

    def made(self, obj: Obj) -> Obj:
        """An instance the stream creates: one whose state only BUILD validates is remembered, to be judged
        if no BUILD reaches it."""
        if obj.callee in BUILD_VALIDATED:
            self.checks.created.append(obj)
        return obj

    def new(self, i: int, cls: Any, args: Any, kwargs: Any) -> Obj:
        if not isinstance(cls, G):
            raise self.fatal("new-non-global", UNSAFE, i, "NEWOBJ on a value that is not an allowed class")
        if not isinstance(args, tuple) or (kwargs is not None and not isinstance(kwargs, Cont)):
            raise self.fatal("bad-args", MALFORMED, i, "NEWOBJ arguments must be a tuple")
        cls.called = True
        if cls.kind is _VALUE:
            self.issue("new-value", UNSAFE, i, f"{cls.name} is allowed only as a value and may not be instantiated",
                       (cls.name,))
        elif cls.kind is _NEW and ((args and _values(list(args))) or (kwargs is not None and kwargs.count)):
            # NEWOBJ runs cls.__new__(cls, *args): ndarray.__new__(ndarray, (10**9,)) allocates, sparse
            # matrices and estimators validate nothing. Real pickles rebuild these with no arguments.
            self.issue("new-args", UNSAFE, i, f"{cls.name} may only be rebuilt without arguments; NEWOBJ passes it "
                       "arguments its __new__ would act on", (cls.name,))
        elif cls.kind is _CALL and self.guard_of(cls.name) is not None:
            # The loader hands out the guarded callable, which is not a class: NEWOBJ would bypass its guard.
            self.issue("new-args", UNSAFE, i, f"{cls.name} may only be called through its guard (REDUCE), "
                       "not instantiated with NEWOBJ", (cls.name,))
        elif cls.name in DICT_SUBCLASSES:  # dict.__new__: an empty dict whose items SETITEMS gives
            return Obj(cls.name, Cont("dict", i), origin=i)
        elif cls.name in _KEEP_ARGS and (kwargs is None or not kwargs.count):
            # For these (C types, namedtuples) __new__ is the constructor: cls.__new__(cls, *args) is cls(*args).
            return self.made(Obj(cls.name, args, origin=i))
        return self.made(Obj(cls.name, origin=i))

    def guard_of(self, name: str) -> str | None:
        entry = self.lookup.get(name)
        return entry.guard if entry is not None else None

    def instantiate(self, i: int, cls: Any, args: list[Any]) -> Obj:
        if not isinstance(cls, G):
            raise self.fatal("call-non-global", UNSAFE, i, "OBJ/INST on a value that is not an allowed class")
        cls.called = True
        if cls.kind is not None and cls.kind is not _CALL and (args or cls.kind is _VALUE):
            self.issue("call-not-callable", UNSAFE, i,
                       f"{cls.name} is allowed only as a {cls.kind.value} and may not be called with arguments",
                       (cls.name,))
        elif cls.kind is _CALL:
            self.checks.check_guard(i, cls.name, tuple(args))  # OBJ/INST call cls(*args): the same guard as REDUCE
        return self.made(Obj(cls.name, origin=i))

    def build(self, i: int, target: Any, state: Any, fend: int) -> tuple[Obj, int] | None:
        if isinstance(target, G):
            self.issue("build-on-global", UNSAFE, i,
                       f"BUILD on the global {target.name} would modify it for the whole process", (target.name,))
            return None
        if not isinstance(target, Obj):
            raise self.fatal("bad-target", MALFORMED, i, f"BUILD on a {type(target).__name__}")
        if target.callee == "numpy.dtype" and target.state is not None:
            raise self.fatal("dtype-state", UNSAFE, i, "BUILD applied twice to one numpy dtype")
        self.checks.check_state(i, target, state)
        if target.callee == WRAPPER and not target.array and self.joblib:
            if fend and i + 1 < fend:
                raise self.fatal("frame-crossing", UNSAFE, i,
                                 "joblib array data starts inside a frame: joblib would read it from elsewhere")
            return self.joblib_array(i, state)
        return None

    # -- joblib arrays -----------------------------------------------------------------
    def joblib_array(self, i: int, state: Any) -> tuple[Obj, int]:
        spec = wrapper_state(state)
        if isinstance(spec, str):
            raise self.fatal("joblib-wrapper", MALFORMED, i, f"invalid NumpyArrayWrapper state: {spec}")
        subclass, shape, order, dtype, allow_mmap, align = spec
        if subclass not in ("numpy.ndarray", "numpy.matrix", "numpy.memmap"):
            raise self.fatal("joblib-wrapper", UNSAFE, i, f"joblib array of subclass {subclass} refused")
        pos = i + 1
        count = 1
        for d in shape:
            count *= d
        array = Obj("numpy.ndarray", origin=i)
        array.array = True
        if dtype.hasobject:
            if allow_mmap:
                raise self.fatal("joblib-object-mmap", UNSAFE, i,
                                 "object-dtype joblib array marked memory-mappable: joblib would map raw pointers")
            self.nested_count += 1
            if self.depth >= 8 or self.nested_count > self.limits.max_nested_pickles:
                raise self.fatal("limit-nesting", LIMIT, i, "too many nested object-array pickles")
            nested = _Walker(self.data, pos, self.policy, False, self.depth + 1, self.filling, self.observer,
                             self.decoding)
            sub = nested.run(pos)
            span = ArraySpan(i, pos, 0, dtype, shape, order, allow_mmap, sub)
            self.trace.arrays.append(span)
            array.state = span  # the static model rebuilds the object array from the nested walk's root
            if sub.end < 0:
                raise _Stop()
            return array, sub.end
        if dtype.itemsize == 0:
            raise self.fatal("joblib-dtype", MALFORMED, i, f"joblib array with zero-size dtype {dtype}")
        if align is not None:
            if pos >= self.n:
                raise self.fatal("truncated", MALFORMED, i, "joblib array padding is missing")
            pos += 1 + self.data[pos]
        nbytes = count * dtype.itemsize
        if nbytes > self.limits.max_array_bytes:
            raise self.fatal("limit-array", LIMIT, i, f"joblib array of {nbytes} bytes exceeds the limit")
        if pos + nbytes > self.n:
            raise self.fatal("limit-array", LIMIT, i,
                             f"joblib array header claims {nbytes} bytes of data but only {max(self.n - pos, 0)} remain")
        span = ArraySpan(i, pos, nbytes, dtype, shape, order, allow_mmap)
        self.trace.arrays.append(span)
        array.state = span
        return array, pos + nbytes


# Background reads (see _filling): every opcode with arguments shorter than _MARGIN finds them
# read; the loop asks for _AHEAD more bytes at a time.
_MARGIN: Final = 64 * 1024
_WINDOW: Final = 4 * _MARGIN  # the loop's bytes copy: one copy of the stream per 192 KB walked
_SHORT_TEXT: Final = 1024  # a longer text never starts a vocabulary run the loop looks for in its window
_AHEAD: Final = 256 * 1024
_TEXT_OPS: Final = frozenset({0x49, 0x4C, 0x46, 0x53, 0x56, 0x67, 0x70, 0x50})
_C_TEXT_OPS: Final = frozenset({0x49, 0x4C, 0x46, 0x67, 0x70})  # parsed as C strings (up to a NUL)
_TREE: Final = "sklearn.tree._tree.Tree"
# Calls whose arguments later checks read (raw bytes, Tree sizes) and, through VALUE_HASHED and the
# namedtuples, those whose results _keyhash evaluates (dtypes, complex numbers, scalars...).
_KEEP_ARGS: Final = VALUE_HASHED | frozenset({"_codecs.encode", "builtins.bytes", "numpy._core.numeric._frombuffer",
                                       "numpy.core.numeric._frombuffer", _TREE, *NAMEDTUPLES})
_BUILDS_FIRST_ARG: Final = frozenset({"reconstructor", "new_obj"})


#: A tuple's items are charged as a list's are only past this length: a shorter one's items cost
#: at most 120 comparisons if inference ever hashed them one by one (each weighted by its items),
#: and every array state, call argument and small record in a stream is such a tuple.
_TUPLE_CHARGED: Final = 16


def _may_share_hash(x: Any) -> bool:
    """``collidable``, less the objects that hash by identity (every allowed class whose instances are
    not value-hashed or a namedtuple: tests/test_keyhash_audit.py keeps that split exact). A list of
    10**6 estimators or intervals past the cap kept them all alive for nothing."""
    if type(x) is Obj:
        return not x.array and x.callee in _VALUE_KEYED
    return collidable(x)


#: The classes whose instances hash by value: one set lookup per object (two were ~2% of a scan
#: of many small objects, asked several times for each).
_VALUE_KEYED: Final = VALUE_HASHED | frozenset(NAMEDTUPLES)


def _overflow(target: Cont, items: list[Any]) -> None:
    """Keep what a list does not keep of ``items`` (past its cap) and a call that hashes its items
    could be made to pay for: tuples, keys built to collide, and pairs holding such a key; and the
    first item that such a call could not hash (``set(list)`` then fails at load: scan says so)."""
    kept = [x for x in items if _may_share_hash(x) or (type(x) is Cont and x.kind == "list" and len(x.flat) == 2
                                                        and _may_share_hash(x.flat[0]))]
    if not target.unhashable_kept:
        for x in items:
            if unhashable(x) or (type(x) is Cont and x.kind == "list" and len(x.flat) == 2
                                 and unhashable(x.flat[0])):
                kept.append(x)
                target.unhashable_kept = True
                break
    if kept:
        if target.overflow is None:
            target.overflow = kept
        else:
            target.overflow.extend(kept)


#: Plain values no index map may hold (load refuses them; the census reports them): recorded so
#: that scan can say so. A bool is not among them (load reads it as 0 or 1): it stops the record.
_NON_INDEX_VALUES: Final = frozenset({str, float, type(None), memoryview})


def _record_vocabulary(target: Cont, items: list[Any]) -> None:
    """Append SETITEMS ``items`` to ``target.vocab`` if they are vocabulary entries (runs, and
    ``str`` keys with exactly-``int`` or plainly-not-index values, as SETITEMS lists them), or stop
    recording (``mixed``)."""
    vocab = target.vocab
    assert vocab is not None
    key = True  # the next plain item is a key
    for x in items:
        t = type(x)
        if t is Run and key:
            continue
        if (t is not str) if key else (t is not int and t not in _NON_INDEX_VALUES and not (
                t is Obj and x.callee == "_codecs.encode")):  # (bytes in protocols 0-2: text, never an int)
            target.mixed = True
            target.vocab = []  # (nothing more is kept for a dict scan will not judge)
            return
        key = not key
    if not key:
        target.mixed = True
        target.vocab = []
        return
    vocab.extend(items)


def _keys_beside_runs(items: list[Any]) -> list[Any]:
    """The keys among SETITEMS items that are not inside a vocabulary run (a run's keys are strings)."""
    keys: list[Any] = []
    position = 0
    for x in items:
        if type(x) is Run:
            position += 2 * x.count
        else:
            if not position % 2:
                keys.append(x)
            position += 1
    return keys


def _values(items: list[Any]) -> int:
    """How many stack values ``items`` stands for (a Run is two per entry)."""
    total = len(items)
    for x in items:  # (compiled: a pointer comparison per item; ``Run in map(type, ...)`` cost a set-up per call)
        if type(x) is Run:
            total += 2 * x.count - 1
    return total


# What _types_of reports: one bit per type the hashing checks care about.
_T_RUN: Final = 1
_T_CONT: Final = 2
_T_TUPLE: Final = 4
_T_OBJ: Final = 8
_T_INT: Final = 16
_T_FROZEN: Final = 32


def _types_of(items: list[Any]) -> int:
    """The _T_* bits of the types among ``items`` (a set of ``map(type, ...)`` per SETITEMS was
    ~10% of the walk of a model made of many small objects)."""
    bits = 0
    for x in items:
        t = type(x)
        if t is str or t is float:
            continue
        if t is Run:
            bits |= _T_RUN
        elif t is Cont:
            bits |= _T_CONT
        elif t is tuple:
            bits |= _T_TUPLE
        elif t is Obj:
            bits |= _T_OBJ
        elif t is int:
            bits |= _T_INT
        elif t is Frozen:
            bits |= _T_FROZEN
    return bits


def walk(data: Buffer, policy: Policy, *, start: int = 0, joblib: bool = False,
         filling: Filling | None = None, observer: Observer | None = None,
         encoding: str = "ASCII", errors: str = "strict", fix_imports: bool = True,
         storage_ids: bool = False, trailing: bool = True) -> Trace:
    """Walk one pickle stream starting at ``start``; trailing bytes are an issue (unless not
    ``trailing``: a legacy PyTorch checkpoint is pickles and raw bytes end to end).

    With ``filling``, ``data`` is still being read (see _filling): the walk waits for bytes it needs.
    ``observer``: see :data:`Observer` (the tests' differential oracle). ``storage_ids``: a PyTorch
    checkpoint's pickle, whose BINPERSIDs must name storages (see ``_Walker.storage_id``)."""
    if filling is not None and filling.size != len(data):
        # Not this buffer's reader (an inflated stream handed its file's): its byte count would cut
        # the walk short. Such a buffer is whole; tests/test_filling.py holds the caller to it too.
        filling = None
    w = _Walker(data, start, policy, joblib, 0, filling, observer, Decoding(encoding, errors, fix_imports))
    w.storage_ids = storage_ids
    # The cyclic GC is paused while the walk runs: a model of many small objects makes the walker
    # allocate a few simulated values per object, and each full collection then traverses every
    # object the process holds (measured: ~40% of the walk on 100,000 instances in a process that
    # has imported scikit-learn). The walk is bounded by the file; whatever cycles it made are
    # collected once the GC resumes, also when the walk raises.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        trace = w.run(start)
    finally:
        if paused:
            gc.enable()
    if trailing and trace.end >= 0 and trace.end != len(data):
        trace.issues.append(
            Issue("trailing-data", UNSAFE, trace.end,
                  f"{len(data) - trace.end} bytes follow the STOP opcode (a stacked pickle or appended archive)")
        )
    return trace
