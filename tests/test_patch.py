"""``safeload.patched()`` / ``install()``: existing pickle/joblib code goes through safeload.

Checks routing (pickle.load/loads/Unpickler, joblib.load), refusal of malicious
files without running them, restoration (normal exit, exceptions, nesting,
threads), policy selection, and that Python's own pickle users --
multiprocessing, concurrent.futures, joblib.Parallel (loky), copy.deepcopy --
keep working inside the block.
"""

from __future__ import annotations

import collections
import copy
import fractions
import io
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import joblib.numpy_pickle
import numpy as np
import pytest
from _canary import SAMPLES, load_manifest, prepare

import safeload
from safeload import _patch
from safeload._patch import SafeUnpickler, install, is_installed, patched, uninstall
from safeload._policy import Policy

FRACTION = pickle.dumps(fractions.Fraction(1, 3), protocol=2)
EVIL_PICKLE = SAMPLES / "s1_builtins_exec.pkl"
ENTRIES = load_manifest()
JOBLIB_EVIL = [e for e in ENTRIES if e["loader"] == "joblib" and not e["isolate"]]


def originals() -> tuple[Any, ...]:
    return (pickle.load, pickle.loads, pickle.Unpickler, joblib.load, joblib.numpy_pickle.load)


ORIGINALS = originals()


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    assert not is_installed()
    yield
    while _patch._installs:  # a failing test must not leave the process patched
        uninstall()
    assert not is_installed()
    assert originals() == ORIGINALS


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    from sklearn.linear_model import LogisticRegression

    x = np.random.RandomState(0).normal(size=(30, 3))
    return pickle.dumps(LogisticRegression().fit(x, x[:, 0] > 0))


@pytest.fixture
def model_joblib(tmp_path: Path, model_bytes: bytes) -> Path:
    path = tmp_path / "model.joblib"
    joblib.dump(pickle.loads(model_bytes), path, compress=3)
    return path


# -- routing -----------------------------------------------------------------------------------


def test_routes_and_restores(model_bytes: bytes, model_joblib: Path, tmp_path: Path) -> None:
    with patched():
        assert is_installed()
        assert pickle.load is _patch._pickle_load and pickle.loads is _patch._pickle_loads
        assert pickle.Unpickler is SafeUnpickler
        assert joblib.load is _patch._joblib_load and joblib.numpy_pickle.load is _patch._joblib_load
        assert type(pickle.loads(model_bytes)).__name__ == "LogisticRegression"
        assert type(pickle.load(io.BytesIO(model_bytes))).__name__ == "LogisticRegression"
        assert type(pickle.Unpickler(io.BytesIO(model_bytes)).load()).__name__ == "LogisticRegression"
        assert type(joblib.load(model_joblib)).__name__ == "LogisticRegression"
        with open(model_joblib, "rb") as fh:
            assert type(joblib.load(fh)).__name__ == "LogisticRegression"
        raw = tmp_path / "raw.joblib"
        joblib.dump(np.arange(10.0), raw)
        mapped = joblib.load(raw, mmap_mode="r")
        assert isinstance(mapped, np.memmap) and mapped[3] == 3.0
    assert originals() == ORIGINALS


def test_refuses_fraction_unless_allowed() -> None:
    with patched():
        with pytest.raises(safeload.UnsafeModelError, match="fractions.Fraction"):
            pickle.loads(FRACTION)
        with pytest.raises(pickle.UnpicklingError):  # existing handlers keep working
            pickle.loads(FRACTION)
    with patched(allow=["fractions.Fraction"]):
        assert pickle.loads(FRACTION) == fractions.Fraction(1, 3)
    with patched(policy=Policy.default().extended(["fractions.Fraction"])):
        assert pickle.load(io.BytesIO(FRACTION)) == fractions.Fraction(1, 3)


