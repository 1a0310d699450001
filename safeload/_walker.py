"""The opcode walker: judges a pickle stream without executing it.

It reads the bytes exactly the way CPython's unpickler does when it is given the
whole buffer (linearly), simulates the stack and the memo closely enough to know
which global every GLOBAL / STACK_GLOBAL / INST names (after ``fix_imports``
remapping), which value every BUILD, REDUCE and NEWOBJ acts on, and where the
stream ends.  Both ``scan`` and ``load`` run it first, so their verdicts agree by
construction; ``load`` then executes only a stream the walker accepted.

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
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safeload._allowlist import Kind
from safeload._containers import Buffer
from safeload._filling import Filling
from safeload._guards import (
    BIT_GENERATORS,
    MAX_PLACEHOLDER_ELEMENTS,
    MAX_SCALAR_BYTES,
    MAX_TREE_SIZE,
    PLAIN_BASES,
    TEXT_CODECS,
    dtype_elements,
    materialise_problem,
    placeholder_problem,
    rng_state_problem,
    seed_sequence_problem,
)
from safeload._policy import Limits, Policy
from safeload._textops import Decoding, parse_float, parse_get, parse_int, parse_long, parse_put

try:
    from safeload import _speedups
except ImportError:  # installed without a C compiler: the regular expressions below do the same job, slower
    _speedups = None  # type: ignore[assignment]

__all__ = ["ArraySpan", "GlobalRef", "Issue", "Trace", "walk"]

UNSAFE = "unsafe"
MALFORMED = "malformed"
LIMIT = "limit"

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
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
_PLAIN_BASES = frozenset(f"builtins.{t.__name__}" for t in PLAIN_BASES)
_ARRAY_TYPES = frozenset({"numpy.ndarray", "numpy.matrix", "numpy.ma.core.MaskedArray", "numpy.ma.MaskedArray"})
_RECONSTRUCT = frozenset({"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct"})
_MARECONSTRUCT = "numpy.ma.core._mareconstruct"
_DICT_CAP = 64


@dataclass(frozen=True)
class GlobalRef:
    """One global the stream resolves, with the policy's verdict."""

    name: str
    module: str
    qualname: str
    raw_module: str
    raw_qualname: str
    offset: int
    opcode: str
    allowed: bool


@dataclass(frozen=True)
class Issue:
    """A reason to refuse the stream; ``severity`` picks the exception class."""

    rule: str
    severity: str
    offset: int
    message: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArraySpan:
    """Where a joblib array's raw bytes (or nested pickle) sit in the stream."""

    build_offset: int
    data_offset: int
    nbytes: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: str
    allow_mmap: bool
    nested: Trace | None = None


@dataclass
class Trace:
    start: int
    end: int = -1
    protocol: int = 0
    opcodes: int = 0
    globals: list[GlobalRef] = field(default_factory=list)
    #: The simulated globals, parallel to ``globals``: ``.called`` says whether the stream ever calls
    #: that occurrence, so the engine hands out the guarded form only where a call can happen.
    nodes: list[G] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    arrays: list[ArraySpan] = field(default_factory=list)
    #: How protocol 0-2 text was read (``pickle.load``'s encoding/errors/fix_imports); the engine builds with it.
    decoding: Decoding = field(default_factory=Decoding)

    @property
    def ok(self) -> bool:
        return not self.issues

    def approved(self) -> dict[tuple[str, str], tuple[str, str]]:
        """Raw (module, name) pairs the engine may resolve, mapped to what to import."""
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for g in self.globals:
            out[(g.raw_module, g.raw_qualname)] = (g.module, g.qualname)
        for span in self.arrays:
            if span.nested is not None:
                out.update(span.nested.approved())
        return out

    def all_globals(self) -> list[GlobalRef]:
        out = list(self.globals)
        for span in self.arrays:
            if span.nested is not None:
                out.extend(span.nested.all_globals())
        return out

    def all_issues(self) -> list[Issue]:
        out = list(self.issues)
        for span in self.arrays:
            if span.nested is not None:
                out.extend(span.nested.all_issues())
        return out


class _Stop(Exception):
    """Internal: the walk cannot continue."""


class G:
    """A resolved global on the simulated stack (``origin``: offset of the opcode that resolved it)."""

    __slots__ = ("name", "kind", "origin", "called")

    def __init__(self, name: str, kind: Kind | None, origin: int = -1) -> None:
        self.name = name
        self.kind = kind
        self.origin = origin
        self.called = False  # REDUCE/NEWOBJ/OBJ/INST used it: the engine must hand out its guarded form


class Obj:
    """The result of a call or instantiation; ``callee`` names what built it."""

    __slots__ = ("callee", "args", "state", "array", "value", "origin")

    def __init__(self, callee: str | None, args: Any = None, origin: int = -1) -> None:
        self.callee = callee
        self.args = args
        self.origin = origin
        self.state: Any = None
        self.array = False
        self.value: Any = None  # the evaluated dtype, once checked


class Cont:
    """A list, dict or set under construction (dict items kept up to a cap)."""

    __slots__ = ("kind", "items", "count", "origin")

    def __init__(self, kind: str, origin: int = -1) -> None:
        self.kind = kind
        self.items: list[tuple[Any, Any]] = []
        self.count = 0
        self.origin = origin


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


class _Other:
    __slots__ = ()


OTHER = _Other()


class Run:
    """A run of >= 8 (SHORT_BINUNICODE, MEMOIZE, BININT*) entries delimited in one step (_match_run).

    It stands for 2*count stack values (key, value, key, value...) and ``count`` memo
    entries; it is expanded into real values only if an opcode looks inside it.
    """

    __slots__ = ("start", "end", "count")

    def __init__(self, start: int, end: int, count: int) -> None:
        self.start = start
        self.end = end
        self.count = count


def _entry_head() -> bytes:
    """SHORT_BINUNICODE (no 0x94 in the text: counting 0x94 counts entries) then MEMOIZE.

    The regular expressions are the pure-Python path; safeload/_speedups.c, when built, counts
    entries one by one instead and has no need to exclude 0x94.
    """
    lengths = b"|".join(re.escape(bytes([ln])) + (b"[^\\x94]{%d}" % ln) for ln in range(256) if ln != 0x94)
    return b"\\x8c(?:" + lengths + b")\\x94"


_MIN_RUN = 8  # shorter runs go opcode by opcode
_HEAD = _entry_head()
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


