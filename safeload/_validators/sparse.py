"""scipy.sparse index structures and scipy.interpolate.BSpline."""

from __future__ import annotations

from typing import Any

import numpy as np

from safeload._validators._base import (
    _array,
    _attr,
    _fail,
    _first,
    _int,
    _int_array,
)


def _sparse_format(sp: Any) -> str | None:
    """'csr', 'coo', ...: a read-only property constant on SciPy's classes."""
    fmt = getattr(sp, "format", None)
    return fmt if isinstance(fmt, str) else None


def _sparse_shape(sp: Any, path: str) -> tuple[int, ...]:
    shape = _attr(sp, "_shape")
    if not isinstance(shape, tuple) or not 1 <= len(shape) <= 2:
        _fail(path, "._shape", f"invalid sparse shape {shape!r}")
    dims = tuple(_int(d, path, "._shape") for d in shape)
    if min(dims) < 0:
        _fail(path, "._shape", f"negative dimension in {dims}")
    return dims


def _check_compressed(sp: Any, path: str, fmt: str, dims: tuple[int, ...]) -> None:
    m, n = (1, dims[0]) if len(dims) == 1 else dims
    major, minor = (m, n) if fmt == "csr" else (n, m)
    data = _array(_attr(sp, "data"), path, ".data")
    if fmt == "bsr":
        if data.ndim != 3:
            _fail(path, ".data", f"bsr data must be 3-d, got {data.shape}")
        r, c = data.shape[1:]
        if r < 1 or c < 1 or m % r or n % c:
            _fail(path, ".data", f"block size {(r, c)} does not tile shape {dims}")
        major, minor = m // r, n // c
    elif data.ndim != 1:
        _fail(path, ".data", f"must be 1-d, got shape {data.shape}")
    indptr = _int_array(_attr(sp, "indptr"), path, ".indptr")
    indices = _int_array(_attr(sp, "indices"), path, ".indices")
    if indptr.size != major + 1:
        _fail(path, ".indptr", f"has {indptr.size} entries, expected {major + 1}")
    if indptr[0] != 0:
        _fail(path, ".indptr[0]", "must be 0")
    step = np.diff(indptr.astype(np.int64, copy=False))
    if step.size and step.min() < 0:
        _fail(path, f".indptr[{_first(step < 0) + 1}]", "indptr must not decrease")
    nnz = int(indptr[-1])
    if nnz > indices.size or indices.size != data.shape[0]:
        _fail(
            path,
            ".indptr",
            f"claims {nnz} entries; indices has {indices.size}, data {data.shape[0]}",
        )
    used = indices[:nnz]
    bad = (used < 0) | (used >= minor)
    if bad.any():
        i = _first(bad)
        _fail(path, f".indices[{i}]", f"= {int(used[i])} outside [0, {minor})")
    flags = (
        ("_has_canonical_format", True),
        ("_has_sorted_indices", False),
    )
    for flag, strict in flags:
        if _attr(sp, flag) is True and nnz > 1:
            d = np.diff(used.astype(np.int64))
            same_row = np.ones(nnz - 1, dtype=np.bool_)
            cut = indptr[1:-1].astype(np.intp) - 1
            same_row[cut[(cut >= 0) & (cut < nnz - 1)]] = False
            bad = same_row & ((d <= 0) if strict else (d < 0))
            if bad.any():
                _fail(path, f".indices[{_first(bad) + 1}]", f"contradicts {flag}")