@pytest.mark.parametrize("entry", JOBLIB_EVIL, ids=[e["technique"] for e in JOBLIB_EVIL])
def test_joblib_load_of_malicious_joblib(entry: dict[str, Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ws = prepare(entry, tmp_path)
    monkeypatch.setenv("SAFELOAD_CANARY", str(ws.canary))
    monkeypatch.chdir(ws.cwd)
    with patched(), pytest.raises(safeload.SafeloadError):
        joblib.load(ws.sample, **entry["load_kwargs"])
    if entry["effect"]["kind"] in ("canary", "write"):
        assert not ws.effect_happened(entry, wait=False)


@pytest.mark.parametrize("how", ["joblib.load", "pickle.load", "pickle.loads", "Unpickler", "pipe"])
def test_malicious_pickle_refused_every_way(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv("SAFELOAD_CANARY", str(canary))
    data = EVIL_PICKLE.read_bytes()
    with patched(), pytest.raises(safeload.UnsafeModelError, match="builtins.exec"):
        if how == "joblib.load":
            joblib.load(EVIL_PICKLE)
        elif how == "pickle.load":
            with open(EVIL_PICKLE, "rb") as fh:
                pickle.load(fh)
        elif how == "pickle.loads":
            pickle.loads(data)
        elif how == "Unpickler":
            pickle.Unpickler(io.BytesIO(data)).load()
        else:
            read, write = os.pipe()
            os.write(write, data)
            os.close(write)
            with os.fdopen(read, "rb", buffering=0) as fh:
                pickle.load(fh)
    assert not canary.exists()


def test_stream_of_pickles(model_bytes: bytes) -> None:
    """pickle.load on a seekable stream reads one pickle at a time, then EOFError, like pickle."""
    stream = io.BytesIO(pickle.dumps([1, 2]) + model_bytes + pickle.dumps({"a": 1}))
    with patched():
        items = []
        while True:
            try:
                items.append(pickle.load(stream))
            except EOFError:
                break
    assert items[0] == [1, 2] and items[2] == {"a": 1} and type(items[1]).__name__ == "LogisticRegression"
    bad = io.BytesIO(pickle.dumps([1]) + EVIL_PICKLE.read_bytes())
    with patched():
        assert pickle.load(bad) == [1]
        with pytest.raises(safeload.UnsafeModelError):
            pickle.load(bad)  # the second pickle is judged on its own
        with pytest.raises(EOFError):
            pickle.loads(b"")
        with pytest.raises(safeload.UnsafeModelError):
            pickle.loads(pickle.dumps(1) + pickle.dumps(2))  # bytes after the pickle are refused


def test_non_seekable_stream_reads_one_pickle(model_bytes: bytes) -> None:
    read, write = os.pipe()
    os.write(write, model_bytes + pickle.dumps("next"))
    os.close(write)
    with patched(), os.fdopen(read, "rb") as fh:
        assert type(pickle.load(fh)).__name__ == "LogisticRegression"
        assert pickle.load(fh) == "next"


def test_unpickler_subclasses(model_bytes: bytes) -> None:
    with patched():
        class Renaming(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if module == "oldpkg":
                    module = "collections"
                return super().find_class(module, name)

        renamed = pickle.dumps(collections.OrderedDict(a=1), protocol=0).replace(b"collections\n", b"oldpkg\n")
        assert Renaming(io.BytesIO(renamed)).load() == collections.OrderedDict(a=1)

        class Sneaky(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                return eval

        with pytest.raises(safeload.UnsafeModelError, match="builtins.eval"):
            Sneaky(io.BytesIO(model_bytes)).load()

        class Persistent(pickle.Unpickler):
            def persistent_load(self, pid: Any) -> Any:
                return ("persistent", pid)

        assert Persistent(io.BytesIO(pickle.dumps([1]))).load() == [1]
        with pytest.raises(safeload.UnsafeModelError):
            Persistent(io.BytesIO(FRACTION)).load()


def test_exception_inside_block_restores() -> None:
    with pytest.raises(ZeroDivisionError), patched():
        assert is_installed()
        1 / 0  # noqa: B018
    assert originals() == ORIGINALS


def test_nesting_and_policy_stack() -> None:
    with patched():
        with patched(allow=["fractions.Fraction"]):
            assert pickle.loads(FRACTION) == fractions.Fraction(1, 3)
            with patched():
                assert pickle.loads is _patch._pickle_loads
                with pytest.raises(safeload.UnsafeModelError):
                    pickle.loads(FRACTION)  # the innermost block's policy applies
            assert pickle.loads(FRACTION) == fractions.Fraction(1, 3)
        assert pickle.loads is _patch._pickle_loads
        with pytest.raises(safeload.UnsafeModelError):
            pickle.loads(FRACTION)
    assert originals() == ORIGINALS


def test_install_uninstall_counting() -> None:
    install()
    install(allow=["fractions.Fraction"])
    assert pickle.loads(FRACTION) == fractions.Fraction(1, 3)
    uninstall()
    assert is_installed()
    with pytest.raises(safeload.UnsafeModelError):
        pickle.loads(FRACTION)
    with patched():
        uninstall()
        assert is_installed()  # the open block keeps the patch
    assert not is_installed()
    with pytest.raises(RuntimeError):
        uninstall()


def test_bad_arguments_fail_at_entry() -> None:
    with pytest.raises(ValueError), patched(allow=["not a name*"]):
        pass
    with pytest.raises(TypeError), patched(allow="fractions.Fraction"):
        pass
    assert originals() == ORIGINALS


def test_decorator_form() -> None:
    @patched(allow=["fractions.Fraction"])
    def read() -> Any:
        return pickle.loads(FRACTION)

    assert read() == fractions.Fraction(1, 3)
    assert read() == fractions.Fraction(1, 3)
    assert originals() == ORIGINALS


def test_references_captured_before_and_inside() -> None:
    """A reference taken before install stays the original; one taken inside stays safe."""
    before = pickle.loads
    with patched():
        inside = pickle.loads
        assert before(pickle.dumps(fractions.Fraction(1, 2))) == fractions.Fraction(1, 2)  # not covered
    with pytest.raises(safeload.UnsafeModelError):
        inside(FRACTION)


# -- threads ------------------------------------------------------------------------------------


def test_threads_enter_and_leave_concurrently(model_bytes: bytes) -> None:
    barrier = threading.Barrier(8)

    def work(i: int) -> str:
        barrier.wait()
        allow = ["fractions.Fraction"] if i % 2 else []
        for _ in range(20):
            with patched(allow=allow):
                assert pickle.loads is _patch._pickle_loads
                obj = pickle.loads(model_bytes)
                if i % 2:
                    assert pickle.loads(FRACTION) == fractions.Fraction(1, 3)
                else:
                    with pytest.raises(safeload.UnsafeModelError):
                        pickle.loads(FRACTION)
        return type(obj).__name__

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(8))) == ["LogisticRegression"] * 8
    assert originals() == ORIGINALS


def test_workers_started_inside_a_block_use_its_policy(model_joblib: Path) -> None:
    with patched(allow=["fractions.Fraction"]), ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: pickle.loads(FRACTION), range(8)))
        models = list(pool.map(joblib.load, [model_joblib] * 4))
    assert results == [fractions.Fraction(1, 3)] * 8
    assert {type(m).__name__ for m in models} == {"LogisticRegression"}


def test_workers_get_the_intersection_of_differing_blocks() -> None:
    inside = threading.Event()
    done = threading.Event()

    def other_block() -> None:
        with patched(allow=["decimal.Decimal"]):
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=other_block)
    thread.start()
    try:
        assert inside.wait(10)
        with patched(allow=["fractions.Fraction"]):
            assert pickle.loads(FRACTION) == fractions.Fraction(1, 3)  # own block: own policy
            with ThreadPoolExecutor(1) as pool:  # no block of its own: only what both allow
                with pytest.raises(safeload.UnsafeModelError):
                    pool.submit(pickle.loads, FRACTION).result()
    finally:
        done.set()
        thread.join()


