"""Argument checks for the few allowed callables that could misbehave with hostile arguments.

A pickle's REDUCE calls whatever ``find_class`` returned with arguments the
file chooses.  Most allowed callables only build a value; the ones here could
allocate without bound, call another callable, or hand back their argument, so
the loader returns them wrapped in a ``Guarded`` callable that checks first.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from safeload._errors import LimitExceededError, UnsafeModelError
from safeload._hashwork import HashCost, TooDeep, big_int, collision_work, compare_weight, items_hash_work

if TYPE_CHECKING:
    from safeload._policy import Policy

__all__ = ["GUARDS", "HASHING_GUARDS", "Guarded", "HashMeter", "rng_state_problem"]

# Arrays built by reconstructors are empty placeholders; real data arrives with BUILD.
# The walker mirrors these checks statically (_walker.check_guard) and imports these bounds from here.
MAX_PLACEHOLDER_ELEMENTS = 1 << 20
#: ... and bytes: a placeholder's dtype may be a subarray (``'(N,)O'`` multiplies the shape) or huge (``V10**9``).
MAX_PLACEHOLDER_BYTES = 1 << 24
#: Elements a callable may take from a lazy iterable (``range``) that the file does not hold: ``set(range(10**9))``
#: costs the file a few bytes and the loader gigabytes. Containers already in memory are paid for by the file.
MAX_MATERIALISED_ELEMENTS = 1 << 20
#: numpy's SeedSequence refuses pools under 4 words; real ones are 4 (the default) to a few hundred.
MIN_POOL_SIZE = 4
MAX_POOL_SIZE = 1 << 16
MAX_SCALAR_BYTES = 1 << 20
MAX_TREE_SIZE = 1 << 31
#: OpenMP thread counts: ``prange(num_threads=n)`` with n < 1 or huge makes libgomp
#: abort the process (no Python exception). sklearn stores the machine's core count.
MAX_THREADS = 1024
PLAIN_BASES = (object, dict, list, set, frozenset, tuple, int, float, str, bytes)
#: What ``copyreg._reconstructor``'s ``base.__init__(obj, state)`` hashes (``hashing_problem``'s ``keys``).
BASE_KEYS: dict[type, str] = {set: "items", frozenset: "items", dict: "pairs"}
TEXT_CODECS = frozenset({"latin1", "latin-1", "iso8859-1", "iso-8859-1", "utf-8", "utf8", "ascii"})
BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})
_NOT_VALUES = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType, np.ufunc)


class Guarded:
    """A callable stand-in for an allowed name; immune to BUILD and never re-pickled."""

    __slots__ = ("_fn", "_check", "name")

    def __init__(self, name: str, fn: Callable[..., Any], check: Callable[..., None]) -> None:
        self._fn = fn
        self._check = check
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check(*args, **kwargs)
        result = self._fn(*args, **kwargs)
        if isinstance(result, _NOT_VALUES):
            raise UnsafeModelError(f"{self.name} returned a {type(result).__name__}, not a value")
        return result

    def __setstate__(self, state: object) -> None:
        raise UnsafeModelError(f"the pickle tried to modify the allowed callable {self.name}")

    def __reduce__(self) -> Any:
        raise TypeError(f"safeload guard for {self.name} cannot be pickled")

    def __repr__(self) -> str:
        return f"<safeload guard for {self.name}>"


def _count(shape: object) -> int:
    if isinstance(shape, (int, np.integer)):
        dims = [int(shape)]
    elif isinstance(shape, tuple) and all(isinstance(d, (int, np.integer)) for d in shape):
        dims = [int(d) for d in shape]
    else:
        raise UnsafeModelError(f"array shape must be a tuple of integers, got {type(shape).__name__}")
    total = 1
    for d in dims:
        if d < 0:
            raise UnsafeModelError(f"negative array dimension {d}")
        total *= d
    return total


def dtype_elements(dt: np.dtype[Any]) -> int:
    """Elements one item of ``dt`` holds: a subarray dtype (``'(N,)O'``) holds N."""
    sub = dt.subdtype
    if sub is None:
        return 1
    count = 1
    for d in sub[1]:
        count *= d
    return count


def placeholder_problem(count: int, dt: np.dtype[Any]) -> str | None:
    """Why an array of ``count`` items of ``dt`` is more than a reconstruction placeholder may allocate."""
    elements = count * dtype_elements(dt)
    if elements > MAX_PLACEHOLDER_ELEMENTS or count * dt.itemsize > MAX_PLACEHOLDER_BYTES:
        return (f"array reconstruction asks for {count} items of {dt} ({elements} elements, "
                f"{count * dt.itemsize} bytes); real pickles rebuild arrays from an empty placeholder, "
                "so this file is asking for memory it does not contain")
    return None


def _placeholder(shape: object, dtype: object) -> None:
    count = _count(shape)
    if isinstance(dtype, (str, bytes)):
        try:
            dt = np.dtype(dtype if isinstance(dtype, str) else dtype.decode("latin1"))
        except (TypeError, ValueError) as exc:
            raise UnsafeModelError(f"array reconstruction with an invalid dtype: {exc}") from None
    elif isinstance(dtype, np.dtype):
        dt = dtype
    else:
        raise UnsafeModelError(f"array reconstruction needs a dtype or a type string, got {type(dtype).__name__}")
    problem = placeholder_problem(count, dt)
    if problem is not None:
        raise LimitExceededError(problem)


def range_length(value: range) -> int | None:
    """``len(value)``, or None when it does not even fit in a machine word."""
    try:
        return len(value)
    except OverflowError:
        return None


def materialise_problem(value: object) -> str | None:
    """Why taking every element of ``value`` would allocate more than the file holds (a lazy ``range``)."""
    if isinstance(value, range):
        length = range_length(value)
        if length is None or length > MAX_MATERIALISED_ELEMENTS:
            return (f"materialising {value!r} would allocate {length if length is not None else 'over 2**63'} "
                    f"elements the file does not contain (limit {MAX_MATERIALISED_ELEMENTS})")
    return None


def _array_type(policy: Policy, cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, np.ndarray)):
        raise UnsafeModelError(f"array reconstruction needs an ndarray type, got {cls!r}")
    if not policy.allows(f"{cls.__module__}.{cls.__qualname__}"):
        name = f"{cls.__module__}.{cls.__qualname__}"
        raise UnsafeModelError(f"array subtype {name} is not allowed", names=[name])


def _allowed_class(policy: Policy, cls: object) -> str:
    if isinstance(cls, type) and getattr(cls, "_safeload_standin", False):
        return "joblib.numpy_pickle.NumpyArrayWrapper"
    if not isinstance(cls, type):
        raise UnsafeModelError(f"expected an allowed class, got {type(cls).__name__}")
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not policy.allows(name):
        raise UnsafeModelError(f"class {name} is not allowed", names=[name])
    from safeload._allowlist import Kind

    if policy.kind(name) not in (Kind.NEW, Kind.CALL):  # (as the walker's mirror: a value is never built)
        raise UnsafeModelError(f"class {name} is allowed only as a value and may not be instantiated", names=[name])
    return name


def _reconstruct(policy: Policy) -> Callable[..., None]:
    plain = policy.allows("numpy.ndarray")

    def check(subtype: object, shape: object, dtype: object = b"b", *rest: object) -> None:
        if (subtype is np.ndarray and plain and type(shape) is tuple and shape == (0,) and type(shape[0]) is int
                and type(dtype) is bytes and dtype == b"b"):
            return  # numpy's own placeholder, in every pickled array: the checks below pass it (~3 us each)
        _array_type(policy, subtype)
        _placeholder(shape, dtype)

    return check


def _mareconstruct(policy: Policy) -> Callable[..., None]:
    def check(subtype: object, baseclass: object, baseshape: object, basetype: object) -> None:
        _array_type(policy, subtype)
        _array_type(policy, baseclass)
        _placeholder(baseshape, basetype)

    return check


def _scalar(policy: Policy) -> Callable[..., None]:
    def check(dtype: object, *data: object) -> None:
        if not isinstance(dtype, np.dtype):
            raise UnsafeModelError("numpy scalar reconstruction needs a dtype")
        if dtype.itemsize > MAX_SCALAR_BYTES:
            raise LimitExceededError(f"numpy scalar of {dtype.itemsize} bytes refused")
        if dtype.hasobject and data and isinstance(data[0], (bytes, bytearray, memoryview, str)):
            raise UnsafeModelError("object-dtype scalar from raw bytes refused: numpy would read them as pointers")
        if dtype.hasobject and data and isinstance(data[0], _NOT_VALUES):
            raise UnsafeModelError("object scalar wrapping a class/function refused")

    return check


def _passthrough(policy: Policy) -> Callable[..., None]:
    def check(*args: object, **kwargs: object) -> None:
        return None

    return check


def _real_bit_generator_ctor() -> Any:
    from numpy.random import _pickle

    return getattr(_pickle, "__bit_generator_ctor")  # noqa: B009 - a dunder-named module global


def _unwrap_ctor(ctor: object) -> None:
    if ctor is None:
        return
    if isinstance(ctor, Guarded) and ctor.name == "numpy.random._pickle.__bit_generator_ctor":
        return
    raise UnsafeModelError("random-state constructor given an unexpected bit-generator constructor")


def _randomstate_ctor(policy: Policy) -> Callable[..., None]:
    def check(bit_generator: object = "MT19937", bit_generator_ctor: object = None) -> None:
        from numpy.random import BitGenerator

        _unwrap_ctor(bit_generator_ctor)
        if not isinstance(bit_generator, BitGenerator):
            _bit_generator_name(bit_generator)

    return check


def _bit_generator_name(bit_generator: object) -> None:
    from numpy.random import BitGenerator

    if isinstance(bit_generator, str):
        if bit_generator not in BIT_GENERATORS:
            raise UnsafeModelError(f"unknown bit generator {bit_generator!r}")
    elif not (isinstance(bit_generator, type) and issubclass(bit_generator, BitGenerator)):
        raise UnsafeModelError("bit generator must be a known name or a BitGenerator class")


def _bit_generator_ctor(policy: Policy) -> Callable[..., None]:
    def check(bit_generator: object = "MT19937") -> None:
        _bit_generator_name(bit_generator)

    return check


def seed_sequence_problem(pool_size: object, pool_length: int | None) -> str | None:
    """SeedSequence state: ``pool_size`` is trusted by spawn() and by the entropy mixing, which
    allocate and loop over that many words (10**8 hangs the process); it must be the pool's length."""
    if type(pool_size) is not int or not MIN_POOL_SIZE <= pool_size <= MAX_POOL_SIZE:
        return f"SeedSequence pool_size {pool_size!r} outside [{MIN_POOL_SIZE}, {MAX_POOL_SIZE}]"
    if pool_length is None or pool_length != pool_size:
        return f"SeedSequence pool of {pool_length} words for pool_size {pool_size}"
    return None


