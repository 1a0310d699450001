"""Bounded mutation fuzzing of ``load`` / ``loads`` / ``scan`` over every format.

The harness lives in ``fuzz/fuzz_load.py`` (which also runs long campaigns).  Here
each format gets a fixed, seeded batch of mutants of real fitted models; every
case runs in a forked child under ``RLIMIT_AS`` and an alarm, so a crash, hang or
memory blow-up fails the test instead of killing the runner.  A case fails when
``loads`` raises anything but a ``SafeloadError``, ``scan`` raises at all, ``scan``
and ``loads`` disagree in a way the static analysis should have predicted, or a
loaded model crashes the process when used.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import safeload

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

import fuzz_load  # noqa: E402

#: Mutants per format (14 formats; about 1 s per format on one core, 2 cores busy with other work).
CASES_PER_FORMAT = 80
#: Fixed campaign seed: the same mutants on every run.
SEED = 20_241_128


@pytest.fixture(scope="module")
def seeds() -> list[fuzz_load.Seed]:
    """Every model in every format, built once per test process (about a second)."""
    return fuzz_load.build_seeds()


def _report(stats: fuzz_load.Stats) -> str:
    lines = [fuzz_load.summary(stats)]
    for failure in stats.failures[:5]:
        lines.append(f"--- {failure['kind']} ({failure['format']} {failure['model']} "
                     f"{'+'.join(failure['mutations'])}, index {failure['index']}) saved as {failure.get('file')}")
        lines.append(str(failure["detail"])[-2500:])
    return "\n".join(lines)


@pytest.mark.parametrize("fmt", fuzz_load.FORMATS)
def test_mutants_fail_only_with_safeload_errors(fmt: str, seeds: list[fuzz_load.Seed], tmp_path: Path) -> None:
    stats = fuzz_load.run_campaign(seeds, seed=SEED, jobs=1, cases=CASES_PER_FORMAT, formats=(fmt,),
                                   save_dir=tmp_path / "crashes")
    assert stats.total == CASES_PER_FORMAT, _report(stats)
    assert not stats.harness_errors, _report(stats)
    assert not stats.failures, _report(stats)


def test_seeds_cover_every_format(seeds: list[fuzz_load.Seed]) -> None:
    assert {s.fmt for s in seeds} == set(fuzz_load.FORMATS)
    for seed in seeds:
        if seed.stream is not None:
            assert len(seed.ops) > 20, (seed.model, seed.fmt)  # the opcode table reaches past joblib arrays


def test_mutations_are_reproducible(seeds: list[fuzz_load.Seed]) -> None:
    for index in range(len(fuzz_load.FORMATS)):
        first = fuzz_load.make_case(SEED, 0, index, fuzz_load.FORMATS, seeds)
        again = fuzz_load.make_case(SEED, 0, index, fuzz_load.FORMATS, seeds)
        assert first[1] == again[1] and first[2] == again[2]


# -- the harness must itself catch what it is meant to catch ---------------------------------


def test_harness_flags_non_safeload_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def boom(data: bytes, **kwargs: Any) -> Any:
        raise KeyError("escaped")

    monkeypatch.setattr(safeload, "loads", boom)
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x80\x04N.")
    result = fuzz_load.run_case(b"\x80\x04N.", str(path), "tree")
    assert result.load == "FAILURE:KeyError"
    assert any(kind.startswith("load-raised-KeyError") for kind, _ in result.failures)
    assert any(kind.startswith("disagree-scan-safe-load-KeyError") for kind, _ in result.failures)


def test_harness_flags_crashes_and_hangs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         seeds: list[fuzz_load.Seed]) -> None:
    def crash(data: bytes, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(safeload, "loads", crash)  # inherited by the forked worker
    stats = fuzz_load.run_campaign(seeds, seed=1, jobs=1, cases=2, formats=("pickle-p4",),
                                   save_dir=tmp_path / "crashes", exercise=False)
    assert stats.total == 2
    assert sum(n for kind, n in stats.failure_kinds.items() if kind.startswith("crash-SIGSEGV")) == 2
    assert all(Path(f["file"]).exists() for f in stats.failures if f.get("file"))

    def spin(data: bytes, **kwargs: Any) -> Any:
        while True:
            pass

    monkeypatch.setattr(safeload, "loads", spin)
    monkeypatch.setattr(fuzz_load, "CASE_TIMEOUT", 0.5)
    result = fuzz_load.run_case(b"\x80\x04N.", str(tmp_path / "y.bin"), "tree", timeout=0.5)
    assert "timeout" in {kind for kind, _ in result.failures}


# -- every number a model holds, replaced by one no model holds ------------------------------


@pytest.mark.parametrize("fmt", ["pickle-p0", "pickle-p4", "joblib"])
def test_extreme_numbers_fail_only_with_safeload_errors(fmt: str, seeds: list[fuzz_load.Seed],
                                                        tmp_path: Path) -> None:
    """Each numeric opcode of every model, in turn, becomes each extreme int and float.

    Systematic rather than sampled: ints past int64 and past CPython's 4,300-digit limit (a
    ``str()`` of one in an error message raises ``ValueError``), non-finite floats, and an int
    where a float was and back.  Cases run in a child process so a crash fails the test.
    """
    import concurrent.futures
    import multiprocessing

    values = fuzz_load.EXTREME_INTS + fuzz_load.EXTREME_FLOATS
    datas, paths, models = [], [], []
    for seed in (s for s in seeds if s.fmt == fmt):
        assert seed.stream is not None
        for k, (off, opcode, total) in enumerate(fuzz_load.number_sites(seed.stream, seed.ops)):
            buf = bytearray(seed.stream)
            buf[off:off + total] = fuzz_load.encode_number(values[k % len(values)],
                                                           opcode in b"ILF" or buf[:1] != b"\x80")
            path = tmp_path / f"case{len(datas)}.bin"
            path.write_bytes(buf)
            datas.append(bytes(buf))
            paths.append(str(path))
            models.append(seed.model)
    assert len(datas) > 300
    # forkserver, not fork: a process that already ran OpenMP (HGB's predict, earlier tests) leaves
    # libgomp's thread pool unusable in a forked child, which then hangs in its first parallel loop.
    context = multiprocessing.get_context("forkserver")
    failures = []
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        for model, result in zip(models, pool.map(fuzz_load.run_case, datas, paths, models, chunksize=16),
                                 strict=True):
            failures.extend((model, kind) for kind, _ in result.failures)
    assert not failures, failures[:10]
