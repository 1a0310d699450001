"""The joblib engine on CPython's C unpickler against the pure-Python reference engine.

``run_joblib`` builds a joblib stream on the C unpickler from a copy of the stream in which
each array's bytes are replaced by a placeholder that asks a persistent-id hook for the array
the walker located; ``run_joblib_py`` is joblib's own way (a pure-Python unpickler that cuts
arrays out of the buffer). Both must rebuild every zoo joblib file (a seventh of them,
all formats) with the original's outputs, and treat every malicious joblib sample alike.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import zoo

from safeload._analysis import analyse
from safeload._engine import run_joblib, run_joblib_py
from safeload._errors import SafeloadError
from safeload._policy import Policy

ROOT = Path(__file__).resolve().parents[1]
POLICY = Policy.default()
JOBLIB_CASES = [(name, fmt) for name, fmt in zoo.cases() if fmt.startswith("joblib")]


@pytest.mark.parametrize(("name", "fmt"), JOBLIB_CASES[::7])
def test_both_engines_build_the_same_model(zoo_store: zoo.Zoo, name: str, fmt: str) -> None:
    analysis = analyse(zoo_store.path(name, fmt).read_bytes(), POLICY)
    assert analysis.trace is not None
    entry = zoo_store.entries[name]
    for engine in (run_joblib, run_joblib_py):
        obj = engine(analysis.stream, analysis.trace, POLICY)
        assert zoo.type_name(obj) == entry.type_name
        zoo.assert_same_outputs(zoo.outputs(obj, entry.probe, entry.methods), entry.expected)


def _joblib_samples() -> list[str]:
    manifest = json.loads((ROOT / "malicious_samples" / "manifest.json").read_text(encoding="utf-8"))
    return [e["file"] for e in manifest if e["container"].startswith("joblib") and e["container"] != "joblib-zf"]


@pytest.mark.parametrize("file", _joblib_samples())
def test_both_engines_refuse_alike(file: str) -> None:
    """Samples the walker refuses never reach an engine; build both anyway from their traces and
    require the same outcome (an error of the same class, or the same object)."""
    data = (ROOT / "malicious_samples" / file).read_bytes()
    try:
        analysis = analyse(data, POLICY)
    except SafeloadError:
        return  # refused before a trace exists: no engine could run
    if analysis.trace is None or not analysis.trace.arrays:
        return

    def outcome(engine: Any) -> Any:
        try:
            return ("ok", pickle.dumps(engine(analysis.stream, analysis.trace, POLICY)))
        except Exception as exc:  # noqa: BLE001 - the class is what is compared
            return ("err", type(exc).__name__ if isinstance(exc, SafeloadError) else "other")

    c, py = outcome(run_joblib), outcome(run_joblib_py)
    assert c[0] == py[0], (file, c, py)
