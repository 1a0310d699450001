"""Files above 1 MiB are read into an anonymous mapping and large arrays become views of it."""

from __future__ import annotations

import mmap
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import safeload


@pytest.fixture(scope="module")
def big_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[object], np.ndarray, Path]:
    X, y = make_classification(6000, 20, flip_y=0.3, random_state=0)
    forest = RandomForestClassifier(20, random_state=0, n_jobs=2).fit(X, y)
    wide = LogisticRegression(max_iter=50).fit(X, y)
    wide.coef_ = np.random.RandomState(0).rand(1, 200_000)  # a 1.6 MB coef_: kept as a view of the buffer
    wide.n_features_in_ = 200_000
    return [forest, wide], X, tmp_path_factory.mktemp("big")


@pytest.mark.parametrize("fmt", ["joblib", "joblib-zlib", "pickle5", "pickle2"])
def test_large_files_load_identically(big_models: tuple[list[object], np.ndarray, Path], fmt: str) -> None:
    models, X, tmp = big_models
    for i, model in enumerate(models):
        path = tmp / f"m{i}.{fmt}"
        if fmt.startswith("joblib"):
            joblib.dump(model, path, compress=("zlib", 3) if fmt == "joblib-zlib" else 0)
        else:
            path.write_bytes(pickle.dumps(model, int(fmt[-1])))
        assert path.stat().st_size > 1 << 20 or fmt == "joblib-zlib"
        probe = X if i == 0 else np.random.RandomState(1).rand(5, 200_000)
        loaded = safeload.load(path)
        np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))  # type: ignore[attr-defined]
        assert safeload.scan(path).safe
        if i == 1:
            coef = loaded.coef_
            coef[0, 0] = 123.0  # joblib.load returns writable arrays; so must safeload
            assert coef[0, 0] == 123.0
        if fmt == "joblib":
            mapped = safeload.load(path, mmap_mode="r")
            np.testing.assert_array_equal(mapped.predict(probe), model.predict(probe))  # type: ignore[attr-defined]


def test_scan_digest_of_a_big_file_is_the_file_sha256(tmp_path: Path) -> None:
    """Above 4 MiB the digest is computed on another thread while the walker runs; only on request."""
    import hashlib

    from safeload import _scan

    model = LogisticRegression().fit(*make_classification(50, 5, random_state=0))
    model.coef_ = np.random.RandomState(3).rand(1, 700_000)  # 5.6 MB
    path = tmp_path / "wide.pkl"
    path.write_bytes(pickle.dumps(model, 5))
    assert path.stat().st_size >= _scan._THREADED_DIGEST_BYTES
    assert safeload.scan(path).sha256 == ""
    report = safeload.scan(path, digest=True)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(path.read_bytes()[:-1])  # no STOP: an error report still carries the digest
    report = safeload.scan(broken, digest=True)
    assert report.verdict == "error" and report.sha256 == hashlib.sha256(broken.read_bytes()).hexdigest()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork (POSIX)")
def test_arrays_viewing_the_buffer_are_private_to_the_process(tmp_path: Path) -> None:
    """Big arrays are views of the read buffer. Like joblib.load's arrays, they must not be shared with a
    forked worker: a child writing to the model must not change the parent's (a MAP_SHARED buffer would)."""
    import os

    model = LogisticRegression().fit(*make_classification(50, 5, random_state=0))
    model.coef_ = np.random.RandomState(4).rand(1, 300_000)  # 2.4 MB: read into an anonymous mapping
    path = tmp_path / "wide.joblib"
    joblib.dump(model, path)  # raw joblib: the array is cut out of the buffer, not copied
    loaded = safeload.load(path)
    coef = loaded.coef_
    assert isinstance(_root_base(coef), mmap.mmap)  # else this test proves nothing
    before = float(coef[0, 7])
    pid = os.fork()
    if pid == 0:  # the child writes, then leaves without running any cleanup
        coef[0, 7] = -1.0
        os._exit(0 if coef[0, 7] == -1.0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert coef[0, 7] == before


def _root_base(array: np.ndarray) -> object:
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base
