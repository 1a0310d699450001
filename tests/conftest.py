"""Shared fixtures.  Zoo: the benign model zoo is built once per session (disk cache)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
