"""safeload: load scikit-learn model files without letting them run code.

``safeload.load(path)`` is a drop-in for ``joblib.load(path)`` and ``pickle.load``: it
accepts pickle (protocols 0-5), joblib (raw and compressed), skops and .npy/.npz files,
judged by content, and refuses any global outside an exact allowlist.
"""

from __future__ import annotations

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
from safeload._patch import install, patched, uninstall
from safeload._policy import Limits, Policy, UnknownAllowWarning, is_dangerous
from safeload._report import Finding, ScanReport
from safeload._scan import scan

__all__ = [
    "ConfigError",
    "ConversionError",
    "DangerousAllowError",
    "SourceReadError",
    "TruncatedModelError",
    "UnknownAllowWarning",
    "is_dangerous",
    "ConvertResult",
    "DangerousConfigError",
    "DestinationError",
    "RoundTripError",
    "SourceError",
    "UnrepresentableError",
    "UnsafeConfigWarning",
    "convert",
    "install",
    "load_config",
    "patched",
    "uninstall",
    "LimitExceededError",
    "Limits",
    "MalformedModelError",
    "Policy",
    "Finding",
    "ScanReport",
    "scan",
    "SafeloadError",
    "UnsafeModelError",
    "UnsupportedFormatError",
    "load",
    "loads",
]
__version__ = "0.1.0"
from safeload._many import scan_many as scan_many  # noqa: E402  (store scans: local paths and fsspec URLs)
