"""Encoders whose per-feature widths become sparse column indices.

``OneHotEncoder.transform`` builds a CSR matrix from ``X_int + offsets`` where the
offsets are the cumulative sum of the *stored* ``_n_features_outs``; SciPy
builds it without a full index check and sparsetools (``toarray``, products)
then write out of bounds. The widths are therefore recomputed here from the
source of truth, ``categories_`` (plus the drop and infrequent groupings,
themselves range-checked), and the stored list must equal the recomputation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safeload._validators._base import _attr, _fail, _int, _int_array
from safeload._validators.text import _check_index_map


def _optional_index(value: object, path: str, suffix: str, bound: int) -> int | None:
    """None, or an integer in [0, bound)."""
    if value is None:
        return None
    i = _int(value, path, suffix)
    if not 0 <= i < bound:
        _fail(path, suffix, f"= {i} outside [0, {bound})")
    return i


def _per_feature(value: object, path: str, suffix: str, n: int) -> list[Any]:
    """A per-feature list (or 1-d object/int array) of exactly ``n`` entries."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        items = list(value)
    elif isinstance(value, list):
        items = value
    else:
        _fail(path, suffix, f"must be a list of {n} per-feature entries, got {type(value).__name__}")
    if len(items) != n:
        _fail(path, suffix, f"has {len(items)} entries for {n} features")
    return items


def _check_one_hot_encoder(est: Any, path: str) -> None:
    """Per-feature output widths recomputed from ``categories_`` (fails closed)."""
    cats = _attr(est, "categories_")
    if cats is None:
        return
    if not isinstance(cats, list):
        _fail(path, ".categories_", "must be a list of 1-d arrays")
    n = len(cats)
    n_in = _attr(est, "n_features_in_")
    if n_in is not None and _int(n_in, path, ".n_features_in_") != n:
        _fail(path, ".categories_", f"has {n} entries, n_features_in_ is {n_in}")
    sizes = []
    for i, c in enumerate(cats):
        if not isinstance(c, np.ndarray) or c.ndim != 1:
            _fail(path, f".categories_[{i}]", "must be a 1-d array")
        sizes.append(c.size)
    grouped = list(sizes)  # width of feature i after infrequent categories are merged
    enabled = _attr(est, "_infrequent_enabled")
    if enabled not in (None, True, False):
        _fail(path, "._infrequent_enabled", f"must be a bool, got {type(enabled).__name__}")
    if enabled:
        infrequent = _per_feature(_attr(est, "_infrequent_indices"), path, "._infrequent_indices", n)
        for i, idx in enumerate(infrequent):
            if idx is None:
                continue
            suffix = f"._infrequent_indices[{i}]"
            arr = _int_array(idx, path, suffix)
            if arr.size < 1 or arr.min() < 0 or arr.max() >= sizes[i] or np.unique(arr).size != arr.size:
                _fail(path, suffix, f"must be distinct category indices in [0, {sizes[i]})")
            grouped[i] = sizes[i] - arr.size + 1
        mappings = _per_feature(
            _attr(est, "_default_to_infrequent_mappings"), path, "._default_to_infrequent_mappings", n
        )
        for i, mapping in enumerate(mappings):
            if mapping is None:
                continue
            suffix = f"._default_to_infrequent_mappings[{i}]"
            arr = _int_array(mapping, path, suffix)
            if arr.size != sizes[i] or (arr.size and (arr.min() < 0 or arr.max() >= grouped[i])):
                _fail(path, suffix, f"must map {sizes[i]} categories into [0, {grouped[i]})")
    outs = list(grouped)
    drop = _attr(est, "_drop_idx_after_grouping")
    if drop is not None:
        for i, d in enumerate(_per_feature(drop, path, "._drop_idx_after_grouping", n)):
            if _optional_index(d, path, f"._drop_idx_after_grouping[{i}]", grouped[i]) is not None:
                outs[i] -= 1
    drop_idx = _attr(est, "drop_idx_")
    if drop_idx is not None:
        for i, d in enumerate(_per_feature(drop_idx, path, ".drop_idx_", n)):
            _optional_index(d, path, f".drop_idx_[{i}]", sizes[i])
    stored = _attr(est, "_n_features_outs")
    if stored is None:
        _fail(path, "._n_features_outs", "missing; the output width of each feature cannot be established")
    got = [
        _int(v, path, f"._n_features_outs[{i}]")
        for i, v in enumerate(_per_feature(stored, path, "._n_features_outs", n))
    ]
    if got != outs:
        i = next(j for j, (a, b) in enumerate(zip(got, outs, strict=True)) if a != b)
        _fail(
            path,
            f"._n_features_outs[{i}]",
            f"= {got[i]} but categories_ give {outs[i]} output columns; "
            "transform() builds sparse column indices from these widths unchecked",
        )


def _check_multilabel_binarizer(est: Any, path: str) -> None:
    """The cached label -> column map becomes CSR column indices."""
    cached = _attr(est, "_cached_dict")
    if cached is None:
        return
    _check_index_map(cached, path, "._cached_dict")
    classes = _attr(est, "classes_")
    if classes is not None and len(classes) != len(cached):
        _fail(path, "._cached_dict", f"has {len(cached)} labels, classes_ has {len(classes)}")