def _check_sparse(sp: Any, path: str) -> None:
    """Index arrays that SciPy's C++ sparsetools trust (check_format, no copy)."""
    fmt = _sparse_format(sp)
    dims = _sparse_shape(sp, path)
    if fmt in ("csr", "csc", "bsr"):
        if fmt != "csr" and len(dims) != 2:
            _fail(path, "._shape", f"{fmt} must be 2-d")
        _check_compressed(sp, path, fmt, dims)
    elif fmt == "coo":
        data = _array(_attr(sp, "data"), path, ".data", ndim=1)
        coords = _attr(sp, "coords")
        if coords is None:
            coords = (_attr(sp, "row"), _attr(sp, "col"))
        if not isinstance(coords, tuple) or len(coords) != len(dims):
            _fail(path, ".coords", f"needs one index array per dimension of {dims}")
        for axis, (c, size) in enumerate(zip(coords, dims, strict=True)):
            arr = _int_array(c, path, f".coords[{axis}]")
            if arr.size != data.size:
                _fail(path, f".coords[{axis}]", "length differs from data")
            bad = (arr < 0) | (arr >= size)
            if bad.any():
                i = _first(bad)
                _fail(path, f".coords[{axis}][{i}]", f"outside [0, {size})")
    elif fmt == "dia":
        data = _array(_attr(sp, "data"), path, ".data", ndim=2)
        offsets = _int_array(_attr(sp, "offsets"), path, ".offsets")
        if offsets.size != data.shape[0]:
            _fail(path, ".offsets", "needs one offset per row of data")
    elif fmt == "lil":
        _check_lil(sp, path, dims)
    elif fmt == "dok":
        _check_dok(sp, path, dims)
    else:
        _fail(path, "", f"unknown sparse format {fmt!r}")


def _check_lil(sp: Any, path: str, dims: tuple[int, ...]) -> None:
    rows = _array(_attr(sp, "rows"), path, ".rows")
    data = _array(_attr(sp, "data"), path, ".data")
    m, n = (1, dims[0]) if len(dims) == 1 else dims
    if rows.shape != (m,) or data.shape != (m,):
        _fail(path, ".rows", f"must hold {m} row lists")
    for i in range(m):
        r, d = rows[i], data[i]
        if not isinstance(r, list) or not isinstance(d, list) or len(r) != len(d):
            _fail(path, f".rows[{i}]", "row index and data lists differ")
        if r:
            arr = np.asarray(r)
            if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n:
                _fail(path, f".rows[{i}]", f"column indices outside [0, {n})")


def _check_dok(sp: Any, path: str, dims: tuple[int, ...]) -> None:
    entries = _attr(sp, "_dict")
    if entries is None and isinstance(sp, dict):
        entries = sp
    if not isinstance(entries, dict):
        _fail(path, "._dict", "missing entry mapping")
    for key in entries:
        k = key if isinstance(key, tuple) else (key,)
        if len(k) != len(dims) or not all(
            isinstance(v, (int, np.integer)) and 0 <= v < s for v, s in zip(k, dims, strict=True)
        ):
            _fail(path, f"._dict[{key!r}]", f"key outside shape {dims}")


def _check_bspline(spl: Any, path: str) -> None:
    """Knots/coefficients as read by the C++ evaluate_spline (BSpline.__init__ checks)."""
    t_name = "_t" if _attr(spl, "_t") is not None else "t"
    c_name = "_c" if _attr(spl, "_c") is not None else "c"
    t = _array(_attr(spl, t_name), path, f".{t_name}", ndim=1)
    c = _array(_attr(spl, c_name), path, f".{c_name}")
    k = _int(_attr(spl, "k"), path, ".k")
    if t.dtype != np.float64:
        _fail(path, f".{t_name}", f"knots must be float64, got {t.dtype}")
    if c.dtype.kind not in "fc" or c.ndim < 1:
        _fail(path, f".{c_name}", f"coefficients must be a float array, got {c.dtype}")
    n = t.size - k - 1
    if k < 0 or n < k + 1:
        _fail(path, ".k", f"degree {k} needs at least {2 * k + 2} knots, has {t.size}")
    if not np.all(t[1:] >= t[:-1]):
        _fail(path, f".{t_name}", "knots must be non-decreasing (and not NaN)")
    if c.shape[0] < n:
        _fail(
            path,
            f".{c_name}",
            f"{c.shape[0]} coefficients for {n} basis functions; evaluation reads past the array",
        )
    axis = _int(_attr(spl, "axis") or 0, path, ".axis")
    if not 0 <= axis < c.ndim:
        _fail(path, ".axis", f"= {axis} outside the coefficient dims")
