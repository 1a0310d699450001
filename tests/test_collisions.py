"""Keys built to share one hash (hash flooding), every way in and every place that inserts them.

CPython randomises only ``str`` and ``bytes`` hashes: ints equal modulo 2**61-1 share one, and so
do tuples, frozensets, complex numbers, numpy scalars, ranges and namedtuples built from values
that do. n such keys cost n**2/2 comparisons to insert into one dict or set (50,000 of them, 550 KB
of pickle, hang plain pickle for 15 s: malicious_samples' ``hash-collide-*``). The walker counts
them statically (``_keyhash``) and the materialising calls' runtime guard counts them on the
built objects (``_guards.hashing_problem``).

The oracle here is the built object itself: every stream is loaded with plain ``pickle`` (they use
only allowed, inert names), the comparisons its containers really cost are counted from the hashes
of their keys, and ``scan`` and ``load`` must refuse exactly the streams whose count passes the
hash budget, for every route (how a key is made) times every insertion point (what inserts it).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
from collections.abc import Callable
from typing import Any

import pytest

import safeload
from safeload._errors import LimitExceededError
from safeload._hashwork import HASH_MODULUS, Chains, collision_work
from safeload._policy import Limits, Policy

#: A tenth of the default budget keeps the matrix fast; the samples hold the default to 50,000 keys.
LIMIT = 1_000_000
POLICY = Policy.default().extended(limits=Limits().replace(max_hash_work=LIMIT))
_P = HASH_MODULUS


def _u(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _int(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _glob(module: str, name: str) -> bytes:
    return _u(module) + _u(name) + b"\x93"


def _get(slot: int) -> bytes:
    return b"h" + bytes([slot])


# memo slots the prelude fills (each global memoized once, then read per key)
_PRELUDE = [
    ("builtins", "complex"), ("numpy.core.multiarray", "scalar"), ("builtins", "frozenset"), ("builtins", "range"),
    ("sklearn.impute._iterative", "_ImputerTriplet"), ("builtins", "set"), ("collections", "Counter"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("copyreg", "_reconstructor"),
    ("builtins", "dict"), ("builtins", "tuple"),
]
_SLOT = {f"{m}.{n}": k for k, (m, n) in enumerate(_PRELUDE)}
_DTYPE_SLOT = len(_PRELUDE)  # numpy.dtype('c16'), stated as numpy pickles it


def _prelude() -> bytes:
    out = b"".join(_glob(m, n) + b"\x94" + b"0" for m, n in _PRELUDE)
    dtype = (_glob("numpy", "dtype") + _u("c16") + b"\x89\x88\x87R\x94"
             + b"(K\x03" + _u("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t" + b"b0")
    return out + dtype


def _g(name: str) -> bytes:
    return _get(_SLOT[name])


def _complex_parts(k: int) -> tuple[int, int]:
    return 10**15 - 1_000_003 * k, k  # hash(complex(a, b)) = hash(a) + 1000003 * hash(b)


_PAIRS: list[tuple[int, int]] = []


def _small_pair(k: int) -> tuple[int, int]:
    """The k-th 2-tuple of ints below 2**61 - 1 (each its own hash: no big int anywhere) whose
    tuple hash is one fixed value: CPython's tuple hash (xxHash's rounds) is inverted for the
    second item given the first, and a solution below the modulus comes every ~4 tries."""
    mask, p1, p2, p5 = (1 << 64) - 1, 11400714785074694791, 14029467366897019727, 2870177450012600261
    inv1, inv2 = pow(p1, -1, 1 << 64), pow(p2, -1, 1 << 64)
    x = ((0x5AFE10AD - (2 ^ p5 ^ 3527539)) & mask) * inv1 & mask
    x = ((x >> 31) | (x << 33)) & mask  # (undo the last round's rotate left by 31)
    a = _PAIRS[-1][0] + 1 if _PAIRS else 0
    while len(_PAIRS) <= k:
        acc = (p5 + a * p2) & mask
        acc = (((acc << 31) | (acc >> 33)) & mask) * p1 & mask
        v = (x - acc) * inv2 & mask
        b = v - (1 << 64) if v >> 63 else v
        if -_P < b < _P and b != -1:
            _PAIRS.append((a, b))
        a += 1
    return _PAIRS[k]


# How each key is made: k -> opcodes that push the k-th of a family of distinct, equal-hash keys.
ROUTES: dict[str, Callable[[int], bytes]] = {
    "int": lambda k: _int(1 + k * _P),
    "tuple": lambda k: _int(1 + k * _P) + b"\x85",
    "tuple-with-str": lambda k: _u("feature") + _int(1 + k * _P) + b"\x86",
    "complex": lambda k: _g("builtins.complex") + b"".join(_int(x) for x in _complex_parts(k)) + b"\x86R",
    "numpy-scalar": lambda k: _g("numpy.core.multiarray.scalar") + _get(_DTYPE_SLOT) + b"C\x10"
    + struct.pack("<dd", *map(float, _complex_parts(k))) + b"\x86R",
    "frozenset-opcode": lambda k: b"(" + _int(1 + k * _P) + b"\x91",
    "frozenset-call": lambda k: _g("builtins.frozenset") + b"]" + _int(1 + k * _P) + b"a\x85R",
    "range": lambda k: _g("builtins.range") + _int(1 + k * _P) + b"\x85R",
    "namedtuple": lambda k: _g("sklearn.impute._iterative._ImputerTriplet") + _int(1 + k * _P) + b"NN\x87\x81",
    # protocols 0-1 spell these with copyreg._reconstructor (base.__new__(cls, state))
    "frozenset-reconstructor": lambda k: _g("copyreg._reconstructor") + _g("builtins.frozenset")
    + _g("builtins.frozenset") + b"]" + _int(1 + k * _P) + b"a\x87R",
    "namedtuple-reconstructor": lambda k: _g("copyreg._reconstructor") + _g("sklearn.impute._iterative._ImputerTriplet")
    + _g("builtins.tuple") + b"](" + _int(1 + k * _P) + b"NNe\x87R",
    "complex-text": lambda k: _g("builtins.complex") + _u("{}+{}j".format(*_complex_parts(k))) + b"\x85R",
    # no value that can share a hash on its own: only the tuple's does
    "small-int-pair": lambda k: _int(_small_pair(k)[0]) + _int(_small_pair(k)[1]) + b"\x86",
}
#: (route, point) pairs refused for another reason: the route hands a class to copyreg._reconstructor
#: that the point also calls, so load would resolve it to its guard wrapper (see Known gaps).
_CLASHES = {("frozenset-reconstructor", "frozenset()")}


def _batched(entries: list[bytes], op: bytes) -> bytes:
    return b"".join(b"(" + b"".join(entries[j:j + 500]) + op for j in range(0, len(entries), 500))


def _call(name: str, *args: bytes) -> bytes:
    return _g(name) + b"(" + b"".join(args) + b"tR"


# What inserts them: keys -> opcodes that push the container built from them.
POINTS: dict[str, Callable[[list[bytes]], bytes]] = {
    "SETITEMS": lambda ks: b"}" + _batched([k + b"N" for k in ks], b"u"),
    "SETITEM": lambda ks: b"}" + b"".join(k + b"Ns" for k in ks),
    "DICT": lambda ks: b"(" + b"".join(k + b"N" for k in ks) + b"d",
    "ADDITEMS": lambda ks: b"\x8f" + _batched(ks, b"\x90"),
    "FROZENSET": lambda ks: b"(" + b"".join(ks) + b"\x91",
    "set()": lambda ks: _call("builtins.set", b"]" + _batched(ks, b"e")),
    "frozenset()": lambda ks: _call("builtins.frozenset", b"]" + _batched(ks, b"e")),
    "Counter()": lambda ks: _call("collections.Counter", b"]" + _batched(ks, b"e")),
    "OrderedDict(pairs)": lambda ks: _call("collections.OrderedDict", b"]" + _batched([k + b"N\x86" for k in ks], b"e")),
    "OrderedDict(list pairs)": lambda ks: _call("collections.OrderedDict",
                                                b"]" + _batched([b"]" + k + b"aNa" for k in ks], b"e")),
    "defaultdict(None, pairs)": lambda ks: _call("collections.defaultdict", b"N",
                                                 b"]" + _batched([k + b"N\x86" for k in ks], b"e")),
    "Counter SETITEMS": lambda ks: _call("collections.Counter") + _batched([k + b"K\x01" for k in ks], b"u"),
    "OrderedDict SETITEMS": lambda ks: _call("collections.OrderedDict") + _batched([k + b"N" for k in ks], b"u"),
    "_reconstructor(set)": lambda ks: _call("copyreg._reconstructor", _g("builtins.set"), _g("builtins.set"),
                                            b"]" + _batched(ks, b"e")),
    "_reconstructor(dict)": lambda ks: _call("copyreg._reconstructor", _g("collections.OrderedDict"),
                                             _g("builtins.dict"), b"]" + _batched([k + b"N\x86" for k in ks], b"e")),
    # A list inserts nothing while it is built, but a model's lists and object arrays reach inference
    # code that hashes them (LabelEncoder.transform: a set and a dict of classes_): its items are
    # charged as if inserted into one dict, at every size (past the walker's 4,096-item cap too).
    "list APPENDS": lambda ks: b"]" + _batched(ks, b"e"),
    "list APPEND": lambda ks: b"]" + b"".join(k + b"a" for k in ks),
    "LIST": lambda ks: b"(" + b"".join(ks) + b"l",
    "TUPLE": lambda ks: b"(" + b"".join(ks) + b"t",
    "object array": lambda ks: _object_array(len(ks), b"]" + _batched(ks, b"e")),
}
def _keys_list(ks: list[bytes]) -> bytes:
    return b"]" + _batched(ks, b"e")


def _pairs_list(ks: list[bytes]) -> bytes:
    return b"]" + _batched([k + b"N\x86" for k in ks], b"e")


#: The list a call point builds as its argument: charged too, as every list is (the call's own
#: insertions come on top). Lists of lists hold nothing hashable.
ARGUMENTS: dict[str, Callable[[list[bytes]], bytes]] = {
    "set()": _keys_list, "frozenset()": _keys_list, "Counter()": _keys_list, "_reconstructor(set)": _keys_list,
    "OrderedDict(pairs)": _pairs_list, "defaultdict(None, pairs)": _pairs_list, "_reconstructor(dict)": _pairs_list,
}
#: The points whose second size is past the walker's list cap: calls over a list, and lists.
_LISTS = {point for point in POINTS if "(" in point or point in ("list APPENDS", "list APPEND", "LIST", "object array")}


def _object_array(n: int, items: bytes) -> bytes:
    """``_reconstruct(ndarray, (0,), b'b')`` BUILT with ``(1, (n,), dtype('O'), False, items)``, as numpy pickles it."""
    dtype = (_glob("numpy", "dtype") + _u("O8") + b"\x89\x88\x87R"
             + b"(K\x03" + _u("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?t" + b"b")
    head = _glob("numpy._core.multiarray", "_reconstruct") + _glob("numpy", "ndarray") + b"K\x00\x85C\x01b\x87R"
    return head + b"(K\x01" + _int(n) + b"\x85" + dtype + b"\x89" + items + b"tb"


def _stream(route: str, point: str, n: int) -> bytes:
    keys = [ROUTES[route](k) for k in range(n)]
    return b"\x80\x04" + _prelude() + POINTS[point](keys) + b"."


class _Enough(Exception):
    """Counting stops just past the budget: that is all the verdict needs."""


class _Counted:
    """A key that hashes as ``key`` and counts the equality tests CPython really makes on it."""

    calls = 0
    stop = 1 << 62

    def __init__(self, key: Any) -> None:
        self.key = key
        self._hash = hash(key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        _Counted.calls += 1
        if _Counted.calls > _Counted.stop:
            raise _Enough
        return isinstance(other, _Counted) and self.key == other.key


def _wrapped(key: Any) -> Any:
    """``key`` with every item a comparison can reach wrapped in a counter (a tuple's, a
    frozenset's, recursively): the count is then every ``==`` CPython makes, at every level. The
    wrappers are fresh objects, so CPython's identity shortcut (an item shared by two keys) is
    counted as a step too, as it is one."""
    if isinstance(key, tuple):
        return _Counted(tuple(_wrapped(x) for x in key))
    if isinstance(key, frozenset):
        return _Counted(frozenset(_wrapped(x) for x in key))
    return _Counted(key)


def _real_comparisons(built: Any, stop: int = LIMIT) -> int:
    """The equality tests inserting the built container's keys makes in CPython itself: each
    key is wrapped in counters (:func:`_wrapped`) and inserted into a fresh dict (the same probe
    code as a set's). Its keys are distinct objects, so the count does not depend on their order.
    Counting stops at ``stop + 1``."""
    keys = list(dict.keys(built)) if isinstance(built, dict) else list(built)  # (an OrderedDict filled by dict.__init__ lists none)
    wrapped = [_wrapped(k) for k in keys]
    _Counted.calls, _Counted.stop = 0, stop
    try:
        dict.fromkeys(wrapped)
    except _Enough:
        pass
    finally:
        _Counted.stop = 1 << 62
    return _Counted.calls


def _judged(path: Any, real: int, budget: int = LIMIT) -> Any:
    """``scan`` and ``load`` of ``path`` refuse it (hash budget) exactly when ``real`` passes the
    budget; the loaded object otherwise."""
    report = safeload.scan(path, policy=POLICY)
    if real > budget:
        assert not report.safe and {f.rule for f in report.findings} == {"limit-hash"}, report.findings
        with pytest.raises(LimitExceededError, match="share|hash"):
            safeload.load(path, policy=POLICY)
        return None
    assert report.safe, [f.message for f in report.findings]
    return safeload.load(path, policy=POLICY)


# 600 keys: 0.18 M comparisons, each walking at most 4 items (the namedtuple's), within the
# budget; 1,500: 1.1 M, past it. A call's list argument gets 4,200 (8.8 M), past the walker's list
# cap of 4,096 items: its overflow record is what counts. Between the two, a charge (an upper bound:
# a tuple's comparison may stop at its first item) may refuse what really costs a little less.
SIZES = (600, 1_500)
_PAST_LIST_CAP = 4_200
#: A call over a list pays for the list and for its own insertions: 400 keys keep both within it.
_WITH_ARGUMENT = 400


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("route", list(ROUTES))
def test_refused_exactly_when_the_real_comparisons_pass_the_budget(route: str, point: str, tmp_path: Any) -> None:
    if (route, point) in _CLASHES:
        path = tmp_path / "clash.pkl"
        path.write_bytes(_stream(route, point, 3))
        assert "guard wrapper" in " ".join(f.message for f in safeload.scan(path, policy=POLICY).findings)
        with pytest.raises(safeload.UnsafeModelError):
            safeload.load(path, policy=POLICY)
        return
    first = _WITH_ARGUMENT if point in ARGUMENTS else SIZES[0]
    for n in (first, _PAST_LIST_CAP if point in _LISTS else SIZES[1]):
        data = _stream(route, point, n)
        built = pickle.loads(data)  # noqa: S301 - our own stream of allowed, inert names
        real = _real_comparisons(built)
        if point in ARGUMENTS:
            argument = pickle.loads(b"\x80\x04" + _prelude() + ARGUMENTS[point](keys := [  # noqa: S301 - as above
                ROUTES[route](k) for k in range(n)]) + b".")
            assert len(argument) == len(keys)
            real += _real_comparisons(argument)
        assert (real > LIMIT) == (n != first), (route, point, n, real)  # the family really collides
        path = tmp_path / f"{n}.pkl"
        path.write_bytes(data)
        loaded = _judged(path, real)
        if real <= LIMIT:
            assert type(loaded) is type(built) and _real_comparisons(loaded) == _real_comparisons(built)


def test_keys_that_collide_with_nothing_pass_at_any_size(tmp_path: Any) -> None:
    """Distinct hashes (big ints not congruent modulo 2**61-1, tuples of them) cost nothing: 20,000 pass."""
    n = 20_000
    for keys in ([_int(k * (_P + 1) + 2**62) for k in range(n)], [_int(2**62 + k) + b"\x85" for k in range(n)]):
        data = b"\x80\x04" + POINTS["SETITEMS"](keys) + b"."
        path = tmp_path / "ok.pkl"
        path.write_bytes(data)
        assert safeload.scan(path).safe
        assert len(safeload.load(path)) == n


def test_collision_work_counts_earlier_keys_of_each_hash() -> None:
    a, b, c, d, e = (object() for _ in range(5))
    chains: Chains = {}
    assert collision_work([(5, a), (5, b), (7, c), (5, d)], chains) == 0 + 1 + 0 + 2
    assert collision_work([(7, e), (5, b)], chains) == 1 + 1  # the same object again: its position
    assert collision_work([(5, a), (9, a), (9, a)], chains) == 0  # the first key of a hash again: free
    assert {h: sorted(p for p, _ in chain.values()) for h, chain in chains.items()
            if type(chain) is dict} == {5: [0, 1, 2], 7: [0, 1]}
    assert chains[9] is a  # (one key of a hash: kept as itself)


def test_the_same_key_again_costs_what_cpython_charges() -> None:
    """CPython meets an object already in the table by identity: n copies of one colliding key
    after k distinct ones cost its position each, which the model and the real count agree on."""
    distinct = [_Counted(k * _P + 2**62) for k in range(50)]
    inserts = distinct + [distinct[10]] * 1_000 + [distinct[0]] * 1_000
    _Counted.calls = 0
    dict.fromkeys(inserts)
    model = collision_work([(hash(k), k) for k in inserts], {})
    assert _Counted.calls == model == 50 * 49 // 2 + 10 * 1_000


def _skops_dict(keys: list[int]) -> bytes:
    """A skops archive of one dict whose JSON keys skops converts with ``int``."""
    import json
    import zipfile

    def node(loader: str, cls: str, **extra: Any) -> dict[str, Any]:
        return {"__class__": cls, "__module__": "builtins", "__loader__": loader, **extra}

    zero = node("JsonNode", "int", content="0", is_json=True)
    root = node("DictNode", "dict", content={str(k): zero for k in keys},
                key_types=node("ListNode", "list", content=[node("TypeNode", "int") for _ in keys]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps({**root, "protocol": 2, "_skops_version": "0.16.0"}))
    return buf.getvalue()


def _skops_judged(data: bytes, real: int) -> Any:
    """``scan`` and ``load`` of a skops archive refuse it exactly when ``real`` passes the budget; the loaded object otherwise."""
    report = safeload.scan(io.BytesIO(data), policy=POLICY)
    if real > LIMIT:
        assert not report.safe and "share one hash" in report.findings[0].message, report.findings
        with pytest.raises(LimitExceededError, match="share one hash"):
            safeload.loads(data, policy=POLICY)
        return None
    assert report.safe, [f.message for f in report.findings]
    return safeload.loads(data, policy=POLICY)


@pytest.mark.parametrize("route", ["int", "distinct"])
def test_skops_dict_keys_refused_exactly_when_the_real_comparisons_pass_the_budget(route: str) -> None:
    """skops builds a dict from JSON keys converted by their key type: ``int`` keys can collide."""


    import skops.io as sio

    for n in SIZES:
        keys = [k * _P + 2**62 if route == "int" else 2**62 + k for k in range(n)]
        data = _skops_dict(keys)
        built = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        real = _real_comparisons(built)
        assert (real > LIMIT) == (route == "int" and n != SIZES[0]), (route, n, real)
        loaded = _skops_judged(data, real)
        assert real > LIMIT or loaded == built


# -- one colliding container, read back through the memo and hashed again ---------------------
_FREE = _DTYPE_SLOT + 1  # the first memo slot after the prelude's


def _again(name: str) -> Callable[[], bytes]:
    return lambda: _call(name, _get(_FREE))


# What builds the container (memoised), and what hashes its keys again on each read.
REPEATS: dict[str, tuple[Callable[[list[bytes]], bytes], Callable[[], bytes]]] = {
    "OrderedDict(dict)": (POINTS["SETITEMS"], _again("collections.OrderedDict")),
    "defaultdict(None, dict)": (POINTS["SETITEMS"], lambda: _call("collections.defaultdict", b"N", _get(_FREE))),
    "Counter(frozenset)": (POINTS["FROZENSET"], _again("collections.Counter")),
    "set(list)": (lambda ks: b"]" + _batched(ks, b"e"), _again("builtins.set")),
    "frozenset(set)": (POINTS["ADDITEMS"], _again("builtins.frozenset")),
    "BUILD state": (POINTS["DICT"], lambda: _call("collections.OrderedDict") + _get(_FREE) + b"b"),
}


def _fresh_comparisons(x: Any) -> int:
    """A copy's keys inserted one by one into a fresh dict: what a BUILD's ``__dict__.update`` or a
    materialising call costs when CPython takes no copying shortcut (which a file can arrange)."""
    if isinstance(x, list):
        return 0  # (a list argument: its keys cost in each call)
    own = _real_comparisons(x)
    return own + (_real_comparisons(vars(x)) if getattr(x, "__dict__", None) else 0)


@pytest.mark.parametrize("repeat", list(REPEATS))
@pytest.mark.parametrize("route", ["int", "tuple"])
def test_a_container_hashed_again_costs_again(route: str, repeat: str, tmp_path: Any) -> None:
    """300 colliding ints cost 44,850 comparisons, a twentieth of the budget (tuples of one, twice
    that in steps); a file that reads them back 30 times costs 30 times that (OrderedDict(d) in a loop: 200 copies of 4,000 keys, 52 KB,
    kept plain pickle busy for 61 s). Refused exactly when the copies together pass the budget."""
    build, again = REPEATS[repeat]
    keys = [ROUTES[route](k) for k in range(300)]
    below, above = (20, 30) if route == "int" else (8, 15)  # (a tuple's comparison walks its item too)
    for copies in (below, above):
        data = (b"\x80\x04" + _prelude() + build(keys) + b"\x94" + b"(" + _get(_FREE)
                + b"".join(again() for _ in range(copies)) + b"l.")
        built = pickle.loads(data)  # noqa: S301 - our own stream of allowed, inert names
        real = sum(_fresh_comparisons(x) for x in built)
        assert (real > LIMIT) == (copies == above), (route, repeat, copies, real)
        path = tmp_path / f"{copies}.pkl"
        path.write_bytes(data)
        loaded = _judged(path, real)
        assert real > LIMIT or len(loaded) == copies + 1


# -- what one comparison costs: long keys equal but for their last item --------------------------
_SHARED = _FREE  # memo slot of the item every long key repeats


def _long_key(k: int, length: int) -> bytes:
    """A tuple of ``length`` items, all the shared string but the last, a colliding int."""
    return b"(" + _get(_SHARED) * (length - 1) + _int(1 + k * _P) + b"t"


@pytest.mark.parametrize("point", ["SETITEMS", "FROZENSET", "set()", "OrderedDict(pairs)"])
def test_each_comparison_costs_the_items_it_walks(point: str, tmp_path: Any) -> None:
    """2,000 such tuples of 1,000 items (4 MB) kept plain pickle busy for 7 s while costing 2 M
    comparisons, within the default budget: each comparison walks the items. Charged by the items a
    comparison can walk (``_hashwork.compare_weight``), and held to CPython's own count of ``==``
    at every level (:func:`_wrapped`), here on 400-item keys: 30 keys pass, 150 are refused."""
    for n in (30, 150):
        keys = [_long_key(k, 400) for k in range(n)]
        data = b"\x80\x04" + _prelude() + _u("shared") + b"\x94" + b"0" + POINTS[point](keys) + b"."
        built = pickle.loads(data)  # noqa: S301 - our own stream of allowed, inert names
        real = _real_comparisons(built)
        assert n * (n - 1) // 2 < LIMIT  # (as comparisons alone, both within the budget)
        assert (real > LIMIT) == (n == 150), (point, n, real)
        path = tmp_path / f"{n}.pkl"
        path.write_bytes(data)
        loaded = _judged(path, real)
        assert real > LIMIT or _real_comparisons(loaded) == real


def test_a_value_hashed_key_the_walker_cannot_evaluate_counts_as_colliding(tmp_path: Any) -> None:
    """``frozenset(L)`` over a list longer than the walker keeps (4,096 items) cannot be evaluated;
    it is counted as sharing one hash with every other such key, each comparison walking L: 60 such
    keys (frozensets equal but for one colliding int; the other 4,099 items are memo reads) cost
    7 M steps and are refused, 8 pass."""
    length = 4_100
    fill = b"(" + b"".join(_int(1_000 + j) + b"\x94" for j in range(length - 1)) + b"1"  # memo slots _FREE..
    shared = b"".join(b"j" + struct.pack("<I", _FREE + j) for j in range(length - 1))
    for n in (8, 60):
        # (the differing int hashes to the last slot of the table: a comparison meets it last)
        keys = [_g("builtins.frozenset") + b"](" + shared + _int(2**20 - 1 + k * _P) + b"e\x85R" for k in range(n)]
        data = b"\x80\x04" + _prelude() + fill + POINTS["SETITEMS"](keys) + b"."
        budget = max(LIMIT, 4 * len(data))  # (_hashwork.hash_budget: this file is 1.2 MB)
        built = pickle.loads(data)  # noqa: S301 - our own stream of allowed, inert names
        real = _real_comparisons(built, budget)
        assert (real > budget) == (n == 60), (n, real, budget)
        path = tmp_path / f"{n}.pkl"
        path.write_bytes(data)
        loaded = _judged(path, real, budget)
        assert real > budget or len(loaded) == n


# -- keys nested deep: their proxies, and comparing two of them -------------------------------


def _nested_key(k: int, depth: int) -> bytes:
    return _int(1 + k * _P) + b"\x85" * depth


def test_a_key_nested_to_the_depth_limit_is_judged_without_recursion(tmp_path: Any) -> None:
    """The proxy of a tuple nested 1,000 deep (``max_nesting_depth``) is built without Python
    recursion, so the walker without a C compiler gives the verdict the compiled one gives
    (it raised RecursionError past ~330 levels, and the file was refused as unparsable)."""
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x04}" + _nested_key(0, 1_000) + b"K\x01s" + b"K\x02\x85K\x02s.")
    assert safeload.scan(path, policy=POLICY).safe
    assert len(safeload.load(path, policy=POLICY)) == 2


@pytest.mark.parametrize("depth", [400, 600, 999])
def test_two_colliding_keys_nested_deep_are_refused_past_the_compare_depth(depth: int, tmp_path: Any) -> None:
    """Comparing two keys of one hash recurses in C through ``Py_EnterRecursiveCall``: nested
    ~1,000 deep they raise RecursionError in the middle of the load (when exactly depends on the
    caller's stack), so scan said safe and load failed. Past ``COMPARE_DEPTH`` both refuse."""
    from safeload._hashwork import COMPARE_DEPTH

    data = b"\x80\x04}" + _nested_key(1, depth) + b"K\x01s" + _nested_key(2, depth) + b"K\x02s."
    if depth == 999:
        with pytest.raises(RecursionError):
            pickle.loads(data)  # noqa: S301 - our own stream of allowed, inert names
    path = tmp_path / "deep.pkl"
    path.write_bytes(data)
    report = safeload.scan(path, policy=POLICY)
    if depth > COMPARE_DEPTH:
        assert not report.safe and {f.rule for f in report.findings} == {"limit-hash"}, report.findings
        with pytest.raises(LimitExceededError):
            safeload.load(path, policy=POLICY)
    else:
        assert report.safe, report.findings
        assert len(safeload.load(path, policy=POLICY)) == 2


# -- a list's items read back through the memo ----------------------------------------------------


def _identity_comparisons(items: list[Any]) -> int:
    """The equality tests inserting ``items`` into one dict makes in CPython: each distinct object
    wrapped once (so that a repeat meets itself by identity, as in CPython), counted as in
    :func:`_real_comparisons`."""
    seen: dict[int, _Counted] = {}
    wrapped = [seen.setdefault(id(x), _Counted(x)) for x in items]
    _Counted.calls = 0
    dict.fromkeys(wrapped)
    return _Counted.calls


@pytest.mark.parametrize("route", ["int", "small-int-pair"])
@pytest.mark.parametrize("container", ["list", "object array"])
def test_memo_reads_into_a_list_are_charged_as_the_repeats_they_are(container: str, route: str, tmp_path: Any) -> None:
    """n distinct colliding keys, each memoized, then reads of the last in batches of 500: each
    read costs n - 1 comparisons when the list is hashed (CPython meets it by identity after
    walking the others of its hash). Past its 4,096-item cap the walker counts a batch of plain
    memo reads into a list in one step, without looking at what it reads; that is taken only while
    the memo holds nothing that can share a hash (any tuple can: the pairs here hold only ints that
    are their own hash). The larger count of reads passes the budget mostly past the cap."""
    n, sizes = (100, (8_000, 12_000)) if route == "int" else (40, (5_000, 30_000))  # (pairs: charged up to 3 steps a comparison)
    distinct = b"".join(ROUTES[route](k) + b"\x94" for k in range(n))
    last = n - 1  # (no prelude: its memoized dtype can share a hash, and would make every batch go opcode by opcode)
    for reads in sizes:
        items = b"](" + distinct + b"e" + _batched([b"j" + struct.pack("<I", last)] * reads, b"e")
        body = items if container == "list" else _object_array(n + reads, items)
        data = b"\x80\x04" + body + b"."
        built = pickle.loads(data)  # noqa: S301 - our own stream of allowed, inert names
        real = _identity_comparisons(list(built))
        assert real == n * (n - 1) // 2 + reads * (n - 1) or route != "int", real  # (pairs: a few more, by their items)
        assert (real > LIMIT) == (reads == sizes[1]), real
        path = tmp_path / f"{reads}.pkl"
        path.write_bytes(data)
        loaded = _judged(path, real)
        assert real > LIMIT or _identity_comparisons(list(loaded)) == real


@pytest.mark.parametrize("shared", ["dict", "tuple", "float"])
def test_reads_of_one_shared_slot_are_batched_only_when_it_cannot_share_a_hash(
        shared: str, tmp_path: Any, matcher_counts: Callable[[str], list[int]]) -> None:
    """Once the memo holds a value that can share a hash (here the prelude's memoized dtype), a batch
    of memo reads into a list may still read the one slot its first read names, if that slot holds
    nothing that can (an object array of one shared dict: 3x slower opcode by opcode). A shared
    tuple or float is read opcode by opcode and charged: the walk takes no batch of its reads."""
    batches = matcher_counts("_match_values")
    value = {"dict": b"}\x94", "tuple": b"K\x01K\x02\x86\x94", "float": b"G" + struct.pack(">d", 0.5) + b"\x94"}[shared]
    reads = 20_000
    slot = sum(op.name == "MEMOIZE" for op, _, _ in pickletools.genops(b"\x80\x04" + _prelude() + b"N."))
    items = b"]" + value + b"0" + _batched([b"h" + bytes([slot])] * reads, b"e")  # (the value: after the prelude's slots)
    data = b"\x80\x04" + _prelude() + _object_array(reads, items) + b"."
    built = pickle.loads(data)  # noqa: S301 - our own stream of allowed, inert names
    assert len(built) == reads and built[0] is built[-1]
    path = tmp_path / "shared.pkl"
    path.write_bytes(data)
    assert safeload.scan(path, policy=POLICY).safe
    taken = max(batches, default=0)
    assert (taken >= 500) == (shared == "dict"), (shared, taken)


def test_unhashable_items_of_a_list_do_not_hide_the_colliding_ones_after_them(tmp_path: Any) -> None:
    """A dict's insertion stops at an unhashable key; inference code hashing a list of mixed
    items may skip or convert them, so a list's colliding items are counted past any list or dict."""
    keys = [ROUTES["int"](k) for k in range(1_500)]
    data = b"\x80\x04" + _prelude() + b"](]}e" + _batched(keys, b"e") + b"."
    path = tmp_path / "mixed.pkl"
    path.write_bytes(data)
    assert {f.rule for f in safeload.scan(path, policy=POLICY).findings} == {"limit-hash"}
    with pytest.raises(LimitExceededError):
        safeload.load(path, policy=POLICY)


def test_lists_of_values_that_share_no_hash_pass_at_any_size(tmp_path: Any) -> None:
    """The rule costs real models nothing: 20,000 big ints of distinct hashes, tuples of them and
    estimators hashed by identity pass as a list and as an object array."""
    n = 20_000
    state = b"}(" + b"".join(_u(k) + v for k, v in (("low", b"G" + struct.pack(">d", 0.0)), ("high", b"G" + struct.pack(
        ">d", 1.0)), ("low_inclusive", b"\x89"), ("high_inclusive", b"\x89"))) + b"u"
    interval = _glob("sklearn._loss.link", "Interval") + b")\x81" + state + b"b"
    for items in ([_int(2**62 + k) for k in range(n)], [_int(2**62 + k) + b"\x85" for k in range(n)],
                  [interval] * 200):
        for body in (b"]" + _batched(items, b"e"), _object_array(len(items), b"]" + _batched(items, b"e"))):
            path = tmp_path / "ok.pkl"
            path.write_bytes(b"\x80\x04" + _prelude() + body + b".")
            assert safeload.scan(path).safe
            assert len(safeload.load(path)) == len(items)


@pytest.mark.parametrize("kind", ["list", "tuple", "object array"])
@pytest.mark.parametrize("route", ["int", "distinct"])
def test_skops_list_items_refused_exactly_when_the_real_comparisons_pass_the_budget(kind: str, route: str) -> None:
    """skops stores a list's, a tuple's and an object array's ints as JSON numbers: they can collide too."""


    import numpy as np
    import skops.io as sio

    for n in SIZES:
        values = [k * _P + 2**62 if route == "int" else 2**62 + k for k in range(n)]
        data = sio.dumps(np.array(values, dtype=object) if kind == "object array" else
                         (values if kind == "list" else tuple(values)))
        built = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        real = _real_comparisons(built)
        assert (real > LIMIT) == (route == "int" and n != SIZES[0]), (route, n, real)
        loaded = _skops_judged(data, real)
        assert real > LIMIT or list(loaded) == list(built)