def _expand(data: Any, run: Run) -> tuple[list[Any], list[str]]:
    """Parse a run entry by entry: its stack values and the strings it memoized."""
    values: list[Any] = []
    strings: list[str] = []
    p = run.start
    while p < run.end:
        j = p + 2 + data[p + 1]
        text = str(data[p + 2:j], "utf-8", "surrogatepass")
        op = data[j + 1]
        w = 1 if op == 0x4B else (2 if op == 0x4D else 4)
        values.append(text)
        values.append(int.from_bytes(data[j + 2:j + 2 + w], "little", signed=(op == 0x4A)))
        strings.append(text)
        p = j + 2 + w
    return values, strings


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
        self.limits: Limits = policy.limits
        self.joblib = joblib
        self.depth = depth
        self.trace = Trace(start=start, decoding=decoding)
        self.seen: dict[tuple[str, str], str] = {}
        self.nested_count = 0

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
        kind = self.policy.kind(full)
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
                RecursionError) as exc:
            self.issue("malformed", MALFORMED, pos, f"cannot parse pickle stream: {type(exc).__name__}: {exc}")
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
        max_stack = limits.max_stack_depth
        max_marks = limits.max_mark_depth
        max_ops = limits.max_opcodes
        stack: list[Any] = []
        push = stack.append
        marks: list[int] = []  # stack positions of MARKs, as CPython keeps them (not on the stack)
        fence = 0
        # The memo, modelled on CPython's C unpickler: ``mlen`` is its ``memo_len`` (the number of
        # occupied slots; MEMOIZE writes at that index). ``memo`` holds materialised slots; ``lazy``
        # holds vocabulary runs taken in one step, each occupying ``run.count`` slots from ``first``.
        # While ``use_runs`` is on, no PUT has happened, so the slots are exactly [0, mlen): MEMOIZE
        # adds one, a run adds ``count``, and a read that materialises a run changes nothing. The
        # first PUT materialises every run and from then on ``mlen`` is recomputed as ``len(memo)``
        # (a PUT above memo_len leaves a hole, and MEMOIZE into an occupied slot does not count).
        memo: dict[int, Any] = {}
        lazy: list[tuple[int, Run]] = []  # (first memo index, run); a read expands the run into ``memo``
        mlen = 0
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

        def fix_top() -> None:
            if len(stack) > fence and type(stack[-1]) is Run:
                stack.extend(_expand(data, stack.pop())[0])

        def plain(items: list[Any]) -> list[Any]:
            if not any(type(x) is Run for x in items):
                return items
            out: list[Any] = []
            for x in items:
                out.extend(_expand(data, x)[0] if type(x) is Run else (x,))
            return out

        def memo_get(idx: int) -> Any:
            try:
                return memo[idx]
            except KeyError:
                pass
            for first, run in lazy:
                if first <= idx < first + run.count:
                    # The run's slots were counted in ``mlen`` when it was taken; expanding it only
                    # fills them in. (Round 1 counted them again here: every later MEMOIZE landed
                    # elsewhere than in CPython. tests/test_walker_oracle.py re-introduces that.)
                    for k, text in enumerate(_expand(data, run)[1]):
                        memo.setdefault(first + k, text)
                    return memo[idx]
            raise fatal("memo", MALFORMED, i, f"memo value not found at index {idx}")

        def flush_lazy() -> None:
            nonlocal use_runs
            for first, run in lazy:
                for k, text in enumerate(_expand(data, run)[1]):
                    memo.setdefault(first + k, text)
            lazy.clear()
            use_runs = False

        def memo_view() -> dict[int, Any]:
            out = dict(memo)
            for first, run in lazy:
                for k, text in enumerate(_expand(data, run)[1]):
                    out.setdefault(first + k, text)
            return out

        def marks_view() -> list[int]:
            # ``marks`` are positions in ``stack``, where a Run is one item; CPython's count its values
            return [m + sum(2 * x.count - 1 for x in stack[:m] if type(x) is Run) for m in marks]

        view = _View(self.depth, lambda: plain(list(stack)), marks_view, memo_view, lambda: mlen)

        def pop() -> Any:
            if len(stack) <= fence:
                raise fatal("stack-underflow", MALFORMED, i, "stack underflow")
            top = stack.pop()
            if type(top) is Run:  # expand it (its last value is the top) and pop that
                stack.extend(_expand(data, top)[0])
                top = stack.pop()
            return top

        def pop_mark() -> list[Any]:
            nonlocal fence
            if not marks:
                raise fatal("no-mark", MALFORMED, i, "could not find MARK")
            k = marks.pop()
            fence = marks[-1] if marks else 0
            items = stack[k:]
            del stack[k:]
            return items

        def line(s: int) -> tuple[bytes | bytearray, int]:
            e = data.find(b"\n", s, avail)
            while e < 0 and avail < n:
                searched = avail
                more(avail + _AHEAD)
                e = data.find(b"\n", searched, avail)
            if e < 0:
                raise fatal("truncated", MALFORMED, s, "pickle data was truncated (unterminated line)")
            return data[s:e], e + 1

        def need(e: int) -> None:
            if e > avail:
                if e > n:
                    raise fatal("truncated", MALFORMED, i, "pickle data was truncated")
                more(e)

        while True:
            if i >= soft:
                if observer is not None:
                    observer(i, view)
                if i >= fill_soft:
                    more(i + _AHEAD)
            op = data[i]
            ops += 1
            # ---- hot data opcodes first: a push, a bounds check, nothing else ------------
            if op == 0x8C:  # SHORT_BINUNICODE
                if use_runs:
                    j, count = match_run(data, i, fend if fend < avail else avail)
                    if count:
                        ops += 3 * count - 1  # the real opcode count, however the run was split
                        run = Run(i, j, count)
                        lazy.append((mlen, run))
                        mlen += count
                        push(run)
                        i = j
                        continue
                j = i + 2 + data[i + 1]
                if j > fend:
                    fend = self.frame_units(i, fend, (1, 1), big)
                if j > n:
                    raise fatal("truncated", MALFORMED, i, "pickle data was truncated")
                push(str(data[i + 2:j], "utf-8", "surrogatepass"))
                i = j
                continue
            if op == 0x94:  # MEMOIZE
                if len(stack) <= fence:
                    raise fatal("stack-underflow", MALFORMED, i, "MEMOIZE on an empty stack")
                if type(stack[-1]) is Run:
                    fix_top()
                memo[mlen] = stack[-1]
                if use_runs:  # dense: slot mlen was free
                    mlen += 1  # ORACLE-MUTATION-POINT (round 1 used len(memo) + the lazy runs' slots)
                else:  # after a PUT: slot mlen may already be occupied (then memo_len stays)
                    mlen = len(memo)
                i += 1
                continue
            if op == 0x4B:  # BININT1
                j = i + 2
                if j > fend:
                    fend = self.frame_units(i, fend, (1,), big)
                push(data[i + 1])
                i = j
                continue
            if op == 0x4D or op == 0x4A:  # BININT2, BININT
                j = i + (3 if op == 0x4D else 5)
                if j > fend:
                    fend = self.frame_units(i, fend, (1,), big)
                need(j)
                push(int.from_bytes(data[i + 1:j], "little", signed=(op == 0x4A)))
                i = j
                continue
            if op == 0x68 or op == 0x6A:  # BINGET, LONG_BINGET
                j = i + (2 if op == 0x68 else 5)
                if j > fend:
                    fend = self.frame_units(i, fend, (1,), big)
                need(j)
                idx = data[i + 1] if op == 0x68 else int.from_bytes(data[i + 1:j], "little")
                push(memo[idx] if idx in memo else memo_get(idx))
                i = j
                continue
            if op == 0x28:  # MARK
                if len(marks) >= max_marks:
                    raise fatal("limit-marks", LIMIT, i, f"more than {max_marks} nested MARKs")
                fence = len(stack)
                marks.append(fence)
                i += 1
                continue
            if op == 0x75:  # SETITEMS
                items = pop_mark()
                if _values(items) % 2:
                    raise fatal("odd-setitems", MALFORMED, i, "odd number of items for SETITEMS")
                fix_top()
                self.setitems(i, stack, fence, items)
                i += 1
                continue
            if op == 0x65:  # APPENDS
                items = pop_mark()
                fix_top()
                self.appends(i, stack, fence, _values(items))
                i += 1
                continue
            if ops > max_ops:
                raise fatal("limit-opcodes", LIMIT, i, f"more than {max_ops} opcodes")
            if op == 0x71 or op == 0x72:  # BINPUT, LONG_BINPUT
                j = i + (2 if op == 0x71 else 5)
                if j > fend:
                    fend = self.frame_units(i, fend, (1,), big)
                need(j)
                if use_runs:
                    flush_lazy()
                fix_top()
                self.put(i, int.from_bytes(data[i + 1:j], "little"), ops, stack, fence, memo)
                mlen = len(memo)
                i = j
            elif op == 0x95:  # FRAME
                j = i + 9
                need(j)
                if fend != big and i < fend:
                    raise fatal("frame-overlap", UNSAFE, i, "FRAME begins before the end of the current frame")
                flen = int.from_bytes(data[i + 1:j], "little")
                if j + flen > n:
                    raise fatal("frame-truncated", MALFORMED, i, f"FRAME claims {flen} bytes but only {n - j} remain")
                fend = j + flen if flen else big
                i = j
            elif op == 0x7D or op == 0x5D or op == 0x8F:  # EMPTY_DICT, EMPTY_LIST, EMPTY_SET
                push(Cont("dict" if op == 0x7D else ("list" if op == 0x5D else "set"), i))
                i += 1
            elif op == 0x29:  # EMPTY_TUPLE
                push(())
                i += 1
            elif op == 0x85 or op == 0x86 or op == 0x87:  # TUPLE1/2/3
                k = op - 0x84
                fix_top()
                if len(stack) - k < fence:
                    raise fatal("stack-underflow", MALFORMED, i, "stack underflow in TUPLEn")
                t = tuple(stack[-k:])
                del stack[-k:]
                push(t)
                i += 1
            elif op == 0x74:  # TUPLE
                push(tuple(plain(pop_mark())))
                i += 1
            elif op == 0x4E:  # NONE
                push(None)
                i += 1
            elif op == 0x88 or op == 0x89:  # NEWTRUE, NEWFALSE
                push(op == 0x88)
                i += 1
            elif op == 0x58 or op == 0x42 or op == 0x54 or op == 0x8D or op == 0x8E or op == 0x96:
                # BINUNICODE, BINBYTES, BINSTRING (4-byte length), BINUNICODE8, BINBYTES8, BYTEARRAY8
                w = 4 if op in (0x58, 0x42, 0x54) else 8
                need(i + 1 + w)
                ln = int.from_bytes(data[i + 1:i + 1 + w], "little", signed=(op == 0x54))
                if ln < 0:
                    raise fatal("negative-length", MALFORMED, i, "negative byte count")
                j = i + 1 + w + ln
                if j > fend:
                    fend = self.frame_units(i, fend, (1, w), big)
                need(j)
                if op == 0x58 or op == 0x8D:
                    push(str(data[i + 1 + w:j], "utf-8", "surrogatepass"))
                elif op == 0x54:
                    push(decoding.string(bytes(data[i + 1 + w:j])))
                else:  # bytes and in-band buffers: a zero-copy view, never a copy of big payloads
                    push(memoryview(data)[i + 1 + w:j])
                i = j
            elif op == 0x43 or op == 0x55:  # SHORT_BINBYTES, SHORT_BINSTRING
                need(i + 2)
                j = i + 2 + data[i + 1]
                if j > fend:
                    fend = self.frame_units(i, fend, (1, 1), big)
                need(j)
                push(memoryview(data)[i + 2:j] if op == 0x43 else decoding.string(bytes(data[i + 2:j])))
                i = j
            elif op == 0x47:  # BINFLOAT
                j = i + 9
                if j > fend:
                    fend = self.frame_units(i, fend, (1,), big)
                need(j)
                push(float(np.frombuffer(bytes(data[i + 1:j]), ">f8")[0]))
                i = j
            elif op == 0x8A or op == 0x8B:  # LONG1, LONG4
                w = 1 if op == 0x8A else 4
                need(i + 1 + w)
                ln = int.from_bytes(data[i + 1:i + 1 + w], "little", signed=(op == 0x8B))
                if ln < 0:
                    raise fatal("negative-length", MALFORMED, i, "LONG pickle has negative byte count")
                j = i + 1 + w + ln
                if j > fend:
                    fend = self.frame_units(i, fend, (1, w), big)
                need(j)
                push(int.from_bytes(data[i + 1 + w:j], "little", signed=True))
                i = j
            elif op == 0x80:  # PROTO
                need(i + 2)
                proto = data[i + 1]
                if proto > 5:
                    raise fatal("protocol", MALFORMED, i, f"unsupported pickle protocol: {proto}")
                trace.protocol = max(trace.protocol, proto)
                i += 2
            elif op == 0x93:  # STACK_GLOBAL
                name = pop()
                module = pop()
                if type(name) is not str or type(module) is not str:
                    self.issue("unresolved-global", UNSAFE, i,
                               "STACK_GLOBAL operands are not plain strings; the name cannot be judged statically")
                    raise _Stop()
                push(self.resolve(module, name, i, "STACK_GLOBAL", proto))
                i += 1
            elif op == 0x63 or op == 0x69:  # GLOBAL, INST
                mod_b, j = line(i + 1)
                name_b, j = line(j)
                if j > fend:
                    fend = self.frame_units(i, fend, (1, len(mod_b) + 1), big)
                if not mod_b or not name_b:
                    raise fatal("truncated", MALFORMED, i, "pickle data was truncated (empty GLOBAL line)")
                g = self.resolve(bytes(mod_b).decode("utf-8"), bytes(name_b).decode("utf-8"), i,
                                 "GLOBAL" if op == 0x63 else "INST", proto)
                if op == 0x63:
                    push(g)
                else:
                    push(self.instantiate(i, g, plain(pop_mark())))
                i = j
            elif op == 0x52:  # REDUCE
                args = pop()
                func = pop()
                push(self.call(i, func, args))
                i += 1
            elif op == 0x81 or op == 0x92:  # NEWOBJ, NEWOBJ_EX
                kwargs = pop() if op == 0x92 else None
                args = pop()
                cls = pop()
                push(self.new(i, cls, args, kwargs))
                i += 1
            elif op == 0x6F:  # OBJ
                items = plain(pop_mark())
                if not items:
                    raise fatal("stack-underflow", MALFORMED, i, "OBJ without a class")
                push(self.instantiate(i, items[0], items[1:]))
                i += 1
            elif op == 0x62:  # BUILD
                state = pop()
                fix_top()
                if len(stack) <= fence:
                    raise fatal("stack-underflow", MALFORMED, i, "BUILD without an object")
                array = self.build(i, stack[-1], state, fend if fend != big else 0)
                i += 1
                if array is not None:
                    stack[-1] = array[0]
                    i = array[1]
            elif op == 0x61:  # APPEND
                pop()
                self.appends(i, stack, fence, 1)
                i += 1
            elif op == 0x73:  # SETITEM
                value = pop()
                key = pop()
                self.setitems(i, stack, fence, [key, value])
                i += 1
            elif op == 0x90:  # ADDITEMS
                items = pop_mark()
                fix_top()
                if len(stack) > fence and type(stack[-1]) is Cont and _has_unhashable(items):
                    raise fatal("unhashable", MALFORMED, i, "a set item is a list, dict or set (unhashable)")
                self.appends(i, stack, fence, len(items), what="ADDITEMS")
                i += 1
            elif op == 0x91:  # FROZENSET
                if _has_unhashable(pop_mark()):
                    raise fatal("unhashable", MALFORMED, i, "a frozenset item is a list, dict or set (unhashable)")
                push(OTHER)
                i += 1
            elif op == 0x6C or op == 0x64:  # LIST, DICT
                items = plain(pop_mark())
                c = Cont("list" if op == 0x6C else "dict", i)
                if op == 0x64:
                    if len(items) % 2:
                        raise fatal("odd-dict", MALFORMED, i, "odd number of items for DICT")
                    if _has_unhashable(items[::2]):
                        raise fatal("unhashable", MALFORMED, i, "a dict key is a list, dict or set (unhashable)")
                    c.items = list(zip(items[: 2 * _DICT_CAP : 2], items[1 : 2 * _DICT_CAP : 2], strict=True))
                c.count = len(items) // 2 if op == 0x64 else len(items)  # a dict counts pairs, as SETITEMS does
                push(c)
                i += 1
            elif op == 0x30:  # POP: pops a MARK if one sits on top, as CPython does
                if marks and marks[-1] == len(stack):
                    marks.pop()
                    fence = marks[-1] if marks else 0
                else:
                    pop()
                i += 1
            elif op == 0x31:  # POP_MARK
                pop_mark()
                i += 1
            elif op == 0x32:  # DUP
                fix_top()
                if len(stack) <= fence:
                    raise fatal("stack-underflow", MALFORMED, i, "DUP on an empty stack")
                push(stack[-1])
                i += 1
            elif op == 0x2E:  # STOP
                fix_top()
                if len(stack) <= fence:
                    raise fatal("stack-underflow", MALFORMED, i, "STOP with an empty stack")
                trace.end = i + 1
                trace.opcodes = ops
                if observer is not None:
                    view.stopped = True
                    observer(i + 1, view)
                return
            elif op in _TEXT_OPS:
                raw, j = line(i + 1)
                if j > fend:
                    fend = self.frame_units(i, fend, (1,), big)
                if op == 0x70 and use_runs:  # PUT: memo indices must be exact from here on
                    flush_lazy()
                fix_top()
                if op == 0x67:  # GET
                    push(memo_get(parse_get(bytes(raw))))
                    i = j
                    continue
                self.text_op(i, op, bytes(raw), stack, fence, memo, ops)
                if op == 0x70:
                    mlen = len(memo)
                i = j
            elif op in (0x82, 0x83, 0x84):
                raise fatal("ext", UNSAFE, i, "EXT opcode: resolves a global through the copyreg extension registry")
            elif op == 0x51:
                raise fatal("persid", UNSAFE, i, "BINPERSID opcode: persistent ids are not allowed in model files")
            elif op in (0x97, 0x98):
                raise fatal("out-of-band", UNSAFE, i, "out-of-band buffer opcode (NEXT_BUFFER/READONLY_BUFFER)")
            else:
                raise fatal("bad-opcode", MALFORMED, i, f"invalid load key {_c(data, i)}")
            if len(stack) > max_stack:
                raise fatal("limit-stack", LIMIT, i, f"stack deeper than {max_stack}")

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

    def text_op(self, i: int, op: int, raw: bytes, stack: list[Any], fence: int, memo: dict[int, Any],
                ops: int) -> None:
        push = stack.append
        if op == 0x49:  # INT
            number, is_bool = parse_int(raw)
            if is_bool:  # two statements, not a conditional expression: mypyc would type that as int
                push(number == 1)
            else:
                push(number)
        elif op == 0x4C:  # LONG
            push(parse_long(raw))
        elif op == 0x46:  # FLOAT
            push(parse_float(raw))
        elif op == 0x53:  # STRING
            if len(raw) < 2 or raw[0] != raw[-1] or raw[0] not in b"'\"":
                raise self.fatal("bad-string", MALFORMED, i, "the STRING opcode argument must be quoted")
            push(self.decoding.string(codecs.escape_decode(raw[1:-1])[0]))
        elif op == 0x56:  # UNICODE
            push(raw.decode("raw-unicode-escape"))
        elif op == 0x70:  # PUT
            if len(stack) <= fence:
                raise self.fatal("stack-underflow", MALFORMED, i, "PUT on empty stack")
            self.put(i, parse_put(raw), ops, stack, fence, memo)
        elif op == 0x50:  # PERSID
            raise self.fatal("persid", UNSAFE, i, "PERSID opcode: persistent ids are not allowed in model files")

    def setitems(self, i: int, stack: list[Any], fence: int, items: list[Any]) -> None:
        if len(stack) <= fence:
            raise self.fatal("stack-underflow", MALFORMED, i, "SETITEM(S) without a target")
        target = stack[-1]
        if isinstance(target, G):
            self.issue("mutate-global", UNSAFE, i, f"SETITEM(S) on the global {target.name}", (target.name,))
        elif isinstance(target, Cont):
            if target.kind != "dict":  # a list takes integer indices in range only, a set no items at all
                raise self.fatal("bad-target", MALFORMED, i, f"SETITEM(S) on a {target.kind}")
            types = set(map(type, items))
            runs = Run in types
            if (runs or Cont in types or tuple in types) and _has_unhashable(
                    _keys_beside_runs(items) if runs else items[::2]):
                raise self.fatal("unhashable", MALFORMED, i, "a dict key is a list, dict or set (unhashable)")
            target.count += (_values(items) if runs else len(items)) // 2
            room = _DICT_CAP - len(target.items)
            if room > 0 and not runs:
                target.items.extend(zip(items[: 2 * room : 2], items[1 : 2 * room : 2], strict=True))
        elif not isinstance(target, Obj):
            raise self.fatal("bad-target", MALFORMED, i, f"SETITEM(S) on a {type(target).__name__}")

    def appends(self, i: int, stack: list[Any], fence: int, count: int, what: str = "APPEND(S)") -> None:
        if len(stack) <= fence:
            raise self.fatal("stack-underflow", MALFORMED, i, f"{what} without a target")
        target = stack[-1]
        if isinstance(target, G):
            self.issue("mutate-global", UNSAFE, i, f"{what} on the global {target.name}", (target.name,))
        elif isinstance(target, Cont):
            if target.kind != ("set" if what == "ADDITEMS" else "list"):  # a dict has no append, a list no add
                raise self.fatal("bad-target", MALFORMED, i, f"{what} on a {target.kind}")
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
        if func.kind is not Kind.CALL:
            self.issue("call-not-callable", UNSAFE, i,
                       f"{func.name} is allowed only as a {func.kind.value} and may not be called with arguments",
                       (func.name,))
            return Obj(func.name, origin=i)
        name = func.name
        self.check_guard(i, name, args)
        entry = self.policy.entries.get(name)
        if entry is not None and entry.guard in _BUILDS_FIRST_ARG and args and isinstance(args[0], G):
            return Obj(args[0].name, origin=i)  # copyreg._reconstructor / newObj: an instance of their first argument
        return Obj(name, args if name in _KEEP_ARGS else None, i)

    def check_guard(self, i: int, name: str, args: tuple[Any, ...]) -> None:
        """The static mirror of ``_guards``: refuse what the runtime guard would refuse."""
        entry = self.policy.entries.get(name)
        guard = entry.guard if entry is not None else None
        if guard is None:
            return
        if guard in ("reconstruct", "mareconstruct"):
            shape = args[1] if guard == "reconstruct" and len(args) > 1 else (args[2] if len(args) > 2 else None)
            sub = args[0] if args else None
            count = _elements(shape)
            if not isinstance(sub, G) or sub.name not in _ARRAY_TYPES:
                self.issue("guard", UNSAFE, i, f"{name} called without an allowed array type")
            elif count is None:
                self.issue("guard", UNSAFE, i, f"{name} called with a non-integer shape")
            else:
                dtype_arg = (args[2] if len(args) > 2 else b"b") if guard == "reconstruct" else (
                    args[3] if len(args) > 3 else None)
                dt = _static_dtype(dtype_arg)
                if dt is None:
                    self.issue("guard", UNSAFE, i, f"{name} called with a dtype that is not a type string or dtype")
                else:
                    problem = placeholder_problem(count, dt)
                    if problem is not None:
                        self.issue("limit-array", LIMIT, i, f"{name}: {problem}")
        elif guard == "reconstructor":
            if len(args) != 3 or not isinstance(args[0], G) or not isinstance(args[1], G) or \
                    args[1].name not in _PLAIN_BASES or (args[1].name == "builtins.object" and args[2] is not None):
                self.issue("guard", UNSAFE, i, "copyreg._reconstructor with an unexpected class, base or state")
            elif args[0].kind not in (Kind.NEW, Kind.CALL):
                self.issue("guard", UNSAFE, i, f"copyreg._reconstructor may not build {args[0].name}",
                           (args[0].name,))
            elif args[1].name == "builtins.bytes" and not isinstance(args[2], (bytes, memoryview, str)) \
                    and _raw_bytes(args[2]) is None:
                self.issue("guard", UNSAFE, i, "copyreg._reconstructor with a bytes base needs bytes or text as its state")
            else:
                self.check_materialise(i, name, (args[2],))
        elif guard in ("materialise", "seeded"):
            self.check_materialise(i, name, args)
        elif guard == "range":
            if not 1 <= len(args) <= 3 or not all(type(a) is int for a in args):
                self.issue("guard", UNSAFE, i, "range() may only be built from plain integers")
        elif guard == "scalar":
            dtype = args[0] if args else None
            try:
                dt = concrete(dtype) if isinstance(dtype, Obj) and dtype.callee == "numpy.dtype" else None
            except Exception:  # noqa: BLE001
                dt = None
            if not isinstance(dt, np.dtype) or dt.itemsize > MAX_SCALAR_BYTES:
                self.issue("guard", UNSAFE, i, "numpy scalar reconstruction needs a (small) dtype")
            elif dt.hasobject and len(args) > 1 and isinstance(args[1], (bytes, memoryview, str, G)) or (
                    dt.hasobject and len(args) > 1 and _raw_bytes(args[1]) is not None):
                self.issue("guard", UNSAFE, i,
                           "object-dtype scalar from raw bytes (read as pointers) or wrapping a class refused")
        elif guard == "pyx_unpickle_seedsequence":
            if not args or not isinstance(args[0], G) or args[0].name != "numpy.random.bit_generator.SeedSequence":
                self.issue("guard", UNSAFE, i, "SeedSequence unpickle helper called for another class")
            elif len(args) > 2 and args[2] is not None:
                state = args[2]
                if not isinstance(state, tuple) or len(state) != 5:
                    self.issue("guard", UNSAFE, i, "SeedSequence state must be a 5-tuple")
                else:
                    pool = self.static_array(state[2])
                    problem = seed_sequence_problem(state[3], pool.shape[0] if pool is not None and pool.ndim == 1
                                                    else None)
                    if problem is not None:
                        self.issue("guard", UNSAFE, i, problem)
        elif guard == "pyx_unpickle":
            expected = name.rpartition("__pyx_unpickle_")[2]
            if not args or not isinstance(args[0], G) or not args[0].name.endswith("." + expected):
                self.issue("guard", UNSAFE, i, f"{name} called for another class")
        elif guard == "partial":
            if not args or not isinstance(args[0], G) or args[0].kind not in (Kind.CALL, Kind.VALUE):
                self.issue("guard", UNSAFE, i, "functools.partial may only wrap an allowed function")
        elif guard == "new_obj":
            if len(args) != 1 or not isinstance(args[0], G) or args[0].kind not in (Kind.NEW, Kind.CALL):
                self.issue("guard", UNSAFE, i, f"{name} needs an allowed class")
        elif guard == "codecs_encode":
            if not args or not isinstance(args[0], str) or (len(args) > 1 and not (
                    isinstance(args[1], str) and args[1].lower() in TEXT_CODECS)):
                self.issue("guard", UNSAFE, i, "_codecs.encode is only allowed for str with a text codec")
        elif guard == "sized_buffer":
            if args and not isinstance(args[0], (bytes, memoryview, str, tuple, Cont)):
                self.issue("guard", UNSAFE, i, f"{name} may only be built from in-pickle data")
        elif guard == "sklearn_tree":
            ok = len(args) == 3 and all(isinstance(a, int) and not isinstance(a, bool) for a in (args[0], args[2]))
            if ok and (0 <= args[0] < MAX_TREE_SIZE) and (1 <= args[2] < MAX_TREE_SIZE):
                arr = self.static_array(args[1])
                ok = (arr is not None and arr.ndim == 1 and arr.shape[0] == args[2] and arr.dtype.kind in "iu"
                      and (arr.size == 0 or (int(arr.min()) >= 1 and int(arr.max()) < MAX_TREE_SIZE)))
            else:
                ok = False
            if not ok:
                self.issue("guard", UNSAFE, i, "Tree(n_features, n_classes, n_outputs) with out-of-range sizes")
        elif guard in ("randomstate_ctor", "generator_ctor"):
            if len(args) > 1 and not (isinstance(args[1], G) and args[1].name == "numpy.random._pickle.__bit_generator_ctor"):
                self.issue("guard", UNSAFE, i, f"{name} given an unexpected bit-generator constructor")
            first = args[0] if args else "MT19937"
            if not ((isinstance(first, str) and first in BIT_GENERATORS)
                    or (isinstance(first, G) and first.name in _BIT_GENERATOR_CLASSES)
                    or (isinstance(first, Obj) and first.callee in _BIT_GENERATOR_MAKERS)):
                self.issue("guard", UNSAFE, i, f"{name} given an unknown bit generator")
        elif guard == "bit_generator_ctor":
            if args and not (isinstance(args[0], str) and args[0] in BIT_GENERATORS) and not (
                    isinstance(args[0], G) and args[0].name in _BIT_GENERATOR_CLASSES):
                self.issue("guard", UNSAFE, i, "unknown bit generator")

    def check_materialise(self, i: int, name: str, args: tuple[Any, ...]) -> None:
        """Static mirror of ``_guards.materialise_problem``: a range argument is counted, not trusted."""
        for value in args:
            if isinstance(value, Obj) and value.callee == "builtins.range":
                bounds = value.args if isinstance(value.args, tuple) else ()
                if not 1 <= len(bounds) <= 3 or not all(type(a) is int for a in bounds):
                    self.issue("guard", UNSAFE, i, f"{name} given a range whose bounds cannot be established")
                    continue
                try:
                    problem = materialise_problem(range(*bounds))
                except ValueError:  # range() refuses a zero step: the load fails before anything is built
                    continue
                if problem is not None:
                    self.issue("limit-array", LIMIT, i, f"{name}: {problem}")

    def new(self, i: int, cls: Any, args: Any, kwargs: Any) -> Obj:
        if not isinstance(cls, G):
            raise self.fatal("new-non-global", UNSAFE, i, "NEWOBJ on a value that is not an allowed class")
        if not isinstance(args, tuple) or (kwargs is not None and not isinstance(kwargs, Cont)):
            raise self.fatal("bad-args", MALFORMED, i, "NEWOBJ arguments must be a tuple")
        cls.called = True
        if cls.kind is Kind.VALUE:
            self.issue("new-value", UNSAFE, i, f"{cls.name} is allowed only as a value and may not be instantiated",
                       (cls.name,))
        elif cls.kind is Kind.NEW and (_values(args) or (kwargs is not None and kwargs.count)):
            # NEWOBJ runs cls.__new__(cls, *args): ndarray.__new__(ndarray, (10**9,)) allocates, sparse
            # matrices and estimators validate nothing. Real pickles rebuild these with no arguments.
            self.issue("new-args", UNSAFE, i, f"{cls.name} may only be rebuilt without arguments; NEWOBJ passes it "
                       "arguments its __new__ would act on", (cls.name,))
        elif cls.kind is Kind.CALL and self.guard_of(cls.name) is not None:
            # The loader hands out the guarded callable, which is not a class: NEWOBJ would bypass its guard.
            self.issue("new-args", UNSAFE, i, f"{cls.name} may only be called through its guard (REDUCE), "
                       "not instantiated with NEWOBJ", (cls.name,))
        return Obj(cls.name, origin=i)

    def guard_of(self, name: str) -> str | None:
        entry = self.policy.entries.get(name)
        return entry.guard if entry is not None else None

    def instantiate(self, i: int, cls: Any, args: list[Any]) -> Obj:
        if not isinstance(cls, G):
            raise self.fatal("call-non-global", UNSAFE, i, "OBJ/INST on a value that is not an allowed class")
        cls.called = True
        if cls.kind is not None and cls.kind is not Kind.CALL and (args or cls.kind is Kind.VALUE):
            self.issue("call-not-callable", UNSAFE, i,
                       f"{cls.name} is allowed only as a {cls.kind.value} and may not be called with arguments",
                       (cls.name,))
        elif cls.kind is Kind.CALL:
            self.check_guard(i, cls.name, tuple(args))  # OBJ/INST call cls(*args): the same guard as REDUCE
        return Obj(cls.name, origin=i)

    def build(self, i: int, target: Any, state: Any, fend: int) -> tuple[Obj, int] | None:
        if isinstance(target, G):
            self.issue("build-on-global", UNSAFE, i,
                       f"BUILD on the global {target.name} would modify it for the whole process", (target.name,))
            return None
        if not isinstance(target, Obj):
            raise self.fatal("bad-target", MALFORMED, i, f"BUILD on a {type(target).__name__}")
        if target.callee == "numpy.dtype":
            if target.state is not None:
                raise self.fatal("dtype-state", UNSAFE, i, "BUILD applied twice to one numpy dtype")
            target.state = state
            try:
                concrete(target)
            except Exception as exc:  # noqa: BLE001 - numpy raises SystemError & co on hostile states
                self.issue("dtype-state", UNSAFE, i,
                           f"invalid numpy dtype state ({exc}); numpy would build a corrupt dtype")
            return None
        # Only an ndarray's state is read again later (static_array); every other state is judged here
        # and dropped, so the simulated graph does not keep every object's state alive (memory ~ file).
        target.state = state if target.callee in _RECONSTRUCT else None
        if target.callee in _RECONSTRUCT:
            self.check_array_state(i, state)
        elif target.callee == _MARECONSTRUCT:
            self.check_array_state(i, state, masked=True)
        elif target.callee in _RNG_STATE_TARGETS:
            problem = rng_state_problem(static_mapping(state))
            if problem is not None:
                self.issue("guard", UNSAFE, i, problem)
        elif target.callee == _TREE:
            self.check_tree(i, target, state)
        elif target.callee in _STATE_LENGTHS and not (isinstance(state, tuple)
                                                     and len(state) == _STATE_LENGTHS[target.callee]):
            # Their Cython __setstate__ indexes the tuple without a length check.
            self.issue("guard", UNSAFE, i, f"{target.callee} state must be a {_STATE_LENGTHS[target.callee]}-tuple")
        elif target.callee == "functools.partial":
            func = state[0] if isinstance(state, tuple) and state else None
            if not isinstance(func, G) or func.kind not in (Kind.CALL, Kind.VALUE):
                self.issue("guard", UNSAFE, i, "functools.partial state may only name an allowed function")
        if target.callee == WRAPPER and not target.array and self.joblib:
            if fend and i + 1 < fend:
                raise self.fatal("frame-crossing", UNSAFE, i,
                                 "joblib array data starts inside a frame: joblib would read it from elsewhere")
            return self.joblib_array(i, state)
        return None

    def check_tree(self, i: int, target: Obj, state: Any) -> None:
        """Validate a decision tree's node arrays *before* Tree.__setstate__ sees them.

        The same checks run again on the built object at load time; running them here
        too means ``scan`` refuses what ``load`` refuses, without building anything."""
        from safeload._errors import UnsafeModelError
        from safeload._validate import _check_tree

        args = target.args
        try:
            fields = dict(state.items) if isinstance(state, Cont) and state.count == len(state.items) else None
            n_classes = self.static_array(args[1], limit=1 << 20) if isinstance(args, tuple) and len(args) == 3 else None
            nodes = self.static_array(fields.get("nodes"), limit=None) if fields else None
            values = self.static_array(fields.get("values"), limit=None) if fields else None
            if fields is None or n_classes is None or nodes is None or values is None:
                raise ValueError("tree state cannot be read statically")
            _check_tree(_StaticTree(args[0], n_classes, args[2], fields, nodes, values), "tree")
        except UnsafeModelError as exc:
            self.issue("tree-structure", UNSAFE, i, f"decision tree state is unsafe to use: {exc}")
        except Exception as exc:  # noqa: BLE001 - unverifiable state is refused, never guessed
            self.issue("tree-structure", UNSAFE, i, f"decision tree state cannot be verified: {exc}")

    def static_array(self, value: Any, limit: int | None = 1 << 20) -> np.ndarray[Any, Any] | None:
        """Rebuild an array from the stream's own bytes (zero-copy), to check it before anything is built."""
        cap = limit if limit is not None else 1 << 62
        try:
            if isinstance(value, Obj) and value.array and isinstance(value.state, ArraySpan):
                span = value.state
                if span.nested is not None or span.nbytes > cap:
                    return None
                if self.filling is not None:
                    self.filling.wait(span.data_offset + span.nbytes)
                raw = memoryview(self.data)[span.data_offset:span.data_offset + span.nbytes]
                arr = np.frombuffer(raw, span.dtype)
                return arr.reshape(span.shape[::-1]).T if span.order == "F" else arr.reshape(span.shape)
            if isinstance(value, Obj) and value.callee in _RECONSTRUCT and isinstance(value.state, tuple) \
                    and len(value.state) == 5:
                _, shape, dtype, fortran, raw = value.state
                data = _raw_bytes(raw)
                dt = concrete(dtype)
                if data is None or not isinstance(dt, np.dtype) or dt.hasobject or len(data) > cap:
                    return None
                return np.frombuffer(data, dt).reshape(shape, order="F" if fortran else "C")
            if isinstance(value, Obj) and value.callee in _FROMBUFFER and isinstance(value.args, tuple) \
                    and len(value.args) == 4:
                buf, dtype, shape, order = value.args
                data = _raw_bytes(buf)
                dt = concrete(dtype)
                if data is None or not isinstance(dt, np.dtype) or dt.hasobject or len(data) > cap:
                    return None
                return np.frombuffer(data, dt).reshape(shape, order=order)
        except Exception:  # noqa: BLE001 - unverifiable means refused by the caller
            return None
        return None

    def check_array_state(self, i: int, state: Any, masked: bool = False) -> None:
        """What ndarray.__setstate__ will meet (MaskedArray's passes it the first fields of its own)."""
        if not isinstance(state, tuple):
            return
        version: Any = 1
        if masked:  # (version, shape, dtype, is_fortran, raw, mask, fill_value); it ignores its version
            if len(state) != 7:
                return
            shape, dtype, raw = state[1], state[2], state[4]
        elif len(state) == 5:  # (version, shape, dtype, is_fortran, raw)
            version, shape, dtype, raw = state[0], state[1], state[2], state[4]
        elif len(state) == 4:  # the version-0 form numpy still accepts
            shape, dtype, raw = state[0], state[1], state[3]
        else:
            return
        count = _elements(shape)
        data = _raw_bytes(raw)  # bytes, or protocol 0-2 bytes spelled as _codecs.encode(str, 'latin1')
        have = len(data) if data is not None else (
            len(raw) if isinstance(raw, str) else (raw.count if isinstance(raw, Cont) else None))
        if count is None:
            self.issue("guard", UNSAFE, i, "ndarray state with a non-integer shape")
            return
        try:
            dt = concrete(dtype)
        except Exception:  # noqa: BLE001 - an unevaluable dtype: only the checks that need none apply
            dt = None
        # A subarray dtype ('(N,)O') multiplies what numpy allocates: it sizes the array from
        # shape x item size before it looks at the data (and fills object subarrays by broadcasting).
        elements = count * dtype_elements(dt) if isinstance(dt, np.dtype) else count
        if elements > MAX_PLACEHOLDER_ELEMENTS and (have is None or elements > have):
            self.issue("limit-array", LIMIT, i,
                       f"ndarray state claims {elements} elements but carries only {have} bytes/items")
            return
        if not isinstance(dt, np.dtype) and isinstance(raw, Cont):
            self.issue("guard", UNSAFE, i, "ndarray state with an item list and a dtype that cannot be established "
                       "statically (its size and object layout decide what numpy reads)")
            return
        self.check_object_items(i, count, dt, raw)
        if not isinstance(dt, np.dtype) or dt.hasobject:
            return
        # numpy's own refusals, mirrored so that scan reports what load will meet
        if type(version) is int and version not in (0, 1):
            self.issue("array-state", MALFORMED, i, f"numpy cannot read version {version} of an ndarray pickle")
        elif isinstance(raw, str) and not all(ord(c) < 256 for c in raw):
            self.issue("array-state", MALFORMED, i, "ndarray data is a str that is not latin-1")
        elif isinstance(raw, str) or data is not None:
            size = len(raw) if isinstance(raw, str) else len(data)  # type: ignore[arg-type]
            if size != count * dt.itemsize:
                self.issue("array-state", MALFORMED, i, f"ndarray data holds {size} bytes for {count} elements "
                           f"of {dt.itemsize} bytes (numpy: buffer size does not match array size)")
        elif raw is None or isinstance(raw, (int, float, Cont)):
            self.issue("array-state", MALFORMED, i, "ndarray data must be bytes for a dtype without objects")

    def check_object_items(self, i: int, count: int, dt: Any, raw: Any) -> None:
        """An object array is filled from a list: numpy copies ``count`` items out of it without
        checking its length, so a shorter list makes it read (and keep) pointers past the end."""
        if _raw_bytes(raw) is not None or raw is None or isinstance(raw, (str, int, float)):
            return  # numpy checks the byte count itself, or refuses a non-list with a TypeError
        if isinstance(raw, Cont) and raw.kind != "list":
            return  # a dict or a set: not a list, a TypeError
        if isinstance(dt, np.dtype) and not dt.hasobject:
            return  # numpy wants bytes for this dtype and refuses a list
        if isinstance(raw, Cont):
            if raw.count < count:
                self.issue("guard", UNSAFE, i, f"object array state lists {raw.count} items for {count} "
                           "elements: numpy would read pointers past the end of the list")
            return
        self.issue("guard", UNSAFE, i, "object array state whose item list is not a list literal: "
                   "its length cannot be checked before numpy reads it")

    # -- joblib arrays -----------------------------------------------------------------
    def joblib_array(self, i: int, state: Any) -> tuple[Obj, int]:
        spec = _wrapper_state(state)
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
            self.trace.arrays.append(ArraySpan(i, pos, 0, dtype, shape, order, allow_mmap, sub))
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
_MARGIN = 64 * 1024
_AHEAD = 256 * 1024
_TEXT_OPS = frozenset({0x49, 0x4C, 0x46, 0x53, 0x56, 0x67, 0x70, 0x50})
_TREE = "sklearn.tree._tree.Tree"
# Calls whose arguments later checks read (dtype evaluation, raw bytes, Tree sizes).
_KEEP_ARGS = frozenset({"numpy.dtype", "_codecs.encode", "builtins.bytes", "numpy._core.numeric._frombuffer",
                        "numpy.core.numeric._frombuffer", _TREE, "builtins.range"})
