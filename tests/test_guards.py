"""Allocation bounds of allowed names (issue 11): each runtime guard, and the walker's static mirror.

A guard runs at load time on the real arguments (defence in depth); the walker refuses the
same thing statically so that ``scan`` agrees. Both sides are exercised here with arguments a
file could supply, and the bounds are the ones the README's Limits table lists.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import safeload
from safeload._guards import MAX_MATERIALISED_ELEMENTS, MAX_PLACEHOLDER_BYTES, MAX_PLACEHOLDER_ELEMENTS
from safeload._policy import Policy
from safeload._walker import walk

P = Policy.default()


def guarded(name: str) -> Any:
    module, _, qual = name.rpartition(".")
    return P.resolve(module, qual)


def su(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def sg(module: str, name: str) -> bytes:
    return su(module) + su(name) + b"\x93"


def rng(n: int) -> bytes:
    return sg("builtins", "range") + b"\x8a\x08" + n.to_bytes(8, "little", signed=True) + b"\x85R"


def rules(data: bytes) -> list[str]:
    return [i.rule for i in walk(data, P).issues]


@pytest.mark.parametrize("name", ["builtins.set", "builtins.frozenset", "collections.Counter",
                                  "collections.OrderedDict", "collections.defaultdict",
                                  "numpy.random.mtrand.RandomState", "numpy.random._mt19937.MT19937",
                                  "numpy.random.bit_generator.SeedSequence"])
def test_materialising_a_long_range_is_refused_at_load_and_by_the_walker(name: str) -> None:
    fn = guarded(name)
    with pytest.raises(safeload.LimitExceededError):
        fn(range(10**9))
    if name not in ("collections.OrderedDict", "collections.defaultdict"):  # (these take pairs / a factory)
        fn(range(10))  # a short range is fine
    module, _, qual = name.rpartition(".")
    data = b"\x80\x04" + sg(module, qual) + rng(MAX_MATERIALISED_ELEMENTS + 1) + b"\x85R."
    assert "limit-array" in rules(data)
    ok = b"\x80\x04" + sg(module, qual) + rng(10) + b"\x85R."
    assert "limit-array" not in rules(ok)


def test_range_takes_plain_integers_only() -> None:
    with pytest.raises(safeload.UnsafeModelError):
        guarded("builtins.range")(np.int64(5))  # __index__ objects would hide the length from the walker
    assert guarded("builtins.range")(1, 10, 2) == range(1, 10, 2)
    assert "guard" in rules(b"\x80\x04" + sg("builtins", "range") + b"G@\x14\x00\x00\x00\x00\x00\x00\x85R.")


@pytest.mark.parametrize("dtype", ["(200000000,)O", "V2000000000", "(4096,)f8"])
def test_placeholder_counts_subarray_elements_and_bytes(dtype: str) -> None:
    fn = guarded("numpy._core.multiarray._reconstruct")
    dt = np.dtype(dtype)
    count = 1 if dt.itemsize > MAX_PLACEHOLDER_BYTES else (MAX_PLACEHOLDER_ELEMENTS // max(1, dt.itemsize // 8)) + 1
    with pytest.raises(safeload.LimitExceededError):
        fn(np.ndarray, (count,), dt)
    data = (b"\x80\x04" + sg("numpy._core.multiarray", "_reconstruct") + sg("numpy", "ndarray")
            + b"J" + count.to_bytes(4, "little") + b"\x85" + sg("numpy", "dtype") + su(dtype) + b"\x85R\x87R.")
    assert "limit-array" in rules(data)
    assert fn(np.ndarray, (0,), b"b").shape == (0,)  # what real pickles ask for


def test_ndarray_state_counts_subarray_elements() -> None:
    state_list = b"]" + b"(" + b"K\x01" + b"e"  # a one-item list
    data = (b"\x80\x04" + sg("numpy._core.multiarray", "_reconstruct") + sg("numpy", "ndarray") + b"K\x00\x85C\x01b\x87R"
            + b"(K\x01K\x01\x85" + sg("numpy", "dtype") + su("(200000000,)O") + b"\x85R\x89" + state_list + b"tb.")
    assert "limit-array" in rules(data)


def test_newobj_passes_no_arguments_to_new_classes() -> None:
    data = b"\x80\x04" + sg("numpy", "ndarray") + b"(J\x00\x00\x00\x02\x85" + su("u1") + b"t\x81."
    assert "new-args" in rules(data)
    plain = b"\x80\x04" + sg("sklearn._loss.link", "Interval") + b")\x81."
    assert rules(plain) == []
    guarded_cls = b"\x80\x04" + sg("builtins", "frozenset") + b")\x81."  # NEWOBJ would bypass the guard
    assert "new-args" in rules(guarded_cls)


def test_obj_and_inst_calls_go_through_the_guard_statically() -> None:
    data = b"\x80\x04(" + sg("builtins", "set") + rng(10**9) + b"o."
    assert "limit-array" in rules(data)


def test_reconstructor_state_is_bounded() -> None:
    fn = guarded("copyreg._reconstructor")
    with pytest.raises(safeload.LimitExceededError):
        fn(frozenset, frozenset, range(10**9))
    with pytest.raises(safeload.UnsafeModelError):
        fn(bytes, bytes, 10**9)


def test_a_guarded_name_only_referenced_comes_back_as_itself() -> None:
    import _codecs

    out = safeload.loads(pickle.dumps(_codecs.encode, protocol=4))
    assert out is _codecs.encode  # what pickle.load returns, not safeload's guard wrapper
    called = safeload.loads(pickle.dumps(b"\xffab", protocol=2))  # protocol 2 spells bytes as _codecs.encode(...)
    assert called == b"\xffab"


@pytest.mark.parametrize(("pool_size", "pool"), [(10**8, 4), (4, 3), (2, 2), (8, 8)])
def test_seed_sequence_pool_size_is_the_pool_length(pool_size: int, pool: int) -> None:
    """spawn() and the entropy mixing allocate and loop over pool_size words: 10**8 hangs the process."""
    ss = np.random.SeedSequence(1)
    fn, args, _ = ss.__reduce__()

    class Tampered:
        def __reduce__(self) -> Any:
            return fn, (args[0], args[1], (1, 0, np.arange(pool, dtype=np.uint32), pool_size, ()))

    for proto in (2, 4, 5):
        data = pickle.dumps(Tampered(), proto)
        ok = pool_size == pool and 4 <= pool_size
        assert (rules(data) == []) == ok, (proto, rules(data))
        if ok:
            assert safeload.loads(data).pool_size == pool_size
        else:
            with pytest.raises(safeload.UnsafeModelError):
                safeload.loads(data)
    with pytest.raises(safeload.UnsafeModelError):
        guarded("numpy.random.bit_generator.__pyx_unpickle_SeedSequence")(
            args[0], args[1], (1, 0, np.arange(4, dtype=np.uint32), 10**8, ()))


@pytest.mark.parametrize("name", ["builtins.set", "collections.Counter", "numpy.random.bit_generator.SeedSequence",
                                  "builtins.bytearray", "numpy._core.multiarray._reconstruct"])
@pytest.mark.parametrize("called", [False, True])
def test_partial_never_wraps_a_guarded_name(name: str, called: bool) -> None:
    """A partial calls its function later, with the arguments it holds, past the guard: whether the
    stream also calls the name (load then hands out the guard wrapper) or only references it (load
    hands out the raw name). Found by the byte fuzzer (seed 101): the runtime guard refused the
    wrapper, the walker's mirror said safe."""
    module, _, qual = name.rpartition(".")
    wrap = sg("functools", "partial") + sg(module, qual) + b"\x94" + rng(10**12) + b"\x86R"
    data = b"\x80\x04" + wrap + (b"h\x00)R\x86" if called else b"") + b"."  # (memo 0: the guarded name)
    assert "guard" in rules(data)
    assert not safeload.scan(data).safe
    with pytest.raises(safeload.UnsafeModelError, match="partial"):
        safeload.loads(data)
    with pytest.raises(safeload.UnsafeModelError, match="guard"):
        guarded("functools.partial")(P.resolve(module, qual), range(10**12))
    state = (b"\x80\x04" + sg("functools", "partial") + sg("sklearn.utils.validation", "check_array") + b"\x85R"
             + b"(" + sg(module, qual) + b")}Ntb.")  # the same through partial's __setstate__
    assert "guard" in rules(state)


