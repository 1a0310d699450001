"""Exception hierarchy: everything safeload raises derives from SafeloadError.

UnsafeModelError also derives from pickle.UnpicklingError so that code written
for ``pickle.load`` keeps catching policy refusals without changes.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable

__all__ = [
    "LimitExceededError",
    "MalformedModelError",
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


class MalformedModelError(SafeloadError):
    """The input is truncated, corrupt or internally inconsistent."""


class UnsupportedFormatError(SafeloadError):
    """The input is not a format safeload knows how to load safely."""


class LimitExceededError(SafeloadError):
    """The input asks for more resources than the configured limits allow."""
