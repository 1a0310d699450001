"""The walker's byte window against the reference unpickler, across every window boundary.

The compiled walker reads each opcode and its short operands from ``win``, a ``bytes`` copy of
[wbase, wbase + _WINDOW) of the stream, refilled once ``i`` passes ``wend - _MARGIN``. Real
windows are 256 KB, larger than any stream the grammar writes; here an exec'd copy of the walker
runs with a 600-byte window and a 300-byte margin (and vocabulary-run probes of BINUNICODE texts
under 16 bytes, so that every read the loop makes from the window stays within the margin), so
the grammar's streams cross window boundaries at every kind of opcode. The differential property
(tests/_oracle.py) must hold on them, and two broken windows must be caught by it.
"""

from __future__ import annotations

import random
import types

import pytest
from _oracle import MUTATIONS, differential, generate, mutant

from safeload._load import effective_policy

POLICY = effective_policy(None, ())
SMALL = {"_MARGIN": 300, "_WINDOW": 600, "_SHORT_TEXT": 16}

BROKEN = {
    # Refilled only when the window is used up: an operand past its end is read as missing.
    "window-refilled-late": ("wsoft = wend - _MARGIN if wend < n else big", "wsoft = wend if wend < n else big"),
    # The window's first offset off by one: every byte is read from its neighbour.
    "window-base-off-by-one": ("                    wbase = i\n", "                    wbase = i - 1\n"),
}


def _small_window(name: str, patch: tuple[str, str]) -> types.ModuleType:
    MUTATIONS[name] = patch
    try:
        module = mutant(name)
    finally:
        del MUTATIONS[name]
    for attr, value in SMALL.items():
        assert hasattr(module, attr), attr
        setattr(module, attr, value)
    return module


def _streams() -> list[tuple[bytes, bool]]:
    out = [(generate(random.Random(seed), proto=seed % 6), False) for seed in range(150)]
    out += [(generate(random.Random(seed), proto=None, joblib=True), True) for seed in range(40)]
    return out


STREAMS = _streams()


def test_the_streams_cross_window_boundaries() -> None:
    crossing = sum(len(data) > SMALL["_WINDOW"] for data, _ in STREAMS)
    assert crossing >= 60


def test_the_grammar_agrees_through_a_small_window() -> None:
    module = _small_window("window-identity", ("wbase = i\n", "wbase = i\n"))
    for k, (data, joblib) in enumerate(STREAMS):
        out = differential(data, POLICY, joblib=joblib, walk=module.walk)
        assert out.ok, f"stream {k} (joblib={joblib}): {out.divergence}"
        assert out.walker_end == len(data), f"stream {k}: the walker stopped short"


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_property_catches_a_broken_window(name: str) -> None:
    module = _small_window(name, BROKEN[name])
    caught = 0
    for data, joblib in STREAMS:
        out = differential(data, POLICY, joblib=joblib, walk=module.walk)
        caught += not out.ok or out.walker_end != len(data)
    assert caught >= 10, f"{name}: caught on {caught} streams"
