"""scan and load agree: a file is safe exactly when load accepts it (same policy).

Here over every crafted malicious sample (scan must not say safe, load must refuse with
the manifest's exception, and an ``unsafe`` verdict must mean UnsafeModelError). The benign
half is ``tests/test_benign.py``: every zoo artifact in every format must load with identical
outputs (test_load) and scan safe (test_scan_safe).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import safeload

SAMPLES = Path(__file__).resolve().parent.parent / "malicious_samples"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text())


def _load_outcome(path: Path, **kwargs: Any) -> type[BaseException] | None:
    try:
        safeload.load(path, **kwargs)
    except safeload.SafeloadError as exc:
        return type(exc)
    return None


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["technique"] for e in MANIFEST])
def test_malicious_scan_and_load_agree(entry: dict[str, Any], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAFELOAD_CANARY", str(tmp_path / "canary"))
    path = SAMPLES / entry["file"]
    report = safeload.scan(path)
    outcome = _load_outcome(path, **(entry.get("load_kwargs") or {}))
    assert outcome is not None, f"{entry['file']} was loaded"
    assert not report.safe, f"{entry['file']} scanned {report.verdict} but load raised {outcome.__name__}"
    assert outcome.__name__ == entry["expected"]["error"]
    if report.verdict == "unsafe":
        assert outcome is safeload.UnsafeModelError
    assert not (tmp_path / "canary").exists()
