"""The plain-pickle reading of a joblib file (``_analysis._plain_reads_on``): walked only when the
byte after the first array's BUILD is an opcode, which must never change what is found."""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path

import joblib
import numpy as np
import pytest

from safeload import _analysis
from safeload._analysis import OPCODE_BYTES, analyse
from safeload._policy import Policy

POLICY = Policy.default()
SAMPLES = Path(__file__).resolve().parent.parent / "malicious_samples"


def test_opcode_bytes_are_pickletools_opcodes() -> None:
    assert set(OPCODE_BYTES) == {ord(op.code) for op in pickletools.opcodes}


@pytest.mark.parametrize("unpickler", ["c", "python"])
def test_every_other_byte_stops_the_unpicklers_at_once(unpickler: str) -> None:
    """What ``pickle.load`` does on the byte after the first array: a non-opcode ends it there."""
    for b in range(256):
        stream = b"\x80\x04N" + bytes([b]) + b"N."
        try:
            if unpickler == "c":
                pickle.loads(stream)
            else:
                pickle._Unpickler(io.BytesIO(stream)).load()  # type: ignore[attr-defined]
            invalid = False
        except pickle.UnpicklingError as exc:  # the C unpickler
            invalid = "invalid load key" in str(exc)
        except KeyError as exc:  # the pure-Python one (and joblib's): its dispatch table has no entry
            invalid = exc.args == (b,)
        except Exception:  # noqa: BLE001 - an opcode that failed on its arguments: read as an opcode
            invalid = False
        assert invalid == (b not in OPCODE_BYTES), (b, unpickler)


def _files(tmp_path: Path) -> list[bytes]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 4))
    y = np.arange(60) % 3
    out = []
    for model in (LogisticRegression().fit(X, y), RandomForestClassifier(3, max_depth=3, random_state=0).fit(X, y)):
        path = tmp_path / "m.joblib"
        joblib.dump(model, path)
        out.append(path.read_bytes())
    objects = LogisticRegression().fit(X, np.array(["a", "b", "c"], dtype=object)[y])  # classes_: an object array
    joblib.dump(objects, tmp_path / "o.joblib")
    out.append((tmp_path / "o.joblib").read_bytes())
    return out


def _issues(data: bytes, forced: bool, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str]]:
    with monkeypatch.context() as m:
        if forced:
            m.setattr(_analysis, "_plain_reads_on", lambda data, trace: True)
        try:
            found = analyse(data, POLICY)
        except Exception as exc:  # noqa: BLE001 - the same exception either way
            return [("raised", 0, f"{type(exc).__name__}: {exc}")]
        return sorted((i.rule, i.offset, i.message) for i in found.issues())


def test_real_joblib_files_skip_the_second_walk_and_lose_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    walks = []
    real_walk = _analysis.walk

    def counting(*args: object, **kwargs: object) -> object:
        walks.append(kwargs.get("joblib"))
        return real_walk(*args, **kwargs)  # type: ignore[arg-type]

    numeric, forest, objects = _files(tmp_path)
    monkeypatch.setattr(_analysis, "walk", counting)
    for data, plain_walks in ((numeric, 0), (forest, 0), (objects, 1)):
        walks.clear()
        assert analyse(data, POLICY).issues() == []
        assert walks.count(False) == plain_walks  # an object array is a nested pickle: PROTO, an opcode


def test_every_byte_after_the_first_array_gives_what_the_second_walk_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exhaustive over the one byte the decision reads: the issues found with the shortcut equal
    those of always walking the file as plain pickle reads it."""
    for data in _files(tmp_path)[:2]:
        first = min(s.build_offset for s in analyse(data, POLICY).trace.arrays) + 1  # type: ignore[union-attr]
        for b in range(256):
            mutated = data[:first] + bytes([b]) + data[first + 1:]
            assert _issues(mutated, False, monkeypatch) == _issues(mutated, True, monkeypatch), b


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.joblib")))
def test_joblib_samples_find_the_same_with_and_without_the_shortcut(sample: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = (SAMPLES / sample).read_bytes()
    assert _issues(data, False, monkeypatch) == _issues(data, True, monkeypatch)