def test_partial_of_an_unguarded_function_loads() -> None:
    import functools

    from sklearn.utils.validation import check_array

    out = safeload.loads(pickle.dumps(functools.partial(check_array, ensure_all_finite=False), protocol=4))
    assert out.func is check_array and out.keywords == {"ensure_all_finite": False}


@pytest.mark.parametrize("order", ["called-after", "called-before", "never-called"])
def test_a_class_argument_the_stream_also_calls(order: str) -> None:
    """The engine resolves each global once: if any opcode calls it, every use gets the guard wrapper,
    and guards that check an argument as a class refuse a wrapper. The walker must see that even when
    the call comes after the use (byte fuzzer seed 101: copyreg._reconstructor given itself)."""
    mt = sg("numpy.random._mt19937", "MT19937") + b"\x94"  # memo 0
    use = sg("numpy.random._pickle", "__bit_generator_ctor") + b"h\x00\x85R"
    call = b"h\x00)R"
    body = {"called-after": mt + use + call + b"\x86", "called-before": mt + call + use + b"\x86",
            "never-called": mt + use + b"\x86"}[order]
    data = b"\x80\x04" + body + b"."
    if order == "never-called":
        assert rules(data) == [] and safeload.scan(data).safe
        out = safeload.loads(data)
        assert type(out[1]).__name__ == "MT19937"
        return
    assert "guard" in rules(data)
    assert not safeload.scan(data).safe
    with pytest.raises(safeload.UnsafeModelError):
        safeload.loads(data)