_BUILDS_FIRST_ARG = frozenset({"reconstructor", "new_obj"})
_BINARY_TREES = tuple(f"sklearn.neighbors._{m}.{c}{b}" for m, c in (("kd_tree", "KDTree"), ("ball_tree", "BallTree"))
                      for b in ("", "32", "64"))
_METRICS = tuple(f"sklearn.metrics._dist_metrics.{n}{b}" for n in (
    "BrayCurtisDistance", "CanberraDistance", "ChebyshevDistance", "DiceDistance", "EuclideanDistance",
    "HammingDistance", "HaversineDistance", "JaccardDistance", "MahalanobisDistance", "ManhattanDistance",
    "MatchingDistance", "MinkowskiDistance", "RogersTanimotoDistance", "RussellRaoDistance", "SEuclideanDistance",
    "SokalMichenerDistance", "SokalSneathDistance") for b in ("32", "64"))
# Allowed Cython classes whose __setstate__ reads a fixed-size tuple without checking its length.
STATE_LENGTHS: dict[str, int] = {**{n: 13 for n in _BINARY_TREES}, **{n: 3 for n in _METRICS}}
_STATE_LENGTHS = STATE_LENGTHS
_FROMBUFFER = frozenset({"numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer"})
_BIT_GENERATOR_MAKERS = frozenset({"numpy.random._pickle.__bit_generator_ctor", "numpy.random._mt19937.MT19937",
                                   "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM",
                                   "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64"})
