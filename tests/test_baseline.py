"""Baseline files: a broken one is a clean error, and matching costs a lookup per finding."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import safeload
from safeload._baseline import Baseline, BaselineError, _Entry, apply, load_baseline
from safeload._report import Finding, ScanReport

PKG_ROOT = Path(safeload.__file__).resolve().parents[1]


def reference_match(baseline: Baseline, path: str, sha256: str, finding: Finding) -> _Entry | None:
    """``Baseline.match`` before the index (a pass over every entry), verbatim."""
    for e in baseline.entries:
        if e.rule != finding.rule or e.names != tuple(finding.names):
            continue
        if e.sha256 is not None:
            if e.sha256 == sha256:
                return e
        elif e.path == path:
            return e
    return None


def write(path: Path, doc: object) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "match"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # RecursionError from json
    ('{"version": 1, "accepted": [' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "]}", "nested too deeply"),
    ('{"version": ' + "9" * 5000 + "}", "not JSON"),  # ValueError: an integer of over 4300 digits
    ("{", "not JSON"),
    ('{"version": 2, "accepted": []}', "expected"),
], ids=["deep-arrays", "deep-objects", "long-integer", "truncated", "wrong-version"])
def test_a_broken_baseline_is_a_baseline_error(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path / "b.json", text)
    with pytest.raises(BaselineError, match=match) as excinfo:
        load_baseline(str(path))
    assert isinstance(excinfo.value, safeload.SafeloadError) and isinstance(excinfo.value, ValueError)


def test_cli_reports_a_deeply_nested_baseline_without_a_traceback(tmp_path: Path) -> None:
    """``safeload scan --baseline`` on JSON nested 100,000 deep printed a RecursionError traceback."""
    write(tmp_path / "b.json", "[" * 100_000 + "]" * 100_000)
    (tmp_path / "m.pkl").write_bytes(pickle.dumps([1]))
    proc = subprocess.run([sys.executable, "-m", "safeload", "scan", "--no-cache", "--baseline", "b.json", "m.pkl"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PKG_ROOT)})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nested too deeply" in proc.stderr, proc.stderr


_RULES = st.sampled_from(["disallowed-global", "malformed", "limit"])
_NAMES = st.lists(st.sampled_from(["a.B", "c.D"]), max_size=2).map(tuple)
_SHAS = st.sampled_from(["", "s1", "s2"])
_PATHS = st.sampled_from(["m.pkl", "n.pkl"])
_ENTRIES = st.builds(_Entry, st.one_of(st.none(), _PATHS), st.one_of(st.none(), _SHAS), _RULES, _NAMES,
                     st.sampled_from(["r1", "r2", "r3"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(_ENTRIES, max_size=8), _PATHS, _SHAS, _RULES, _NAMES)
def test_match_is_the_first_matching_entry(entries: list[_Entry], path: str, sha: str, rule: str,
                                           names: tuple[str, ...]) -> None:
    baseline = Baseline(tuple(entries))
    finding = Finding(rule, "high", "m", names)
    assert baseline.match(path, sha, finding) is reference_match(baseline, path, sha, finding)


def test_matching_many_findings_against_many_entries_is_a_lookup_each() -> None:
    """20,000 entries and 20,000 findings: 4 * 10**8 comparisons in a pass over the entries per finding."""
    n = 20_000
    baseline = Baseline(tuple(_Entry(f"m{i}.pkl", None, "disallowed-global", (f"pkg.C{i}",), "reviewed")
                              for i in range(n)))
    findings = tuple(Finding("disallowed-global", "high", "x", (f"pkg.C{n - 1 - i}",)) for i in range(n))
    report = ScanReport("m.pkl", "pickle", "unsafe", findings, (), 10, "s")
    start = time.perf_counter()
    judged = apply(report, "m0.pkl", baseline, True)
    assert time.perf_counter() - start < 1.0
    assert [f.rule for f in judged.findings].count("baseline") == 1 and judged.failed
