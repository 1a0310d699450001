"""skops archives under the pickle policy: safeload parses, judges and builds them itself.

Why not ``skops.io.load(trusted=...)``: skops' trust list is a set of names with no notion of *how*
a name is used. A class trusted to be rebuilt (``csr_matrix`` through ``ObjectNode``) may then also
be called with file-chosen arguments (``ConstructorFromReduceNode``), builtins are trusted without
being named anywhere (``bytearray(10**9)``), and skops reads each member whole, whatever it inflates
to. A pre-audit cannot close that: what a node *does* with a name is decided inside skops' loaders.
So this module mirrors skops 0.16's node loaders (``skops/io/_general.py``, ``_numpy.py``,
``_scipy.py``, ``_sklearn.py``) in three steps, and skops' code never runs on an untrusted file:

1. **Parse** ``schema.json`` into a graph of ``_Node`` with skops' own memo rule (a truthy ``__id__``
   is remembered; a later state with a remembered ``__id__`` *is* that node), refusing unknown
   loaders, missing fields, cycles, deep nesting and members named by two nodes. Each member a node
   reads is inflated while counting its *actual* bytes against the joblib caps (``_containers.inflate_cap``,
   per member and for the archive); every array member's .npy header is checked against its real
   size, whatever the member is called.
2. **Judge** (``audit``; ``scan`` stops here, importing nothing the file names): every node becomes
   (name, use) decisions with the walker's meaning: ``new`` (``cls.__new__`` + state: NEW or CALL
   entries without a guard), ``call`` (called with file-chosen arguments: CALL entries only, after
   their guard), ``value`` (only referenced: any entry). A guarded call is checked *statically*
   by running the entry's own guard (``_guards.guard``) around a stub on the arguments evaluated
   from plain data (JSON, containers, arrays, ``range``); arguments that are not plain data are
   refused, so ``scan`` and ``load`` see the same check on the same values.
3. **Build** (``load_skops``): safeload's own loaders construct the same graph; every name comes
   from ``policy.resolve`` (the runtime guard runs), each in the use judged in step 2. The only
   third-party loaders used are ``numpy.load(allow_pickle=False)`` and ``scipy.sparse.load_npz`` on
   bytes already checked.

``_NODE_RULES`` (and the README's table) says what each node type may do.
"""

from __future__ import annotations

import functools
import io
import json
import lzma
import reprlib
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from safeload._allowlist import Kind
from safeload._containers import Buffer, inflate_cap, npy_header
from safeload._errors import LimitExceededError, MalformedModelError, SafeloadError, UnsafeModelError
from safeload._hashwork import big_int
from safeload._policy import Policy, refusal_message

if TYPE_CHECKING:
    from safeload._guards import HashMeter

__all__ = ["SkopsAudit", "audit", "load_skops"]

_MAX_SCHEMA_BYTES = 256 * 1024 * 1024
#: schema.json may inflate to this many times the file (or to ``_SCHEMA_FLOOR``): json.loads and the
#: node graph hold ~5x the schema, so a 0.24 MB file once made scan parse 256 MiB (30 s, 6.5 GB).
#: The zoo's real fitted models, re-zipped with deflate level 9, inflate at most 21x (20.8,
#: TunedThresholdClassifierCV); skops.io.dump stores the schema uncompressed (at most 1x).
_SCHEMA_RATIO = 32
_SCHEMA_FLOOR = 1 << 20
#: Schema bytes per JSON container ('[' or '{', counted in the raw bytes, strings included): json.loads
#: builds ~70 bytes per empty container, 20x the 3 bytes of ``[],``. Real schemas hold one per 143
#: bytes or more (the zoo; a skops node is one or two containers of 40+ bytes each).
_SCHEMA_BYTES_PER_CONTAINER = 32
_SCHEMA_MIN_CONTAINERS = 1 << 15
#: Longest run of digits a JSON number (or a JsonNode's text) may have: CPython converts a decimal
#: number in time quadratic in its length (4,300 digits, the interpreter's own limit, parse at 90 ns
#: per byte; 1,000 at the ~30 ns of any JSON). Real schemas: 39 at most (a SeedSequence's 128-bit
#: entropy); 1,000 digits hold a 3,300-bit integer.
_MAX_DIGITS = 1000
#: Digits to '0', everything else to ' ': a run too long is then one ``bytes.find`` (a regex retries
#: each start inside a run of 1,000 digits: 500 steps per byte).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_TOO_MANY_DIGITS = b"0" * (_MAX_DIGITS + 1)
#: numpy's own limit on an array's dimensions (``numpy.lib.format`` refuses more, ``np.empty`` too).
_MAX_NDIM = 64
#: An array's element count past which numpy refuses it ("array is too big"): dimensions are
#: multiplied only up to here, so a shape of thousand-digit numbers costs nothing.
_MAX_ELEMENTS = (1 << 63) - 1
#: Node nesting depth: parsing and building recurse ~4 frames per level; the zoo nests 14 levels at most.
_MAX_DEPTH = 100
#: numpy.load refuses larger .npy headers by default (``max_header_size``).
_MAX_NPY_HEADER = 10000
#: The newest skops protocol these loaders mirror (skops 0.16); older files use the same loaders.
_PROTOCOL = 3
_CHUNK = 1 << 20
#: SeedSequence's pool size is an allocation (numpy's default is 4 words).
_MAX_POOL_SIZE = 1 << 10
_SPARSE_FORMATS = frozenset({"csr", "csc", "bsr", "dia", "coo"})
_BIT_GENERATORS = {"MT19937": "numpy.random._mt19937.MT19937", "PCG64": "numpy.random._pcg64.PCG64",
                   "PCG64DXSM": "numpy.random._pcg64.PCG64DXSM", "Philox": "numpy.random._philox.Philox",
                   "SFC64": "numpy.random._sfc64.SFC64"}
_SEED_SEQ_KEYS = frozenset({"entropy", "spawn_key", "pool_size", "n_children_spawned"})
_OPERATOR_FUNCS = frozenset({"attrgetter", "itemgetter", "methodcaller"})
#: Dict key converters: skops calls ``key_type(json_key)``; only these fixed conversions are done.
_KEY_TYPES: frozenset[str] = frozenset(
    {"builtins.str", "builtins.int", "builtins.float", "builtins.bool"}
    | {f"numpy.{t}" for t in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                              "intp", "uintp", "float16", "float32", "float64", "str_", "bytes_")})

NEW, CALL, VALUE = "new", "call", "value"

#: What each skops node type does, as decisions (also in the README).
_NODE_RULES: dict[str, str] = {
    "JsonNode": "plain JSON value; names nothing",
    "ListNode": "builtins.list: a list of its items (value); another class: called with the list (call)",
    "TupleNode": "builtins.tuple: a tuple (value); another class (namedtuple): called with the items (call)",
    "SetNode": "its class called with the list of items (call; set/frozenset guards count elements)",
    "DictNode": "builtins.dict: a dict (value); a CALL class called with no arguments, a NEW class built "
                "with __new__, then filled; keys converted only by str/int/float/bool/numpy scalar types",
    "DefaultDictNode": "collections.defaultdict() (call), factory only referenced (value), then filled",
    "SliceNode": "builtins.slice(start, stop, step) (call)",
    "BytesNode": "the member's bytes (value of builtins.bytes)",
    "BytearrayNode": "builtins.bytearray of the member's bytes (call, guarded)",
    "FunctionNode": "the named function (value)",
    "TypeNode": "the named type (value)",
    "PartialNode": "functools.partial(func, *args, **kwds) (call, guarded); func must be a Function/TypeNode",
    "MethodNode": "getattr(obj, name): needs module.Class.name allowed (value)",
    "OperatorFuncNode": "operator.attrgetter/itemgetter/methodcaller(*attrs) (call)",
    "ConstructorFromReduceNode": "the class called with the content's items (call)",
    "ObjectNode": "cls.__new__(cls) + __setstate__/__dict__ (new)",
    "ReduceNode": "TreeNode/LossNode: the class called with args (call, guarded), then __setstate__",
    "NdArrayNode": "numpy.load(allow_pickle=False) of a checked member (value of numpy.ndarray); a numpy "
                   "scalar type: the 0-d array's item; another class: called with the array (call); "
                   "object arrays filled item by item into the declared shape",
    "MaskedArrayNode": "numpy.ma.MaskedArray of two NdArrayNodes (new)",
    "DTypeNode": "the dtype of an NdArrayNode (value of numpy.dtype)",
    "RandomStateNode": "the class called with no arguments (call), then set_state (position checked)",
    "RandomGeneratorNode": "SeedSequence(**state) (call, pool size bounded), a known bit generator (call), "
                           "its state (position checked), the class called with it (call)",
    "SparseMatrixNode": "scipy.sparse.load_npz of a checked inner archive; the declared class must be what "
                        "it builds (new)",
    "CachedNode": "a node already read (by __id__)",
}
_REDUCE_LOADERS = frozenset({"TreeNode", "LossNode"})
_TREE = "sklearn.tree._tree.Tree"


