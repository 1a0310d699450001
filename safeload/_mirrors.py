"""Static mirrors: judge simulated values the way the runtime guards and validators judge objects.

``load`` enforces the guards (``_guards``) when a guarded name is called, numpy's and Cython's
``__setstate__`` refusals when a state is applied, and the validators (``_validators``) on the
built model. ``scan`` builds nothing, so each of those has a mirror here that judges the walker's
simulated values (``_simulated``) instead: if a mirror is missing, ``scan`` says safe where ``load``
refuses. To mirror a new guard, add its case to :meth:`StaticChecks.check_guard` (a test fails
while a runtime guard has none); to mirror a state check, add it to :meth:`StaticChecks.check_state`.
The walker (``_walker``) only decides *which* value each opcode acts on and calls in here.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from safeload._allowlist import Entry, Kind
from safeload._class_data import CLASSES
from safeload._containers import Buffer
from safeload._filling import Filling
from safeload._guards import (
    BASE_KEYS,
    BIT_GENERATORS,
    MAX_PLACEHOLDER_ELEMENTS,
    MAX_SCALAR_BYTES,
    MAX_THREADS,
    MAX_TREE_SIZE,
    PLAIN_BASES,
    TEXT_CODECS,
    dtype_elements,
    materialise_problem,
    placeholder_problem,
    rng_state_problem,
    seed_sequence_problem,
)
from safeload._hashwork import HashCost, TooDeep, hash_budget, items_hash_work
from safeload._keyhash import KeyHashes
from safeload._policy import Policy
from safeload._simulated import LIMIT, MALFORMED, OTHER, UNSAFE, ArraySpan, Cont, G, Issue, Obj

__all__ = ["STATE_LENGTHS", "UNHASHABLE_CALLEES", "StaticChecks", "concrete", "static_mapping", "unhashable",
           "wrapper_state"]

_PLAIN_BASES = frozenset(f"builtins.{t.__name__}" for t in PLAIN_BASES)
_BASE_KEYS = {f"builtins.{t.__name__}": keys for t, keys in BASE_KEYS.items()}
# Tuples of the policy's kinds as compiled statics (an Enum member lookup takes EnumType's slow slot).
_NEW_OR_CALL: Final = (Kind.NEW, Kind.CALL)
_CALL_OR_VALUE: Final = (Kind.CALL, Kind.VALUE)
#: Guards of the calls whose result holds the keys their argument gave (``KeyHashes.rehash``).
_KEYED_GUARDS: Final = frozenset({"materialise", "materialise_pairs", "reconstructor"})
_ARRAY_TYPES = frozenset({"numpy.ndarray", "numpy.matrix", "numpy.ma.core.MaskedArray", "numpy.ma.MaskedArray"})
_RECONSTRUCT: Final = frozenset({"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct"})
_MARECONSTRUCT: Final = "numpy.ma.core._mareconstruct"
_TREE: Final = "sklearn.tree._tree.Tree"
#: Types whose state the walker validates at every BUILD from the stream's bytes, so that load skips
#: their full validator (``_load``'s ``prechecked``). Every instance of one the stream creates is
#: tracked (``made``), and one that no BUILD reaches is refused (``finish``): a type added here gets
#: both, so it can never be skipped unjudged.
BUILD_VALIDATED: Final = frozenset({_TREE})
BINARY_TREES: Final = frozenset(f"sklearn.neighbors._{m}.{c}{b}" for m, c in (("kd_tree", "KDTree"),
                                                                              ("ball_tree", "BallTree"))
                                for b in ("", "32", "64"))
_METRICS = tuple(f"sklearn.metrics._dist_metrics.{n}{b}" for n in (
    "BrayCurtisDistance", "CanberraDistance", "ChebyshevDistance", "DiceDistance", "EuclideanDistance",
    "HammingDistance", "HaversineDistance", "JaccardDistance", "MahalanobisDistance", "ManhattanDistance",
    "MatchingDistance", "MinkowskiDistance", "RogersTanimotoDistance", "RussellRaoDistance", "SEuclideanDistance",
    "SokalMichenerDistance", "SokalSneathDistance") for b in ("32", "64"))
#: Allowed classes outside scikit-learn/SciPy whose instances have a ``__dict__`` BUILD fills (the
#: shadowing rule's other subjects; tests/test_static_model.py holds this to the allowlist).
_DICT_CARRIERS: Final = frozenset({"collections.Counter", "collections.OrderedDict"})


def _stdlib_class(name: str) -> type:
    """The standard-library class a shadowing subject names (imported already: nothing the file names)."""
    import collections
    import functools

    classes: dict[str, type] = {"collections.Counter": collections.Counter,
                                "collections.OrderedDict": collections.OrderedDict,
                                "functools.partial": functools.partial}
    return classes[name]


#: Allowed namedtuples and their fields (tests/test_static_model.py holds this to the allowlist): no
#: __dict__, so the class data does not describe them; the walker keeps their arguments, their value.
NAMEDTUPLES: Final[dict[str, tuple[str, ...]]] = {
    "sklearn.impute._iterative._ImputerTriplet": ("feat_idx", "neighbor_feat_idx", "estimator"),
    "sklearn.utils._metadata_requests.MethodPair": ("caller", "callee"),
    "sklearn.utils._metadata_requests.RouterMappingPair": ("mapping", "router"),
}
#: Allowed dict subclasses whose items the walker keeps for the twin (``__setstate__`` ignores state).
DICT_SUBCLASSES: Final = frozenset({"sklearn.utils._bunch.Bunch"})
# Allowed Cython classes whose __setstate__ reads a fixed-size tuple without checking its length.
STATE_LENGTHS: dict[str, int] = {**{n: 13 for n in BINARY_TREES}, **{n: 3 for n in _METRICS}}
_STATE_LENGTHS: Final = STATE_LENGTHS
_I64: Final = np.dtype(np.int64)
_FROMBUFFER = frozenset({"numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer"})


def _hash_is_none(name: str) -> bool:
    """Does the class data say ``name``'s instances are unhashable (the first class along its
    bases that sets ``__hash__`` sets it to None: it defines ``__eq__`` only, or is a dict)?"""
    stack, seen = [name], set()
    while stack:
        cls = stack.pop()
        data = CLASSES.get(cls)
        if data is None or cls in seen:
            continue
        seen.add(cls)
        if "__hash__" in data[1]:
            return data[1]["__hash__"] is None
        if "__hash__" in data[3]:
            return False
        stack.extend(reversed(data[0]))
    return False


#: Calls and classes whose result Python cannot hash: numpy's arrays (``__hash__ = None``), the
#: mutable containers, and every class of the generated class data that defines ``__eq__`` alone
#: (kernels, sparse matrices, dataclasses) or derives from dict. A dict key or set item built by
#: one fails at load; the walker says so (``tests/test_keyhash_audit.py`` keeps this exact).
UNHASHABLE_CALLEES: Final = _RECONSTRUCT | _FROMBUFFER | {
    _MARECONSTRUCT, "builtins.set", "builtins.bytearray", "collections.OrderedDict", "collections.Counter",
    "collections.defaultdict", "numpy.ndarray", "numpy.matrix", "numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray",
} | ({"builtins.slice"} if slice.__hash__ is None else set()) | {n for n in CLASSES if _hash_is_none(n)}


def _hashed_items(v: Any) -> Any:
    """What ``hash(v)`` recurses into: a tuple's items, an allowed namedtuple's fields (its NEWOBJ arguments)."""
    if type(v) is tuple:
        return v
    if type(v) is Obj and v.callee in NAMEDTUPLES and type(v.args) is tuple:
        return v.args
    return None


def _pair_key(item: Any) -> Any:
    """What ``dict(items)`` hashes of one item (``_guards._pair_key``): a pair's key."""
    if type(item) is tuple and len(item) == 2:
        return item[0]
    if type(item) is Cont and item.kind == "list" and item.complete() and len(item.flat) == 2:
        return item.flat[0]
    return item


