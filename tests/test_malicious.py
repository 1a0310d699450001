"""The malicious sample corpus: each sample really fires, and safeload refuses it.

For every entry of ``malicious_samples/manifest.json``:

* ``test_fires``: the standard loader named by the manifest (``pickle.load``,
  ``joblib.load``, ``skops.io.load`` ...) really produces the effect in a child
  process. A sample that stops firing (e.g. after a library upgrade) would make
  the safeload test meaningless, so it fails here.
* ``test_safeload_refuses``: ``safeload.load`` raises the expected
  ``SafeloadError`` subclass, names the offending global when there is one, and
  the effect does not happen. Samples that would corrupt the process, exhaust
  memory, crash or hang run in a child; the rest run in-process with the canary set.

``test_craft_is_deterministic`` regenerates the corpus and compares bytes.
"""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# _canary doubles as the child's script, so it is imported by path rather than
# as a package module: this works with every pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _canary import (
    SAMPLES,
    ChildResult,
    Workspace,
    load_manifest,
    prepare,
    run_child,
)

ENTRIES = load_manifest()
IDS = [entry["technique"] for entry in ENTRIES]
#: Loading through skops imports all of scikit-learn in the child (~5 s each).
FIRE_PARAMS = [
    pytest.param(entry, id=entry["technique"], marks=[pytest.mark.slow] if entry["loader"].startswith("skops") else [])
    for entry in ENTRIES
]


def _assert_fired(entry: dict[str, Any], ws: Workspace, child: ChildResult) -> None:
    """Assert the manifest's effect was observed after loading with the standard loader."""
    kind = entry["effect"]["kind"]
    info = f"{entry['file']} did not fire ({kind}):\n{child.describe()}"
    if kind in ("canary", "write"):
        assert ws.effect_happened(entry, wait=True), info
    elif kind == "check":
        assert child.result is not None and child.result["check"] is True, info
    elif kind == "memory":
        killed = child.returncode < 0 and child.returncode != -9999
        assert killed or (child.result is not None and "MemoryError" in child.result["exc_mro"]), info
    elif kind == "crash":
        assert child.returncode < 0 and child.returncode != -9999, info
    elif kind == "hang":
        assert child.returncode == -signal.SIGALRM, info
    elif kind == "exception":
        assert child.result is not None and child.result["exc"] == entry["effect"]["exception"], info
    elif kind == "accepted":
        assert child.returncode == 0 and child.result is not None, info
        assert child.result["exc"] is None, info
        if "check" in entry["effect"]:
            assert child.result["check"] is True, info
    else:
        raise AssertionError(f"unknown effect kind {kind!r}")


def _assert_not_fired(entry: dict[str, Any], ws: Workspace, child: ChildResult | None) -> None:
    """Assert the effect did not happen while safeload looked at the sample."""
    kind = entry["effect"]["kind"]
    if kind in ("canary", "write"):
        assert not ws.effect_happened(entry, wait=False), f"{entry['file']}: effect happened"
    if child is None:
        return
    assert child.returncode >= 0, f"safeload crashed on {entry['file']}:\n{child.describe()}"
    if kind == "check":
        assert child.result is not None and child.result["check"] is False, child.describe()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("entry", FIRE_PARAMS)
def test_fires(entry: dict[str, Any], tmp_path: Path) -> None:
    """The sample produces its effect under the standard loader (proof it is live)."""
    ws = prepare(entry, tmp_path)
    child = run_child(entry, ws, "fire")
    _assert_fired(entry, ws, child)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_safeload_refuses(entry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """safeload raises the expected error, names the global, and nothing happens."""
    import safeload

    expected = entry["expected"]
    glob_name = expected["global"]
    ws = prepare(entry, tmp_path)
    if entry["isolate"]:
        child = run_child(entry, ws, "safeload")
        assert child.returncode >= 0, f"process died while safeload loaded/used {entry['file']}:\n{child.describe()}"
        assert child.result is not None, child.describe()
        assert expected["error"] in child.result["exc_mro"], child.describe()
        assert "SafeloadError" in child.result["exc_mro"], child.describe()
        if glob_name:
            assert glob_name in child.result["message"], child.describe()
        _assert_not_fired(entry, ws, child)
        return
    error_cls = getattr(safeload, expected["error"])
    monkeypatch.setenv("SAFELOAD_CANARY", str(ws.canary))
    monkeypatch.setenv("TMPDIR", str(ws.tmpdir))
    monkeypatch.chdir(ws.cwd)
    with pytest.raises(error_cls) as excinfo:
        safeload.load(str(ws.sample), **entry["load_kwargs"])
    assert isinstance(excinfo.value, safeload.SafeloadError)
    if glob_name:
        assert glob_name in str(excinfo.value), f"message does not name {glob_name}"
    _assert_not_fired(entry, ws, None)


def test_manifest_covers_threat_sections() -> None:
    """Every loading-related THREATS.md section has samples; technique ids are unique."""
    sections = {entry["section"] for entry in ENTRIES}
    assert {"1", "2", "3", "4", "5"} <= sections
    assert len(set(IDS)) == len(IDS) >= 45
    for entry in ENTRIES:
        assert (SAMPLES / entry["file"]).is_file(), entry["file"]
        assert entry["expected"]["error"] in {
            "UnsafeModelError",
            "MalformedModelError",
            "LimitExceededError",
            "UnsupportedFormatError",
        }


@pytest.mark.timeout(120)
def test_craft_is_deterministic(tmp_path: Path) -> None:
    """craft.py regenerates byte-identical samples and manifest."""
    out = tmp_path / "regen"
    subprocess.run(
        [sys.executable, str(SAMPLES / "craft.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    generated = sorted(p.name for p in out.iterdir())
    expected = sorted([entry["file"] for entry in ENTRIES] + ["manifest.json"])
    assert generated == expected
    checked_in = {p.name for p in SAMPLES.iterdir() if p.suffix != ".py"} - {"README.md", "__pycache__"}
    assert checked_in == set(expected), "stale or missing files in malicious_samples/"
    _, mismatch, errors = filecmp.cmpfiles(out, SAMPLES, generated, shallow=False)
    assert not mismatch and not errors, f"differs from checked-in: {mismatch + errors}"
    assert os.path.getsize(SAMPLES / "manifest.json") > 0
