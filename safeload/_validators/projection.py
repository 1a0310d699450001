"""Random projections and the additive chi-squared sampler: fitted state that hangs ``transform``.

``BaseRandomProjection.inverse_transform`` (without a stored ``inverse_components_``) hands
``components_`` to ``scipy.linalg.pinv(..., check_finite=False)``; LAPACK's SVD on a matrix
holding an infinity never returns, and the loop is in C, so not even a signal handler ends it
(found by the state fuzzer as timeouts). ``fit`` only ever draws finite components, and no other
inference path in scikit-learn decomposes fitted state with an SVD (audited: ``pinv``/``svd``
calls elsewhere are in ``fit``). ``AdditiveChi2Sampler.transform`` allocates and loops once per
``sample_steps``: a step count of 2**31 is a ``transform`` that never returns.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from safeload._validators._base import _array, _attr, _fail, _int, _is_sparse

#: Far above the documented step counts (1, 2 and 3; others need an explicit interval), far below a
#: loop that does not end: the output has ``n_features * (2 * sample_steps - 1)`` columns.
MAX_CHI2_SAMPLE_STEPS: Final = 1000


def _check_random_projection(est: Any, path: str) -> None:
    """Every component finite (what an SVD reads); sparse components through their data array."""
    components = _attr(est, "components_")
    if components is None:
        return  # not fitted
    suffix = ".components_"
    if _is_sparse(components):
        components, suffix = _attr(components, "data"), ".components_.data"
    arr = _array(components, path, suffix)
    if arr.dtype.kind not in "fiub":
        _fail(path, suffix, f"expected a real-valued array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        _fail(path, suffix, "holds a NaN or an infinity; inverse_transform's SVD (LAPACK) never returns on it")


def _check_additive_chi2(est: Any, path: str) -> None:
    """1 <= sample_steps <= MAX_CHI2_SAMPLE_STEPS."""
    steps = _attr(est, "sample_steps")
    if steps is None:
        return  # an attribute scikit-learn reads as a parameter: a missing one fails in transform itself
    n = _int(steps, path, ".sample_steps")
    if not 1 <= n <= MAX_CHI2_SAMPLE_STEPS:
        _fail(path, ".sample_steps", f"= {n} outside [1, {MAX_CHI2_SAMPLE_STEPS}]; transform loops once per step")