def unhashable(v: Any) -> bool:
    """Lists, dicts and sets built in the stream, arrays and the mutable containers allowed calls
    return; other objects may or may not be hashable, and are let through (load then decides)."""
    return type(v) is Cont or (type(v) is Obj and (v.array or v.callee in UNHASHABLE_CALLEES))

_BIT_GENERATOR_MAKERS = frozenset({"numpy.random._pickle.__bit_generator_ctor", "numpy.random._mt19937.MT19937",
                                   "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM",
                                   "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64"})
#: BUILD targets whose state dict numpy's bit-generator setters read (see _guards.rng_state_problem).
_RNG_STATE_TARGETS: Final = _BIT_GENERATOR_MAKERS | {"numpy.random._pickle.__randomstate_ctor"}
_BIT_GENERATOR_CLASSES = frozenset({"numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
                                    "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
                                    "numpy.random._sfc64.SFC64"})


#: The default policy's CALL entries that are functions, not classes: the guards that build an
#: instance of an argument (``_guards._allowed_class``) refuse them, and the walker cannot tell a
#: function from a class without importing it (tests/test_policy.py keeps this list exact).
FUNCTIONS: frozenset[str] = frozenset({
    "_codecs.encode", "copyreg._reconstructor", "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar", "numpy._core.numeric._frombuffer", "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy.core.numeric._frombuffer", "numpy.ma.core._mareconstruct",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss", "sklearn.metrics._dist_metrics.newObj",
    "sklearn.neighbors._ball_tree.newObj", "sklearn.neighbors._kd_tree.newObj",
})


#: Guards that check these arguments as classes (``_guards``: ``_allowed_class``, ``is SeedSequence``,
#: ``issubclass(BitGenerator)``, ``base in PLAIN_BASES``): a guard wrapper there is refused at load.
_CLASS_ARGS: dict[str, tuple[int, ...]] = {
    "reconstructor": (0, 1), "new_obj": (0,), "pyx_unpickle": (0,), "pyx_unpickle_seedsequence": (0,),
    "bit_generator_ctor": (0,), "randomstate_ctor": (0,), "generator_ctor": (0,),
}


# check_state's branches. The last four (from _ROUTE_TREE on) are the names under "sklearn." or
# "scipy.", whose dict state the static model reads.
_ROUTE_NONE: Final = 0
_ROUTE_ARRAY: Final = 1
_ROUTE_MASKED: Final = 2
_ROUTE_RNG: Final = 3
_ROUTE_PARTIAL: Final = 4
_ROUTE_SHADOW: Final = 5
_ROUTE_BINARY: Final = 6
_ROUTE_TREE: Final = 7
_ROUTE_LENGTH: Final = 8
_ROUTE_ESTIMATOR: Final = 9
_ROUTE_SCIPY: Final = 10


def _route(callee: str) -> int:
    """The branch of ``StaticChecks.check_state`` that a BUILD on an instance of ``callee`` takes,
    in the order the branches are tried (tests/test_mirror_routes.py holds it to that order)."""
    if callee in _RECONSTRUCT:
        return _ROUTE_ARRAY
    if callee == _MARECONSTRUCT:
        return _ROUTE_MASKED
    if callee in _RNG_STATE_TARGETS:
        return _ROUTE_RNG
    if callee == _TREE:
        return _ROUTE_TREE
    if callee in BINARY_TREES:
        return _ROUTE_BINARY
    if callee in _STATE_LENGTHS:
        return _ROUTE_LENGTH
    if callee == "functools.partial":
        return _ROUTE_PARTIAL
    if callee in _DICT_CARRIERS:
        return _ROUTE_SHADOW
    if callee.startswith("sklearn."):
        return _ROUTE_ESTIMATOR
    if callee.startswith("scipy."):
        return _ROUTE_SCIPY
    return _ROUTE_NONE


class _Keyed:
    """Does a call of ``name`` return a container of its argument's keys (``KeyHashes.rehash``)?"""

    def __init__(self, policy: Policy) -> None:
        self.entries = policy.lookup

    def __call__(self, name: str) -> bool:
        entry = self.entries.get(name)
        return entry is not None and entry.guard in _KEYED_GUARDS