#: BUILD targets whose state dict numpy's bit-generator setters read (see _guards.rng_state_problem).
_RNG_STATE_TARGETS = _BIT_GENERATOR_MAKERS | {"numpy.random._pickle.__randomstate_ctor"}
_BIT_GENERATOR_CLASSES = frozenset({"numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
                                    "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
                                    "numpy.random._sfc64.SFC64"})


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


def _has_unhashable(values: Any) -> bool:
    """Would CPython fail to hash one of ``values``? Lists, dicts and sets built in the stream (and
    tuples holding them) are unhashable; other objects may or may not be, and are let through."""
    types = set(map(type, values))
    if Cont in types:
        return True
    return tuple in types and any(type(v) is tuple and _has_unhashable(v) for v in values)


def _static_dtype(value: Any) -> np.dtype[Any] | None:
    """The dtype a reconstruction argument stands for, as the runtime guard accepts it (type string or dtype)."""
    try:
        dt = concrete(value)
        if isinstance(dt, (str, bytes)):
            dt = np.dtype(dt if isinstance(dt, str) else dt.decode("latin1"))
    except Exception:  # noqa: BLE001 - numpy raises many types on hostile specs; unknown means refused
        return None
    return dt if isinstance(dt, np.dtype) else None


def _values(items: Any) -> int:
    """How many stack values ``items`` stands for (a Run is two per entry)."""
    total = len(items)
    if Run not in map(type, items):  # the common case, without a Python-level loop
        return total
    for x in items:
        if type(x) is Run:
            total += 2 * x.count - 1
    return total


