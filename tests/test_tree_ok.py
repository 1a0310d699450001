"""The compiled tree check (``_speedups.tree_ok``) against the numpy path it short-cuts.

``_check_tree`` asks ``tree_ok`` first and returns when it says True, so True must never be
said of a tree the numpy path refuses; it should also say True of every tree that path
accepts (else the speed-up is imaginary). Generated trees, valid and then damaged field by
field, hold the two to the same verdict; the C reads untrusted node records, so arguments
that point outside the buffer must be refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.tree._tree import NODE_DTYPE

from safeload._errors import UnsafeModelError
from safeload._mirrors import _StaticTree
from safeload._validators import trees

tree_ok = pytest.importorskip("safeload._speedups").tree_ok  # CI builds it: test_speedups asserts so


def _nodes(shape: list[tuple[int, int]], features: list[int], missing: list[int]) -> np.ndarray[Any, Any]:
    nodes = np.zeros(len(shape), dtype=NODE_DTYPE)
    nodes["left_child"] = [left for left, _ in shape]
    nodes["right_child"] = [r for _, r in shape]
    nodes["feature"] = features
    nodes["missing_go_to_left"] = missing
    return nodes


@st.composite
def _trees(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], int, int]:
    """A tree as scikit-learn numbers it (children after their parent), depth-first or breadth-first."""
    splits = draw(st.integers(0, 40))
    children: dict[int, tuple[int, int]] = {}
    leaves, n = [0], 1
    for _ in range(splits):
        node = leaves.pop(draw(st.integers(0, len(leaves) - 1)))
        children[node] = (n, n + 1)
        leaves += [n, n + 1]
        n += 2
    shape = [children.get(i, (-1, -1)) for i in range(n)]
    n_features = draw(st.integers(1, 6))
    features = [draw(st.integers(0, n_features - 1)) if i in children else -2 for i in range(n)]
    missing = [draw(st.integers(0, 1)) for _ in range(n)]
    depth = [0] * n
    for i in range(n):
        for c in children.get(i, ()):
            depth[c] = depth[i] + 1
    max_depth = max(depth) + draw(st.sampled_from([0, 0, 0, 1, -1]))
    return _nodes(shape, features, missing), n_features, max_depth


_FIELDS = ("left_child", "right_child", "feature", "missing_go_to_left")


@st.composite
def _damage(draw: st.DrawFn, n: int) -> list[tuple[int, str, int]]:
    edits = []
    for _ in range(draw(st.integers(0, 3))):
        node = draw(st.integers(0, n - 1))
        field = draw(st.sampled_from(_FIELDS))
        if field == "missing_go_to_left":
            value = draw(st.integers(0, 255))
        else:
            value = draw(st.sampled_from([-1, -2, 0, node, node + 1, node + 2, n - 1, n, 2**31, -(2**63)])
                         | st.integers(-3, n + 2))
        edits.append((node, field, value))
    return edits


def _numpy_verdict(nodes: np.ndarray[Any, Any], n_features: int, max_depth: int) -> bool:
    static = _StaticTree(n_features, np.array([2]), 1, {"node_count": len(nodes), "max_depth": max_depth},
                         nodes, np.zeros((len(nodes), 1, 2)))
    saved, trees._tree_ok = trees._tree_ok, None
    try:
        trees._check_tree(static, "tree")
    except UnsafeModelError:
        return False
    finally:
        trees._tree_ok = saved
    return True


def _fast_verdict(nodes: np.ndarray[Any, Any], n_features: int, max_depth: int) -> bool:
    layout = trees._node_layout(nodes.dtype)
    assert layout is not None
    return tree_ok(nodes, len(nodes), nodes.dtype.itemsize, *layout, n_features, max_depth)


@settings(max_examples=1500, deadline=None)
@given(_trees(), st.data())
def test_agrees_with_the_numpy_path(tree: tuple[np.ndarray[Any, Any], int, int], data: st.DataObject) -> None:
    nodes, n_features, max_depth = tree
    for node, field, value in data.draw(_damage(len(nodes))):
        nodes[field][node] = value
    assert _fast_verdict(nodes, n_features, max_depth) == _numpy_verdict(nodes, n_features, max_depth)


@pytest.mark.parametrize(
    "edit",
    [
        (0, "left_child", 0),  # a self loop
        (0, "right_child", 1),  # both children the same node
        (2, "left_child", 3),  # a second parent for node 3
        (0, "left_child", -1),  # half a leaf
        (2, "feature", 4),  # n_features is 4
        (0, "feature", -1),
        (2, "missing_go_to_left", 2),
        (4, "left_child", 5),  # half a child on a leaf
    ],
)
def test_each_damage_is_refused_by_both(edit: tuple[int, str, int]) -> None:
    nodes = _nodes([(1, 2), (3, 4), (5, 6), (-1, -1), (-1, -1), (-1, -1), (-1, -1)], [0, 1, 3, -2, -2, -2, -2],
                   [0, 1, 0, 0, 0, 0, 0])
    assert _fast_verdict(nodes, 4, 2) and _numpy_verdict(nodes, 4, 2)
    node, field, value = edit
    nodes[field][node] = value
    assert not _fast_verdict(nodes, 4, 2)
    assert not _numpy_verdict(nodes, 4, 2)


def test_max_depth_bounds_every_leaf() -> None:
    nodes = _nodes([(1, 2), (3, 4), (-1, -1), (-1, -1), (-1, -1)], [0, 0, -2, -2, -2], [0] * 5)
    assert [_fast_verdict(nodes, 1, d) for d in (1, 2, 3, 4, 5, -1)] == [False, True, True, True, False, False]
    assert [_numpy_verdict(nodes, 1, d) for d in (1, 2, 3, 4, 5, -1)] == [False, True, True, True, False, False]


def test_real_forests_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestRegressor

    X, y = make_classification(300, 8, random_state=0)
    forest = RandomForestRegressor(n_estimators=12, random_state=0).fit(X, y)
    answers: list[bool] = []

    def spy(*args: Any) -> bool:
        answers.append(tree_ok(*args))
        return answers[-1]

    monkeypatch.setattr(trees, "_tree_ok", spy)
    for est in forest.estimators_:
        trees._check_tree(est.tree_, "tree")
    assert answers == [True] * 12


def test_a_scan_asks_the_fast_path_about_every_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import ExtraTreesClassifier

    import safeload

    X, y = make_classification(200, 5, random_state=1)
    joblib.dump(ExtraTreesClassifier(n_estimators=7, random_state=0).fit(X, y), tmp_path / "m.joblib")
    answers: list[bool] = []

    def spy(*args: Any) -> bool:
        answers.append(tree_ok(*args))
        return answers[-1]

    monkeypatch.setattr(trees, "_tree_ok", spy)
    assert safeload.scan(tmp_path / "m.joblib").safe
    assert answers == [True] * 7


def test_other_field_types_go_to_the_numpy_path() -> None:
    narrow = np.dtype([("left_child", "<i4"), ("right_child", "<i4"), ("feature", "<i4"), ("missing_go_to_left", "u1")])
    assert trees._node_layout(narrow) is None
    nodes = np.array([(1, 1, 0, 0), (-1, -1, -2, 0)], dtype=narrow)  # both children one node
    assert not trees._links_shown_safe(nodes, 2, 1, 1)
    assert not _numpy_verdict(nodes, 1, 1)
    swapped = NODE_DTYPE.newbyteorder(">")
    assert trees._node_layout(swapped) is None


@pytest.mark.parametrize(
    "count, itemsize, offsets",
    [
        (8, 64, (0, 8, 16, 56)),  # eight records of a seven-record buffer
        (7, 65, (0, 8, 16, 56)),
        (7, 64, (57, 8, 16, 56)),  # an int64 field running past its record
        (7, 64, (0, -1, 16, 56)),
        (7, 64, (0, 8, 16, 64)),
        (7, 0, (0, 8, 16, 56)),
        (-1, 64, (0, 8, 16, 56)),
        (2**62, 64, (0, 8, 16, 56)),
    ],
)
def test_arguments_outside_the_buffer_are_refused(count: int, itemsize: int, offsets: tuple[int, ...]) -> None:
    nodes = _nodes([(1, 2), (3, 4), (5, 6), (-1, -1), (-1, -1), (-1, -1), (-1, -1)], [0] * 7, [0] * 7)
    assert nodes.dtype.itemsize == 64
    with pytest.raises(ValueError, match="outside the buffer"):
        tree_ok(nodes, count, itemsize, *offsets, 1, 2)


def test_not_a_buffer_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        tree_ok([1, 2, 3], 1, 64, 0, 8, 16, 56, 1, 0)


def test_a_child_near_the_int64_minimum_is_refused_by_the_numpy_path() -> None:
    """Found by the property above: the numpy path once subtracted the parent from the child,
    which wraps around for -2**63 at any node but the root, and met it as an IndexError."""
    nodes = _nodes([(1, 2), (3, 4), (-1, -1), (-1, -1), (-1, -1)], [0, 0, -2, -2, -2], [0] * 5)
    nodes["left_child"][1] = -(2**63)
    assert not _numpy_verdict(nodes, 1, 2)
    assert not _fast_verdict(nodes, 1, 2)
