"""Preprocessing transformers whose stored counts drive loops and allocations in ``transform``.

``PolynomialFeatures.transform`` loops once per degree up to the stored ``_max_degree``
(and, for sparse input, once per term of the expansion), and allocates ``_n_out_full``
columns. Tampered degrees are not memory corruption, but a degree of 2**31 is a
``transform`` that never returns (found by the state fuzzer). The counts are therefore
recomputed from the degrees the way ``fit`` computes them, and the degree is bounded.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from safeload._validators._base import _attr, _fail, _int

#: Far above any degree a polynomial expansion is fitted with (the expansion of one
#: feature at degree d already has d + 1 terms), far below a loop that does not end.
MAX_POLYNOMIAL_DEGREE: Final = 1000

_INTP_MAX: Final = int(np.iinfo(np.intp).max)


def _flag(est: Any, name: str, path: str) -> bool:
    value = _attr(est, name)
    if type(value) is not bool and not isinstance(value, np.bool_):
        _fail(path, f".{name}", f"must be a bool, got {type(value).__name__}")
    return bool(value)


def polynomial_terms(n_features: int, min_degree: int, max_degree: int, interaction_only: bool,
                     include_bias: bool) -> int:
    """``PolynomialFeatures._num_combinations``, recomputed (degrees bounded first: exact and cheap)."""
    if interaction_only:
        count = sum(math.comb(n_features, i) for i in range(max(1, min_degree), min(max_degree, n_features) + 1))
    else:
        count = math.comb(n_features + max_degree, max_degree) - 1
        if min_degree > 0:
            count -= math.comb(n_features + min_degree - 1, min_degree - 1) - 1
    return count + 1 if include_bias else count


def _check_polynomial_features(est: Any, path: str) -> None:
    """Degrees in [0, MAX_POLYNOMIAL_DEGREE]; the stored output widths equal the recomputed ones."""
    if _attr(est, "_max_degree") is None and _attr(est, "n_output_features_") is None:
        return  # not fitted
    low = _int(_attr(est, "_min_degree"), path, "._min_degree")
    high = _int(_attr(est, "_max_degree"), path, "._max_degree")
    if not 0 <= low <= high <= MAX_POLYNOMIAL_DEGREE:
        _fail(path, "._max_degree", f"degrees ({low}, {high}) must satisfy 0 <= min <= max <= {MAX_POLYNOMIAL_DEGREE}")
    n = _int(_attr(est, "n_features_in_"), path, ".n_features_in_")
    if not 1 <= n <= _INTP_MAX:
        _fail(path, ".n_features_in_", f"= {n} outside [1, {_INTP_MAX}]")
    interaction = _flag(est, "interaction_only", path)
    bias = _flag(est, "include_bias", path)
    for name, first in (("n_output_features_", low), ("_n_out_full", 0)):
        stored = _attr(est, name)
        if stored is None and name == "_n_out_full":
            continue  # (older scikit-learn does not store it)
        expected = polynomial_terms(n, first, high, interaction, bias)
        if expected > _INTP_MAX:
            _fail(path, f".{name}", f"the expansion has {expected} terms, more than an index can address")
        if _int(stored, path, f".{name}") != expected:
            _fail(path, f".{name}", f"= {stored}, but {n} features at degrees ({first}, {high}) give {expected}")
