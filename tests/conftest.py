"""Shared fixtures.  Zoo: the benign model zoo is built once per session (disk cache)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import zoo` in any import mode

if TYPE_CHECKING:
    import zoo


@pytest.fixture(scope="session")
def zoo_store() -> zoo.Zoo:
    """The benign zoo on disk (``tests/.zoo_cache`` or ``$SAFELOAD_ZOO_CACHE``).

    Built by the first process that needs it (about 15-60 s on 2 cores), then reused by
    the other xdist workers and later sessions until ``zoo.py`` or a library changes.
    """
    import zoo

    return zoo.ensure_zoo()


@pytest.fixture
def matcher_counts(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[int]]:
    """``matcher_counts(name)``: from now on, the count of every call to the walker's matcher
    ``name`` (``_match_values``, ``_match_put_run``...: ``(data, i, end, x) -> (stop, count)``),
    in a list: what a test reads to see whether the walk took a batch or a run in one step."""
    from safeload import _walker

    def spy(name: str) -> list[int]:
        counts: list[int] = []
        real = getattr(_walker, name)

        def counting(data: Any, i: int, end: int, extra: Any) -> tuple[int, int]:
            j, count = real(data, i, end, extra)
            counts.append(count)
            return j, count

        monkeypatch.setattr(_walker, name, counting)
        return counts

    return spy