class StaticChecks:
    """The mirrors, bound to one stream: its bytes (array data is read in place) and its issue list."""

    def __init__(self, policy: Policy, data: Buffer, filling: Filling | None, issues: list[Issue]) -> None:
        self.policy = policy
        self.lookup: dict[str, Entry] = policy.lookup
        self.data = data
        self.filling = filling
        self.issues = issues
        self.class_args: list[tuple[int, G, str]] = []  # (offset, class, callee) for finish()
        self.created: list[Obj] = []  # every BUILD_VALIDATED instance the stream creates, for finish()
        self._routes: dict[str, int] = {}  # callee -> its check_state branch (_route)
        limits = policy.limits
        self.hash_left = hash_budget(limits.max_hash_work, len(data))
        self._hash_cost = HashCost(_hashed_items, unhashable, limits.max_nesting_depth, self.hash_left + 1)
        # (a function of the policy, not a bound method: that would make self a cycle, and keep the
        # file's bytes alive until a full collection)
        self._keys = KeyHashes(NAMEDTUPLES, unhashable, concrete, _raw_bytes, _Keyed(policy),
                               limits.max_nesting_depth, self.hash_left + 1)

    def issue(self, rule: str, severity: str, offset: int, message: str, names: tuple[str, ...] = ()) -> None:
        self.issues.append(Issue(rule, severity, offset, message, names))

    def finish(self) -> None:
        """Checks that need the whole stream. A global that any opcode calls is resolved to its guard
        wrapper for the whole load (the engine resolves each global once), and the runtime guards
        that check an argument as a class refuse a wrapper: so must the mirror, even when the call
        comes later in the stream than the use."""
        for i, cls, callee in self.class_args:
            if cls.called:
                self.issue("guard", UNSAFE, i, f"{callee} is given {cls.name} as a class, but the stream also calls "
                           f"{cls.name}, so load would hand it the guard wrapper")
        for obj in self.created:
            # Its state comes only from BUILD, which the walker judges; one never given a state keeps
            # what its constructor made (a Tree: empty node arrays, and predict() reads node 0; byte
            # fuzzer seed 105: a POP where a forest's BUILD was, SIGSEGV after load).
            if obj.state is None:
                what = "a decision tree" if obj.callee == _TREE else str(obj.callee)
                self.issue("tree-structure" if obj.callee == _TREE else "never-built", UNSAFE, obj.origin,
                           f"{what} is created but never given its state (no BUILD), which load does not "
                           "validate again")

    def hash_problem(self, values: Any, what: str, skip_unhashable: bool = False) -> tuple[str, str, str] | None:
        """(rule, severity, message) if CPython's hashing of stream ``values`` (dict keys, set items)
        fails or costs what no file of this size needs: an unhashable value, tuples nested past
        ``max_nesting_depth`` (``tuplehash`` recurses in C, unchecked), or more items hashed in this
        stream than its budget (tuples shared through the memo hash exponentially). See _hashwork.
        ``skip_unhashable``: a list's items, which may be unhashable (only inference hashes them)."""
        cost = self._hash_cost
        for v in values:
            try:
                size = cost.measure(v)
            except TooDeep:
                return ("limit-tuple-depth", LIMIT, self._too_deep(what))
            if size < 0:
                if skip_unhashable:
                    continue
                return ("unhashable", MALFORMED, f"{what} is unhashable (a list, dict, set, array, or an object that defines __eq__ only)")
            if _hashed_items(v) is None:
                continue  # (a string or a number: one step, bounded by the file; the budget counts tuples)
            self.hash_left -= size
            if self.hash_left < 0:
                return ("limit-hash", LIMIT, f"hashing the stream's values ({what}) visits more items than its budget "
                        f"of {self.budget():,} (tuples shared through the memo)")
        return None

    def collision_problem(self, container: Any, keys: Any, what: str,
                          list_items: bool = False) -> tuple[str, str, str] | None:
        """(rule, severity, message) if inserting ``keys`` into ``container`` (None: a new dict or set)
        makes CPython compare keys of one hash more often than the stream's hash budget allows
        (see _keyhash: ints equal modulo 2**61-1, tuples or complex numbers built from them...).
        Call it after :meth:`hash_problem`, which bounds the hashing it does. ``list_items``: the
        items of a list, as if hashed into one dict: past an unhashable one too (a list may hold
        it), and not charged again when the list is (a call that hashes it counts its items)."""
        self.hash_left -= self._keys.insert(container, keys, skip_unhashable=list_items, keep_total=not list_items)
        if self.hash_left < 0:
            return ("limit-hash", LIMIT, f"{what.removeprefix('a ')}s built to share one hash: inserting them "
                    f"compares keys more often than the stream's hash budget of {self.budget():,}")
        return None

    def budget(self) -> int:
        return hash_budget(self.policy.limits.max_hash_work, len(self.data))

    def rehash_problem(self, state: Any) -> tuple[str, str, str] | None:
        """BUILD inserts a state dict's keys into the instance's ``__dict__`` (a ``(dict, slots)``
        pair: both): keys built to collide cost again for every object given that state."""
        if type(state) is tuple and len(state) == 2:
            work = self._keys.rehash(state[0]) + self._keys.rehash(state[1])
        else:
            work = self._keys.rehash(state)
        self.hash_left -= work
        if work and self.hash_left < 0:
            return ("limit-hash", LIMIT, "BUILD states whose keys share one hash: copying them into the objects "
                    f"compares keys more often than the stream's hash budget of {self.budget():,}")
        return None

    def holds_tuples(self, t: tuple[Any, ...]) -> bool:
        """Was ``t`` measured as holding tuples (:meth:`nesting_problem`)? A flat one costs its length to hash."""
        return self._hash_cost.depth(t) > 1

    def nesting_problem(self, t: tuple[Any, ...]) -> str | None:
        """A tuple the stream builds nests tuples past ``max_nesting_depth``: whoever hashes it later
        (the unpickler, the model, the caller) recurses in C without a limit."""
        try:
            self._hash_cost.measure(t)
        except TooDeep:
            return self._too_deep("a tuple")
        return None

    def _too_deep(self, what: str) -> str:
        return (f"{what} nests tuples deeper than {self.policy.limits.max_nesting_depth} (CPython hashes "
                "nested tuples recursively in C, without a limit: a deep one crashes the process)")

    def _guarded(self, name: str) -> bool:
        entry = self.lookup.get(name)
        return entry is not None and entry.guard is not None

    def check_guard(self, i: int, name: str, args: tuple[Any, ...]) -> None:
        """The static mirror of ``_guards``: refuse what the runtime guard would refuse."""
        entry = self.lookup.get(name)
        guard = entry.guard if entry is not None else None
        if guard is None:
            return
        for k in _CLASS_ARGS.get(guard, ()):
            if k < len(args) and isinstance(args[k], G) and self._guarded(args[k].name):
                self.class_args.append((i, args[k], name))  # judged at the end: it may be called later
        if guard in ("reconstruct", "mareconstruct"):
            shape = args[1] if guard == "reconstruct" and len(args) > 1 else (args[2] if len(args) > 2 else None)
            sub = args[0] if args else None
            count = _elements(shape)
            base = args[1] if guard == "mareconstruct" and len(args) > 1 else sub  # MaskedArray's _baseclass
            if not isinstance(sub, G) or sub.name not in _ARRAY_TYPES or not isinstance(base, G) \
                    or base.name not in _ARRAY_TYPES:
                self.issue("guard", UNSAFE, i, f"{name} called without an allowed array type")
            elif count is None:
                self.issue("guard", UNSAFE, i, f"{name} called with a non-integer shape")
            else:
                dtype_arg = (args[2] if len(args) > 2 else b"b") if guard == "reconstruct" else (
                    args[3] if len(args) > 3 else None)
                dt = _static_dtype(dtype_arg)
                if dt is None:
                    self.issue("guard", UNSAFE, i, f"{name} called with a dtype that is not a type string or dtype")
                elif count:  # (numpy's own placeholder is empty: no dtype makes 0 items allocate)
                    problem = placeholder_problem(count, dt)
                    if problem is not None:
                        self.issue("limit-array", LIMIT, i, f"{name}: {problem}")
        elif guard == "frombuffer":
            self.check_frombuffer(i, name, args)
        elif guard == "reconstructor":
            if len(args) != 3 or not isinstance(args[0], G) or not isinstance(args[1], G) or \
                    args[1].name not in _PLAIN_BASES or (args[1].name == "builtins.object" and args[2] is not None):
                self.issue("guard", UNSAFE, i, "copyreg._reconstructor with an unexpected class, base or state")
            elif args[0].kind not in _NEW_OR_CALL or args[0].name in FUNCTIONS:
                self.issue("guard", UNSAFE, i, f"copyreg._reconstructor may not build {args[0].name}",
                           (args[0].name,))
            elif args[1].name == "builtins.bytes" and not isinstance(args[2], (bytes, memoryview, str)) \
                    and _raw_bytes(args[2]) is None:
                self.issue("guard", UNSAFE, i, "copyreg._reconstructor with a bytes base needs bytes or text as its state")
            else:
                self.check_materialise(i, name, (args[2],), _BASE_KEYS.get(args[1].name))
        elif guard in ("materialise", "materialise_pairs", "seeded"):
            self.check_materialise(i, name, args, None if guard == "seeded" else
                                   "pairs" if guard == "materialise_pairs" else "items")
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
            if not args or not isinstance(args[0], G) or args[0].kind not in _CALL_OR_VALUE:
                self.issue("guard", UNSAFE, i, "functools.partial may only wrap an allowed function")
            elif self._guarded(args[0].name):
                self.issue("guard", UNSAFE, i, f"functools.partial may not wrap {args[0].name}, which is safe to "
                           "call only through its guard")
        elif guard == "new_obj":
            if len(args) != 1 or not isinstance(args[0], G) or args[0].kind not in _NEW_OR_CALL \
                    or args[0].name in FUNCTIONS:
                self.issue("guard", UNSAFE, i, f"{name} needs an allowed class")
        elif guard == "codecs_encode":
            if not args or not isinstance(args[0], str) or (len(args) > 1 and not (
                    isinstance(args[1], str) and args[1].lower() in TEXT_CODECS)):
                self.issue("guard", UNSAFE, i, "_codecs.encode is only allowed for str with a text codec")
        elif guard == "sized_buffer":  # (_guards._sized_buffer)
            first = args[0] if args else None
            items = len(first) if isinstance(first, tuple) else (
                first.count if isinstance(first, Cont) and first.kind == "list" else None)
            if args and items is None and not isinstance(first, (bytes, memoryview, str)) and not (
                    isinstance(first, Obj) and first.callee == "_codecs.encode"):  # protocol 0-2 bytes
                self.issue("guard", UNSAFE, i, f"{name} may only be built from in-pickle data")
            elif items is not None and items > MAX_SCALAR_BYTES * 64:
                self.issue("limit-array", LIMIT, i, f"{name} from a sequence of {items} items refused")
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

    def check_materialise(self, i: int, name: str, args: tuple[Any, ...], keys: str | None) -> None:
        """Static mirror of ``_guards.hashing_problem``: a range argument is counted, not trusted; the
        items of a list or tuple argument are measured for hashing and, where the call hashes them
        (``keys``), counted for keys built to share a hash."""
        for value in args:
            # (a list past the walker's cap keeps, beside its first items, every later one that
            # hashing could be made to cost: tuples and collidable keys, see Cont.overflow)
            items = value if type(value) is tuple else (
                value.flat + value.overflow if value.overflow else value.flat) if type(value) is Cont and \
                value.kind == "list" else None
            # Charged to the stream's budget, not judged per call: one argument read back through
            # the memo and passed again costs again. Refused once, where the budget runs out.
            before = self.hash_left
            if items is not None:
                try:
                    self.hash_left -= items_hash_work(items, self._hash_cost)
                except TooDeep:
                    self.issue("limit-hash", LIMIT, i, f"{name}: {self._too_deep('an item')}")
                    continue
                chosen = [_pair_key(x) for x in items] if keys == "pairs" else items
                if keys is not None and any(self._hash_cost.measure(x) < 0 for x in chosen):
                    # (measured above: a tuple is looked up, not walked again) the call raises at load
                    what = "a key of its argument's pairs" if keys == "pairs" else "an item of its argument"
                    self.issue("unhashable", MALFORMED, i, f"{name}: {what} is unhashable (a list, dict, set, "
                               "array, or an object that defines __eq__ only)")
                    continue
                if self.hash_left >= 0 and keys is not None:  # (past it, a memo-built DAG is never hashed here)
                    keyed = self._keys.work(chosen, {})
                    self._keys.note_argument(value, keyed)
                    self.hash_left -= keyed
            elif keys is not None:  # a dict, set or frozenset argument: its keys are hashed again
                keyed = self._keys.rehash(value)
                self._keys.note_argument(value, keyed)
                self.hash_left -= keyed
            if before >= 0 > self.hash_left:
                self.issue("limit-hash", LIMIT, i, f"{name}: hashing its argument's items costs more than the "
                           f"stream's hash budget of {self.budget():,} (tuples shared through the memo, "
                           "or keys built to share one hash)")
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

    def check_frombuffer(self, i: int, name: str, args: tuple[Any, ...]) -> None:
        """``_frombuffer(buf, dtype, shape, order)`` is ``frombuffer(buf, dtype).reshape(shape)``: a buffer
        that is not a whole number of items, or not ``shape``'s many, fails the build (a value the
        walker cannot read, or a shape with a -1, is left to load)."""
        if len(args) < 3:
            return
        raw = _raw_bytes(args[0])
        dt = _static_dtype(args[1])
        shape = args[2]
        if raw is None or dt is None or dt.itemsize == 0 or not isinstance(shape, tuple) \
                or not all(type(d) is int and d >= 0 for d in shape):
            return
        size = len(raw)
        items = size // dt.itemsize
        want = 1
        for d in shape:
            want *= d
        if size % dt.itemsize or items != want:
            self.issue("array-state", MALFORMED, i, f"{name}: {size} bytes of {dt.str} are not the {want} items of "
                       f"shape {shape}; numpy refuses it")

    def check_state(self, i: int, target: Obj, state: Any) -> None:
        """What BUILD's ``__setstate__`` would meet, for every target whose setter trusts its state."""
        callee = target.callee
        if callee == "numpy.dtype":  # (the walker stops at a second BUILD on one dtype)
            target.state = state
            try:
                concrete(target)
            except Exception as exc:  # noqa: BLE001 - numpy raises SystemError & co on hostile states
                self.issue("dtype-state", UNSAFE, i,
                           f"invalid numpy dtype state ({exc}); numpy would build a corrupt dtype")
            return
        if callee is None:
            target.state = None
            return
        # Which branch a callee takes depends on its name only: decided once per name (eight set
        # and prefix tests per BUILD were most of the cost of a model made of many small objects).
        route = self._routes.get(callee)
        if route is None:
            route = self._routes[callee] = _route(callee)
        # Only an ndarray's state (static_array) and a scikit-learn instance's state dict (the static
        # model, _static_model) are read again later; every other state is judged here and dropped,
        # so the simulated graph does not keep every object's state alive (memory ~ file).
        # A scikit-learn/SciPy instance's second BUILD is merged into its first by __setstate__, and
        # a state that is not a dict is not one the static model reads: either leaves it OTHER (unknown).
        if route == _ROUTE_ARRAY:
            target.state = state
        elif route == _ROUTE_BINARY:  # (the twin reads its data array: _static_model._Twin.binary_tree)
            single = target.state is None and isinstance(state, tuple) and len(state) == 13
            target.state = state if single else OTHER
        elif route >= _ROUTE_TREE:  # a name under "sklearn." or "scipy."
            single = target.state is None and isinstance(state, Cont) and state.kind == "dict"
            target.state = state if single else OTHER
        else:
            target.state = None
        if route == _ROUTE_ARRAY:
            self.check_array_state(i, state)
        elif route == _ROUTE_MASKED:
            self.check_array_state(i, state, masked=True)
        elif route == _ROUTE_RNG:
            problem = rng_state_problem(static_mapping(state))
            if _keys_not_names(state):
                problem = f"{callee} state has a key that is not a plain string (it could replace a named field)"
            if problem is not None:
                self.issue("guard", UNSAFE, i, problem)
        elif route == _ROUTE_TREE:
            self.check_tree(i, target, state)
        elif route == _ROUTE_BINARY and isinstance(state, tuple) and len(state) == 13:
            self.check_binary_tree(i, callee, state)
        elif (route == _ROUTE_BINARY or route == _ROUTE_LENGTH) and not (
                isinstance(state, tuple) and len(state) == _STATE_LENGTHS[callee]):
            # Their Cython __setstate__ indexes the tuple without a length check.
            self.issue("guard", UNSAFE, i, f"{callee} state must be a {_STATE_LENGTHS[callee]}-tuple")
        elif route == _ROUTE_PARTIAL:
            func = state[0] if isinstance(state, tuple) and state else None
            if not isinstance(func, G) or func.kind not in _CALL_OR_VALUE or self._guarded(func.name):
                self.issue("guard", UNSAFE, i, "functools.partial state may only name an allowed function "
                           "that needs no guard")
            if isinstance(state, tuple) and len(state) == 4:  # (func, args, keywords, __dict__)
                self.check_shadowing(i, "functools.partial", (state[3],))
        elif route == _ROUTE_SHADOW:  # default BUILD: a dict, or (dict, slot dict) set as attributes
            self.check_shadowing(i, callee, state if isinstance(state, tuple) else (state,))
        elif route == _ROUTE_ESTIMATOR and isinstance(state, Cont) and state.kind == "dict":
            self.check_estimator_state(i, state)

    def check_shadowing(self, i: int, callee: str, parts: tuple[Any, ...]) -> None:
        """load's shadowing rule (``_validators.shadow``) on the keys BUILD puts in the ``__dict__`` of
        an allowed class outside scikit-learn/SciPy (those are the twin's): a key naming a class-level
        attribute that real instances never carry. A part the walker did not keep whole is load's."""
        from safeload._validators._shadow_data import SHADOW_KEYS
        from safeload._validators.shadow import class_level_names

        names = class_level_names(_stdlib_class(callee))
        allowed = SHADOW_KEYS.get(callee, frozenset())
        for part in parts:
            if not isinstance(part, Cont) or part.kind != "dict":
                continue
            flat = part.flat
            for k in range(0, len(flat) - 1, 2):
                key = flat[k]
                if type(key) is str and key in names and key not in allowed:
                    self.issue("estimator-state", UNSAFE, i,
                               f"load's validator refuses it: instance state shadows the class attribute "
                               f"{callee}.{key}, which real fitted instances never carry")
                    return

    def check_estimator_state(self, i: int, state: Cont) -> None:
        """The estimator-level validators whose inputs are plain values in the state dict.

        Mirrored so far: ``_n_threads`` (``_validators.cluster._check_n_threads``). A value the
        walker cannot see (a numpy scalar built by a call) is left to ``load``'s validator; the
        other estimator-level rules are listed in the README's Known gaps."""
        flat = state.flat
        for k in range(0, len(flat) - 1, 2):
            key = flat[k]
            if isinstance(key, str) and key == "_n_threads":  # (a str compare, compiled; Any == str was generic)
                value = flat[k + 1]
                if isinstance(value, (Obj, G)):
                    continue  # e.g. a numpy integer: its value is load's to check
                if type(value) is not int:
                    self.issue("estimator-state", UNSAFE, i,
                               f"_n_threads must be an integer thread count, got {type(value).__name__}")
                elif not 1 <= value <= MAX_THREADS:
                    self.issue("estimator-state", UNSAFE, i,
                               f"_n_threads = {value} outside [1, {MAX_THREADS}]; OpenMP aborts the process on it")

    def check_binary_tree(self, i: int, callee: str, state: tuple[Any, ...]) -> None:
        """load's KD/Ball-tree validator (idx_array a permutation, node ranges tiling, sizes) on the
        arrays of the 13-tuple BUILD hands ``BinaryTree.__setstate__``, read from the stream's bytes.
        Its last step, the distance metric's own state, stays load's (a Cython object the walker does
        not rebuild): reaching it means every structural check passed. A state whose arrays or sizes
        cannot be read here is left to load, as before."""
        from safeload._errors import UnsafeModelError
        from safeload._validators.neighbors import _make_binary_tree_check

        arrays = [self.static_array(state[k], limit=None) for k in range(4)]
        weight = state[12] if state[12] is None else self.static_array(state[12], limit=None)
        if any(a is None for a in arrays) or (state[12] is not None and weight is None) \
                or not all(type(state[k]) is int for k in range(4, 11)):
            return
        view = _BinaryTreeState((*arrays, *state[4:11], _MetricUnknown(), weight))
        try:
            _make_binary_tree_check(2 if "_kd_tree." in callee else 1)(view, "")
        except _Unknowable:
            return
        except UnsafeModelError as exc:
            self.issue("estimator-state", UNSAFE, i, f"load's validator refuses it: {callee.rsplit('.', 1)[1]}.{exc}")
        except Exception:  # noqa: BLE001 - numpy refusing an odd array: load judges the built tree
            return

    def check_tree(self, i: int, target: Obj, state: Any) -> None:
        """Validate a decision tree's node arrays *before* Tree.__setstate__ sees them.

        The same checks run again on the built object at load time; running them here
        too means ``scan`` refuses what ``load`` refuses, without building anything."""
        if not self.tree_shown_safe(target.args, state):
            self.check_tree_full(i, target, state)

    def check_tree_full(self, i: int, target: Obj, state: Any) -> None:
        """check_tree through load's own validator, on a _StaticTree: decides every case and names the problem."""
        from safeload._errors import UnsafeModelError
        from safeload._validate import _check_tree

        args = target.args
        try:
            fields = state.str_fields() if isinstance(state, Cont) else None
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

    def tree_shown_safe(self, args: Any, state: Any) -> bool:
        """check_tree's good case on plain ints and the stream's own array bytes: no _StaticTree and
        none of _check_tree's numpy preamble, which was most of a forest tree's ~30 us of static
        checks. True only where the full path below reports nothing (tests/test_tree_fast.py holds
        the two together); False: that path decides and names the problem."""
        from safeload._validators.trees import _links_shown_safe  # (the validators load lazily: ~30 ms)

        if type(args) is not tuple or len(args) != 3 or type(state) is not Cont:
            return False
        n_features, n_classes, n_outputs = args
        if type(n_features) is not int or type(n_outputs) is not int or n_features < 1 or not 1 <= n_outputs <= 64:
            return False
        fields = state.str_fields()
        if fields is None:
            return False
        node_count = fields.get("node_count")
        max_depth = fields.get("max_depth")
        if type(node_count) is not int or type(max_depth) is not int or node_count < 1:
            return False
        classes = self.static_array(n_classes, limit=1 << 20)
        if classes is None or classes.dtype != _I64 or classes.shape != (n_outputs,):
            return False
        counts: list[int] = classes.tolist()
        top = max(counts)
        if min(counts) < 1:
            return False
        nodes = self.static_array(fields.get("nodes"), limit=None)
        if nodes is None or nodes.ndim != 1 or not nodes.dtype.names or node_count > nodes.shape[0]:
            return False
        values = self.static_array(fields.get("values"), limit=None)
        if values is None or values.ndim != 3 or values.shape[0] < node_count or values.shape[1] != n_outputs \
                or values.shape[2] != top:
            return False
        return _links_shown_safe(nodes, node_count, n_features, max_depth)

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
                raw = _MEMORYVIEW(self.data)[span.data_offset:span.data_offset + span.nbytes]
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
            # ndarray.__setstate__ parses a 5- or 4-item sequence, MaskedArray's unpacks 7 items: a dict,
            # a set or a plain value is refused (a list or a built value is left to load)
            if type(state) in (int, float, bool, type(None)) or (isinstance(state, Cont) and state.kind != "list"):
                self.issue("array-state", MALFORMED, i, f"{'MaskedArray' if masked else 'ndarray'}.__setstate__ "
                           f"takes a sequence of {7 if masked else '5 or 4'} items; numpy refuses this state")
            return
        version: Any = 1
        if masked:  # (version, shape, dtype, is_fortran, raw, mask, fill_value); it ignores its version
            if len(state) != 7:
                self.issue("array-state", MALFORMED, i, f"MaskedArray.__setstate__ unpacks 7 items, the state "
                           f"has {len(state)}")
                return
            shape, dtype, raw = state[1], state[2], state[4]
        elif len(state) == 5:  # (version, shape, dtype, is_fortran, raw)
            version, shape, dtype, raw = state[0], state[1], state[2], state[4]
        elif len(state) == 4:  # the version-0 form numpy still accepts
            shape, dtype, raw = state[0], state[1], state[3]
        else:
            self.issue("array-state", MALFORMED, i, f"ndarray.__setstate__ takes a 5- or 4-item state, this one "
                       f"has {len(state)}; numpy refuses it")
            return
        # numpy parses it as (int, tuple, dtype, int, data): a field that is plainly something else fails
        fortran = state[3] if masked or len(state) == 5 else state[2]
        field = ("version" if _not_int(version) else "dtype" if _not_dtype(dtype)
                 else "is_fortran" if _not_int(fortran) else None)
        if field is not None:
            self.issue("array-state", MALFORMED, i, f"ndarray state's {field} field is not one numpy accepts "
                       "(it parses (int, tuple, dtype, int, data)); numpy refuses it")
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
        is_dt = is_dtype(dt)
        elements = count * dtype_elements(dt) if is_dt and dt.subdtype is not None else count
        if elements > MAX_PLACEHOLDER_ELEMENTS and (have is None or elements > have):
            self.issue("limit-array", LIMIT, i,
                       f"ndarray state claims {elements} elements but carries only {have} bytes/items")
            return
        if not is_dt and isinstance(raw, Cont):
            self.issue("guard", UNSAFE, i, "ndarray state with an item list and a dtype that cannot be established "
                       "statically (its size and object layout decide what numpy reads)")
            return
        self.check_object_items(i, count, dt, raw)
        if masked and is_dt:
            self.check_mask(i, count, dt, state[5])
        if not is_dt or dt.hasobject:
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

    def check_mask(self, i: int, count: int, dt: np.dtype[Any], msk: Any) -> None:
        """MaskedArray.__setstate__ hands its mask bytes to ndarray.__setstate__ with the mask dtype
        numpy derives from the data's (one bool per field): numpy refuses a size that differs."""
        data = _raw_bytes(msk)
        if data is None:
            return
        try:
            itemsize = np.ma.make_mask_descr(dt).itemsize
        except Exception:  # noqa: BLE001 - numpy cannot derive it: load fails as well
            self.issue("array-state", MALFORMED, i, f"no mask dtype can be derived from {dt}")
            return
        if len(data) != count * itemsize:
            self.issue("array-state", MALFORMED, i, f"masked array mask holds {len(data)} bytes for {count} "
                       f"elements (numpy: buffer size does not match array size)")

    def check_object_items(self, i: int, count: int, dt: Any, raw: Any) -> None:
        """An object array is filled from a list: numpy copies ``count`` items out of it without
        checking its length, so a shorter list makes it read (and keep) pointers past the end."""
        if _raw_bytes(raw) is not None or raw is None or isinstance(raw, (str, int, float)):
            return  # numpy checks the byte count itself, or refuses a non-list with a TypeError
        if isinstance(raw, Cont) and raw.kind != "list":
            return  # a dict or a set: not a list, a TypeError
        if is_dtype(dt) and not dt.hasobject:
            return  # numpy wants bytes for this dtype and refuses a list
        if isinstance(raw, Cont):
            if raw.count < count:
                self.issue("guard", UNSAFE, i, f"object array state lists {raw.count} items for {count} "
                           "elements: numpy would read pointers past the end of the list")
            return
        self.issue("guard", UNSAFE, i, "object array state whose item list is not a list literal: "
                   "its length cannot be checked before numpy reads it")