class _Dup:
    """A dict state written pair by pair, equal keys included (CPython keeps the last value)."""

    def __init__(self, *pairs: tuple[Any, Any]) -> None:
        self.pairs = pairs


class _DupPickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_dup(self, obj: _Dup) -> None:
        self.write(pickle.EMPTY_DICT)
        self.memoize(obj)
        self._batch_setitems(iter(obj.pairs))

    dispatch[_Dup] = save_dup


class _Reduced:
    def __init__(self, reduce: Any) -> None:
        self.reduce = reduce

    def __reduce__(self) -> Any:
        return self.reduce


def _dumps(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    _DupPickler(buf, protocol=4).dump(obj)
    return buf.getvalue()


def test_a_state_key_equal_to_a_name_but_not_a_str_is_refused() -> None:
    """A numpy string key equal to "pos" replaces the value of "pos" in CPython's dict; the walker
    does not evaluate keys, so a state whose keys are not all plain strings is refused rather than
    read with the decoy's value (here MT19937's pos, an index into a fixed buffer)."""
    rs = np.random.RandomState(0)
    ctor, args, state = rs.__reduce__()
    inner = state["state"]
    good = _Dup(("bit_generator", "MT19937"), ("state", _Dup(("key", inner["key"]), ("pos", 624))),
                ("has_gauss", 0), ("gauss", 0.0))
    bad = _Dup(("bit_generator", "MT19937"),
               ("state", _Dup(("key", inner["key"]), ("pos", 624), (np.str_("pos"), 10**6))),
               ("has_gauss", 0), ("gauss", 0.0))
    assert isinstance(safeload.loads(_dumps(_Reduced((ctor, args, good)))), np.random.RandomState)
    data = _dumps(_Reduced((ctor, args, bad)))
    assert pickle.loads(data).get_state()[2] == 10**6  # CPython: the numpy string replaced "pos"
    assert not safeload.scan(data).safe
    with pytest.raises(safeload.SafeloadError):
        safeload.loads(data)


def test_a_tree_state_with_a_shadowing_key_is_refused() -> None:
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(np.arange(40.0).reshape(20, 2), [0, 1] * 10).tree_
    cls, args, state = tree.__reduce__()
    evil = state["nodes"].copy()
    evil["left_child"][0] = 10**6
    pairs = [(k, v) for k, v in state.items()]
    data = _dumps(_Reduced((cls, args, _Dup(*pairs, (np.str_("nodes"), evil)))))
    assert pickle.loads(data).children_left[0] == 10**6  # what Tree.__setstate__ got
    assert not safeload.scan(data).safe
    with pytest.raises(safeload.UnsafeModelError):
        safeload.loads(data)
    assert safeload.scan(_dumps(_Reduced((cls, args, _Dup(*pairs))))).safe


def test_bytes_keys_in_a_writable_buffer() -> None:
    """The walker keeps byte strings as memoryviews over the file's buffer; a file read from disk
    is a writable buffer, whose memoryviews cannot be hashed (byte fuzzer seed 102: a bytes key in
    a joblib array wrapper's state made scan(path) report an analysis error)."""
    from pathlib import Path

    sample = Path(__file__).resolve().parent.parent / "fuzz" / "crashes" / "fixed" / "disagree-bytes-key-writable-0c1a5a708a.bin"
    data = sample.read_bytes()
    for report in (safeload.scan(sample), safeload.scan(bytearray(data)), safeload.scan(data)):
        assert report.verdict != "error" or "cannot parse" not in report.findings[0].message
        assert not report.safe
    with pytest.raises(safeload.SafeloadError):
        safeload.loads(data)


_ARG_KINDS = {
    "global set": sg("builtins", "set"), "global ndarray": sg("numpy", "ndarray"),
    "global object": sg("builtins", "object"), "global MT19937": sg("numpy.random._mt19937", "MT19937"),
    "int": b"K\x05", "str": su("MT19937"), "None": b"N", "bytes": b"C\x03abc", "tuple": b"K\x01\x85",
    "list": b"]K\x01a", "dict": b"}", "global function": sg("_codecs", "encode"),
    "global estimator": sg("sklearn.preprocessing._data", "StandardScaler"), "global int": sg("builtins", "int"),
}
#: names whose guard reads a third argument: also called with three (the third of a few kinds)
_THREE = ("copyreg._reconstructor", "numpy._core.multiarray._reconstruct", "numpy.ma.core._mareconstruct",
          "sklearn.tree._tree.Tree", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence", "_codecs.encode")


@pytest.mark.parametrize("name", sorted(n for n, e in P.entries.items() if e.guard))
def test_every_guard_and_its_mirror_agree_on_argument_kinds(name: str) -> None:
    """A differential of each runtime guard against the walker's mirror: the guarded name called with
    one or two arguments of every kind a stream can supply (three for the names whose guard reads a
    third). ``scan`` must call a file safe exactly
    when ``load`` accepts it (a refusal while building, outside the guard, is the only exception).
    Found the bytes/bytearray mirror accepting a dict and refusing protocol 0-2 bytearrays; the byte
    fuzzer (seed 103) then found copyreg._reconstructor given a function, which this now covers."""
    import itertools

    module, _, qual = name.rpartition(".")
    wrong = []
    combos = [c for k in (1, 2) for c in itertools.product(_ARG_KINDS, repeat=k)]
    if name in _THREE:
        combos += [(*c, last) for c in itertools.product(_ARG_KINDS, repeat=2)
                   for last in ("None", "int", "str", "tuple", "dict", "bytes")]
    for combo in combos:
        data = b"\x80\x04" + sg(module, qual) + b"(" + b"".join(_ARG_KINDS[c] for c in combo) + b"tR."
        safe = safeload.scan(data).safe
        try:
            safeload.loads(data)
            error: Exception | None = None
        except safeload.SafeloadError as exc:
            error = exc
        if safe == (error is None) or (safe and "cannot build" in str(error)):
            continue
        wrong.append((combo, "scan safe" if safe else "scan unsafe", str(error)[:120]))
    assert not wrong, wrong[:10]


@pytest.mark.parametrize("protocol", range(6))
def test_bytes_and_bytearrays_of_every_protocol_load(protocol: int) -> None:
    for obj in (bytearray(b"ab\xff"), b"ab\xff", {"k": bytearray(b"x")}):
        data = pickle.dumps(obj, protocol)
        assert safeload.scan(data).safe
        assert safeload.loads(data) == obj


_SUBTYPES = [np.ndarray, np.matrix, np.ma.MaskedArray, np.recarray, int, "numpy.ndarray", None]
_SHAPES: list[Any] = [(0,), (0.0,), (False,), (np.int64(0),), 0, (1,), (), (0, 0), [0], (-1,), (2**40,), ((0,),),
                      (2**70,)]
_DTYPES: list[Any] = [b"b", "b", b"f8", np.dtype("b"), b"(3,)O", 1, b"bogus", bytearray(b"b"), b"b\x00", None]


@pytest.mark.parametrize("allow_ndarray", [True, False])
def test_the_placeholder_shortcut_decides_as_the_full_checks(allow_ndarray: bool) -> None:
    """``_reconstruct``'s guard skips its checks for numpy's own placeholder ``(ndarray, (0,), b'b')``:
    on every combination of near-miss arguments (a float or bool zero, a numpy integer, other
    subtypes and dtype spellings, a policy without ``numpy.ndarray``) it decides as the checks do."""
    from safeload._guards import _array_type, _placeholder, _reconstruct

    policy = P if allow_ndarray else Policy({k: v for k, v in P.entries.items() if k != "numpy.ndarray"}, P.limits)
    shortcut = _reconstruct(policy)

    def outcome(fn: Any, *args: Any) -> Any:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - compared, not handled
            return type(exc), str(exc)
        return None

    def full(subtype: Any, shape: Any, dtype: Any) -> None:
        _array_type(policy, subtype)
        _placeholder(shape, dtype)

    for subtype in _SUBTYPES:
        for shape in _SHAPES:
            for dtype in _DTYPES:
                assert outcome(shortcut, subtype, shape, dtype) == outcome(full, subtype, shape, dtype), \
                    (subtype, shape, dtype)
    assert (outcome(shortcut, np.ndarray, (0,), b"b") is None) == allow_ndarray
