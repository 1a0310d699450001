"""numpy random generators: buffer positions read unchecked on the next draw."""

from __future__ import annotations

from typing import Any

from safeload._guards import rng_state_problem
from safeload._validators._base import (
    _fail,
)


def _check_random_state(rng: Any, path: str) -> None:
    """RandomState / Generator / BitGenerator (their state getters only copy fixed-size buffers)."""
    if hasattr(rng, "get_state"):  # RandomState, the legacy wrapper around a bit generator
        state = rng.get_state(legacy=False)
    elif hasattr(rng, "bit_generator"):  # Generator
        state = rng.bit_generator.state
    else:  # a BitGenerator
        state = rng.state
    problem = rng_state_problem(state)
    if problem is not None:
        _fail(path, "", problem)