@dataclass(frozen=True)
class SkopsAudit:
    """What ``audit`` found: the names (``types``), those outside the policy, the loaders and every decision."""

    types: tuple[str, ...]
    refused: tuple[str, ...]
    loaders: tuple[str, ...]
    uses: tuple[tuple[str, str], ...] = ()
    #: The parsed and judged graph, so ``load_skops`` builds exactly what was judged without a second parse.
    plan: Any = field(default=None, compare=False, repr=False)


@dataclass(eq=False, slots=True)
class _Node:
    loader: str
    module: str
    cls: str
    state: dict[str, Any]
    kids: dict[str, Any] = field(default_factory=dict)
    file: str | None = None

    @property
    def name(self) -> str:
        return f"{self.module}.{self.cls}"


@dataclass(frozen=True)
class _Npy:
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran: bool = False
    offset: int = 0

    def array(self, raw: bytes, where: str) -> np.ndarray[Any, Any]:
        """What numpy.load(allow_pickle=False) returns for ``raw``, from the header already checked (a
        writable copy, as numpy.load makes), without parsing the header a second time."""
        count = _cells(self.shape, _MAX_ELEMENTS)  # (checked: at most _MAX_ELEMENTS)
        if len(raw) != self.offset + count * self.dtype.itemsize:
            raise MalformedModelError(f"member {where} changed size between reads")
        flat = np.frombuffer(raw, dtype=self.dtype, count=count, offset=self.offset).copy()
        if self.fortran:
            return flat.reshape(self.shape[::-1]).transpose()
        return flat.reshape(self.shape)


def _cells(dims: list[int] | tuple[int, ...], bound: int) -> int:
    """The product of the non-negative ``dims``, or ``bound + 1`` as soon as it passes ``bound``: a
    shape of a thousand 1,000-digit numbers is never multiplied out (a zero anywhere: 0)."""
    if 0 in dims:
        return 0
    total = 1
    for d in dims:
        total *= d
        if total > bound:
            return bound + 1
    return total


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60


def _short(value: object) -> str:
    """A file-chosen value in an error message: cut short (``reprlib``), so that neither a huge nor a
    deeply nested JSON value is rendered whole."""
    return _REPR.repr(value)


def _memo_key(saved_id: Any) -> Any:
    """skops' memo key for ``__id__``: a dict keyed by the raw value, so ids equal as numbers are one
    (1, 1.0, True). Integers too big to be their own hash share one with thousands of others
    (``_hashwork.HASH_MODULUS``): quadratic insertion. Those (and floats equal to them) are keyed by
    their hex digits instead, which hash like any string (randomised); equal ids stay one key."""
    if type(saved_id) is float and saved_id.is_integer():
        saved_id = int(saved_id)
    if isinstance(saved_id, int) and big_int(saved_id):
        return ("int", hex(saved_id))
    return saved_id


class _Opaque(Exception):
    """A value that cannot be known without building it (a class, an object, ...)."""


class _ArrayMarker:
    """Stands for an array in a static value when its contents are not needed."""


_ARRAY = _ArrayMarker()


# -- the archive -------------------------------------------------------------------------------


class _Archive:
    """The zip, with every read capped by what actually inflates."""

    def __init__(self, data: Buffer, policy: Policy) -> None:
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise MalformedModelError(f"corrupt zip archive: {exc}") from None
        self.limits = policy.limits
        if len(infos) > self.limits.max_zip_members:
            raise LimitExceededError(
                f"archive has {len(infos)} members (limit max_zip_members={self.limits.max_zip_members})")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise UnsafeModelError("zip archive has two members with the same name (readers disagree on which is read)",
                                   rule="skops-state")
        self.infos = {i.filename: i for i in infos}
        self.budget = min(self.limits.max_zip_bytes, inflate_cap(self.limits, len(data)))
        self.inflated = 0
        #: Bytes of each member already counted in ``inflated``: the judge scans a member and the
        #: builder reads it again, the same bytes, which must not count twice against ``budget``.
        self.counted: dict[str, int] = {}

    def _stream(self, name: str, keep: bool, cap: int | None = None,
                why: str = "limits max_decompressed_bytes / max_inflate_ratio") -> tuple[int, bytes]:
        """(actual size, bytes if ``keep`` else the first 64 KiB)."""
        info = self.infos.get(name)
        if info is None:
            raise MalformedModelError(f"skops schema names a missing member {_short(name)}")
        limit = inflate_cap(self.limits, max(info.compress_size, 1)) if cap is None else cap
        parts: list[bytes] = []
        head = b""
        size = 0
        counted = self.counted.get(name, 0)
        try:
            with self.zf.open(info) as fh:
                while True:
                    piece = fh.read(_CHUNK)
                    if not piece:
                        break
                    size += len(piece)
                    if size > counted:
                        self.inflated += size - counted
                        counted = self.counted[name] = size
                    if size > limit:
                        raise LimitExceededError(
                            f"member {name} inflates beyond {limit} bytes ({why}); raise the limit if you "
                            "trust this file")
                    if self.inflated > self.budget:
                        raise LimitExceededError(
                            f"archive members inflate beyond {self.budget} bytes in total (limits "
                            "max_decompressed_bytes / max_inflate_ratio / max_zip_bytes)")
                    if keep:
                        parts.append(piece)
                    elif len(head) < 65536 + 12:
                        head += piece[:65536 + 12 - len(head)]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error,
                lzma.LZMAError, RuntimeError) as exc:
            raise MalformedModelError(f"unreadable member {name}: {exc}") from None
        except MemoryError:
            raise LimitExceededError(f"out of memory while inflating member {name}") from None
        return size, (b"".join(parts) if keep else head)

    def read(self, name: str, cap: int | None = None,
             why: str = "limits max_decompressed_bytes / max_inflate_ratio") -> bytes:
        return self._stream(name, True, cap, why)[1]

    def scan(self, name: str) -> tuple[int, bytes]:
        return self._stream(name, False)


def _npy_check(head: bytes, size: int, where: str, limits_bytes: int) -> _Npy:
    """The .npy header numpy.load(allow_pickle=False) will trust, checked against the member's real size."""
    try:
        if head[6:8] not in (b"\x01\x00", b"\x02\x00", b"\x03\x00"):
            raise ValueError(f"format version {tuple(head[6:8])} is not one numpy.load reads")
        header, offset = npy_header(head)
        if set(header) != {"descr", "fortran_order", "shape"} or not isinstance(header["fortran_order"], bool):
            raise ValueError("unexpected header keys")
        if offset > _MAX_NPY_HEADER + 12:
            raise ValueError("header larger than numpy.load reads")
        dtype = np.lib.format.descr_to_dtype(header["descr"])  # as numpy.load reads it
        shape = header["shape"]
        if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
            raise ValueError("shape is not a tuple of non-negative integers")
        if len(shape) > _MAX_NDIM:
            raise ValueError(f"{len(shape)} dimensions, more than numpy's {_MAX_NDIM}")
        count = _cells(shape, _MAX_ELEMENTS)
        if count > _MAX_ELEMENTS:
            raise ValueError("more elements than numpy can index")
    except (ValueError, SyntaxError, KeyError, TypeError, IndexError, MemoryError, RecursionError) as exc:
        raise MalformedModelError(f"invalid .npy header in member {where}: {exc}") from None
    if dtype.hasobject:
        raise MalformedModelError(f"member {where} holds an object array, which numpy.load(allow_pickle=False) "
                                  "refuses")
    nbytes = count * dtype.itemsize
    if nbytes > limits_bytes:
        raise LimitExceededError(f"member {where} declares an array of {nbytes} bytes (limit max_array_bytes)")
    if nbytes != size - offset:
        if nbytes > size - offset:
            raise LimitExceededError(f"member {where} declares an array of {nbytes} bytes but holds "
                                     f"{size - offset}")
        raise MalformedModelError(f"member {where} holds {size - offset - nbytes} bytes after its array")
    return _Npy(dtype, tuple(shape), header["fortran_order"], offset)


