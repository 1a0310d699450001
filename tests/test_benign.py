"""Benign models: safeload must load every zoo artifact, in every format, exactly.

Each case is (artifact, format); ids read ``test_load[LogisticRegression-pickle-p5]``.
Artifacts and formats come from ``zoo.cases()`` (see ``tests/zoo.py`` for what is built,
what is skipped and why).  The zoo is built once per session by the ``zoo_store`` fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zoo

import safeload

CASES = zoo.cases()
PICKLE_CASES = [(name, fmt) for name, fmt in CASES if fmt in zoo.PICKLE_FORMATS]
RAW_JOBLIB_CASES = [(name, fmt) for name, fmt in CASES if fmt == "joblib"]
#: A few structurally different artifacts, for the slower / rarer API paths.
REPRESENTATIVE = (
    "LogisticRegression",
    "x_column_transformer_df_pipeline",
    "x_sparse_csr_KNeighborsClassifier",
    "x_random_state_object_forest",
    "x_grid_search_pipeline",
    "x_bundle_dict",
)
FILE_OBJECT_CASES = [(name, fmt) for name, fmt in CASES if name in REPRESENTATIVE]


def _check(store: zoo.Zoo, name: str, obj: object) -> None:
    entry = store.entries[name]
    assert zoo.type_name(obj) == entry.type_name
    zoo.assert_same_outputs(zoo.outputs(obj, entry.probe, entry.methods), entry.expected)


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_load(zoo_store: zoo.Zoo, name: str, fmt: str) -> None:
    """``safeload.load(path)`` reproduces the original's outputs exactly."""
    obj = safeload.load(zoo_store.path(name, fmt))
    _check(zoo_store, name, obj)


@pytest.mark.parametrize(("name", "fmt"), PICKLE_CASES)
def test_loads(zoo_store: zoo.Zoo, name: str, fmt: str) -> None:
    """``safeload.loads(bytes)`` on plain pickles reproduces the outputs exactly."""
    obj = safeload.loads(zoo_store.path(name, fmt).read_bytes())
    _check(zoo_store, name, obj)


@pytest.mark.parametrize(("name", "fmt"), FILE_OBJECT_CASES)
def test_load_file_object(zoo_store: zoo.Zoo, name: str, fmt: str) -> None:
    """``safeload.load`` also takes an open binary file (and a str path)."""
    path = zoo_store.path(name, fmt)
    with open(path, "rb") as f:
        _check(zoo_store, name, safeload.load(f))
    _check(zoo_store, name, safeload.load(str(path)))


@pytest.mark.parametrize(("name", "fmt"), RAW_JOBLIB_CASES)
def test_load_joblib_mmap(zoo_store: zoo.Zoo, name: str, fmt: str) -> None:
    """Raw joblib files load with ``mmap_mode="r"`` and give the same outputs."""
    _check(zoo_store, name, safeload.load(zoo_store.path(name, fmt), mmap_mode="r"))


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_scan_safe(zoo_store: zoo.Zoo, name: str, fmt: str) -> None:
    """The static scan finds nothing to object to in a benign model."""
    report = safeload.scan(zoo_store.path(name, fmt))
    assert report.safe, report.findings


@pytest.mark.parametrize("name", zoo.artifact_names())
def test_zoo_reference_roundtrip(zoo_store: zoo.Zoo, name: str) -> None:
    """Plain ``pickle`` reproduces the expected outputs: a safeload failure is not the zoo's.

    (``python tests/zoo.py --check`` does the same for every format.)
    """
    _check(zoo_store, name, zoo.load_plain(zoo_store.path(name, "pickle-p5"), "pickle-p5"))


def test_zoo_covers_all_estimators() -> None:
    """Every estimator of ``all_estimators()`` is in the zoo or documented as skipped."""
    known = {name for name, _ in zoo.sklearn_estimators()}
    names = set(zoo.artifact_names())
    assert known - names - set(zoo.SKIPPED_ESTIMATORS) == set()
    assert set(zoo.SKIPPED_ESTIMATORS) <= known
    assert set(zoo.UNSUPPORTED_FORMATS) <= names


def test_zoo_built_every_case(zoo_store: zoo.Zoo) -> None:
    """The build wrote a file for every expected case (independent of safeload)."""
    missing = [(n, f, zoo_store.entries[n].errors.get(f)) for n, f in CASES if f not in zoo_store.entries[n].files]
    assert missing == []
    assert all(Path(zoo_store.path(n, f)).is_file() for n, f in CASES)
