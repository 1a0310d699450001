"""k-means, bisecting k-means, Birch."""

from __future__ import annotations

from typing import Any

import numpy as np

from safeload._guards import MAX_THREADS
from safeload._validators._base import (
    _array,
    _attr,
    _fail,
    _int,
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