# -- Python's own pickle users keep working ----------------------------------------------------


def _square(x: int) -> int:
    return x * x


def _array(n: int) -> np.ndarray[Any, Any]:
    return np.arange(n, dtype=np.float64)


class Point:
    """A class no policy allows: multiprocessing must still move it between processes."""

    def __init__(self, x: int) -> None:
        self.x = x


def _point(x: int) -> Point:
    return Point(x)


def test_copy_deepcopy_inside() -> None:
    value: dict[str, Any] = {"a": [1, np.arange(3)], "p": Point(2), "f": fractions.Fraction(1, 7)}
    with patched():
        clone = copy.deepcopy(value)
    assert clone["p"].x == 2 and clone["f"] == fractions.Fraction(1, 7)
    np.testing.assert_array_equal(clone["a"][1], np.arange(3))


@pytest.mark.timeout(120)
def test_joblib_parallel_inside() -> None:
    with patched():
        squares = joblib.Parallel(n_jobs=2)(joblib.delayed(_square)(i) for i in range(10))
        points = joblib.Parallel(n_jobs=2)(joblib.delayed(_point)(i) for i in range(4))
        # Large arrays go through joblib's memmapping reducer in both directions.
        big = joblib.Parallel(n_jobs=2, max_nbytes="1K")(
            joblib.delayed(np.sum)(np.full(20_000, float(i))) for i in range(4))
        arrays = joblib.Parallel(n_jobs=2)(joblib.delayed(_array)(300_000) for _ in range(2))
        threads = joblib.Parallel(n_jobs=2, prefer="threads")(
            joblib.delayed(pickle.loads)(pickle.dumps(i)) for i in range(4))
    assert squares == [i * i for i in range(10)]
    assert [p.x for p in points] == [0, 1, 2, 3]
    assert big == [20_000.0 * i for i in range(4)]
    assert all(a.sum() == 300_000 * 299_999 / 2 for a in arrays)
    assert threads == [0, 1, 2, 3]