# -- parsing -----------------------------------------------------------------------------------


def _field(state: Any, key: str, node: str) -> Any:
    if not isinstance(state, dict) or key not in state:
        raise MalformedModelError(f"skops {node} state has no {key!r}")
    return state[key]


class _Parser:
    """schema.json -> _Node graph, as skops' ``get_tree`` builds it."""

    def __init__(self, containers: int) -> None:
        #: JSON containers the JsonNodes' texts may still hold (what schema.json's own left).
        self.containers = containers
        #: ``_memo_key(__id__)`` -> the node it names.
        self.memo: dict[Any, _Node] = {}
        self.nodes: list[_Node] = []
        self.refs = 0
        self.files: dict[str, _Node] = {}
        #: Nodes whose children are being read: a memo hit on one of them is a node inside itself.
        self.open: set[int] = set()

    def tree(self, state: Any, depth: int) -> _Node:
        if depth > _MAX_DEPTH:
            raise LimitExceededError(f"skops schema nests deeper than {_MAX_DEPTH} objects")
        self.refs += 1
        if not isinstance(state, dict):
            raise MalformedModelError(f"skops node state is a {type(state).__name__}, not an object")
        saved_id = state.get("__id__")
        if isinstance(saved_id, (list, dict)):
            raise MalformedModelError("skops __id__ is not a number or string")
        memo_key = _memo_key(saved_id)
        known = self.memo.get(memo_key)
        if known is not None:
            if id(known) in self.open:
                raise MalformedModelError("skops schema refers to an object inside itself (a cycle)")
            return known
        loader = _field(state, "__loader__", "node")
        if loader == "CachedNode":
            raise MalformedModelError(f"a skops CachedNode refers to an unknown object id {_short(saved_id)}")
        if not isinstance(loader, str) or (loader not in _NODE_RULES and loader not in _REDUCE_LOADERS):
            raise MalformedModelError(f"unknown skops loader {_short(loader)}")
        module, cls = _field(state, "__module__", loader), _field(state, "__class__", loader)
        if not isinstance(module, str) or not isinstance(cls, str):
            raise MalformedModelError(f"skops {loader} names a non-string module or class")
        node = _Node(loader, module, cls, state)
        self.nodes.append(node)
        if saved_id:
            self.memo[memo_key] = node
        self.open.add(id(node))
        getattr(self, f"_{loader}")(node, state, depth + 1)
        self.open.discard(id(node))
        return node

    def _file(self, node: _Node, state: dict[str, Any]) -> None:
        name = _field(state, "file", node.loader)
        if not isinstance(name, str):
            raise MalformedModelError(f"skops {node.loader} member name is not a string")
        if name in self.files:
            raise LimitExceededError(f"skops member {name} is read by two nodes (memory amplification)")
        self.files[name] = node
        node.file = name

    def _list(self, items: Any, depth: int, node: _Node) -> list[_Node]:
        if not isinstance(items, list):
            raise MalformedModelError(f"skops {node.loader} content is not a list")
        return [self.tree(v, depth) for v in items]

    def _JsonNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = _field(state, "content", "JsonNode")
        if not isinstance(content, str):
            raise MalformedModelError("skops JsonNode content is not a string")
        # (its text was in schema.json, but escaped: \u0039 and \u005b hide digits and brackets there)
        self.containers -= content.count("[") + content.count("{")
        if self.containers < 0:
            raise LimitExceededError(_too_many_containers())
        if len(content) > _MAX_DIGITS:  # (JSON numbers are ASCII digits only)
            _check_digits(content.encode("utf-8", "surrogatepass"), "a JsonNode's content")
        try:  # parsed here, so that scan sees what load would fail on (skops parses it while building)
            node.kids["value"] = json.loads(content)
        except (ValueError, RecursionError) as exc:
            raise MalformedModelError(f"skops JsonNode content is not JSON: {exc}") from None

    def _ListNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        node.kids["content"] = self._list(_field(state, "content", node.loader), depth, node)

    _SetNode = _TupleNode = _ListNode

    def _DictNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        node.kids["key_types"] = self.tree(_field(state, "key_types", "DictNode"), depth)
        content = _field(state, "content", "DictNode")
        if not isinstance(content, dict):
            raise MalformedModelError("skops DictNode content is not an object")
        node.kids["content"] = {k: self.tree(v, depth) for k, v in content.items()}

    def _DefaultDictNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = _field(state, "content", "DefaultDictNode")
        node.kids["main"] = self.tree(_field(content, "main", "DefaultDictNode"), depth)
        node.kids["default_factory"] = self.tree(_field(content, "default_factory", "DefaultDictNode"), depth)

    def _SliceNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = _field(state, "content", "SliceNode")
        node.kids["args"] = tuple(_field(content, k, "SliceNode") for k in ("start", "stop", "step"))

    def _FunctionNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        pass

    def _BytesNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        self._file(node, state)

    _BytearrayNode = _BytesNode

    _TypeNode = _FunctionNode

    def _PartialNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = _field(state, "content", "PartialNode")
        for key in ("func", "args", "kwds", "namespace"):
            node.kids[key] = self.tree(_field(content, key, "PartialNode"), depth)

    def _MethodNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = _field(state, "content", "MethodNode")
        obj = self.tree(_field(content, "obj", "MethodNode"), depth)
        func = _field(content, "func", "MethodNode")
        if obj.module != node.module or obj.cls != node.cls or not isinstance(func, str):
            raise MalformedModelError("skops MethodNode's object is not of its declared class")
        node.kids["obj"] = obj
        node.kids["func"] = func

    def _OperatorFuncNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        if node.module != "operator":
            raise MalformedModelError(f"skops OperatorFuncNode from module {_short(node.module)}, not 'operator'")
        node.kids["attrs"] = self.tree(_field(state, "attrs", "OperatorFuncNode"), depth)

    def _ConstructorFromReduceNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        node.kids["content"] = self.tree(_field(state, "content", node.loader), depth)

    def _ObjectNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = state.get("content")
        node.kids["attrs"] = None if content is None else self.tree(content, depth)

    def _reduce(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        reduce = _field(state, "__reduce__", node.loader)
        node.kids["attrs"] = self.tree(_field(state, "content", node.loader), depth)
        node.kids["args"] = self.tree(_field(reduce, "args", node.loader), depth)

    _TreeNode = _LossNode = _reduce

    def _NdArrayNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        kind = _field(state, "type", "NdArrayNode")
        if kind == "numpy":
            self._file(node, state)
        elif kind == "json":
            node.kids["content"] = self._list(_field(state, "content", "NdArrayNode"), depth, node)
            node.kids["shape"] = self.tree(_field(state, "shape", "NdArrayNode"), depth)
        else:
            raise MalformedModelError(f"unknown skops array type {_short(kind)}")
        node.kids["type"] = kind

    def _MaskedArrayNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = _field(state, "content", "MaskedArrayNode")
        node.kids["data"] = self.tree(_field(content, "data", "MaskedArrayNode"), depth)
        node.kids["mask"] = self.tree(_field(content, "mask", "MaskedArrayNode"), depth)

    def _DTypeNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        node.kids["content"] = self.tree(_field(state, "content", "DTypeNode"), depth)

    def _RandomStateNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        node.kids["content"] = self.tree(_field(state, "content", "RandomStateNode"), depth)

    def _RandomGeneratorNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        content = _field(state, "content", "RandomGeneratorNode")
        node.kids["bit_generator"] = self.tree(_field(content, "bit_generator", node.loader), depth)
        node.kids["seed_seq"] = self.tree(_field(content, "seed_seq", node.loader), depth)

    def _SparseMatrixNode(self, node: _Node, state: dict[str, Any], depth: int) -> None:
        if _field(state, "type", "SparseMatrixNode") != "scipy":
            raise MalformedModelError(f"skops sparse node of type {_short(state.get('type'))}")
        self._file(node, state)


# -- judging -----------------------------------------------------------------------------------


def _stub(*args: Any, **kwargs: Any) -> None:
    return None


class _Judge:
    """Turns the node graph into decisions, checked against the policy without building anything."""

    def __init__(self, archive: _Archive, parser: _Parser, policy: Policy) -> None:
        from safeload._guards import HashMeter
        from safeload._hashwork import HashCost

        self.archive = archive
        self.parser = parser
        self.policy = policy
        self.uses: set[tuple[str, str]] = set()
        self.refused: set[str] = set()
        self.problems: list[SafeloadError] = []
        self.npy: dict[str, _Npy] = {}
        self.values: dict[tuple[int, bool], Any] = {}
        self.arrays: dict[str, np.ndarray[Any, Any]] = {}
        limits = policy.limits
        #: Every hash of a built value, for the whole archive (as the walker's ``hash_left`` for a
        #: stream): measured before hashing, so a tuple DAG or a deep chain is refused, not hashed.
        self.meter: HashMeter = HashMeter(limits.max_hash_work, limits.max_nesting_depth)
        #: The meter's refusal, noted once in ``problems``.
        self.hashed: SafeloadError | None = None
        #: DictNode (by id) -> why its keys may not be inserted (None: they may), judged once.
        self.keyed: dict[int, SafeloadError | None] = {}
        #: Items a walk of a static argument visits, repeats included (each distinct container measured once).
        self.walk = HashCost(_walked_items, _never, limits.max_nesting_depth, limits.max_hash_work + 1)
        self.walk_left = limits.max_hash_work

    # decisions

    def use(self, name: str, how: str) -> None:
        self.uses.add((name, how))
        entry = self.policy.entries.get(name)
        if entry is None:
            self.refused.add(name)
        elif how == CALL and entry.kind is not Kind.CALL:
            self.problems.append(UnsafeModelError(
                f"skops file calls {name} with file-chosen arguments, but it is allowed only as a "
                f"{entry.kind.value}", names=[name], rule="call-not-callable"))
        elif how == NEW and (entry.kind is Kind.VALUE or entry.guard is not None):
            self.problems.append(UnsafeModelError(
                f"skops file rebuilds {name} with __new__, but it is allowed only as a {entry.kind.value}"
                + (" behind a guard" if entry.guard else ""), names=[name], rule="new-value"))

    def call(self, name: str, args_of: Any, kwargs_of: Any = None) -> None:
        """A call decision; a guarded entry's guard runs now on the statically known arguments."""
        self.use(name, CALL)
        entry = self.policy.entries.get(name)
        if entry is None or entry.kind is not Kind.CALL or entry.guard is None:
            return
        try:
            args = args_of()
            kwargs = kwargs_of() if kwargs_of is not None else {}
        except _Opaque:
            self.problems.append(UnsafeModelError(
                f"skops file calls the guarded {name} with arguments that are not plain data; its guard "
                "cannot check them", names=[name], rule="guard"))
            return
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedModelError(f"skops arguments for {name} cannot be built: {str(exc)[:200]}") from None
        values = (*args, *kwargs.values())
        if not self.expands(name, values) and not self.charge_guard(entry.guard, values):
            self.run_guard(name, entry.guard, args, kwargs)

    def expands(self, name: str, args: tuple[Any, ...]) -> bool:
        """Note a LimitExceededError if walking the arguments, repeats included, passes what is left of
        the archive's budget (``max_hash_work``, for all calls: an argument passed again is walked
        again): lists, tuples and dicts shared through ``__id__`` nest as a DAG of 2**K items, which a
        guard (``numpy.asarray``) or numpy itself (``SeedSequence``) would walk whole. True: refused."""
        from safeload._hashwork import TooDeep

        if self.walk_left < 0:
            return True  # (refused already, noted once)
        try:
            self.walk_left -= sum(self.walk.measure(value) for value in args)
        except TooDeep:
            self.walk_left = -1
        if self.walk_left >= 0:
            return False
        self.problems.append(LimitExceededError(
            f"skops call of {name}: its arguments nest deeper than {self.policy.limits.max_nesting_depth} or hold "
            f"more than {self.policy.limits.max_hash_work:,} items counting repeats (values shared through __id__)"))
        return True

    def charge_guard(self, guard_id: str, args: tuple[Any, ...]) -> bool:
        """Charge what a hashing guard's call hashes (``_guards.HASHING_GUARDS``) to the archive's meter,
        as the walker charges its stream's budget: the guard itself judges one call, so an argument
        shared through the memo and passed a thousand times would cost a thousand times. True: refused."""
        from safeload._guards import HASHING_GUARDS, hashing_problem

        if guard_id not in HASHING_GUARDS:
            return False
        keys = HASHING_GUARDS[guard_id]
        for value in args:
            if self.hashed is not None:
                return True
            problem = hashing_problem(value, self.policy, keys, self.meter)
            if problem is not None:
                self.hashed = LimitExceededError(f"skops call: {problem}")
                self.problems.append(self.hashed)
                return True
            if keys is not None and isinstance(value, (list, tuple)) and _unhashable(value, keys == "pairs"):
                # (as the walker's "unhashable" issue: load would fail here, so scan says so)
                self.problems.append(MalformedModelError("skops call hashes an unhashable item (a list, dict or "
                                                         "array) of its argument"))
                return True
        return False

    def run_guard(self, name: str, guard_id: str, args: Any, kwargs: dict[str, Any]) -> None:
        from safeload._guards import guard

        try:
            guard(name, guard_id, _stub, self.policy)(*args, **kwargs)
        except UnsafeModelError as exc:
            self.problems.append(UnsafeModelError(f"{name}: {exc}", names=exc.names or (name,), rule="guard"))
        except SafeloadError as exc:
            self.problems.append(exc)
        except (TypeError, ValueError, OverflowError) as exc:
            self.problems.append(MalformedModelError(f"skops file calls {name} with arguments it rejects: {exc}"))
        except MemoryError:
            self.problems.append(LimitExceededError(f"the guard of {name} ran out of memory on its arguments"))

    # static values

    def value(self, node: _Node, arrays: bool) -> Any:
        """The value ``node`` builds, when it is plain data (else _Opaque); cached like skops' construct()."""
        for key in ((id(node), True), (id(node), arrays)):  # a value with arrays also serves one without
            if key in self.values:
                return self.values[key]
        got = self._value(node, arrays)
        self.values[(id(node), arrays)] = got
        return got

    def _value(self, node: _Node, arrays: bool) -> Any:
        loader, name = node.loader, node.name
        if loader == "JsonNode":
            return _json(node)
        if (loader, name) in (("ListNode", "builtins.list"), ("TupleNode", "builtins.tuple")):
            items = [self.value(v, arrays) for v in node.kids["content"]]
            return items if name == "builtins.list" else tuple(items)
        if loader == "DictNode" and name == "builtins.dict":
            keys = self.key_types(node)
            problem = self.dict_keys(node, keys)
            if problem is not None:
                raise problem  # (before building a dict of colliding keys)
            return {_convert_key(conv, k): self.value(v, arrays)
                    for conv, (k, v) in zip(keys, node.kids["content"].items(), strict=False)}
        if loader == "SliceNode":
            return slice(*node.kids["args"])
        if loader == "ConstructorFromReduceNode" and name == "builtins.range":
            content = self.value(node.kids["content"], arrays)
            try:
                return range(*content)
            except TypeError as exc:
                raise MalformedModelError(f"skops range with arguments it rejects: {exc}") from None
        if loader == "NdArrayNode" and node.kids["type"] == "numpy":
            kind = self.array_kind(node)
            if kind == CALL:
                raise _Opaque(name)
            if not arrays:
                return _ARRAY
            arr = self.load_array(node)
            return arr[()] if kind == "scalar" else arr
        raise _Opaque(name)

    def key_types(self, node: _Node) -> list[Any]:
        """The converters a DictNode's keys go through (skops calls each key type on its JSON key)."""
        kt = node.kids["key_types"]
        if kt.loader != "ListNode" or kt.name != "builtins.list":
            raise UnsafeModelError("skops dict key types are not a plain list of types", rule="skops-state")
        out = []
        for t in kt.kids["content"]:
            if t.loader not in ("TypeNode", "FunctionNode") or t.name not in _KEY_TYPES:
                raise UnsafeModelError(f"skops dict key type {t.name} is not a str/int/float/bool/numpy scalar type",
                                       names=[t.name], rule="skops-state")
            out.append(_key_converter(t.name))
        return out

    def dict_keys(self, node: _Node, converters: list[Any]) -> SafeloadError | None:
        """Why a DictNode's keys may not be inserted (judged once per node, noted in ``problems``):
        int keys built to share one hash, the only key type whose values can be (numpy's
        fixed-width ints share a hash a few at a time, floats a few dozen)."""
        key = id(node)
        if key not in self.keyed:
            self.keyed[key] = None
            if any(conv is int for conv in converters):
                keys = [_convert_key(conv, k) for conv, k in zip(converters, node.kids["content"], strict=False)]
                self.keyed[key] = self.hash_limit(keys, "dict")
        return self.keyed[key]

    def hash_limit(self, keys: list[Any], what: str, skip_unhashable: bool = False) -> SafeloadError | None:
        """Note (and return) a LimitExceededError if hashing ``keys`` into one dict passes what is left
        of the archive's hash budget, or if one nests too deep to hash (``_guards.HashMeter``)."""
        if self.hashed is not None:
            return self.hashed
        problem = self.meter.keys(keys, skip_unhashable)
        if problem is None:
            return None
        self.hashed = LimitExceededError(f"skops {what}: {problem}")
        self.problems.append(self.hashed)
        return self.hashed

    def array_kind(self, node: _Node) -> str:
        """'array' (numpy.ndarray), 'scalar' (a numpy scalar type of the member's dtype) or CALL."""
        if node.name == "numpy.ndarray":
            return "array"
        npy = self.npy.get(node.file or "")
        if npy is not None and node.module == "numpy" and npy.shape == () and \
                npy.dtype.type.__name__ == node.cls and npy.dtype.type.__module__ == "numpy":
            return "scalar"
        return CALL

    def load_array(self, node: _Node) -> np.ndarray[Any, Any]:
        assert node.file is not None
        if node.file not in self.arrays:
            self.arrays[node.file] = self.npy[node.file].array(self.archive.read(node.file), node.file)
        return self.arrays[node.file]

    # the walk

    def judge(self, root: _Node) -> None:
        for node in self.parser.nodes:  # members first: arrays' headers decide some node kinds
            if node.file is not None:
                self.member(node)
        for node in self.parser.nodes:
            getattr(self, f"_{node.loader}", self._none)(node)

    def member(self, node: _Node) -> None:
        assert node.file is not None
        if node.loader == "NdArrayNode":
            size, head = self.archive.scan(node.file)
            self.npy[node.file] = _npy_check(head, size, node.file, self.archive.limits.max_array_bytes)
        elif node.loader == "SparseMatrixNode":
            fmt = _npz_check(self.archive.read(node.file), node.file, self.archive.limits)
            declared = f"scipy.sparse._{fmt[0]}.{fmt[0]}_{'array' if fmt[1] else 'matrix'}"
            if node.name != declared:
                self.problems.append(UnsafeModelError(
                    f"skops sparse node declares {node.name} but its member builds {declared}",
                    names=[node.name], rule="skops-state"))
        else:
            self.archive.scan(node.file)

    def _none(self, node: _Node) -> None:
        return None

    def colliding_items(self, items: list[_Node], what: str) -> None:
        """A list's, a tuple's or an object array's items built to share one hash: the walker's
        ``list_items`` rule (inference code hashes a model's ``classes_`` and ``categories_``)."""
        if self.hashed is not None:
            return  # (refused already: nothing more is hashed)
        values = []
        for item in items:
            try:
                values.append(self.value(item, False))
            except _Opaque:
                continue  # (an object: hashed by identity, or judged where it is built)
            except (UnsafeModelError, MalformedModelError) as exc:
                self.problems.append(exc)
                return
        self.hash_limit(values, what, skip_unhashable=True)

    def _ListNode(self, node: _Node) -> None:
        if node.name == "builtins.list":
            self.use(node.name, VALUE)
            self.colliding_items(node.kids["content"], "list")
        else:
            self.call(node.name, lambda: ([self.value(v, True) for v in node.kids["content"]],))

    def _TupleNode(self, node: _Node) -> None:
        if node.name == "builtins.tuple":
            self.use(node.name, VALUE)
            self.colliding_items(node.kids["content"], "tuple")
        else:
            self.call(node.name, lambda: tuple(self.value(v, True) for v in node.kids["content"]))

    def _SetNode(self, node: _Node) -> None:
        self.call(node.name, lambda: ([self.value(v, True) for v in node.kids["content"]],))

    def _DictNode(self, node: _Node) -> None:
        try:
            if node.kids["key_types"].loader == "ListNode":
                for name in sorted({t.name for t in node.kids["key_types"].kids["content"]}):
                    self.use(name, VALUE)
            self.dict_keys(node, self.key_types(node))
        except (UnsafeModelError, MalformedModelError) as exc:
            self.problems.append(exc)
        if node.name == "builtins.dict":
            self.use(node.name, VALUE)
            return
        entry = self.policy.entries.get(node.name)
        if entry is not None and entry.kind is Kind.CALL:
            self.call(node.name, tuple)
        else:
            self.use(node.name, NEW)

    def _DefaultDictNode(self, node: _Node) -> None:
        self.call("collections.defaultdict", tuple)
        factory = node.kids["default_factory"]
        if factory.loader not in ("TypeNode", "FunctionNode") and not (
                factory.loader == "JsonNode" and _json(factory) is None):
            self.problems.append(UnsafeModelError("skops defaultdict factory is not a named type or function",
                                                  rule="skops-state"))
        main = node.kids["main"]
        if main.loader != "DictNode":
            self.problems.append(MalformedModelError("skops defaultdict content is not a dict"))

    def _SliceNode(self, node: _Node) -> None:
        self.call("builtins.slice", lambda: node.kids["args"])

    def _FunctionNode(self, node: _Node) -> None:
        self.use(node.name, VALUE)

    _TypeNode = _FunctionNode

    def _BytesNode(self, node: _Node) -> None:
        self.use("builtins.bytes", VALUE)

    def _BytearrayNode(self, node: _Node) -> None:
        assert node.file is not None
        file = node.file
        self.call("builtins.bytearray", lambda: (self.archive.read(file),))

    def _PartialNode(self, node: _Node) -> None:
        func = node.kids["func"]
        self.use("functools.partial", CALL)
        entry = self.policy.entries.get("functools.partial")
        if func.loader not in ("FunctionNode", "TypeNode"):
            self.problems.append(UnsafeModelError("skops partial wraps something that is not a named function",
                                                  names=["functools.partial"], rule="guard"))
        elif entry is not None and entry.guard is not None:
            target = self.policy.entries.get(func.name)
            if target is not None and (target.guard is not None or target.kind not in (Kind.CALL, Kind.VALUE)):
                self.problems.append(UnsafeModelError(
                    f"functools.partial may only wrap an allowed function, not {func.name}",
                    names=[func.name], rule="guard"))
        for key, loader in (("args", "TupleNode"), ("kwds", "DictNode")):
            if node.kids[key].loader != loader:
                self.problems.append(MalformedModelError(f"skops partial {key} is not a {loader}"))

    def _MethodNode(self, node: _Node) -> None:
        self.use(f"{node.name}.{node.kids['func']}", VALUE)

    def _OperatorFuncNode(self, node: _Node) -> None:
        self.call(node.name, lambda: tuple(self.value(node.kids["attrs"], True)))

    def _ConstructorFromReduceNode(self, node: _Node) -> None:
        self.call(node.name, lambda: tuple(self.value(node.kids["content"], True)))

    def _ObjectNode(self, node: _Node) -> None:
        self.use(node.name, NEW)

    def _reduce(self, node: _Node) -> None:
        if node.loader == "TreeNode" and node.name != _TREE:
            raise MalformedModelError(f"skops TreeNode declares {node.name}; skops builds a {_TREE} from it")
        self.call(node.name, lambda: tuple(self.value(node.kids["args"], True)))

    _TreeNode = _LossNode = _reduce

    def _NdArrayNode(self, node: _Node) -> None:
        if node.kids["type"] == "json":
            self.use(node.name, VALUE)
            if node.name != "numpy.ndarray":
                self.problems.append(UnsafeModelError(f"skops object array of class {node.name}", names=[node.name],
                                                      rule="skops-state"))
            self.object_shape(node)
            self.colliding_items(node.kids["content"], "object array")
            return
        kind = self.array_kind(node)
        if kind == CALL:
            self.call(node.name, lambda: (self.load_array(node),))
        else:
            self.use(node.name, VALUE)

    def object_shape(self, node: _Node) -> tuple[int, ...]:
        """An object array's declared shape, which its nested item lists must match exactly."""
        try:
            shape = self.value(node.kids["shape"], False)
        except _Opaque:
            shape = None
        if not isinstance(shape, (tuple, list)) or not shape or \
                not all(type(d) is int and d >= 0 for d in shape):
            raise MalformedModelError("skops object array shape is not a non-empty tuple of sizes")
        if len(shape) > _MAX_NDIM:
            raise MalformedModelError(f"skops object array of {len(shape)} dimensions (numpy's limit: {_MAX_NDIM})")
        if _cells(shape, self.parser.refs) > self.parser.refs:  # (never the exact product of huge sizes)
            raise LimitExceededError(f"skops object array of shape {_short(tuple(shape))} has more cells than the "
                                     "schema has entries (shared rows)")
        rows: list[list[_Node]] = [node.kids["content"]]
        for depth, size in enumerate(shape):
            if any(len(row) != size for row in rows):
                raise MalformedModelError("skops object array items do not match its shape")
            if depth < len(shape) - 1:
                nxt: list[list[_Node]] = []
                for row in rows:
                    for item in row:
                        if item.loader != "ListNode" or item.name != "builtins.list":
                            raise MalformedModelError("skops object array items do not match its shape")
                        nxt.append(item.kids["content"])
                rows = nxt
        return tuple(shape)

    def _MaskedArrayNode(self, node: _Node) -> None:
        self.use(node.name, NEW)
        for key in ("data", "mask"):
            part = node.kids[key]
            if part.loader != "NdArrayNode" or (part.kids["type"] == "numpy" and self.array_kind(part) != "array"):
                self.problems.append(UnsafeModelError(f"skops masked array {key} is not a plain array",
                                                      rule="skops-state"))

    def _DTypeNode(self, node: _Node) -> None:
        self.use("numpy.dtype", VALUE)
        content = node.kids["content"]
        if content.loader != "NdArrayNode" or content.kids["type"] != "numpy" or self.array_kind(content) != "array":
            self.problems.append(MalformedModelError("skops dtype node does not hold an array"))

    def _RandomStateNode(self, node: _Node) -> None:
        self.call(node.name, tuple)
        self.rng_state(node.kids["content"])

    def rng_state(self, node: _Node) -> None:
        from safeload._guards import rng_state_problem

        try:
            state = self.value(node, False)
        except _Opaque:
            self.problems.append(UnsafeModelError("skops random state is not plain data", rule="skops-state"))
            return
        problem = rng_state_problem(state)
        if problem is not None:
            self.problems.append(UnsafeModelError(problem, rule="skops-state"))

    def _RandomGeneratorNode(self, node: _Node) -> None:
        bg_name = _bit_generator_name(node)
        if not isinstance(bg_name, str) or bg_name not in _BIT_GENERATORS:
            self.problems.append(UnsafeModelError(f"skops Generator names an unknown bit generator {_short(bg_name)}",
                                                  rule="skops-state"))
            return
        try:
            kwargs = self.seed_seq(node)
        except _Opaque:
            self.problems.append(UnsafeModelError("skops SeedSequence state is not plain data", rule="skops-state"))
            return
        before = len(self.problems)
        self.call("numpy.random.bit_generator.SeedSequence", tuple, lambda: kwargs)
        self.rng_state(node.kids["bit_generator"])
        if len(self.problems) > before:
            return  # never build a refused seed, even to check the next step
        # The next two calls take no file-chosen argument: their guards see what load will pass them, a
        # SeedSequence of the checked parameters and the bit generator built from it (both plain numpy).
        bg_class = getattr(np.random, bg_name)
        self.call(_BIT_GENERATORS[bg_name], lambda: (np.random.SeedSequence(**kwargs),))
        self.call(node.name, tuple, lambda: {"bit_generator": bg_class(np.random.SeedSequence(**kwargs))})

    def seed_seq(self, node: _Node) -> dict[str, Any]:
        state = self.value(node.kids["seed_seq"], True)
        if not isinstance(state, dict) or not set(state) <= _SEED_SEQ_KEYS:
            raise MalformedModelError("skops SeedSequence state is not a dict of its parameters")
        pool = state.get("pool_size", 4)
        if type(pool) is not int or not 1 <= pool <= _MAX_POOL_SIZE:
            raise LimitExceededError(f"skops SeedSequence pool_size {_short(pool)} outside [1, {_MAX_POOL_SIZE}]")
        return state

    def _SparseMatrixNode(self, node: _Node) -> None:
        self.use(node.name, NEW)


def _unhashable(items: list[Any] | tuple[Any, ...], pairs: bool) -> bool:
    """Does hashing the items (``pairs``: each pair's key) raise? Their hash work was charged first."""
    for item in items:
        key = item[0] if pairs and isinstance(item, (tuple, list)) and len(item) == 2 else item
        try:
            hash(key)
        except TypeError:
            return True
    return False


def _walked_items(value: Any) -> Any:
    """What a walk of a static value visits below it: a list's or tuple's items, a dict's values."""
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, dict):
        return tuple(value.values())
    return None