def _elements(shape: Any) -> int | None:
    if isinstance(shape, int) and not isinstance(shape, bool):
        dims: tuple[Any, ...] = (shape,)
    elif isinstance(shape, tuple):
        dims = shape
    else:
        return None
    total = 1
    for d in dims:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            return None
        total *= d
    return total


def static_mapping(value: Any, depth: int = 0) -> Any:
    """A dict built in the stream as a plain dict of what is known statically (ints, strings, nested
    dicts), anything else as None. The lenient twin of :func:`concrete`, which refuses what it cannot
    evaluate (here a state dict holds arrays beside the ints we check); dicts the walker did not keep
    whole (runs, over the cap) stay unknown."""
    if isinstance(value, Cont) and value.kind == "dict" and depth < 4:
        if value.count != len(value.items):
            return None
        return {key: static_mapping(item, depth + 1) for key, item in value.items if isinstance(key, str)}
    return value if isinstance(value, (int, str)) else None


def concrete(value: Any, depth: int = 0) -> Any:
    """Turn a simulated value back into data (only dtypes are evaluated)."""
    if depth > 32:
        raise ValueError("value nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, memoryview):
        if value.nbytes > 1 << 20:
            raise ValueError("bytes too large to evaluate")
        return value.tobytes()
    if isinstance(value, tuple):
        return tuple(concrete(v, depth + 1) for v in value)
    if isinstance(value, Cont) and value.kind == "dict":
        if value.count > len(value.items):
            raise ValueError("dict too large to evaluate")
        return {concrete(k, depth + 1): concrete(v, depth + 1) for k, v in value.items}
    if isinstance(value, Obj) and value.callee == "numpy.dtype" and value.value is not None:
        return value.value
    if isinstance(value, Obj) and value.callee == "numpy.dtype" and isinstance(value.args, tuple):
        args = concrete(value.args, depth + 1)
        if not args or not isinstance(args[0], (str, bytes)) or len(args) > 3 or \
                not all(isinstance(a, (bool, int)) for a in args[1:]):
            raise ValueError("dtype built from something other than a type string")
        dt = np.dtype(*args)
        if value.state is not None:
            state = concrete(value.state, depth + 1)
            _check_dtype_state(state)
            if dt.kind in "mM" and not _datetime_metadata_ok(state):
                # numpy dereferences NULL when a datetime dtype is restored without its unit metadata
                raise ValueError("datetime dtype state without valid unit metadata")
            dt.__setstate__(state)
            _check_dtype_layout(dt)
            value.value = dt  # only a complete (stated) dtype is cached: BUILD may still follow otherwise
        return dt
    raw = _raw_bytes(value)
    if isinstance(raw, (bytes, memoryview)):
        return bytes(raw)
    raise ValueError(f"cannot evaluate {type(value).__name__} statically")


class _StaticTree:
    """The attributes ``_validate._check_tree`` reads, taken from a Tree's pickled arguments and state."""

    def __init__(self, n_features: Any, n_classes: np.ndarray[Any, Any], n_outputs: Any, fields: dict[Any, Any],
                 nodes: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> None:
        if nodes.ndim != 1 or not nodes.dtype.names:
            raise ValueError("tree nodes must be a 1-d structured array")
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.n_classes = n_classes
        self.max_n_classes = int(n_classes.max()) if n_classes.size else 0
        self.node_count = fields.get("node_count")
        self.max_depth = fields.get("max_depth")
        self.capacity = nodes.shape[0]
        count = self.node_count if isinstance(self.node_count, int) else 0
        self._state = {"nodes": nodes[:count], "values": values[:count]}

    def __getstate__(self) -> dict[str, Any]:
        return self._state


def _raw_bytes(value: Any) -> bytes | memoryview | None:
    if isinstance(value, (bytes, memoryview)):
        return value
    if isinstance(value, Obj) and value.callee == "_codecs.encode" and isinstance(value.args, tuple) \
            and value.args and isinstance(value.args[0], str):
        return value.args[0].encode("latin1")
    if isinstance(value, Obj) and value.callee == "builtins.bytes" and value.args == ():
        return b""
    return None


def _datetime_metadata_ok(st: tuple[Any, ...]) -> bool:
    if len(st) != 9 or not isinstance(st[8], tuple) or len(st[8]) != 2:
        return False
    extra, unit = st[8]
    return (extra is None or isinstance(extra, dict)) and isinstance(unit, tuple) and len(unit) == 4 \
        and isinstance(unit[0], bytes) and all(isinstance(x, int) and not isinstance(x, bool) for x in unit[1:])


def _check_dtype_state(st: Any) -> None:
    """numpy's dtype.__setstate__ trusts its argument: check its shape before calling it."""
    if not isinstance(st, tuple) or len(st) not in (8, 9):
        raise ValueError("dtype state must be an 8- or 9-tuple")
    ver, order, sub, names, fields, elsize, align, flags = st[:8]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (ver, elsize, align, flags)) or ver not in (3, 4):
        raise ValueError("dtype state header is not integers")
    if order not in ("<", ">", "|", "=", b"<", b">", b"|", b"="):  # bytes: a Python 2 pickle read with encoding='bytes'
        raise ValueError("dtype byte order")
    if sub is not None and not (isinstance(sub, tuple) and len(sub) == 2 and isinstance(sub[0], np.dtype)
                                and isinstance(sub[1], tuple) and all(isinstance(d, int) and d >= 0 for d in sub[1])):
        raise ValueError("dtype subarray must be (dtype, shape)")
    if (names is None) != (fields is None):
        raise ValueError("dtype names and fields must come together")
    if names is not None:
        if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names) or not isinstance(fields, dict):
            raise ValueError("dtype names must be strings and fields a dict")
        if not set(names) <= set(fields) or len(set(names)) != len(names):
            raise ValueError("dtype fields do not match names")
        for f in fields.values():
            if not (isinstance(f, tuple) and len(f) in (2, 3) and isinstance(f[0], np.dtype)
                    and isinstance(f[1], int) and not isinstance(f[1], bool)):
                raise ValueError("dtype field must be (dtype, offset[, title])")
        titles = {fields[n][2] for n in names if len(fields[n]) == 3}
        if set(fields) - set(names) - titles:  # extra keys may only be the titles of named fields
            raise ValueError("dtype fields do not match names")
    if len(st) == 9 and not (st[8] is None or isinstance(st[8], (dict, tuple))):
        raise ValueError("dtype metadata")


