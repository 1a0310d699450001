"""What a stream value hashes to, without building it: the static side of hash-collision counting.

CPython randomises the hashes of ``str`` and ``bytes`` only. An int hashes to itself modulo
``HASH_MODULUS``, a tuple combines its items' hashes, a frozenset its items', a complex number its
parts', a numpy scalar hashes like the Python number it holds: so a file can give a dict or a set
thousands of distinct keys of one hash, and inserting n of them costs n**2/2 comparisons
(``_hashwork.collision_work``). To count them, each key is stood for by a *proxy*: a real,
inert Python value with the same hash and the same equality as the object load would build
(its numbers and strings themselves, tuples and frozensets of proxies, the evaluated complex,
range, timedelta, numpy scalar or dtype). Objects that hash by identity (estimators, classes)
are their own proxy, which collides with nothing, as at load.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any, Final

import numpy as np

from safeload._hashwork import Chains, big_int, collision_work, compare_weight
from safeload._simulated import OTHER, Cont, Frozen, Obj

__all__ = ["VALUE_HASHED", "KeyHashes", "collidable", "may_collide"]

_SCALARS: Final = frozenset({"numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar"})
#: Allowed calls whose result hashes by value (and not through a randomised str/bytes hash), besides
#: the allowed namedtuples: ``tests/test_keyhash_audit.py`` keeps this exact against the policy.
#: One whose value the proxy cannot evaluate (its arguments were not kept, a list past the
#: walker's cap) is stood for by ``UNKNOWN_HASH``: all such keys are counted as colliding.
VALUE_HASHED: Final[frozenset[str]] = frozenset({"builtins.complex", "builtins.frozenset", "builtins.range",
                                          "datetime.timedelta", "numpy.dtype"}) | _SCALARS
#: The hash given to a value-hashed key the proxy cannot evaluate: an upper bound on its collisions.
UNKNOWN_HASH: Final = 0x5AFE


#: The proxy of a value whose hash cannot be evaluated (or of a tuple or frozenset holding one):
#: the items it holds (what a comparison walks); :meth:`KeyHashes.hashes` gives it ``UNKNOWN_HASH``.
#: Never hashed or put in a set (a frozenset holding one is itself unknown). Made with ``type()``:
#: a compiled module cannot subclass ``tuple`` natively.
Unknown: Any = type("Unknown", (tuple,), {"__slots__": ()})


def _plain(t: tuple[Any, ...]) -> bool:
    """Does ``t`` hold only strings, bytes, numbers, booleans and None (no proxy needed)?"""
    for x in t:
        tx = type(x)
        if not (tx is str or tx is int or tx is float or tx is bool or x is None or tx is bytes):
            return False
    return True


def collidable(v: Any) -> bool:
    """Could ``v`` share its hash with another, unequal key? Strings and ints below
    ``HASH_MODULUS`` cannot be made to, floats hardly (each exponent allows one mantissa per hash:
    34-35 distinct floats shared each hash tried), values that hash by identity never do.
    ``_guards._collidable`` asks the same of built objects."""
    t = type(v)
    if t is int:
        return big_int(v)
    return t is tuple or t is Obj or t is Frozen


def may_collide(values: Iterable[Any]) -> bool:
    """Is any of ``values`` (dict keys, set items) :func:`collidable`? One type test per common key."""
    for v in values:
        t = type(v)
        if t is str or t is float or t is bool or v is None:
            continue
        if collidable(v):
            return True
    return False


def _scalar(args: Any, concrete: Callable[[Any], Any], raw_bytes: Callable[[Any], Any]) -> Any:
    """numpy's ``scalar(dtype, bytes)`` evaluated: it hashes as the Python number it holds."""
    if type(args) is not tuple or len(args) != 2:
        return None
    dt = concrete(args[0])
    raw = raw_bytes(args[1])
    if not isinstance(dt, np.dtype) or dt.hasobject or raw is None or len(raw) != dt.itemsize:
        return None
    return np.frombuffer(bytes(raw), dtype=dt)[0]