def _never(value: Any) -> bool:
    return False


def _json(node: _Node) -> Any:
    """The JSON value read while parsing (one object per node, as skops' construct() caches it)."""
    return node.kids["value"]


@functools.cache
def _key_converter(name: str) -> Any:
    import builtins

    module, _, attr = name.rpartition(".")
    return getattr(np if module == "numpy" else builtins, attr)


def _convert_key(conv: Any, key: str) -> Any:
    if len(key) > _MAX_DIGITS and (conv is int or issubclass(conv, np.integer)):
        # (int() takes any Unicode digits, which no byte check of the schema sees: quadratic in their count)
        raise LimitExceededError(f"skops dict key of {len(key)} characters converted to a number "
                                 f"(limit {_MAX_DIGITS} digits)")
    try:
        return conv(key)
    except (ValueError, TypeError, OverflowError) as exc:
        raise MalformedModelError(f"skops dict key {key[:40]!r} does not convert: {str(exc)[:200]}") from None


def _bit_generator_name(node: _Node) -> Any:
    """Where numpy keeps the bit generator's class name (skops reads it the same way)."""
    try:
        return json.loads(node.state["content"]["bit_generator"]["content"]["bit_generator"]["content"])
    except (KeyError, TypeError, ValueError):
        return None


def _np_load(raw: bytes) -> np.ndarray[Any, Any]:
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError) as exc:
        raise MalformedModelError(f"unreadable array member: {exc}") from None
    if not isinstance(arr, np.ndarray):
        raise MalformedModelError("array member is not a .npy array")
    return arr


