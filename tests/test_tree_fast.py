"""The walker's fast tree check (``StaticChecks.tree_shown_safe``) against the full one.

``check_tree`` returns as soon as ``tree_shown_safe`` says True, without running load's
``_check_tree`` on a ``_StaticTree``; so True must never be said of a Tree state the full path
refuses, and it should be said of every real tree (else the speed-up is imaginary). Real Tree
states are pickled (protocols 2 and 5) and dumped with joblib, first intact, then damaged in up
to two places (sizes, class counts, node records, value shapes, dtypes, Python types), walked,
and the two paths are asked about the same simulated Tree.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification, make_regression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.tree._tree import Tree

from safeload._mirrors import StaticChecks
from safeload._policy import Policy
from safeload._simulated import Issue, Obj
from safeload._walker import walk

_POLICY = Policy.default()


class _TreeState:
    """Pickles as ``Tree(*args)`` then BUILD ``state``: what a real Tree writes, with any values."""

    def __init__(self, args: tuple[Any, ...], state: dict[str, Any]) -> None:
        self.args = args
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tree, self.args, self.state)


def _real_trees() -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    X, y = make_classification(n_samples=80, n_features=5, n_informative=3, n_classes=3, random_state=0)
    Xr, yr = make_regression(n_samples=60, n_features=4, n_targets=2, random_state=0)
    out = []
    for est in (DecisionTreeClassifier(random_state=0).fit(X, y),
                DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y),
                DecisionTreeRegressor(max_depth=4, random_state=0).fit(Xr, yr),
                DecisionTreeClassifier(random_state=0).fit(X, np.stack([y, y % 2], axis=1))):
        _, args, state = est.tree_.__reduce__()
        out.append((tuple(args), dict(state)))
    return out


_TREES = _real_trees()


def _streams(args: tuple[Any, ...], state: dict[str, Any]) -> list[tuple[bytes, bool]]:
    obj = _TreeState(args, state)
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return [(pickle.dumps(obj, protocol=2), False), (pickle.dumps(obj, protocol=5), False), (buf.getvalue(), True)]


def _both(data: bytes, joblib_stream: bool) -> tuple[bool, list[Issue]]:
    """(fast says safe, the full path's issues) for the Tree a stream builds."""
    trace = walk(data, _POLICY, joblib=joblib_stream)
    root = trace.root
    assert type(root) is Obj and root.callee == "sklearn.tree._tree.Tree", trace.issues
    checks = StaticChecks(_POLICY, data, None, [])
    fast = checks.tree_shown_safe(root.args, root.state)
    checks.check_tree_full(0, root, root.state)
    return fast, checks.issues


@pytest.mark.parametrize("k", range(len(_TREES)))
def test_every_real_tree_takes_the_fast_path(k: int) -> None:
    args, state = _TREES[k]
    for data, jb in _streams(args, state):
        fast, issues = _both(data, jb)
        assert issues == []
        assert fast, "a real tree fell back to the full path: the fast path would be dead code"


def _set(where: str, key: Any, value: Callable[[Any], Any]) -> Callable[[list[Any], dict[str, Any]], None]:
    def damage(args: list[Any], state: dict[str, Any]) -> None:
        if where == "args":
            args[key] = value(args[key])
        else:
            state[key] = value(state[key])

    return damage


def _node_field(name: str, pick: int, new: int) -> Callable[[list[Any], dict[str, Any]], None]:
    def damage(args: list[Any], state: dict[str, Any]) -> None:
        nodes = state["nodes"].copy()
        nodes[name][pick % nodes.shape[0]] = new
        state["nodes"] = nodes

    return damage


_DAMAGE: list[Callable[[list[Any], dict[str, Any]], None]] = [
    _set("args", 0, lambda v: 0), _set("args", 0, lambda v: -1), _set("args", 0, lambda v: True),
    _set("args", 0, lambda v: np.int64(v)), _set("args", 0, lambda v: v - 1), _set("args", 0, lambda v: 2**40),
    _set("args", 2, lambda v: 0), _set("args", 2, lambda v: v + 1), _set("args", 2, lambda v: True),
    _set("args", 2, lambda v: 65),
    _set("args", 1, lambda v: np.zeros_like(v)), _set("args", 1, lambda v: v + 1),
    _set("args", 1, lambda v: np.concatenate([v, v])), _set("args", 1, lambda v: v.astype(np.int32)),
    _set("args", 1, lambda v: v.astype(np.float64)), _set("args", 1, lambda v: v[:0]),
    _set("args", 1, lambda v: v.reshape(1, -1)), _set("args", 1, lambda v: -v),
    _set("args", 1, lambda v: np.where(np.arange(v.size) == v.size - 1, 0, v)),  # one output with no class
    _set("args", 1, lambda v: np.where(np.arange(v.size) == v.size - 1, -5, v)),
    _set("state", "node_count", lambda v: 0), _set("state", "node_count", lambda v: v + 1),
    _set("state", "node_count", lambda v: v - 1), _set("state", "node_count", lambda v: True),
    _set("state", "node_count", lambda v: np.int64(v)), _set("state", "node_count", lambda v: -v),
    _set("state", "max_depth", lambda v: -1), _set("state", "max_depth", lambda v: v - 1),
    _set("state", "max_depth", lambda v: v + 1), _set("state", "max_depth", lambda v: 2**62),
    _set("state", "max_depth", lambda v: np.int64(v)), _set("state", "max_depth", lambda v: float(v)),
    _set("state", "nodes", lambda v: v[:-1]), _set("state", "nodes", lambda v: v.reshape(1, -1)),
    _set("state", "nodes", lambda v: np.concatenate([v, v[:1]])),
    _set("state", "nodes", lambda v: v.astype([(n, np.int32 if n == "left_child" else v.dtype[n])
                                                for n in v.dtype.names])),
    _set("state", "nodes", lambda v: v["threshold"]),
    _set("state", "values", lambda v: v[:-1]), _set("state", "values", lambda v: v[:, :, :-1]),
    _set("state", "values", lambda v: np.concatenate([v, v], axis=1)), _set("state", "values", lambda v: v[:, 0]),
    _set("state", "values", lambda v: v.astype(np.float32)), _set("state", "values", lambda v: np.concatenate([v, v])),
    _set("state", "values", lambda v: np.asfortranarray(v)),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_TREES) - 1),
       st.lists(st.one_of(st.sampled_from(range(len(_DAMAGE))).map(lambda k: _DAMAGE[k]),
                          st.builds(_node_field, st.sampled_from(["left_child", "right_child", "feature",
                                                                  "missing_go_to_left"]),
                                    st.integers(0, 200), st.integers(-3, 12))),
                min_size=1, max_size=2))
def test_fast_says_safe_only_of_what_the_full_path_accepts(k: int, damage: list[Any]) -> None:
    args, state = _TREES[k]
    a, s = list(args), dict(state)
    for d in damage:
        try:
            d(a, s)
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            pass  # two damages that do not compose (a node field of what is no longer a record array)
    for data, jb in _streams(tuple(a), s):
        fast, issues = _both(data, jb)
        assert not (fast and issues), issues


def test_a_damaged_tree_is_still_refused_by_scan_through_the_full_path() -> None:
    """The walk itself (check_tree: fast, then full) refuses a child pointing backwards."""
    args, state = _TREES[0]
    s = dict(state)
    _node_field("left_child", 0, 0)(list(args), s)
    for data, jb in _streams(args, s):
        trace = walk(data, _POLICY, joblib=jb)
        assert any(i.rule == "tree-structure" for i in trace.issues), trace.issues