class KeyHashes:
    """Proxies for one stream's values (memoised: a tuple DAG's proxy is a DAG of the same shape)
    and the per-container counts of the hashes inserted so far."""

    def __init__(self, namedtuples: Iterable[str], unhashable: Callable[[Any], bool],
                 concrete: Callable[[Any], Any], raw_bytes: Callable[[Any], Any],
                 keyed: Callable[[str], bool] | None = None, max_depth: int = 1000, cap: int = 1 << 62) -> None:
        self._namedtuples = frozenset(namedtuples)
        self._value_hashed = VALUE_HASHED | self._namedtuples
        self._weigh_proxy = compare_weight(max_depth, cap)
        self._keyed = keyed  # does a call of this name return a container of its argument's keys?
        self._totals: dict[int, int] = {}  # id(container) -> comparisons its insertions cost so far
        self._argwork: dict[int, tuple[Any, int]] = {}  # id(argument) -> (it; what hashing its keys cost)
        self._unhashable = unhashable
        self._concrete = concrete
        self._raw_bytes = raw_bytes
        self._proxies: dict[int, tuple[Any, Any]] = {}  # id -> (the value, kept alive; its proxy)
        self._runs: dict[int, tuple[Any, tuple[None, ...]]] = {}  # id(list) -> (it; its length in Nones)
        self._counts: dict[int, tuple[Any, Chains]] = {}  # id(container) -> (it; chains)

    def proxy(self, v: Any) -> Any:
        """A hashable stand-in for ``v``, or TypeError where load's object would not hash."""
        t = type(v)
        if t is str or t is int or t is float or t is bool or v is None or t is bytes:
            return v
        if t is memoryview:
            return v.tobytes()
        if t is Cont:
            raise TypeError(f"unhashable {v.kind}")
        if v is OTHER or not (t is tuple or t is Obj or t is Frozen):
            return v  # (a global: hashed by identity at load, as here)
        if t is tuple and _plain(v):
            return v  # (its own proxy: the common tuple, not kept; lists of them may be long)
        hit = self._proxies.get(id(v))
        if hit is not None:
            return hit[1]
        p = self._nested(v) if self._items(v) is not None else self._evaluate(v)
        self._proxies[id(v)] = (v, p)
        return p

    def _items(self, v: Any) -> tuple[Any, ...] | None:
        """What a tuple's proxy is made of: its items, an allowed namedtuple's fields."""
        if type(v) is tuple:
            return v
        if type(v) is Obj and v.callee in self._namedtuples and type(v.args) is tuple and not self._unhashable(v):
            return v.args
        return None

    def _nested(self, root: Any) -> Any:
        """The proxy of a tuple, its nested tuples first, without recursion: keys may nest
        ``max_nesting_depth`` deep, past what Python's own recursion allows without a compiler."""
        frames: list[tuple[Any, tuple[Any, ...], list[Any]]] = [(root, self._items(root) or (), [])]
        while True:
            node, items, done = frames[-1]
            if len(done) < len(items):
                x = items[len(done)]
                sub = self._items(x)
                if sub is not None and id(x) not in self._proxies:
                    if len(frames) > 1_000_000:
                        raise TypeError("tuples nested past any limit")
                    frames.append((x, sub, []))
                else:
                    done.append(self.proxy(x))
                continue
            p = self._combined(tuple(done), False)
            frames.pop()
            if not frames:
                return p
            self._proxies[id(node)] = (node, p)
            frames[-1][2].append(p)

    def _evaluate(self, v: Any) -> Any:
        if type(v) is Frozen:
            return self._combined(tuple(self.proxy(x) for x in v.items), True)
        if self._unhashable(v):
            raise TypeError(f"unhashable {v.callee}")
        try:
            value = self._value(v)
        except Exception:  # noqa: BLE001 - a call that fails at load fails before anything hashes it
            value = None
        if value is None and v.callee in self._value_hashed:
            return Unknown(self._known_args(v))  # (hashes by value at load, but not one evaluated here)
        return v if value is None else value

    @staticmethod
    def _combined(items: tuple[Any, ...], frozen: bool) -> Any:
        """A tuple or frozenset of proxies; unknown when one of them is (its hash is theirs)."""
        for x in items:
            if type(x) is Unknown:
                return Unknown(items)
        return frozenset(items) if frozen else items

    def _known_args(self, v: Obj) -> tuple[Any, ...]:
        """Stand-ins for what comparing ``v`` can walk: its plain arguments, and for a list (a
        ``frozenset`` over more items than the walker keeps) one shared run of its length. No
        recursion: the arguments of a call nobody hashed were never measured for depth."""
        out: list[Any] = []
        for a in v.args if type(v.args) is tuple else ():
            if type(a) is Cont:
                run = self._runs.get(id(a))
                if run is None:
                    run = self._runs[id(a)] = (a, (None,) * a.count)
                out.append(run[1])
            else:
                out.append(a if type(a) in (str, int, float, bool, bytes) else None)
        return tuple(out)

    def _value(self, v: Obj) -> Any:
        """The value an allowed call builds, for the calls whose result hashes by value."""
        callee, args = v.callee, v.args
        if callee == "numpy.dtype":
            return self._concrete(v)
        if type(args) is not tuple:
            return None
        numbers = all(type(a) in (int, float, bool) for a in args)
        if callee == "builtins.complex" and (numbers and len(args) <= 2 or len(args) == 1 and type(args[0]) is str):
            return complex(*args)  # (complex("1e300+7j"): linear in the text, as at load)
        if callee == "datetime.timedelta" and numbers and len(args) <= 7:
            return datetime.timedelta(*args)
        if callee == "builtins.range" and all(type(a) is int for a in args) and 1 <= len(args) <= 3:
            return range(*args)
        if callee == "builtins.frozenset" and len(args) <= 1:
            items = args[0] if args else ()
            if type(items) is Cont and items.kind == "list" and items.complete():
                items = items.flat
            return self._combined(tuple(self.proxy(x) for x in items), True) if type(items) in (tuple, list) else None
        if callee in _SCALARS:
            return _scalar(args, self._concrete, self._raw_bytes)
        return None

    def hashes(self, keys: Iterable[Any], skip_unhashable: bool = False) -> list[tuple[int, Any]]:
        """(hash, key) of ``keys`` up to the first that load could not hash (there its
        insertion fails), or of all that it could (``skip_unhashable``). The identity is the
        stream value's: one object read twice through the memo is one object at load too."""
        out: list[tuple[int, Any]] = []
        for k in keys:
            try:
                p = self.proxy(k)
                out.append((UNKNOWN_HASH if type(p) is Unknown else hash(p), k))
            except TypeError:
                if not skip_unhashable:
                    break
        return out

    def weigh(self, key: Any) -> int:
        """What one comparison with ``key`` can cost (``_hashwork.compare_weight`` of its proxy)."""
        return self._weigh_proxy(self.proxy(key))

    def work(self, keys: Iterable[Any], chains: Chains,
             skip_unhashable: bool = False) -> int:
        """``collision_work`` of inserting the :func:`collidable` ones of ``keys`` after ``chains``."""
        return collision_work(self.hashes((k for k in keys if collidable(k)), skip_unhashable), chains, self.weigh)

    def insert(self, container: Any, keys: Iterable[Any], skip_unhashable: bool = False,
               keep_total: bool = True) -> int:
        """Comparisons inserting ``keys`` into ``container`` costs (None: a new one), counting
        only :func:`collidable` keys (a small int that equals a large one's hash is missed: one
        comparison per large key)."""
        if container is None:
            counts: Chains = {}
        else:
            entry = self._counts.get(id(container))
            if entry is None:
                entry = self._counts[id(container)] = (container, {})
            counts = entry[1]
        work = self.work(keys, counts, skip_unhashable)
        if container is not None and work and keep_total:  # (what rehash charges again)
            self._totals[id(container)] = self._totals.get(id(container), 0) + work
        return work

    def note_argument(self, value: Any, work: int) -> None:
        """A materialising call hashed the keys of ``value`` at this cost: its result holds them."""
        if work:
            self._argwork[id(value)] = (value, work)

    def rehash(self, value: Any) -> int:
        """What inserting the keys ``value`` already holds into another dict or set costs again: a
        BUILD copies a state dict's keys into the instance's, ``set(s)``/``OrderedDict(d)`` rehash
        theirs. One colliding container read back through the memo n times costs n times, which a
        per-insertion count alone never sees. Values no count was kept for cost nothing here."""
        t = type(value)
        if not (t is Cont or t is Frozen or t is Obj) or not (self._totals or self._argwork):
            return 0  # (no insertion has cost anything yet: the common case, one test per BUILD)
        work = self._totals.get(id(value), 0)  # (no id reused: ``_counts`` keeps each container alive)
        if t is Obj and self._keyed is not None and type(value.args) is tuple and self._keyed(value.callee):
            for a in value.args:  # set(L), OrderedDict(pairs): the call's result holds L's keys
                hit = self._argwork.get(id(a))
                if hit is not None and hit[0] is a:
                    work += hit[1]
        return work