_NPZ_KEYS = frozenset({"format", "shape", "data", "indices", "indptr", "offsets", "row", "col", "coords", "_is_array"})


def _npz_check(raw: bytes, where: str, limits: Any) -> tuple[str, bool]:
    """Check a sparse matrix's inner .npz as strictly as the outer archive; return (format, is_array)."""
    from safeload._policy import Policy as _P

    inner = _Archive(raw, _P({}, limits))
    fmt: str | None = None
    is_array = False
    for name in inner.infos:
        if not name.endswith(".npy") or name[:-4] not in _NPZ_KEYS:
            raise MalformedModelError(f"sparse member {where} holds an unexpected entry {name!r}")
        size, head = inner.scan(name)
        npy = _npy_check(head, size, f"{where}/{name}", limits.max_array_bytes)
        if name in ("format.npy", "_is_array.npy"):
            if npy.shape != () or npy.dtype.kind not in ("U", "S", "b") or npy.dtype.itemsize > 64:
                raise MalformedModelError(f"sparse member {where}: {name} is not a short scalar")
            value = _np_load(inner.read(name))[()]
            if name == "format.npy":
                fmt = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            else:
                is_array = bool(value)
    if fmt not in _SPARSE_FORMATS:
        raise MalformedModelError(f"sparse member {where} has format {fmt!r}")
    return fmt, is_array


