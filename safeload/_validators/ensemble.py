"""Ensembles that combine their members' predictions in native code."""

from __future__ import annotations

from typing import Any

import numpy as np

from safeload._validators._base import _array, _attr, _fail, _first, _is_instance_of


def _member_labels(est: Any) -> Any:
    """What ``est.predict`` can return: its ``classes_`` (a Pipeline's last step's, a search's
    best estimator's); None where that cannot be established from its state."""
    for _ in range(8):
        classes = _attr(est, "classes_")
        if classes is not None:
            return classes
        if _is_instance_of(est, "sklearn.pipeline.Pipeline"):
            steps = _attr(est, "steps")
            if not isinstance(steps, list) or not steps or not isinstance(steps[-1], tuple) or len(steps[-1]) != 2:
                return None
            est = steps[-1][1]
        elif _attr(est, "best_estimator_") is not None:
            est = _attr(est, "best_estimator_")
        else:
            return None
    return None


def _check_voting_classifier(est: Any, path: str) -> None:
    """Hard voting counts the members' predictions per sample with ``np.bincount``, whose output
    size overflows for a label near 2**63 and then writes out of bounds (a segfault): every member
    must predict class codes in [0, n_classes) (it was fitted on ``le_``'s encoded labels)."""
    members = _attr(est, "estimators_")
    if members is None:
        return
    if not isinstance(members, list):
        _fail(path, ".estimators_", "must be a list")
    le = _attr(est, "le_")
    classes = _array(_attr(le, "classes_"), path, ".le_.classes_", ndim=1)
    n_classes = classes.shape[0]
    hard = _attr(est, "voting") != "soft"
    for i, member in enumerate(members):
        labels = _member_labels(member)
        if labels is None:
            if hard:
                _fail(path, f".estimators_[{i}]", "the labels its predict returns cannot be established")
            continue
        arr = np.asarray(labels)
        if arr.dtype.kind not in "iub" or arr.ndim != 1:
            if hard:
                _fail(path, f".estimators_[{i}].classes_", f"must be 1-d class codes, got {arr.dtype} {arr.shape}")
            continue
        bad = (arr < 0) | (arr >= n_classes)
        if bad.any():
            j = _first(bad)
            _fail(path, f".estimators_[{i}].classes_[{j}]",
                  f"= {int(arr[j])} outside [0, {n_classes}); hard voting counts it with np.bincount unchecked")
