"""Vectorisers and hashers: vocabularies and hash widths become sparse indices."""

from __future__ import annotations

from typing import Any

import numpy as np

from safeload._validators._base import (
    _INDEX_TYPES,
    _INT32_MAX,
    _attr,
    _dict_types,
    _fail,
    _first,
    _int,
    _short,
    c_index_map_ok,
)


def _check_index_map(mapping: object, path: str, suffix: str) -> None:
    """Feature-name -> column maps become CSR column indices unchecked."""
    if getattr(type(mapping), "_safeload_index_census", False):
        # scan's static twin: a vocabulary too large to rebuild, judged from the stream's bytes
        # (_static_model.IndexCensus); type() and these slots do not touch it as an Unknown
        problem: str | None = mapping.problem  # type: ignore[attr-defined]
        if problem is not None:
            _fail(path, suffix, problem)
        return
    if not isinstance(mapping, dict):
        _fail(path, suffix, "must be a dict")
    n = len(mapping)
    if n and c_index_map_ok is not None and c_index_map_ok(mapping):
        return  # a permutation of range(n), shown in one C pass (no int64 copy of the values)
    if n and _dict_types(mapping, keys=False) <= _INDEX_TYPES:
        try:
            fast = np.fromiter(mapping.values(), dtype=np.int64, count=n)
        except OverflowError:  # an int past int64: the loop below names it
            fast = None
        if fast is not None and fast.min() >= 0 and fast.max() < n and np.bincount(fast, minlength=n).max() <= 1:
            return  # a permutation of range(n): the common case, checked without a Python loop
    names = list(mapping)
    cols = np.empty(n, dtype=np.int64)
    for i, value in enumerate(mapping.values()):
        if not isinstance(value, (int, np.integer)) or not 0 <= value < n:
            _fail(
                path,
                f"{suffix}[{_short(names[i])}]",
                f"= {_short(value)} is not a column index in [0, {n}); "
                "transform() builds sparse columns from it unchecked",
            )
        cols[i] = value
    if n and np.bincount(cols, minlength=n).max() > 1:
        dup = _first(np.bincount(cols, minlength=n) > 1)
        i = int(np.flatnonzero(cols == dup)[1])
        _fail(path, f"{suffix}[{_short(names[i])}]", f"column {dup} used twice")


def _check_vocabulary(est: Any, path: str) -> None:
    vocab = _attr(est, "vocabulary_")
    if vocab is not None:
        _check_index_map(vocab, path, ".vocabulary_")


def _check_n_features_param(est: Any, path: str) -> None:
    """Hashers take ``hash % n_features`` in C: 0 is SIGFPE, <0 is out of range."""
    n = _int(_attr(est, "n_features"), path, ".n_features")
    if not 1 <= n <= _INT32_MAX:
        _fail(path, ".n_features", f"= {n} outside [1, 2**31 - 1]")