def _pyx_unpickle_seedsequence(policy: Policy) -> Callable[..., None]:
    def check(cls: object, checksum: object, state: object = None) -> None:
        from numpy.random.bit_generator import SeedSequence

        if cls is not SeedSequence:
            raise UnsafeModelError("SeedSequence unpickle helper called for another class")
        if state is not None:
            if not isinstance(state, tuple) or len(state) != 5:
                raise UnsafeModelError("SeedSequence state must be a 5-tuple")
            pool = state[2]
            problem = seed_sequence_problem(state[3], len(pool) if isinstance(pool, np.ndarray) else None)
            if problem is not None:
                raise UnsafeModelError(problem)

    return check


def _sklearn_tree(policy: Policy) -> Callable[..., None]:
    def check(n_features: object, n_classes: object, n_outputs: object) -> None:
        try:
            nf = operator.index(n_features)  # type: ignore[arg-type]
            no = operator.index(n_outputs)  # type: ignore[arg-type]
        except TypeError:
            raise UnsafeModelError("Tree sizes must be integers") from None
        arr = np.asarray(n_classes)
        if not (0 <= nf < MAX_TREE_SIZE) or not (1 <= no < MAX_TREE_SIZE):
            raise UnsafeModelError(f"Tree sizes out of range: n_features={nf}, n_outputs={no}")
        if arr.ndim != 1 or arr.shape[0] != no or arr.dtype.kind not in "iu":
            raise UnsafeModelError("Tree n_classes must be an integer array of length n_outputs")
        if arr.size and (arr.min() < 1 or arr.max() >= MAX_TREE_SIZE):
            raise UnsafeModelError("Tree n_classes out of range")

    return check