def _canonical(dt: np.dtype[Any]) -> np.dtype[Any]:
    """The same dtype built by numpy's public constructors, which compute its flags themselves."""
    if dt.fields:
        names = list(dt.names or ())
        fields: dict[str, tuple[Any, ...]] = dict(dt.fields)
        spec: dict[str, Any] = {"names": names, "formats": [fields[n][0] for n in names],
                                "offsets": [fields[n][1] for n in names], "itemsize": dt.itemsize}
        titles = [fields[n][2] if len(fields[n]) > 2 else None for n in names]
        if any(t is not None for t in titles):
            spec["titles"] = titles
        built: np.dtype[Any] = np.dtype(spec, align=dt.isalignedstruct)  # type: ignore[call-overload]
        return built
    if dt.subdtype is not None:
        return np.dtype((dt.subdtype[0], dt.subdtype[1]))
    return np.dtype(dt.str)


def _check_dtype_layout(dt: np.dtype[Any]) -> None:
    """Every field and subarray must lie inside the item, object fields must not overlap, and the
    flags a state may set (has-object, needs-init, ...) must be the ones numpy itself would compute:
    an object dtype whose state clears them makes numpy read raw bytes as pointers."""
    if dt.itemsize < 0:
        raise ValueError("negative itemsize")
    canon = _canonical(dt)
    if (canon.flags & 0x7F) != (dt.flags & 0x7F) or canon.itemsize != dt.itemsize or canon.kind != dt.kind:
        raise ValueError(f"dtype flags/size differ from what numpy computes for {dt!r}")
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        count = 1
        for d in shape:
            count *= d
        if base.itemsize * count != dt.itemsize:
            raise ValueError("subarray size does not match the item size")
    if dt.fields:
        for sub, off, *_ in dt.fields.values():
            if off < 0 or off + sub.itemsize > dt.itemsize:
                raise ValueError("dtype field lies outside the item")
        if dt.hasobject:
            names = list(dt.names or ())
            np.dtype({"names": names, "formats": [dt.fields[n][0] for n in names],
                      "offsets": [dt.fields[n][1] for n in names], "itemsize": dt.itemsize})


