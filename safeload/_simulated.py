"""What the opcode walker puts on its simulated stack instead of objects, and what it reports.

The walker (``_walker``) moves these values the way CPython's unpickler moves objects; the static
mirrors (``_mirrors``) judge them. Nothing here is built from the file's names: a ``G`` is a name
and the policy's kind for it, an ``Obj`` what a call or instantiation would return, a ``Cont`` a
list/dict/set under construction, a ``Run`` a vocabulary run taken in one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from safeload._allowlist import Kind
from safeload._textops import Decoding

__all__ = ["LIMIT", "MALFORMED", "OTHER", "UNSAFE", "ArraySpan", "Cont", "Frozen", "G", "GlobalRef", "Issue", "Obj", "Run",
           "Trace"]

UNSAFE = "unsafe"
MALFORMED = "malformed"
LIMIT = "limit"


@dataclass(init=False)
class GlobalRef:
    """One global the stream resolves, with the policy's verdict.

    Not frozen, and its ``__init__`` written out: mypyc runs a dataclass's generated ``__init__`` as
    Python code (a frozen one through ``object.__setattr__``), and the walker makes one per global.
    Nothing changes it after the walk.
    """

    name: str
    module: str
    qualname: str
    raw_module: str
    raw_qualname: str
    offset: int
    opcode: str
    allowed: bool

    def __init__(self, name: str, module: str, qualname: str, raw_module: str, raw_qualname: str, offset: int,
                 opcode: str, allowed: bool) -> None:
        self.name = name
        self.module = module
        self.qualname = qualname
        self.raw_module = raw_module
        self.raw_qualname = raw_qualname
        self.offset = offset
        self.opcode = opcode
        self.allowed = allowed


@dataclass(frozen=True)
class Issue:
    """A reason to refuse the stream; ``severity`` picks the exception class."""

    rule: str
    severity: str
    offset: int
    message: str
    names: tuple[str, ...] = ()


@dataclass(init=False)
class ArraySpan:
    """Where a joblib array's raw bytes (or nested pickle) sit in the stream. Not changed after the
    walk (not frozen, ``__init__`` written out: as ``GlobalRef``, one per joblib array)."""

    build_offset: int
    data_offset: int
    nbytes: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: str
    allow_mmap: bool
    nested: Trace | None

    def __init__(self, build_offset: int, data_offset: int, nbytes: int, dtype: np.dtype[Any],
                 shape: tuple[int, ...], order: str, allow_mmap: bool, nested: Trace | None = None) -> None:
        self.build_offset = build_offset
        self.data_offset = data_offset
        self.nbytes = nbytes
        self.dtype = dtype
        self.shape = shape
        self.order = order
        self.allow_mmap = allow_mmap
        self.nested = nested


@dataclass(init=False)
class Trace:
    """What one walk found (``__init__`` written out, as ``GlobalRef``: two per small model)."""

    start: int
    end: int
    protocol: int
    opcodes: int
    globals: list[GlobalRef]
    #: The simulated globals, parallel to ``globals``: ``.called`` says whether the stream ever calls
    #: that occurrence, so the engine hands out the guarded form only where a call can happen.
    nodes: list[G]
    issues: list[Issue]
    arrays: list[ArraySpan]
    #: How protocol 0-2 text was read (``pickle.load``'s encoding/errors/fix_imports); the engine builds with it.
    decoding: Decoding
    #: The value STOP returns (what ``load`` would hand back), for the static model (``_static_model``).
    root: Any

    def __init__(self, start: int, decoding: Decoding | None = None) -> None:
        self.start = start
        self.end = -1
        self.protocol = 0
        self.opcodes = 0
        self.globals = []
        self.nodes = []
        self.issues = []
        self.arrays = []
        self.decoding = Decoding() if decoding is None else decoding
        self.root = None

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
    """A list, dict or set under construction.

    A dict keeps its first items (up to the walker's cap) flat, ``[k0, v0, k1, v1, ...]``: one
    list and no pair tuples per dict, which is most of the walker's memory on models made of
    many small objects (each with a state dict). ``count`` counts every item (pairs for a dict)."""

    __slots__ = ("kind", "flat", "count", "origin", "vocab", "mixed", "overflow", "unhashable_kept")

    def __init__(self, kind: str, origin: int = -1) -> None:
        self.kind = kind
        self.flat: list[Any] = []
        self.count = 0
        self.origin = origin
        #: A list's items past the cap that a call hashing them could be made to pay for (tuples,
        #: keys built to collide, pairs of such keys: ``_walker.overflow``), so that the mirror of
        #: set(list)/OrderedDict(list) judges every item the runtime guard judges.
        self.overflow: list[Any] | None = None
        #: ``overflow`` holds the first item past the cap that no call could hash (one is enough)
        self.unhashable_kept = False
        #: Once a dict outgrows the cap (or takes a vocabulary run): every entry it was given, in
        #: stream order and as SETITEMS lists them (runs, and ``str`` keys followed by ``int``
        #: values), while all are such (``mixed`` otherwise). Scan's twin judges such a dict, too
        #: large to rebuild, from the bytes (``_static_model.census``).
        self.vocab: list[Any] | None = None
        self.mixed = False

    def vocabulary_only(self) -> bool:
        """A dict given only vocabulary entries (runs and ``str -> int`` pairs), all recorded."""
        return self.vocab is not None and not self.mixed

    def kept(self) -> int:
        """How many pairs are kept."""
        return len(self.flat) // 2

    def whole(self) -> bool:
        """Every pair is kept (the dict can be judged statically)."""
        return self.count == len(self.flat) // 2

    def complete(self) -> bool:
        """Every item is kept: a list's items, a dict's pairs (past the walker's caps they are only counted)."""
        return self.count == (len(self.flat) if self.kind == "list" else len(self.flat) // 2)

    def str_fields(self) -> dict[str, Any] | None:
        """A whole dict whose keys are all plain strings, as CPython builds it (a later equal key
        wins); None for anything else. The walker does not evaluate keys: a numpy string equal to
        "shape" would replace its value in CPython's dict, and bytes keys are kept as memoryviews,
        which a writable buffer cannot hash. Real pickled states only ever have ``str`` keys."""
        if self.kind != "dict" or not self.whole():
            return None
        out: dict[str, Any] = {}
        flat = self.flat
        for k in range(0, len(flat), 2):
            key = flat[k]
            if type(key) is not str:
                return None
            out[key] = flat[k + 1]
        return out

    def pairs(self) -> list[tuple[Any, Any]]:
        flat = self.flat
        return list(zip(flat[::2], flat[1::2], strict=True))


class Frozen:
    """A FROZENSET result: its items, which a dict or set given it as a key hashes through it."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


class _Other:
    __slots__ = ()


OTHER = _Other()


class Run:
    """A run of >= 8 (SHORT_BINUNICODE, MEMOIZE, BININT*) entries delimited in one step (_match_run),
    or with ``put``, of protocol 1-3 entries (BINUNICODE, BINPUT/LONG_BINPUT to consecutive slots,
    BININT*; _match_put_run).

    It stands for 2*count stack values (key, value, key, value...) and ``count`` memo
    entries; it is expanded into real values only if an opcode looks inside it.
    """

    __slots__ = ("start", "end", "count", "put", "index")

    def __init__(self, start: int, end: int, count: int, put: bool = False) -> None:
        self.start = start
        self.end = end
        self.count = count
        self.put = put
        # offsets of every _walker._STRIDE-th entry, made by the first memo read into a long run
        self.index: list[int] | None = None