def _new_obj(policy: Policy) -> Callable[..., None]:
    def check(cls: object) -> None:
        _allowed_class(policy, cls)

    return check


def _reconstructor(policy: Policy) -> Callable[..., None]:
    def check(cls: object, base: object, state: object) -> None:
        _allowed_class(policy, cls)
        if base not in PLAIN_BASES:
            raise UnsafeModelError(f"copyreg._reconstructor with base {base!r} refused")
        if base is object and state is not None:
            raise UnsafeModelError("copyreg._reconstructor with object base and a state refused")
        # base.__new__(cls, state): bytes.__new__(cls, 10**9) and tuple.__new__(cls, range(10**9)) allocate
        if base is bytes and not isinstance(state, (bytes, bytearray, memoryview, str)):
            raise UnsafeModelError("copyreg._reconstructor with a bytes base needs bytes or text as its state")
        # set/frozenset/dict.__init__(obj, state) hash its items or its pairs' keys
        problem = hashing_problem(state, policy, BASE_KEYS.get(base) if isinstance(base, type) else None)
        if problem is not None:
            raise LimitExceededError(problem)

    return check


def _codecs_encode(policy: Policy) -> Callable[..., None]:
    def check(obj: object, encoding: object = "utf-8", errors: object = "strict") -> None:
        if not isinstance(obj, str) or not isinstance(encoding, str) or encoding.lower() not in TEXT_CODECS:
            raise UnsafeModelError("_codecs.encode is only allowed for str with a text codec")

    return check