@pytest.mark.timeout(120)
def test_process_pools_inside() -> None:
    import multiprocessing

    with patched():
        with ProcessPoolExecutor(2) as pool:
            assert list(pool.map(_square, range(6))) == [i * i for i in range(6)]
            assert [p.x for p in pool.map(_point, range(3))] == [0, 1, 2]
        with multiprocessing.get_context("fork").Pool(2) as mp_pool:
            assert mp_pool.map(_square, range(6)) == [i * i for i in range(6)]


_FRESH = textwrap.dedent("""
    # install() before multiprocessing / joblib were ever imported: their captured
    # references to pickle.loads must still be the real one.
    import sys
    import safeload._patch as p
    assert "multiprocessing.reduction" not in sys.modules
    p.install()
    import multiprocessing, joblib
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.reduction import ForkingPickler
    import pickle
    assert ForkingPickler.loads is not pickle.loads
    class Point:
        def __init__(self, x): self.x = x
    def make(x): return Point(x)
    if __name__ == "__main__":
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            assert [q.x for q in pool.map(make, range(3))] == [0, 1, 2]
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(4))
        assert out == [0, 1, 2, 3], out
        try:
            pickle.loads(pickle.dumps(Point(1)))
        except pickle.UnpicklingError:
            print("OK")
""")


@pytest.mark.timeout(120)
def test_install_before_multiprocessing_is_imported(tmp_path: Path) -> None:
    script = tmp_path / "fresh.py"
    script.write_text(_FRESH)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=110,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


def test_public_exports() -> None:
    """The lead exports these from safeload/__init__.py (see docs/migration.md)."""
    assert safeload.patched is patched  # type: ignore[attr-defined]
    assert safeload.install is install  # type: ignore[attr-defined]
    assert safeload.uninstall is uninstall  # type: ignore[attr-defined]
    from safeload._convert import convert

    assert safeload.convert is convert  # type: ignore[attr-defined]
