"""Exception hierarchy: everything safeload raises derives from SafeloadError.

Errors also derive from the exception a ``pickle.load`` / ``open`` caller already
catches, so code written for them keeps working under ``safeload.patched()``:
refusals and corrupt files are ``pickle.UnpicklingError`` instances, a truncated file is
also an ``EOFError``, and an unreadable path keeps its ``OSError`` subclass
(``FileNotFoundError``, ``IsADirectoryError``, ``PermissionError``...).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable

__all__ = [
    "DangerousAllowError",
    "LimitExceededError",
    "MalformedModelError",
    "SourceReadError",
    "TruncatedModelError",
    "SafeloadError",
    "UnsafeModelError",
    "UnsupportedFormatError",
]


class SafeloadError(Exception):
    """Base class of every error safeload raises."""


class UnsafeModelError(SafeloadError, pickle.UnpicklingError):
    """The file asks for something the policy does not allow.

    ``names`` holds the offending fully-qualified globals (may be empty when the
    violation is a construct, e.g. a persistent id or a BUILD on a class),
    ``path`` the object path inside the model for structural violations, and
    ``rule`` the report rule id (see ``safeload._report.RULES``) a scan files it under.
    """

    def __init__(
        self,
        message: str,
        *,
        names: Iterable[str] = (),
        source: str | None = None,
        path: str | None = None,
        rule: str = "disallowed-global",
    ) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.source = source
        self.path = path
        self.rule = rule
        super().__init__(message)


class MalformedModelError(SafeloadError, pickle.UnpicklingError):
    """The input is truncated, corrupt or internally inconsistent (``pickle.load`` raises UnpicklingError)."""


class TruncatedModelError(MalformedModelError, EOFError):
    """The input ends before the pickle does (``pickle.load`` raises EOFError or UnpicklingError)."""


class UnsupportedFormatError(SafeloadError):
    """The input is not a format safeload knows how to load safely."""


class LimitExceededError(SafeloadError):
    """The input asks for more resources than the configured limits allow."""


class DangerousAllowError(SafeloadError, ValueError):
    """``allow=`` names a global that lets a file run code, without ``allow_unsafe=True``.

    ``names`` holds the dangerous names.  A ``ValueError`` too: it is a bad argument.
    """

    def __init__(self, message: str, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        super().__init__(message)


class SourceReadError(SafeloadError, OSError):
    """The input could not be read.  Raised as the subclass matching the OS error (see ``os_error``)."""


class SourceFileNotFoundError(SourceReadError, FileNotFoundError):
    """The path does not exist."""


class SourceIsADirectoryError(SourceReadError, IsADirectoryError):
    """The path is a directory."""


class SourceNotADirectoryError(SourceReadError, NotADirectoryError):
    """A parent of the path is not a directory."""


class SourcePermissionError(SourceReadError, PermissionError):
    """The path cannot be read with this process's permissions."""


_OS_ERRORS: tuple[tuple[type[OSError], type[SourceReadError]], ...] = (
    (FileNotFoundError, SourceFileNotFoundError),
    (IsADirectoryError, SourceIsADirectoryError),
    (NotADirectoryError, SourceNotADirectoryError),
    (PermissionError, SourcePermissionError),
)


def os_error(exc: OSError, path: str) -> SourceReadError:
    """A SafeloadError that is also ``exc``'s own OSError subclass, with errno, text and path kept."""
    cls = next((v for k, v in _OS_ERRORS if isinstance(exc, k)), SourceReadError)
    return cls(exc.errno, exc.strerror or str(exc), path)
