"""scan and load of one file's bytes, held to agree (scan == load, the brief's third rule)."""

from __future__ import annotations

import io

import safeload
from safeload import Policy
from safeload._report import ScanReport, Verdict


def scan_and_load(data: bytes, policy: Policy | None = None) -> tuple[ScanReport, str]:
    """(scan's report, load's outcome: "ok" or the error class), after checking that the two agree."""
    report = safeload.scan(io.BytesIO(data), policy=policy)
    try:
        safeload.loads(data, policy=policy)
        loaded = "ok"
    except safeload.SafeloadError as exc:
        loaded = type(exc).__name__
    expected = {Verdict.SAFE: {"ok"}, Verdict.UNSAFE: {"UnsafeModelError"},
                Verdict.ERROR: {"LimitExceededError", "MalformedModelError"}}[report.verdict]
    assert loaded in expected, (report.verdict, loaded, report.findings)
    return report, loaded
