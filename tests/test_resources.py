"""safeload's own cost stays proportional to plain pickle's on adversarial inputs (short version).

``benchmarks/resources.py`` measures the full set (object arrays up to 10**8 elements); this runs
its ``--quick`` sizes in child processes and holds ``safeload.load`` to the memory bound of issue 11
(peak RSS growth <= 2x plain ``pickle.load``'s + 64 MiB). Time is only held to a loose bound here
(8x + 5 s) because the test shares two cores with the rest of the suite; the benchmark script
checks 3x + 1 s on a quiet machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _measure import R


@pytest.mark.parametrize("case", list(R.CASES))
def test_load_costs_what_pickle_costs(case: str, tmp_path: Path) -> None:
    build, _, quick = R.CASES[case]
    path = tmp_path / "case.pkl"
    path.write_bytes(build(quick[0]))
    base = R.measure("pickle", path)
    safe = R.measure("load", path)
    assert base["error"] is None, base
    assert safe["peak"] <= 2 * base["peak"] + (64 << 20), (case, base, safe)
    assert safe["seconds"] <= 8 * base["seconds"] + 5.0, (case, base, safe)


@pytest.mark.parametrize("case", [*R.CASES, *R.SCAN_CASES])
def test_scan_costs_what_reading_costs(case: str, tmp_path: Path) -> None:
    """``scan``'s memory within 2x reading the file + 64 MiB, on pickles and on checkpoints and
    archives: the walker keeps no value per memo slot of a vocabulary run it only reads from (60,000
    runs read back in reverse held 90 MiB of texts); a legacy checkpoint of 2 million MARKs once
    took 184 MiB in a pure-Python pass before the walk."""
    build, _, quick = R.CASES[case] if case in R.CASES else R.SCAN_CASES[case]
    path = tmp_path / ("case.pkl" if case in R.CASES else "case.bin")
    path.write_bytes(build(quick[0]))
    base = R.measure("read", path)
    safe = R.measure("scan", path)
    assert base["error"] is None and safe["error"] is None, (base, safe)
    assert safe["peak"] <= 2 * base["peak"] + (64 << 20), (case, base, safe)
    assert safe["seconds"] <= 8 * base["seconds"] + 5.0, (case, base, safe)