# -- the audit ---------------------------------------------------------------------------------


@dataclass
class _Plan:
    archive: _Archive
    root: _Node
    judge: _Judge


def _plan(data: Buffer, policy: Policy) -> SkopsAudit:
    archive = _Archive(data, policy)
    if "schema.json" not in archive.infos:
        raise MalformedModelError("zip archive has no schema.json: not a skops file")
    cap = min(_MAX_SCHEMA_BYTES, inflate_cap(policy.limits, len(data)), max(_SCHEMA_FLOOR, _SCHEMA_RATIO * len(data)))
    raw = archive.read("schema.json", cap=cap, why=f"schema.json may inflate to {_SCHEMA_RATIO}x the file, at least "
                       f"{_SCHEMA_FLOOR} bytes: real ones inflate up to 21x; and limits max_decompressed_bytes / "
                       "max_inflate_ratio")
    containers = _schema_bounds(raw)
    try:
        schema = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedModelError(f"unreadable schema.json: {str(exc)[:200]}") from None
    del raw
    protocol = schema.get("protocol") if isinstance(schema, dict) else None
    if type(protocol) is not int or not 0 <= protocol <= _PROTOCOL:
        raise MalformedModelError(f"skops protocol {_short(protocol)} is not one safeload reads (0..{_PROTOCOL})")
    parser = _Parser(containers)
    root = parser.tree(schema, 0)
    judge = _Judge(archive, parser, policy)
    judge.judge(root)
    _check_states(parser, judge)
    if judge.problems and not judge.refused:
        raise judge.problems[0]
    names = sorted({n for n, _ in judge.uses})
    plan = _Plan(archive, root, judge)
    return SkopsAudit(tuple(names), tuple(sorted(judge.refused)), tuple(sorted({n.loader for n in parser.nodes})),
                      tuple(sorted(judge.uses)), plan)


