"""safeload: load scikit-learn model files without letting them run code.

``safeload.load(path)`` is a drop-in for ``joblib.load(path)`` and ``pickle.load``: it
accepts pickle (protocols 0-5), joblib (raw and compressed), skops and .npy/.npz files,
judged by content, and refuses any global outside an exact allowlist.

The public names are imported on first use (PEP 562), so ``import safeload`` and the
CLI's ``--help``/``--version`` do not pay for numpy, scikit-learn and skops.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("ConfigError", "DangerousConfigError", "UnsafeConfigWarning", "load_config"), "safeload._config"),
    **dict.fromkeys(("ConversionError", "ConvertResult", "DestinationError", "RoundTripError", "SourceError",
                     "UnrepresentableError", "convert"), "safeload._convert"),
    **dict.fromkeys(("DangerousAllowError", "LimitExceededError", "MalformedModelError", "SafeloadError",
                     "SourceReadError", "TruncatedModelError", "UnsafeModelError", "UnsupportedFormatError"),
                    "safeload._errors"),
    **dict.fromkeys(("load", "loads"), "safeload._load"),
    **dict.fromkeys(("install", "patched", "uninstall"), "safeload._patch"),
    **dict.fromkeys(("Limits", "Policy", "UnknownAllowWarning", "is_dangerous"), "safeload._policy"),
    **dict.fromkeys(("Finding", "ScanReport"), "safeload._report"),
    "scan": "safeload._scan",
    **dict.fromkeys(("scan_many", "list_store", "scan_one"), "safeload._many"),
}

__all__ = [  # the keys of _EXPORTS (tests/test_dropin.py checks they agree)
    "ConfigError",
    "ConversionError",
    "ConvertResult",
    "DangerousAllowError",
    "DangerousConfigError",
    "DestinationError",
    "Finding",
    "LimitExceededError",
    "Limits",
    "MalformedModelError",
    "Policy",
    "RoundTripError",
    "SafeloadError",
    "ScanReport",
    "SourceError",
    "SourceReadError",
    "TruncatedModelError",
    "UnknownAllowWarning",
    "UnrepresentableError",
    "UnsafeConfigWarning",
    "UnsafeModelError",
    "UnsupportedFormatError",
    "convert",
    "install",
    "is_dangerous",
    "list_store",
    "load",
    "load_config",
    "loads",
    "patched",
    "scan",
    "scan_many",
    "scan_one",
    "uninstall",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'safeload' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from safeload._config import ConfigError, DangerousConfigError, UnsafeConfigWarning, load_config
    from safeload._convert import (
        ConversionError,
        ConvertResult,
        DestinationError,
        RoundTripError,
        SourceError,
        UnrepresentableError,
        convert,
    )
    from safeload._errors import (
        DangerousAllowError,
        LimitExceededError,
        MalformedModelError,
        SafeloadError,
        SourceReadError,
        TruncatedModelError,
        UnsafeModelError,
        UnsupportedFormatError,
    )
    from safeload._load import load, loads
    from safeload._many import list_store, scan_many, scan_one
    from safeload._patch import install, patched, uninstall
    from safeload._policy import Limits, Policy, UnknownAllowWarning, is_dangerous
    from safeload._report import Finding, ScanReport
    from safeload._scan import scan