def _static_dtype(value: Any) -> np.dtype[Any] | None:
    """The dtype a reconstruction argument stands for, as the runtime guard accepts it (type string or dtype)."""
    try:
        dt = concrete(value)
        if type(dt) is str or type(dt) is bytes:
            code = dt
            dt = _TYPE_CODES.get(code)
            if dt is None:
                dt = np.dtype(code if isinstance(code, str) else code.decode("latin1"))
                if len(_TYPE_CODES) < _MAX_TYPE_CODES:
                    _TYPE_CODES[code] = dt
        elif isinstance(dt, (str, bytes)):  # (a subclass: never cached)
            dt = np.dtype(dt if isinstance(dt, str) else dt.decode("latin1"))
    except Exception:  # noqa: BLE001 - numpy raises many types on hostile specs; unknown means refused
        return None
    return dt if is_dtype(dt) else None


def is_dtype(value: Any) -> bool:
    """``isinstance(value, np.dtype)``, answered once per type: numpy's dtypes are instances of a
    class per kind under a metaclass, and compiled, each isinstance took ~600 instructions."""
    t = type(value)
    known = _DTYPE_TYPES.get(t)
    if known is None:
        known = isinstance(value, np.dtype)
        if len(_DTYPE_TYPES) < _MAX_TYPE_CODES:
            _DTYPE_TYPES[t] = known
    return known