def _sized_buffer(policy: Policy) -> Callable[..., None]:
    def check(*args: object, **kwargs: object) -> None:
        if kwargs or (args and not isinstance(args[0], (bytes, bytearray, memoryview, str, list, tuple))):
            raise UnsafeModelError("bytes/bytearray may only be built from in-pickle data (not a size or a range)")
        if args and isinstance(args[0], (list, tuple)) and len(args[0]) > MAX_SCALAR_BYTES * 64:
            raise LimitExceededError("bytes from an oversized list refused")

    return check


def _real_tuple_items(v: object) -> Any:
    return v if isinstance(v, tuple) else None


def _never_unhashable(v: object) -> bool:
    return False


def _pair_key(item: object) -> object:
    """What ``dict(items)`` hashes of one item: a pair's key."""
    return item[0] if isinstance(item, (tuple, list)) and len(item) == 2 else item


#: The guards that hash their arguments' items (``hashing_problem``'s ``keys`` for each): a static
#: judge (the skops one) charges their arguments to its own meter before running them.
HASHING_GUARDS: dict[str, str | None] = {"materialise": "items", "materialise_pairs": "pairs", "seeded": None}


class HashMeter:
    """Hash work charged to one budget, measured before anything is hashed.

    Why: CPython caches no tuple hash, so ``hash()`` of a tuple DAG shared through a memo costs
    2**depth and one nested 300,000 deep overflows the C stack in ``tuplehash``. Every value built
    from a file is measured here (``_hashwork.HashCost``: distinct tuples once, depth against
    ``max_nesting_depth``) before ``hash()`` sees it, and its collisions counted, all against
    ``budget``: one meter per call for the runtime guards, one per file for a static judge (the
    walker's ``hash_left``), so a value hashed again through the memo costs again.
    """

    def __init__(self, budget: int, max_depth: int, cost: HashCost | None = None) -> None:
        self.budget = budget
        self.left = budget
        self.max_depth = max_depth
        self._cost = cost  # (another meter's measurements of the same values, shared; made when first needed)
        self._weigh: Callable[[Any], int] | None = None
        #: The first refusal: every later question gets it at once (a deep chain is not walked again).
        self.refused: str | None = None

    @property
    def cost(self) -> HashCost:
        """The measurements (``_hashwork.HashCost``): each distinct tuple walked once, however often met."""
        if self._cost is None:
            self._cost = HashCost(_real_tuple_items, _never_unhashable, self.max_depth, self.budget + 1)
        return self._cost

    def _measure(self, items: list[object]) -> tuple[int, str | None]:
        """(what ``hash()`` of every item visits, why not when one nests too deep)."""
        if not any(issubclass(t, tuple) for t in set(map(type, items))):
            return 0, None  # (only tuples make hash() recurse)
        try:
            return items_hash_work(items, self.cost), None
        except TooDeep:
            return 0, f"an item nests tuples deeper than {self.max_depth}"

    def _refuse(self, problem: str) -> str:
        self.refused = problem
        return problem

    def hashing(self, items: Iterable[object]) -> str | None:
        """Charge hashing every item; why not, when that passes the budget or an item nests too deep."""
        if self.refused is not None:
            return self.refused
        work, problem = self._measure(list(items))
        if problem is not None:
            return self._refuse(problem)
        self.left -= work
        if self.left < 0:
            return self._refuse(f"hashing the items of this argument visits more than {self.budget:,} tuple items "
                                "(tuples shared through the memo)")
        return None

    def keys(self, keys: Iterable[object], skip_unhashable: bool = False, charge_hashing: bool = True,
             measured: bool = False) -> str | None:
        """Why inserting ``keys`` into one new dict or set would not end: hashing them (measured first;
        ``charge_hashing=False`` when the caller already charged the values they come from, ``measured``
        when it measured these very keys), then keys built to share one hash, each comparison weighted by
        the items it can walk (``_hashwork.compare_weight``). ``skip_unhashable``: count past an
        unhashable key (a list's items, not a call's argument)."""
        if self.refused is not None:
            return self.refused
        chosen = [key for key in keys if _collidable(key)]
        work, problem = (0, None) if measured else self._measure(chosen)
        if problem is not None:
            return self._refuse(problem)
        if charge_hashing:
            self.left -= work
        if self.left < 0 or work > self.budget:  # (uncharged: a safety net, the caller's charge covers it)
            return self._refuse(f"hashing the items of this argument visits more than {self.budget:,} tuple items "
                                "(tuples shared through the memo)")
        hashes: list[tuple[int, Any]] = []
        for key in chosen:
            try:
                hashes.append((hash(key), key))  # (measured above: bounded in work and depth)
            except TypeError:
                if not skip_unhashable:
                    break  # (the call fails here, before hashing the rest)
        if self._weigh is None:
            self._weigh = compare_weight(self.max_depth, self.budget + 1)
        collisions = collision_work(hashes, {}, self._weigh)
        self.left -= collisions
        if self.left < 0:
            return self._refuse(f"keys built to share one hash: inserting them compares keys (or their items) "
                                f"{collisions:,} times, more than {self.budget:,}")
        return None


