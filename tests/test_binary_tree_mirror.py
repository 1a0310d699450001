"""Scan judges KD/Ball-tree state as load does (``StaticChecks.check_binary_tree``).

A KD or Ball tree's ``idx_array`` and ``node_data`` are read by ``query()`` in Cython without
bounds checks; load's validator refuses a tampered one, but scan used to leave the tree to load
(the byte fuzzer's largest scan-safe/load-refused class after vocabularies). The walker now runs
the same validator on the arrays of the state tuple BUILD hands ``BinaryTree.__setstate__``,
read from the stream's bytes. The files here are real fitted models whose array bytes are
overwritten in place, so nothing but the tree's content differs from a benign file.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.neighbors import KernelDensity, KNeighborsClassifier, NearestNeighbors

import safeload

_X = np.random.RandomState(0).rand(40, 3)
_Y = (_X[:, 0] > 0.5).astype(int)
_MODELS: dict[str, Any] = {
    "kd": KNeighborsClassifier(algorithm="kd_tree", leaf_size=5).fit(_X, _Y),
    "ball": KNeighborsClassifier(algorithm="ball_tree", leaf_size=5).fit(_X, _Y),
    "kde": KernelDensity(leaf_size=5).fit(_X),
    "mahalanobis": NearestNeighbors(algorithm="ball_tree", leaf_size=5, metric="mahalanobis",
                                    metric_params={"VI": np.eye(3)}).fit(_X),
}


def _tree(model: Any) -> Any:
    return model._tree if hasattr(model, "_tree") else model.tree_


def _idx(state: tuple[Any, ...]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    bad = state[1].copy()
    bad[0] = 10**12
    return state[1], bad


def _perm(state: tuple[Any, ...]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    bad = state[1].copy()
    bad[1] = bad[0]
    return state[1], bad


def _root(state: tuple[Any, ...]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    bad = state[2].copy()
    bad["idx_end"][0] = 5
    return state[2], bad


def _tiling(state: tuple[Any, ...]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    bad = state[2].copy()
    bad["idx_start"][2] += 1
    return state[2], bad


_DAMAGE: dict[str, Callable[[tuple[Any, ...]], tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]] = {
    "idx out of range": _idx, "idx repeated": _perm, "root span": _root, "children do not tile": _tiling}


def _dump(model: Any, fmt: str) -> bytes:
    if fmt == "joblib":
        buf = io.BytesIO()
        joblib.dump(model, buf)
        return buf.getvalue()
    return pickle.dumps(model, protocol=int(fmt[1]))


def _verdicts(data: bytes, tmp_path: Any) -> tuple[bool, bool]:
    path = os.path.join(str(tmp_path), "model")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        safeload.load(path)
        loaded = True
    except safeload.UnsafeModelError:
        loaded = False
    return safeload.scan(path).safe, loaded


@pytest.mark.parametrize("fmt", ["p3", "p4", "p5", "joblib"])
@pytest.mark.parametrize("name", sorted(_MODELS))
def test_intact_trees_scan_safe_and_load(name: str, fmt: str, tmp_path: Any) -> None:
    assert _verdicts(_dump(_MODELS[name], fmt), tmp_path) == (True, True)


@pytest.mark.parametrize("fmt", ["p3", "p4", "p5", "joblib"])
@pytest.mark.parametrize("damage", sorted(_DAMAGE))
@pytest.mark.parametrize("name", sorted(_MODELS))
def test_tampered_trees_are_refused_by_scan_and_load(name: str, damage: str, fmt: str, tmp_path: Any) -> None:
    model = _MODELS[name]
    good, bad = _DAMAGE[damage](_tree(model).__getstate__())
    data = _dump(model, fmt)
    raw = good.tobytes()
    assert data.count(raw) == 1, "the array's bytes must appear once, verbatim"
    tampered = data.replace(raw, bad.tobytes())
    assert _verdicts(tampered, tmp_path) == (False, False)


def _swap_tree(name: str, data: np.ndarray[Any, Any]) -> Any:
    """The fitted model with its search tree rebuilt on other data (what a crafted file can hold)."""
    import copy

    from sklearn.neighbors import BallTree, KDTree

    model = copy.deepcopy(_MODELS[name])
    tree = _tree(model)
    kind = KDTree if "KDTree" in type(tree).__name__ else BallTree
    kwargs = {"metric": "mahalanobis", "VI": np.eye(data.shape[1])} if name == "mahalanobis" else {}
    swapped = kind(data, leaf_size=5, **kwargs)
    if hasattr(model, "_tree"):
        model._tree = swapped
    else:
        model.tree_ = swapped
    return model


# The estimator-level rules on the tree (``_check_neighbors``: ``_tree.data`` has ``_fit_X``'s
# shape; ``_check_kernel_density``: ``tree_.data`` has ``n_features_in_`` columns) need the tree's
# data array: scan's twin now sees it (``_static_model._Twin.binary_tree``).
_SWAPS: dict[str, Callable[[], np.ndarray[Any, Any]]] = {
    "fewer rows": lambda: _X[:20].copy(),
    "more columns": lambda: np.random.RandomState(1).rand(40, 4),
    "fewer columns": lambda: _X[:, :2].copy(),
}


# (KernelDensity keeps no _fit_X: a tree of fewer rows is a valid model, so that pair is not a case.)
_MISMATCHES = [(n, s) for n in sorted(_MODELS) for s in sorted(_SWAPS) if (n, s) != ("kde", "fewer rows")]


@pytest.mark.parametrize("fmt", ["p2", "p3", "p4", "p5", "joblib"])
@pytest.mark.parametrize(("name", "swap"), _MISMATCHES)
def test_a_tree_that_does_not_match_its_estimator_is_refused_by_scan_and_load(
        name: str, swap: str, fmt: str, tmp_path: Any) -> None:
    assert _verdicts(_dump(_swap_tree(name, _SWAPS[swap]()), fmt), tmp_path) == (False, False)


@pytest.mark.parametrize("fmt", ["p2", "p5", "joblib"])
@pytest.mark.parametrize("name", sorted(_MODELS))
def test_a_rebuilt_tree_on_the_same_data_stays_safe(name: str, fmt: str, tmp_path: Any) -> None:
    """The twin's tree view must not invent a finding: the same data, rebuilt, is a valid model."""
    assert _verdicts(_dump(_swap_tree(name, _X.copy()), fmt), tmp_path) == (True, True)


@pytest.mark.parametrize("name", ["kd", "kde"])
def test_a_kde_with_a_float32_tree_is_judged_like_load(name: str, tmp_path: Any) -> None:
    """A 32-bit tree: the twin's view carries BinaryTree32's names, so the same rules apply."""
    import copy

    from sklearn.neighbors._kd_tree import KDTree32

    model = copy.deepcopy(_MODELS[name])
    tree = KDTree32(np.random.RandomState(1).rand(40, 4).astype(np.float32), leaf_size=5)
    if hasattr(model, "_tree"):
        model._tree = tree
    else:
        model.tree_ = tree
    assert _verdicts(_dump(model, "p5"), tmp_path) == (False, False)
