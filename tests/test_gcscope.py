"""The collector's pace during a store scan (``safeload._gcscope``): no full collection while a
store of small files is judged, one per ``_FULL_EVERY`` bytes, the previous pace restored after,
and no cycle in what the static checks keep (it held each file's bytes until a full collection)."""

from __future__ import annotations

import gc
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from safeload import _gcscope
from safeload._cli import main, scan_all
from safeload._gcscope import StorePace
from safeload._mirrors import StaticChecks
from safeload._policy import Policy


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """Generations collected, recorded while the test runs."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), np.arange(40) % 2
    for i in range(60):
        model = LogisticRegression().fit(X + i, y)
        if i % 2:
            joblib.dump(model, tmp_path / f"m{i}.joblib")
        else:
            (tmp_path / f"m{i}.pkl").write_bytes(pickle.dumps(model, protocol=4))
    return tmp_path


def test_a_store_scan_makes_no_full_collection(store: Path, full_collections: list[int]) -> None:
    before = gc.get_threshold()
    files = sorted(str(p) for p in store.iterdir())
    gc.set_threshold(50, 1, 1)  # a pace of full collections all the time, outside the scan
    try:
        reports = scan_all(files, Policy.default())
        assert gc.get_threshold() == (50, 1, 1)  # restored
    finally:
        gc.set_threshold(*before)
    assert all(r.verdict == "safe" for r in reports), [r.findings for r in reports if r.verdict != "safe"]
    assert full_collections.count(0) > 10  # young collections went on
    assert 2 not in full_collections


def test_the_cli_restores_the_pace_also_on_error(store: Path, tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert main(["scan", str(store), "--no-cache", "--format", "json", "--output", str(tmp_path / "r.json")]) == 0
    assert gc.get_threshold() == before
    assert main(["scan", str(tmp_path / "missing"), "--no-cache"]) == 2
    assert gc.get_threshold() == before


def test_a_full_collection_per_full_every_bytes(full_collections: list[int]) -> None:
    with StorePace() as pace:
        pace.judged(_gcscope._FULL_EVERY - 1)
        assert 2 not in full_collections
        pace.judged(1)
        assert full_collections.count(2) == 1
        pace.judged(_gcscope._FULL_EVERY - 1)
        assert full_collections.count(2) == 1


def test_static_checks_make_no_cycle() -> None:
    """What a file's static checks keep (its bytes among them) is freed by reference counting."""
    data = pickle.dumps(list(range(10)), protocol=4)
    paused = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        checks = StaticChecks(Policy.default(), data, None, [])
        del checks
        assert gc.collect() == 0
    finally:
        if paused:
            gc.enable()


def test_pool_workers_scan_at_the_store_pace() -> None:
    """A ``--jobs`` worker (a process that only scans) keeps the pace for its whole life."""
    from safeload import _cli

    before = gc.get_threshold()
    try:
        _cli._init_worker((), False, None, ())
        assert gc.get_threshold()[2] == _gcscope._NEVER
        assert _cli._WORKER_PACE is not None
    finally:
        _cli._WORKER_PACE = None
        gc.set_threshold(*before)


class _Bytes(bytearray):
    """A file's bytes that a weak reference can watch (bytes and bytearray cannot be)."""


def _left_for_the_collector(run: Any) -> int:
    """Objects ``run()`` leaves that only the cyclic collector can free."""
    paused = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        run()
        return gc.collect()
    finally:
        if paused:
            gc.enable()


@pytest.mark.parametrize("n", [10, 1000])
def test_a_walk_leaves_a_constant_few_objects_to_the_collector(n: int) -> None:
    import weakref

    from safeload._walker import walk

    data = _Bytes(pickle.dumps([{"k": float(i), "t": (i, str(i))} for i in range(n)], protocol=4))
    alive = weakref.ref(data)

    def run() -> None:
        nonlocal data
        trace = walk(data, Policy.default(), joblib=True)
        assert trace.ok and trace.root is not None
        del trace
        data = None  # type: ignore[assignment]
        assert alive() is None  # the file's bytes: freed by reference counting

    # (the walker's closures and their environment: one cycle of ~20 small objects, whatever the model)
    assert _left_for_the_collector(run) < 30


def test_a_joblib_load_leaves_a_constant_few_objects_to_the_collector(tmp_path: Path) -> None:
    import safeload

    left = []
    for n in (2, 2, 200):  # (the first load also leaves what its imports made)
        path = tmp_path / f"a{n}.joblib"
        joblib.dump([np.arange(i + 1, dtype=np.float64) for i in range(n)], path)

        def run(path: Path = path, n: int = n) -> None:
            model = safeload.load(path)
            assert len(model) == n
            del model

        left.append(_left_for_the_collector(run))
    assert left[2] <= left[1] + 5 and left[2] < 60, left  # (a few per load, not a few per array)