def hashing_problem(value: object, policy: Policy, keys: str | None, meter: HashMeter | None = None) -> str | None:
    """Why a call that takes every element of ``value`` would not end or would allocate what the
    file does not hold: a lazy ``range``; tuples shared through the memo (hash work); and, when it
    hashes them (``keys``: "items" for set/frozenset/Counter, "pairs" for a dict built from pairs),
    keys built to share one hash (``_hashwork.collision_work``). ``StaticChecks.check_materialise``
    asks the same of the walker's values. ``meter``: the budget to charge (a static judge's, for the
    whole file); without one, the hash work and the collisions are each held to ``max_hash_work``."""
    problem = materialise_problem(value)
    if problem is not None:
        return problem
    limit, depth = policy.limits.max_hash_work, policy.limits.max_nesting_depth
    if keys is not None and isinstance(value, (dict, set, frozenset)):
        # (a dict, set or frozenset argument: its keys are hashed again)
        return (meter or HashMeter(limit, depth)).keys(value)
    if not isinstance(value, (list, tuple)):
        return None
    cost = None
    if any(issubclass(t, tuple) for t in set(map(type, value))):
        items = meter or HashMeter(limit, depth)
        problem = items.hashing(value)
        if problem is not None:
            return problem
        cost = items._cost
    if keys is None:
        return None
    chosen = map(_pair_key, value) if keys == "pairs" else value
    if meter is not None:  # (a pair's key inside a list pair was not measured with the items: charged here)
        return meter.keys(chosen, charge_hashing=keys == "pairs")
    # (a fresh budget for the collisions, sharing the measurements; the items' own were taken above)
    return HashMeter(limit, depth, cost).keys(chosen, charge_hashing=False, measured=keys == "items")


def keys_problem(keys: Iterable[object], limit: int, max_depth: int, skip_unhashable: bool = False) -> str | None:
    """``HashMeter.keys`` against a fresh budget of ``limit``."""
    return HashMeter(limit, max_depth).keys(keys, skip_unhashable)


def _collidable(key: object) -> bool:
    """``_keyhash.collidable`` for a built object: not a string, float or small int (which no
    other key can be made to share a hash with), not an object hashed by identity."""
    if type(key) is int:
        return big_int(key)
    t = type(key)
    return t not in (str, float, bool, bytes, type(None)) and (
        t.__hash__ is not object.__hash__ or isinstance(key, tuple))


def _materialise(policy: Policy, keys: str | None = HASHING_GUARDS["materialise"]) -> Callable[..., None]:
    def check(*args: object, **kwargs: object) -> None:
        for value in (*args, *kwargs.values()):
            problem = hashing_problem(value, policy, keys)
            if problem is not None:
                raise LimitExceededError(problem)

    return check


