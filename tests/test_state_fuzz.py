"""State fuzzer (fuzz/state_fuzz.py): replay saved reproducers and a small fixed-seed slice.

A reproducer is a model file whose state was tampered with and that killed the
process under plain ``joblib.load`` + one of its methods (issue 12's classes, and
anything a campaign finds). Replayed through the fuzzer's own worker: load must
refuse it, or the worker must survive every public method after an accepted load.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import state_fuzz  # noqa: E402

REPRODUCERS = sorted(state_fuzz.CRASH_DIR.glob("*.joblib"))


@pytest.fixture(scope="module")
def worker() -> Any:
    w = state_fuzz.Worker()
    yield w
    w.close()


def test_there_are_reproducers() -> None:
    assert len(REPRODUCERS) >= 6  # the crashers of issue 12 at least


@pytest.mark.parametrize("path", REPRODUCERS, ids=lambda p: p.stem)
def test_reproducer_is_refused_or_harmless(worker: Any, path: Path) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    answer, accepted, err = worker.run(str(path), str(path.with_suffix(".probe.pkl")))
    assert answer is not None, f"{meta}: worker died (accepted={accepted}): {err}"
    assert answer["load"] != "stray", answer
    if "issue 12" in meta["outcome"]:
        assert answer["load"] == "refused", (meta, answer)


def test_cases_are_reproducible(zoo_store: Any) -> None:
    store, names = state_fuzz.load_zoo(None)

    def cases() -> list[tuple[str, str] | None]:
        # (artifact, mutation): the same case for the same seed and index. (The dumped bytes
        # themselves may differ: some fitted states pickle with run-dependent details.)
        made = [state_fuzz.make_case(store, names, 5, i) for i in range(8)]
        return [None if m is None else (m[0], m[2]) for m in made]

    first = cases()
    assert first == cases()
    assert any(case is not None for case in first)


def test_fixed_seed_slice(zoo_store: Any) -> None:
    lines: list[str] = []
    stats = state_fuzz.campaign(seed=12, cases=120, seconds=50, names=None, log=lines.append)
    assert not [k for k in stats if k.startswith("FAIL")], lines
    assert stats["cases"] >= 50
    assert stats["accepted"] > 0 and stats["refused"] > 0, dict(stats)
    assert stats["method calls"] > stats["accepted"], dict(stats)
