"""Structural validation of loaded models (thin re-export of :mod:`safeload._validators`).

The validators live in ``safeload/_validators/``, one module per estimator
family, with one registry and the graph walk in its ``__init__``. This module
keeps the historical import path (``_load`` imports :func:`validate`, the
walker imports :func:`_check_tree` for its static mirror).
"""

from __future__ import annotations

from safeload._validators import REFUSED_TYPES, VALIDATED_TYPES, validate
from safeload._validators.trees import _check_tree

__all__ = [
    "REFUSED_TYPES",
    "VALIDATED_TYPES",
    "_check_tree",
    "validate",
]