def _materialise_pairs(policy: Policy) -> Callable[..., None]:
    """OrderedDict(pairs), defaultdict(factory, pairs): each pair's key is hashed."""
    return _materialise(policy, HASHING_GUARDS["materialise_pairs"])


def _range(policy: Policy) -> Callable[..., None]:
    """range() accepts any object with __index__; plain integers keep its length computable statically."""
    def check(*args: object) -> None:
        if not 1 <= len(args) <= 3 or not all(type(a) is int for a in args):
            raise UnsafeModelError("range() may only be built from plain integers")

    return check


def _seeded(policy: Policy) -> Callable[..., None]:
    """Random generators turn a seed into an array: a lazy ``range`` seed would be materialised."""
    return _materialise(policy, HASHING_GUARDS["seeded"])


def _partial(policy: Policy) -> Callable[..., None]:
    def check(func: object, *args: object, **kwargs: object) -> None:
        from safeload._allowlist import Kind

        if isinstance(func, Guarded):
            name = func.name
        else:
            name = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '')}"
            if policy.kind(name) not in (Kind.CALL, Kind.VALUE):
                raise UnsafeModelError(f"functools.partial may only wrap an allowed function, not {name}")
        entry = policy.entries.get(name)
        if isinstance(func, Guarded) or (entry is not None and entry.guard is not None):
            # the partial would call it later, with the arguments it holds, past the guard
            raise UnsafeModelError(f"functools.partial may not wrap {name}, which is safe to call only "
                                   "through its guard")

    return check


GUARDS: dict[str, Callable[[Policy], Callable[..., None]]] = {
    "partial": _partial,
    "reconstruct": _reconstruct,
    "mareconstruct": _mareconstruct,
    "scalar": _scalar,
    "frombuffer": _passthrough,
    "randomstate_ctor": _randomstate_ctor,
    "generator_ctor": _randomstate_ctor,
    "bit_generator_ctor": _bit_generator_ctor,
    "pyx_unpickle_seedsequence": _pyx_unpickle_seedsequence,
    "pyx_unpickle": _passthrough,  # the class check needs the entry's name: see guard()
    "sklearn_tree": _sklearn_tree,
    "new_obj": _new_obj,
    "reconstructor": _reconstructor,
    "codecs_encode": _codecs_encode,
    "sized_buffer": _sized_buffer,
    "materialise": _materialise,
    "materialise_pairs": _materialise_pairs,
    "range": _range,
    "seeded": _seeded,
}


def guard(name: str, guard_id: str, fn: Callable[..., Any], policy: Policy) -> Guarded:
    check = GUARDS[guard_id](policy)
    if guard_id in ("randomstate_ctor", "generator_ctor"):
        real_bg = _real_bit_generator_ctor()

        def call(bit_generator: object = "MT19937", bit_generator_ctor: object = None) -> Any:
            return fn(bit_generator, real_bg)

        return Guarded(name, call, check)
    if guard_id == "pyx_unpickle":
        expected = name.rpartition("__pyx_unpickle_")[2]

        def pyx_check(cls: object, *rest: object) -> None:
            if not (isinstance(cls, type) and cls.__name__ == expected):
                raise UnsafeModelError(f"{name} called for another class")
            _allowed_class(policy, cls)

        return Guarded(name, fn, pyx_check)
    return Guarded(name, fn, check)


#: Positions numpy's bit generators store in their state and later use as indices into
#: fixed buffers without a bounds check (MT19937: key[pos]; Philox: buffer[buffer_pos]).
_RNG_POSITIONS: dict[str, tuple[str, ...]] = {"MT19937": ("state", "pos"), "Philox": ("buffer_pos",)}
_RNG_LIMITS: dict[str, int] = {"MT19937": 624, "Philox": 4}


def rng_state_problem(state: Any) -> str | None:
    """What is wrong with a bit generator's state dict (also used on the walker's static dicts)."""
    if not isinstance(state, dict):
        return None
    name = state.get("bit_generator")
    if not isinstance(name, str) or name not in _RNG_POSITIONS:
        return None
    keys = _RNG_POSITIONS[name]
    value: Any = state
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None  # numpy's own setter refuses a state without it
        value = value[key]
    limit = _RNG_LIMITS[name]
    if isinstance(value, (int, np.integer)) and not 0 <= value <= limit:
        return (f"{name} state {'.'.join(keys)} = {value} is outside [0, {limit}]: numpy indexes its "
                "buffer with it unchecked when the generator is used")
    return None