_DTYPE_TYPES: dict[type, bool] = {}


#: Type strings a reconstruction placeholder names (``b'b'`` in every pickled array), evaluated once
#: per process: a str and a bytes code never compare equal, so a key is one spelling.
_TYPE_CODES: dict[str | bytes, np.dtype[Any]] = {}
_MAX_TYPE_CODES: Final = 256


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


def _keys_not_names(value: Any, depth: int = 0) -> bool:
    """A dict (or a dict inside it) whose keys are not all plain strings."""
    if not (isinstance(value, Cont) and value.kind == "dict" and depth < 4):
        return False
    flat = value.flat
    return any(type(flat[k]) is not str or _keys_not_names(flat[k + 1], depth + 1) for k in range(0, len(flat), 2))


def static_mapping(value: Any, depth: int = 0) -> Any:
    """A dict built in the stream as a plain dict of what is known statically (ints, strings, nested
    dicts), anything else as None. The lenient twin of :func:`concrete`, which refuses what it cannot
    evaluate (here a state dict holds arrays beside the ints we check); dicts the walker did not keep
    whole (runs, over the cap) stay unknown."""
    if isinstance(value, Cont) and value.kind == "dict" and depth < 4:
        fields = value.str_fields()
        if fields is None:
            return None
        return {key: static_mapping(item, depth + 1) for key, item in fields.items()}
    return value if isinstance(value, (int, str)) else None


