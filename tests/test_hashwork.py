"""Hashing stream values: the cost model against brute force, and every place that hashes.

CPython hashes a tuple by hashing its items, recursively and without caching, so a tuple
shared through the memo costs exponentially more to hash than to read, and one nested deep
enough overflows the C stack (``tuplehash`` has no recursion check). ``_hashwork.HashCost``
measures both without hashing; these tests hold it to a brute-force count on generated tuple
DAGs, then check that the walker (dict keys, set and frozenset items, tuples it builds), the
runtime guard of the materialising calls and ``scan`` all refuse what plain pickle would
crash or hang on, while real shapes pass. The samples in ``malicious_samples`` (``hash-*``)
prove each is live under plain pickle.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import safeload
from safeload._errors import LimitExceededError
from safeload._guards import GUARDS
from safeload._hashwork import HashCost, TooDeep
from safeload._policy import Limits, Policy

POLICY = Policy.default()


def _cost(max_depth: int = 1000, cap: int = 10**12) -> HashCost:
    return HashCost(lambda v: v if isinstance(v, tuple) else None, lambda v: isinstance(v, list), max_depth, cap)


def _brute(v: Any) -> tuple[int, int]:
    """(items hash() visits, tuple depth), by walking the tree as CPython does."""
    if not isinstance(v, tuple):
        return 1, 0
    size, depth = 1, 0
    for x in v:
        s, d = _brute(x)
        size += s
        depth = max(depth, d)
    return size, depth + 1


@st.composite
def _dags(draw: st.DrawFn) -> tuple[Any, ...]:
    """A tuple DAG: each node is a tuple of leaves and earlier nodes (shared, as the memo shares them)."""
    nodes: list[Any] = [()]
    for _ in range(draw(st.integers(1, 14))):
        k = draw(st.integers(0, 4))
        items = [draw(st.one_of(st.integers(0, 9), st.sampled_from(nodes))) for _ in range(k)]
        nodes.append(tuple(items))
    return tuple(draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=4)))


@settings(max_examples=300, deadline=None)
@given(_dags(), st.integers(1, 8))
def test_cost_and_depth_are_what_hashing_visits(dag: tuple[Any, ...], max_depth: int) -> None:
    size, depth = _brute(dag)
    cost = _cost(max_depth)
    if depth > max_depth:
        with pytest.raises(TooDeep):
            cost.measure(dag)
    else:
        assert cost.measure(dag) == size
        assert cost.measure(dag) == size  # memoised: the same answer from the cache


def test_unhashable_items_and_saturation() -> None:
    assert _cost().measure((1, (2, [3]))) == -1
    t: Any = ()
    for _ in range(200):
        t = (t, t)
    assert _cost(cap=10**6).measure(t) == 10**6  # 2**200 saturates at the cap, in 200 steps
    deep: Any = ()
    for _ in range(5000):
        deep = (deep,)
    with pytest.raises(TooDeep):
        _cost(max_depth=1000).measure(deep)


def _dag(levels: int) -> Any:
    t: Any = ()
    for _ in range(levels):
        t = (t, t)
    return t


@pytest.mark.parametrize("name", ["builtins.set", "builtins.frozenset", "collections.Counter"])
def test_runtime_guard_refuses_an_exponential_argument(name: str) -> None:
    guard = GUARDS["materialise"](POLICY)
    with pytest.raises(LimitExceededError, match="tuple items"):
        guard([_dag(40)])
    guard([("a", "b")] * 100_000 + ["word"] * 10_000)  # real shapes: pairs and words


def test_runtime_guard_refuses_a_deep_argument() -> None:
    deep: Any = ()
    for _ in range(5000):
        deep = (deep,)
    with pytest.raises(LimitExceededError, match="deeper than"):
        GUARDS["materialise"](POLICY)([deep])


def _verdicts(data: bytes) -> tuple[str, str]:
    scan = safeload.scan(data)
    try:
        safeload.loads(data)
        load = "accepted"
    except LimitExceededError:
        load = "limit"
    return scan.verdict, load


def test_deep_tuples_refused_by_scan_and_load_alike() -> None:
    for depth, refused in ((999, False), (1000, False), (1001, True)):
        body = b"\x80\x04}" + b")" + b"\x85" * (depth - 1) + b"Ns."  # a dict key of `depth` nested tuples
        scan, load = _verdicts(body)
        assert (scan != "safe", load == "limit") == (refused, refused), (depth, scan, load)


def test_shared_tuples_within_budget_load_like_pickle() -> None:
    key = _dag(16)  # 2**17 items to hash: within the budget
    data = pickle.dumps({key: 1, "k": {key}}, protocol=4)
    assert _verdicts(data) == ("safe", "accepted")
    assert safeload.loads(data) == pickle.loads(data)


def test_budget_is_a_limit_and_scales_with_the_file() -> None:
    key = _dag(16)
    data = pickle.dumps({key: 1}, protocol=4)
    tight = POLICY.extended((), limits=Limits(max_hash_work=1000))
    assert safeload.scan(data, policy=tight).verdict != "safe"
    with pytest.raises(LimitExceededError, match="budget"):
        safeload.loads(data, policy=tight)
    # many small tuple keys cost what the file holds: 4 per byte keeps them in
    wide = pickle.dumps({(i, i + 1): i for i in range(50_000)}, protocol=4)
    assert safeload.scan(wide, policy=tight).verdict == "safe"
    assert len(safeload.loads(wide, policy=tight)) == 50_000


def test_deep_lists_load_and_scan_alike() -> None:
    depth = 50_000
    data = b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."
    assert _verdicts(data) == ("safe", "accepted")


@pytest.mark.parametrize("shape", ["list", "tuple", "object array"])
def test_items_of_lists_are_measured_before_their_hash_is_modelled(shape: str) -> None:
    """A list's items are charged as inference would hash them (test_collisions); the walker must
    measure them first: hashing a 60-level DAG's proxy took 2**60 steps, and `scan` of
    `s6_tuple_dag_counter` (whose Counter argument is such a list) never ended."""
    import numpy as np

    def build(key: Any) -> Any:
        items = [key] + [str(k) for k in range(19)]  # (a tuple is charged past 16 items)
        if shape != "object array":
            return items if shape == "list" else tuple(items)
        array = np.empty(len(items), dtype=object)  # (item by item: np.array would descend into the DAG)
        for k, item in enumerate(items):
            array[k] = item
        return array

    data = pickle.dumps(build(_dag(60)), protocol=4)
    assert _verdicts(data) == ("error", "limit")  # (a limit passed: an error, not a finding of intent)
    assert {f.rule for f in safeload.scan(data).findings} == {"limit-hash"}
    small = pickle.dumps(build(_dag(16)), protocol=4)  # 2**17 items: within the budget
    assert _verdicts(small) == ("safe", "accepted")


def test_every_hash_cost_takes_plain_scalars_as_hashable_leaves() -> None:
    """``HashCost`` counts exact ``None``/``bool``/``int``/``float``/``str``/``bytes`` items as hashable
    leaves without asking its ``children``/``unhashable`` functions (its hot loops): every place that
    builds one must give functions that say the same of them. Found in the source, so a new one is held too."""
    import importlib
    import re
    from pathlib import Path

    import numpy as np

    from safeload._hashwork import SCALARS, is_scalar

    samples = [None, True, 0, -(2**70), 1.5, float("nan"), "", "x", b"", b"\x00"]
    assert {type(v) for v in samples} == SCALARS
    others = [(), (1,), [], {}, bytearray(b"b"), memoryview(b"b"), 1j, frozenset(), np.int64(1), np.float64(1)]
    assert all(is_scalar(v) for v in samples) and not any(is_scalar(v) for v in others)
    sites = 0
    for path in sorted((Path(safeload.__file__).parent).glob("*.py")):
        text = path.read_text()
        for children_name, unhashable_name in re.findall(r"HashCost\((\w+), (\w+),", text):
            module = importlib.import_module(f"safeload.{path.stem}")
            children, unhashable = getattr(module, children_name), getattr(module, unhashable_name)
            for v in samples:
                assert children(v) is None and unhashable(v) is False, (path.name, children_name, v)
            sites += 1
    assert sites == 5  # _guards, _hashwork, _mirrors, _skops, _static_model: update when one is added
