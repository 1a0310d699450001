"""k-means, bisecting k-means, Birch, feature agglomeration, HDBSCAN."""

from __future__ import annotations

from typing import Any

import numpy as np

from safeload._guards import MAX_THREADS
from safeload._validators._base import (
    _array,
    _attr,
    _fail,
    _int,
    _int_array,
    _n_features_in,
)


def _check_kmeans(est: Any, path: str) -> None:
    """KMeans & co: BLAS/Cython read centers with X's row stride."""
    centers = _attr(est, "cluster_centers_")
    if centers is None:
        return
    width = _n_features_in(est, path, needed_for="center distances")
    arr = _array(centers, path, ".cluster_centers_", ndim=2)
    if arr.shape[1] != width:
        _fail(path, ".cluster_centers_", f"shape {arr.shape} for {width} features")
    if arr.shape[0] < 1:
        _fail(path, ".cluster_centers_", "has no centers; the Cython kernels read center 0 regardless")


def _check_bisecting_kmeans(est: Any, path: str) -> None:
    """BisectingKMeans predicts with every hierarchy node's center."""
    root = _attr(est, "_bisecting_tree")
    if root is None:
        return
    width = _n_features_in(est, path, needed_for="center distances")
    stack: list[tuple[Any, str]] = [(root, "._bisecting_tree")]
    seen: set[int] = set()
    while stack:
        node, suffix = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        center = np.asarray(_attr(node, "center"))
        if center.shape != (width,):
            _fail(path, f"{suffix}.center", f"shape {center.shape} != ({width},)")
        stack.append((_attr(node, "left"), f"{suffix}.left"))
        stack.append((_attr(node, "right"), f"{suffix}.right"))


def _check_birch(est: Any, path: str) -> None:
    """Birch.predict passes cached center norms to the Cython ArgKmin kernel."""
    centers = _attr(est, "subcluster_centers_")
    if centers is None:
        return
    width = _n_features_in(est, path, needed_for="center distances")
    arr = _array(centers, path, ".subcluster_centers_", ndim=2)
    if arr.shape[1] != width:
        _fail(path, ".subcluster_centers_", f"shape {arr.shape} for {width} features")
    norms = _attr(est, "_subcluster_norms")
    if norms is not None and np.shape(norms) != (arr.shape[0],):
        _fail(
            path,
            "._subcluster_norms",
            f"shape {np.shape(norms)} for {arr.shape[0]} centers; read per center unchecked",
        )



def _check_feature_agglomeration(est: Any, path: str) -> None:
    """transform pools with ``np.bincount(labels_)``, which sizes its output as max + 1: a label near
    2**63 overflows it and numpy writes out of bounds (as in VotingClassifier)."""
    labels = _attr(est, "labels_")
    if labels is None:
        return
    arr = _int_array(labels, path, ".labels_")
    width = _n_features_in(est, path, needed_for="pooling")
    if arr.shape[0] != width:
        _fail(path, ".labels_", f"has {arr.shape[0]} entries for {width} features")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= width):
        _fail(path, ".labels_", f"cluster labels must be in [0, {width}), got [{arr.min()}, {arr.max()}]")


#: sklearn.cluster._hdbscan._tree.HIERARCHY_dtype (field, kind, itemsize).
_HIERARCHY = (("left_node", "i", 8), ("right_node", "i", 8), ("value", "f", 8), ("cluster_size", "i", 8))


def _check_hdbscan(est: Any, path: str) -> None:
    """``dbscan_clustering`` hands ``_single_linkage_tree_`` to ``labelling_at_cut``, whose union-find
    (2n - 1 slots, boundscheck off) indexes with every row's children: they must be a tree over
    the n points and the n - 1 merges, each child naming an earlier node, each node used once."""
    tree = _attr(est, "_single_linkage_tree_")
    if tree is None:
        return
    arr = _array(tree, path, "._single_linkage_tree_", ndim=1)
    fields = arr.dtype.fields
    if fields is None or tuple(arr.dtype.names or ()) != tuple(f for f, _, _ in _HIERARCHY) or any(
            fields[f][0].kind != kind or fields[f][0].itemsize != size for f, kind, size in _HIERARCHY):
        _fail(path, "._single_linkage_tree_", f"dtype {arr.dtype} is not the single-linkage record type")
    n = arr.shape[0] + 1
    children = np.stack([arr["left_node"], arr["right_node"]]).astype(np.int64, copy=False)
    limit = n + np.arange(arr.shape[0], dtype=np.int64)  # row i merges into node n + i
    if arr.shape[0] and (children.min() < 0 or (children >= limit).any()):
        _fail(path, "._single_linkage_tree_", f"children must name earlier nodes: row i in [0, {n} + i)")
    if np.unique(children).size != children.size:
        _fail(path, "._single_linkage_tree_", "a node is merged twice")


def _check_n_threads(est: Any, path: str) -> None:
    """``_n_threads`` is handed to OpenMP by predict/transform/score."""
    d = getattr(est, "__dict__", None)
    if not isinstance(d, dict) or "_n_threads" not in d:
        return
    if isinstance(d["_n_threads"], bool):
        _fail(path, "._n_threads", "must be an integer thread count, got a bool")
    n = _int(d["_n_threads"], path, "._n_threads")
    if not 1 <= n <= MAX_THREADS:
        _fail(path, "._n_threads", f"= {n} outside [1, {MAX_THREADS}]; OpenMP aborts the process on it")