def _too_many_containers() -> str:
    return (f"skops schema holds more than one JSON list or object per {_SCHEMA_BYTES_PER_CONTAINER} bytes "
            f"(at least {_SCHEMA_MIN_CONTAINERS} allowed): parsing it would take ~20x its size in memory")


def _check_digits(text: bytes, where: str) -> None:
    """Refuse a run of more than ``_MAX_DIGITS`` ASCII digits in ``text`` (in C: 1 MiB at a time)."""
    step = 1 << 20
    for start in range(0, len(text), step):
        if text[start:start + step + _MAX_DIGITS].translate(_DIGITS_ONLY).find(_TOO_MANY_DIGITS) >= 0:
            raise LimitExceededError(f"skops {where} holds a number of more than {_MAX_DIGITS} digits "
                                     "(converting one costs time quadratic in its length)")


def _schema_bounds(raw: bytes) -> int:
    """Refuse a schema.json whose parse would cost more than its bytes, counted in C before parsing:
    JSON containers (each ~70 bytes of objects) and long numbers (quadratic to convert). Returns the
    containers its JsonNodes' texts may still hold."""
    allowed = max(_SCHEMA_MIN_CONTAINERS, len(raw) // _SCHEMA_BYTES_PER_CONTAINER)
    left = allowed - raw.count(b"[") - raw.count(b"{")
    if left < 0:
        raise LimitExceededError(_too_many_containers())
    _check_digits(raw, "schema.json")
    return left


def audit(data: Buffer, policy: Policy) -> SkopsAudit:
    """Judge a skops archive without constructing anything or importing what it names."""
    try:
        return _plan(data, policy)
    except RecursionError:
        raise LimitExceededError("skops schema nests too deeply") from None


_NODE_FIELDS = ("left_child", "right_child", "feature", "threshold", "impurity", "n_node_samples",
                "weighted_n_node_samples", "missing_go_to_left")


def _check_states(parser: _Parser, judge: _Judge) -> None:
    """States that compiled __setstate__ methods index without checks, checked before anything is built."""
    from safeload._mirrors import STATE_LENGTHS

    for node in parser.nodes:
        name = node.name
        if name in STATE_LENGTHS and node.loader == "ObjectNode":
            attrs = node.kids.get("attrs")
            items = attrs.kids.get("content") if attrs is not None else None
            if attrs is None or attrs.loader != "TupleNode" or not isinstance(items, list) \
                    or len(items) != STATE_LENGTHS[name]:
                judge.problems.append(UnsafeModelError(f"skops {name} state must be a {STATE_LENGTHS[name]}-tuple",
                                                       rule="skops-state"))
        if node.loader == "TreeNode" or name == "sklearn.tree._tree.Tree":
            attrs = node.kids.get("attrs")
            fields = attrs.kids.get("content") if isinstance(attrs, _Node) and attrs.loader == "DictNode" else None
            if not isinstance(fields, dict):
                judge.problems.append(UnsafeModelError("skops Tree state is not a dict", rule="skops-state"))
                continue
            for key, ndim, names in (("nodes", 1, _NODE_FIELDS), ("values", 3, None)):
                member = fields.get(key)
                npy = judge.npy.get(member.file or "") if isinstance(member, _Node) and \
                    member.loader == "NdArrayNode" and judge.array_kind(member) == "array" else None
                if npy is None or len(npy.shape) != ndim or (names and _field_names(npy.dtype) != names) \
                        or (not names and npy.dtype != np.dtype("<f8")):
                    judge.problems.append(UnsafeModelError(f"skops Tree {key} array has the wrong dtype or shape",
                                                           rule="skops-state"))


def _field_names(dt: np.dtype[Any]) -> tuple[str, ...]:
    """Field names without the void padding fields .npy headers spell out (e.g. ('', '|V7'))."""
    fields: dict[str, Any] = dict(dt.fields or {})
    return tuple(n for n in (dt.names or ()) if not (fields[n][0].kind == "V" and fields[n][0].names is None))


# -- building ----------------------------------------------------------------------------------


class _Builder:
    """Builds the judged graph; every name through ``policy.resolve`` (guards run), in its judged use."""

    def __init__(self, plan: _Plan, policy: Policy) -> None:
        self.plan = plan
        self.policy = policy
        self.built: dict[int, Any] = {}
        self.building: set[int] = set()
        self.resolved: dict[tuple[str, bool], Any] = {}

    def resolve(self, name: str, guarded: bool = True) -> Any:
        """The policy's object for a full name: guarded when the file calls it and its entry has a guard,
        the plain object when it is only a value (as the pickle engine hands out referenced names)."""
        got = self.resolved.get((name, guarded))
        if got is None:
            got = self.resolved[(name, guarded)] = _resolve_exact(self.policy, name, guarded)
        return got

    def build(self, node: _Node) -> Any:
        key = id(node)
        if key in self.built:
            return self.built[key]
        if key in self.building:
            raise MalformedModelError("skops schema refers to an object inside itself (a cycle)")
        self.building.add(key)
        obj = getattr(self, f"_{node.loader}")(node)
        self.building.discard(key)
        self.built[key] = obj
        return obj

    def _JsonNode(self, node: _Node) -> Any:
        return _json(node)

    def _ListNode(self, node: _Node) -> Any:
        items = [self.build(v) for v in node.kids["content"]]
        if node.name == "builtins.list":
            return items
        return self.resolve(node.name)(items)

    def _TupleNode(self, node: _Node) -> Any:
        items = tuple(self.build(v) for v in node.kids["content"])
        if node.name == "builtins.tuple":
            return items
        return self.resolve(node.name)(*items)

    def _SetNode(self, node: _Node) -> Any:
        return self.resolve(node.name)([self.build(v) for v in node.kids["content"]])

    def _DictNode(self, node: _Node) -> Any:
        keys = [self.resolve(t.name) for t in node.kids["key_types"].kids["content"]]
        if node.name == "builtins.dict":
            out: Any = {}
        else:
            entry = self.policy.entries.get(node.name)
            cls = self.resolve(node.name)
            out = cls() if entry is not None and entry.kind is Kind.CALL else _new(cls, node.name)
            if not isinstance(out, dict):
                raise MalformedModelError(f"skops DictNode class {node.name} is not a dict type")
        for conv, (key, value) in zip(keys, node.kids["content"].items(), strict=False):
            out[_convert_key(conv, key)] = self.build(value)
        return out

    def _DefaultDictNode(self, node: _Node) -> Any:
        out = self.resolve("collections.defaultdict")()
        out.default_factory = self.build(node.kids["default_factory"])
        out.update(self.build(node.kids["main"]))
        return out

    def _SliceNode(self, node: _Node) -> Any:
        return self.resolve("builtins.slice")(*node.kids["args"])

    def _FunctionNode(self, node: _Node) -> Any:
        return self.resolve(node.name, guarded=False)

    _TypeNode = _FunctionNode

    def _BytesNode(self, node: _Node) -> Any:
        assert node.file is not None
        self.resolve("builtins.bytes")
        return self.plan.archive.read(node.file)

    def _BytearrayNode(self, node: _Node) -> Any:
        assert node.file is not None
        return self.resolve("builtins.bytearray")(self.plan.archive.read(node.file))

    def _PartialNode(self, node: _Node) -> Any:
        func = self.build(node.kids["func"])
        args = self.build(node.kids["args"])
        kwds = self.build(node.kids["kwds"])
        namespace = self.build(node.kids["namespace"])
        if not isinstance(args, tuple) or not isinstance(kwds, dict) or not (namespace is None or
                                                                            isinstance(namespace, dict)):
            raise MalformedModelError("skops partial with arguments of the wrong types")
        out = self.resolve("functools.partial")(func, *args, **kwds)
        if namespace:
            out.__dict__.update(namespace)
        return out

    def _MethodNode(self, node: _Node) -> Any:
        self.resolve(f"{node.name}.{node.kids['func']}")  # allowed by name, or refused here
        return getattr(self.build(node.kids["obj"]), node.kids["func"])

    def _OperatorFuncNode(self, node: _Node) -> Any:
        return self.resolve(node.name)(*self.build(node.kids["attrs"]))

    def _ConstructorFromReduceNode(self, node: _Node) -> Any:
        return self.resolve(node.name)(*self.build(node.kids["content"]))

    def _ObjectNode(self, node: _Node) -> Any:
        instance = _new(self.resolve(node.name), node.name)
        attrs_node = node.kids["attrs"]
        if attrs_node is None:
            return instance
        attrs = self.build(attrs_node)
        if attrs is not None:
            if hasattr(instance, "__setstate__"):
                instance.__setstate__(attrs)
            else:
                instance.__dict__.update(attrs)
        return instance

    def _reduce(self, node: _Node) -> Any:
        args = self.build(node.kids["args"])
        instance = self.resolve(node.name)(*args)
        attrs = self.build(node.kids["attrs"])
        if not attrs:
            return instance
        if hasattr(instance, "__setstate__"):
            instance.__setstate__(attrs)
        elif isinstance(attrs, dict):
            instance.__dict__.update(attrs)
        else:
            raise MalformedModelError(f"skops {node.name} state cannot be set")
        return instance

    _TreeNode = _LossNode = _reduce

    def _NdArrayNode(self, node: _Node) -> Any:
        judge = self.plan.judge
        if node.kids["type"] == "json":
            shape = judge.object_shape(node)
            items = [self.build(v) for v in node.kids["content"]]
            out = np.empty(shape, dtype=object)
            if len(shape) == 1:
                for i, v in enumerate(items):
                    out[i] = v
            else:
                for index in np.ndindex(*shape):
                    cell: Any = items
                    for i in index:
                        cell = cell[i]
                    out[index] = cell
            return out
        assert node.file is not None
        arr = judge.npy[node.file].array(self.plan.archive.read(node.file), node.file)
        kind = judge.array_kind(node)
        if kind == "array":
            self.resolve(node.name)
            return arr
        if kind == "scalar":
            cls = self.resolve(node.name)
            item = arr[()]
            if type(item) is not cls:
                raise MalformedModelError(f"skops scalar of class {node.name} holds a {type(item).__name__}")
            return item
        return self.resolve(node.name)(arr)

    def _MaskedArrayNode(self, node: _Node) -> Any:
        cls = self.resolve(node.name)
        data, mask = self.build(node.kids["data"]), self.build(node.kids["mask"])
        if not (isinstance(cls, type) and issubclass(cls, np.ma.MaskedArray)):
            raise UnsafeModelError(f"skops masked array of class {node.name}", names=[node.name], rule="skops-state")
        return np.ma.MaskedArray(data, mask)

    def _DTypeNode(self, node: _Node) -> Any:
        self.resolve("numpy.dtype")
        return self.build(node.kids["content"]).dtype

    def _RandomStateNode(self, node: _Node) -> Any:
        out = self.resolve(node.name)()
        out.set_state(self.build(node.kids["content"]))
        return out

    def _RandomGeneratorNode(self, node: _Node) -> Any:
        seed_seq = self.resolve("numpy.random.bit_generator.SeedSequence")(**self.plan.judge.seed_seq(node))
        state = self.build(node.kids["bit_generator"])
        bit_generator = self.resolve(_BIT_GENERATORS[_bit_generator_name(node)])(seed_seq)
        bit_generator.state = state
        return self.resolve(node.name)(bit_generator=bit_generator)

    def _SparseMatrixNode(self, node: _Node) -> Any:
        from scipy.sparse import load_npz

        assert node.file is not None
        self.resolve(node.name)
        out = load_npz(io.BytesIO(self.plan.archive.read(node.file)))
        built = f"{type(out).__module__}.{type(out).__qualname__}"
        if built != node.name:
            raise UnsafeModelError(f"skops sparse node declares {node.name} but builds {built}", names=[built],
                                   rule="skops-state")
        return out


def _resolve_exact(policy: Policy, name: str, guarded: bool = True) -> Any:
    """``policy.resolve`` for a full name: try each module/qualname split until one imports."""
    parts = name.split(".")
    last: SafeloadError | None = None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            return policy.resolve(".".join(parts[:cut]), ".".join(parts[cut:]), guarded=guarded)
        except UnsafeModelError as exc:
            last = exc
    assert last is not None
    raise last


def _new(cls: Any, name: str) -> Any:
    if not isinstance(cls, type):
        raise UnsafeModelError(f"skops file rebuilds {name}, which is not a class", names=[name], rule="new-value")
    make: Any = cls.__new__
    return make(cls)


def load_skops(data: Buffer, policy: Policy, source: str | None = None,
               result: SkopsAudit | None = None) -> Any:
    """Build a skops archive with safeload's own loaders (``result``: the audit of these same bytes, if done)."""
    if result is None or result.plan is None:
        result = audit(data, policy)
    if result.refused:
        raise UnsafeModelError(refusal_message(result.refused, source), names=result.refused, source=source)
    plan: _Plan = result.plan
    try:
        return _Builder(plan, policy).build(plan.root)
    except MalformedModelError as exc:  # judged fine, but a loader refused its state: a build-time failure
        raise MalformedModelError(f"cannot build the model from the skops archive: {exc}") from None
    except SafeloadError:
        raise
    except (MemoryError, RecursionError):
        raise LimitExceededError("building the skops archive ran out of memory or stack") from None
    except Exception as exc:  # noqa: BLE001 - constructors raise anything on corrupt state
        raise MalformedModelError(f"cannot build the model from the skops archive: {type(exc).__name__}: {exc}") \
            from None
