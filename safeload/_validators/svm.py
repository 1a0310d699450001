"""libsvm-backed estimators (SVC, SVR, NuSVC, NuSVR, OneClassSVM)."""

from __future__ import annotations

from typing import Any, Final

from safeload._validators._base import (
    _array,
    _attr,
    _fail,
    _first,
    _int,
    _int_array,
    _is_sparse,
    _join,
    _n_features_in,
)
from safeload._validators.sparse import _check_sparse, _sparse_format, _sparse_shape

_LIBSVM_IMPL: Final = ("c_svc", "nu_svc", "one_class", "epsilon_svr", "nu_svr")


def _check_libsvm(est: Any, path: str) -> None:
    """SVC/SVR/OneClassSVM: libsvm sizes its model from these arrays unchecked."""
    support = _attr(est, "support_")
    if support is None:
        return
    # sklearn reads ``self._impl``: the instance first, then the class constant. (An
    # instance key that shadows the constant is refused by the shadowing rule too.)
    d = getattr(est, "__dict__", None) or {}
    impl = d["_impl"] if "_impl" in d else getattr(type(est), "_impl", None)
    if impl not in _LIBSVM_IMPL:
        _fail(path, "._impl", f"unknown libsvm implementation {impl!r}")
    svm_type = _LIBSVM_IMPL.index(impl)
    support = _int_array(support, path, ".support_")
    n_sv = support.size
    n_support = _int_array(_attr(est, "_n_support"), path, "._n_support")
    n_class = n_support.size
    if svm_type < 2:
        if n_class < 2 or n_support.min() < 0 or int(n_support.sum()) != n_sv:
            _fail(
                path,
                "._n_support",
                f"{n_support.tolist()} must be >= 0 per class and sum to {n_sv} support vectors",
            )
        classes = _attr(est, "classes_")
        if classes is not None and len(classes) != n_class:
            _fail(path, "._n_support", f"has {n_class} entries for {len(classes)} classes")
    elif n_class != 2:
        _fail(path, "._n_support", f"must have 2 entries for {impl}, has {n_class}")
    n_pairs = n_class * (n_class - 1) // 2
    intercept = _array(_attr(est, "_intercept_"), path, "._intercept_", ndim=1)
    if intercept.size != n_pairs:
        _fail(path, "._intercept_", f"has {intercept.size} entries, expected {n_pairs}")
    probability = _attr(est, "_effective_probability")
    if probability is None:
        probability = _attr(est, "probability")
    if probability not in (None, True, False):
        _fail(path, "._effective_probability", f"must be a bool, got {type(probability).__name__}")
    # predict_proba makes libsvm read one Platt pair per class pair: sized, or none at all
    allowed = {n_pairs} if probability and svm_type < 2 else {0, n_pairs}
    for name in ("_probA", "_probB"):
        prob = _array(_attr(est, name), path, f".{name}", ndim=1)
        if prob.size not in allowed:
            _fail(
                path,
                f".{name}",
                f"has {prob.size} entries, expected {' or '.join(map(str, sorted(allowed)))}"
                + (" (probability estimates are enabled)" if probability else ""),
            )
    sv = _attr(est, "support_vectors_")
    dual = _attr(est, "_dual_coef_")
    if _attr(est, "_sparse") is True:
        if not _is_sparse(sv) or _sparse_format(sv) != "csr":
            _fail(path, ".support_vectors_", "must be a CSR matrix")
        _check_sparse(sv, _join(path, ".support_vectors_"))
        if _sparse_shape(sv, path)[0] != n_sv:
            _fail(path, ".support_vectors_", f"must have {n_sv} rows")
        dual_data = _array(_attr(dual, "data"), path, "._dual_coef_.data", ndim=1)
        if dual_data.size != (n_class - 1) * n_sv:
            _fail(
                path,
                "._dual_coef_.data",
                f"has {dual_data.size} values, expected {(n_class - 1) * n_sv}",
            )
        return
    dual = _array(dual, path, "._dual_coef_", ndim=2)
    if dual.shape != (n_class - 1, n_sv):
        _fail(path, "._dual_coef_", f"shape {dual.shape} != {(n_class - 1, n_sv)}")
    kernel = _attr(est, "kernel")
    if callable(kernel) or kernel == "precomputed":
        shape_fit = _attr(est, "shape_fit_")
        if not isinstance(shape_fit, tuple) or not shape_fit:
            _fail(path, ".shape_fit_", "missing for a precomputed kernel")
        n_train = _int(shape_fit[0], path, ".shape_fit_[0]")
        bad = (support < 0) | (support >= n_train)
        if bad.any():
            i = _first(bad)
            _fail(
                path,
                f".support_[{i}]",
                f"= {int(support[i])} outside [0, {n_train}); libsvm reads "
                "that column of the precomputed kernel unchecked",
            )
        return
    sv = _array(sv, path, ".support_vectors_", ndim=2)
    width = _n_features_in(est, path, needed_for="kernel evaluation")
    if sv.shape != (n_sv, width):
        _fail(path, ".support_vectors_", f"shape {sv.shape} != {(n_sv, width)}")