#: Plain dtypes (no subarray, fields or metadata) as evaluated and checked, by their exact pickled
#: (args, state): numpy builds and checks each once per process, not once per array of every file
#: (~13,000 instructions each: 8% of the walk of a store of small models).
_PLAIN_DTYPES: dict[tuple[tuple[Any, ...], tuple[Any, ...]], np.dtype[Any]] = {}
_MAX_PLAIN_DTYPES = 1024


def _plain_dtype(args: tuple[Any, ...], state: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """The cache key of a plain dtype, or None. Every item's exact type is checked (``True == 1``
    and ``1 == 1.0``: equal keys must be equal arguments), so one key is one evaluation."""
    if not (len(args) == 3 and type(args[0]) is str and type(args[1]) is bool and type(args[2]) is bool
            and type(state) is tuple and len(state) == 8):
        return None
    ver, order, sub, names, fields, elsize, align, flags = state
    if type(ver) is int and type(order) is str and sub is None and names is None and fields is None \
            and type(elsize) is int and type(align) is int and type(flags) is int:
        return args, state
    return None


def concrete(value: Any, depth: int = 0) -> Any:
    """Turn a simulated value back into data (only dtypes are evaluated)."""
    if depth > 32:
        raise ValueError("value nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, _MEMORYVIEW):
        if value.nbytes > 1 << 20:
            raise ValueError("bytes too large to evaluate")
        return value.tobytes()
    if isinstance(value, tuple):
        return tuple(concrete(v, depth + 1) for v in value)
    if isinstance(value, Cont) and value.kind == "dict":
        if value.count > value.kept():
            raise ValueError("dict too large to evaluate")
        return {concrete(k, depth + 1): concrete(v, depth + 1) for k, v in value.pairs()}
    if isinstance(value, Obj) and value.callee == "numpy.dtype" and value.value is not None:
        return value.value
    if isinstance(value, Obj) and value.callee == "numpy.dtype" and isinstance(value.args, tuple):
        args = concrete(value.args, depth + 1)
        if not args or not isinstance(args[0], (str, bytes)) or len(args) > 3 or \
                not all(isinstance(a, (bool, int)) for a in args[1:]):
            raise ValueError("dtype built from something other than a type string")
        state = concrete(value.state, depth + 1) if value.state is not None else None
        key = _plain_dtype(args, state) if state is not None else None
        if key is not None:
            cached = _PLAIN_DTYPES.get(key)
            if cached is not None:
                value.value = cached
                return cached
        dt = np.dtype(*args)
        if state is not None:
            _check_dtype_state(state)
            if dt.kind in "mM" and not _datetime_metadata_ok(state):
                # numpy dereferences NULL when a datetime dtype is restored without its unit metadata
                raise ValueError("datetime dtype state without valid unit metadata")
            dt.__setstate__(state)
            _check_dtype_layout(dt)
            value.value = dt  # only a complete (stated) dtype is cached: BUILD may still follow otherwise
            if key is not None:
                if len(_PLAIN_DTYPES) >= _MAX_PLAIN_DTYPES:
                    _PLAIN_DTYPES.clear()
                _PLAIN_DTYPES[key] = dt
        return dt
    raw = _raw_bytes(value)
    if isinstance(raw, _BYTES_LIKE):
        return bytes(raw)
    raise ValueError(f"cannot evaluate {type(value).__name__} statically")


class _Unknowable(Exception):
    """The binary-tree check reached what the walker does not model (the distance metric)."""


class _MetricUnknown:
    """The distance metric in a BinaryTree state: its state is load's to judge."""

    def __getstate__(self) -> Any:
        raise _Unknowable()


class _BinaryTreeState:
    """What ``_make_binary_tree_check`` reads of a KD/Ball tree: its ``__getstate__`` tuple."""

    def __init__(self, state: tuple[Any, ...]) -> None:
        self._state = state

    def __getstate__(self) -> tuple[Any, ...]:
        return self._state


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


def _not_int(value: Any) -> bool:
    """Plainly not what PyArg's "i" accepts (an int or a bool; a built value is left to load)."""
    return type(value) in _NOT_INT_TYPES or isinstance(value, Cont)


def _not_dtype(value: Any) -> bool:
    """Plainly not a numpy dtype object (pickles build one with numpy.dtype: an Obj or a memo read of one)."""
    return type(value) in _NOT_DTYPE_TYPES or isinstance(value, Cont)


# Type tests of the hot paths as module constants: compiled, a tuple of types in the code is
# rebuilt and compared item by item at every call, and ``memoryview`` (a builtin mypyc has no C
# type for) looked up in the builtins module at every use.
_MEMORYVIEW: Final = memoryview
_BYTES_LIKE: Final = (bytes, memoryview)
_NOT_INT_TYPES: Final = frozenset({str, bytes, float, type(None), tuple, memoryview})
_NOT_DTYPE_TYPES: Final = frozenset({str, bytes, int, float, bool, type(None), tuple, memoryview})


def _raw_bytes(value: Any) -> bytes | memoryview | None:
    if isinstance(value, _BYTES_LIKE):
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


def wrapper_state(state: Any) -> tuple[str, tuple[int, ...], str, np.dtype[Any], bool, int | None] | str:
    fields = state.str_fields() if isinstance(state, Cont) else None
    if fields is None:
        return "state is not a small dict of named fields"
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