def _wrapper_state(state: Any) -> tuple[str, tuple[int, ...], str, np.dtype[Any], bool, int | None] | str:
    if not isinstance(state, Cont) or state.kind != "dict" or state.count > len(state.items):
        return "state is not a small dict"
    fields: dict[Any, Any] = dict(state.items)
    sub = fields.get("subclass")
    shape = fields.get("shape")
    order = fields.get("order")
    if not isinstance(sub, G):
        return "subclass is not a global"
    if not isinstance(shape, tuple) or _elements(shape) is None:
        return "shape is not a tuple of non-negative integers"
    if order not in ("C", "F"):
        return f"order must be 'C' or 'F', got {order!r}"
    try:
        dtype = concrete(fields.get("dtype"))
    except Exception as exc:  # noqa: BLE001 - numpy raises SystemError & co on hostile states
        return f"dtype cannot be evaluated ({exc})"
    if not isinstance(dtype, np.dtype):
        return "dtype is not a numpy dtype"
    allow_mmap = fields.get("allow_mmap", False)
    align = fields.get("numpy_array_alignment_bytes", None)
    if not isinstance(allow_mmap, bool) or not (align is None or (isinstance(align, int) and 0 < align <= 4096)):
        return "invalid allow_mmap or alignment"
    return sub.name, shape, order, dtype, allow_mmap, align


def walk(data: Buffer, policy: Policy, *, start: int = 0, joblib: bool = False,
         filling: Filling | None = None, observer: Observer | None = None,
         encoding: str = "ASCII", errors: str = "strict", fix_imports: bool = True) -> Trace:
    """Walk one pickle stream starting at ``start``; trailing bytes are an issue.

    With ``filling``, ``data`` is still being read (see _filling): the walk waits for bytes it needs.
    ``observer``: see :data:`Observer` (the tests' differential oracle)."""
    w = _Walker(data, start, policy, joblib, 0, filling, observer, Decoding(encoding, errors, fix_imports))
    trace = w.run(start)
    if trace.end >= 0 and trace.end != len(data):
        trace.issues.append(
            Issue("trailing-data", UNSAFE, trace.end,
                  f"{len(data) - trace.end} bytes follow the STOP opcode (a stacked pickle or appended archive)")
        )
    return trace
