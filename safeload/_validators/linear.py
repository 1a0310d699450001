"""Linear models whose Cython helpers take coefficients on trust."""

from __future__ import annotations

from typing import Any

import numpy as np

from safeload._validators._base import (
    _attr,
    _fail,
    _n_features_in,
)


def _check_sgd(est: Any, path: str) -> None:
    """SGD*: partial_fit hands coef_ to Cython with X's feature indices."""
    coef = _attr(est, "coef_")
    if coef is None:
        return
    width = _n_features_in(est, path, needed_for="partial_fit")
    shape = getattr(coef, "shape", None)
    if not isinstance(shape, tuple) or not shape or shape[-1] != width:
        _fail(path, ".coef_", f"shape {shape} for {width} features")
    for name in ("_standard_coef", "_average_coef"):
        other = _attr(est, name)
        if isinstance(other, np.ndarray) and other.shape != shape:
            _fail(path, f".{name}", f"shape {other.shape} != coef_ {shape}")
