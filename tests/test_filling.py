"""Background reads: the walker may only look at bytes it waited for.

Files of 4 MiB and more are judged while they are still being read (safeload/_filling.py).
If the walker ever touched a byte past what it had asked for, it would judge bytes that
are not the file's. The lockstep double below hands out exactly what is asked (plus a
random little more) and fills everything past that with random garbage, so any such read
changes the walk; every walk must equal the walk of the complete file.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import zoo
from _oracle import MATCHERS
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import CountVectorizer

import safeload
from safeload import _walker
from safeload._analysis import analyse
from safeload._containers import Format, sniff
from safeload._errors import MalformedModelError
from safeload._filling import Filling
from safeload._load import effective_policy
from safeload._walker import Trace, walk

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "malicious_samples"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text())
POLICY = effective_policy(None, ())


class Lockstep:
    """A Filling double: bytes arrive only when asked for; the rest of the buffer is garbage."""

    #: Garbage that reads as plausible opcodes: vocabulary entries (SHORT_BINUNICODE, MEMOIZE,
    #: BININT1), so a run matched past the boundary grows instead of stopping.
    ENTRIES = b"\x8c\x01a\x94K\x01"

    def __init__(self, real: bytes, seed: int) -> None:
        self.real = real
        self.size = len(real)
        self.avail = 0
        self.rng = random.Random(seed)
        if seed % 3 == 0:
            garbage = self.rng.randbytes(self.size)
        elif seed % 3 == 1:
            garbage = (self.ENTRIES * (self.size // len(self.ENTRIES) + 1))[:self.size]
        else:
            garbage = bytes(self.size)
        self.buf = bytearray(garbage)

    def wait(self, end: int) -> int:
        end = min(end, self.size)
        if end > self.avail:
            new = min(self.size, end + self.rng.choice((0, 0, 0, 1, 3, 64)))
            self.buf[self.avail:new] = self.real[self.avail:new]
            self.avail = new
        return self.avail

    def finish(self) -> None:
        self.wait(self.size)


def _summary(trace: Trace) -> Any:
    def one(t: Trace) -> Any:
        return (
            [(i.rule, i.severity, i.offset, i.message, i.names) for i in t.issues],
            [(g.name, g.offset, g.allowed) for g in t.globals],
            [(a.build_offset, a.data_offset, a.nbytes, str(a.dtype), a.shape,
              one(a.nested) if a.nested is not None else None) for a in t.arrays],
            t.end, t.opcodes, t.protocol,
        )
    return one(trace)


def _assert_same_walks(real: bytes, label: str) -> None:
    for joblib_mode in (True, False):
        expected = _summary(walk(real, POLICY, joblib=joblib_mode))
        for seed in range(3):
            double = Lockstep(real, seed)
            got = _summary(walk(double.buf, POLICY, joblib=joblib_mode, filling=double))  # type: ignore[arg-type]
            assert got == expected, f"{label} (joblib={joblib_mode}, seed {seed}): the walk read unasked-for bytes"


def _walked(data: bytes) -> bool:
    try:
        return sniff(data) is Format.PICKLE
    except safeload.SafeloadError:
        return False


# Compressed, zip and npy inputs are read completely before anything looks at them.
WALKED = [e for e in MANIFEST if _walked((SAMPLES / e["file"]).read_bytes())]

# The vocabulary runs are delimited in C when safeload._speedups is built, by regular expressions
# otherwise: both must stop at the bytes that have arrived.
RUN_MODES = {name: matchers for name, matchers in MATCHERS.items() if name != "none"}


def _use_run_mode(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    RUN_MODES[mode].install(monkeypatch.setattr)


@pytest.mark.parametrize("entry", WALKED, ids=[e["technique"] for e in WALKED])
def test_malicious_walks_are_the_same_while_the_file_arrives(entry: dict[str, Any]) -> None:
    _assert_same_walks((SAMPLES / entry["file"]).read_bytes(), entry["file"])


def test_fuzz_reproducers_walk_the_same_while_the_file_arrives() -> None:
    files = sorted((ROOT / "fuzz" / "crashes").rglob("*.bin"))
    assert files
    for path in files:
        real = path.read_bytes()
        if _walked(real):
            _assert_same_walks(real, str(path.relative_to(ROOT)))


@pytest.mark.parametrize("fmt", sorted({fmt for _, fmt in zoo.cases()
                                        if fmt in zoo.PICKLE_FORMATS or fmt == "joblib"}))
def test_zoo_walks_are_the_same_while_the_file_arrives(zoo_store: zoo.Zoo, fmt: str) -> None:
    names = [name for name, f in zoo.cases() if f == fmt]
    assert names
    for name in names:
        _assert_same_walks(zoo_store.path(name, fmt).read_bytes(), f"{name}.{fmt}")


@pytest.mark.parametrize("run_mode", sorted(RUN_MODES))
def test_text_protocol_lines_and_big_arguments_wait_for_their_bytes(
        run_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Protocol 0 lines (GLOBAL, INT, STRING...) and long BINBYTES/BINUNICODE cross many refills."""
    _use_run_mode(monkeypatch, run_mode)
    X, y = make_classification(300, 5, random_state=0)
    forest = RandomForestClassifier(3, random_state=0).fit(X, y)
    vec = CountVectorizer().fit(["alpha beta", "gamma delta epsilon"])
    vec.vocabulary_ = {f"w{i}": i for i in range(30_000)}
    blob = {"text": "é" * 200_000, "bytes": os.urandom(300_000), "line": "x" * 100_000}
    for proto in (0, 1, 2, 4, 5):
        for obj in (forest, vec, blob):
            _assert_same_walks(pickle.dumps(obj, proto), f"{type(obj).__name__} protocol {proto}")
    # One unbatched, unframed run of 60,000 vocabulary entries (~500 KB): longer than the walker's
    # read-ahead margin, so the run matcher itself must stop at the bytes that have arrived.
    entries = b"".join(b"\x8c" + bytes([len(w)]) + w + b"\x94K" + bytes([i % 100])
                       for i, w in enumerate(f"w{i:06d}".encode() for i in range(60_000)))
    _assert_same_walks(b"\x80\x04}\x94(" + entries + b"u.", "one long run")


class Aligned(Lockstep):
    """Bytes arrive in whole vocabulary entries, and what has not arrived yet reads as more entries:
    a run matcher that looks one byte past what arrived grows the run, and the walk changes."""

    def __init__(self, real: bytes, first: int, width: int) -> None:
        super().__init__(real, 1)
        self.first, self.width = first, width

    def wait(self, end: int) -> int:
        end = min(end, self.size)
        if end > self.avail:
            over = (end - self.first) % self.width
            new = min(self.size, end + (self.width - over if over else 0))
            self.buf[self.avail:new] = self.real[self.avail:new]
            self.avail = new
            self.buf[new:] = self.filler(new)[:self.size - new]
        return self.avail

    def filler(self, new: int) -> bytes:
        """What the buffer reads as from ``new`` on: more entries."""
        return self.ENTRIES * ((self.size - new) // len(self.ENTRIES) + 1)


@pytest.mark.parametrize("run_mode", sorted(RUN_MODES))
def test_a_run_stops_at_the_bytes_that_have_arrived(run_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_run_mode(monkeypatch, run_mode)
    entries = b"".join(b"\x8c\x07" + f"w{i:06d}".encode() + b"\x94K" + bytes([i % 100]) for i in range(60_000))
    real = b"\x80\x04}\x94(" + entries + b"u."
    expected = _summary(walk(real, POLICY))
    double = Aligned(real, first=5, width=12)
    assert _summary(walk(double.buf, POLICY, filling=double)) == expected  # type: ignore[arg-type]


class AlignedPut(Aligned):
    """The protocol 2 form: what has not arrived reads as more entries, PUT indices continuing the run's,
    but one byte wider than the real ones (a matcher that reads ahead ends off the real entries)."""

    def filler(self, new: int) -> bytes:
        index = 1 + max(0, new - self.first) // self.width
        out = bytearray()
        while len(out) < self.size - new:
            out += _put_entry(b"f" * 8, index)
            index += 1
        return bytes(out)


def _put_entry(word: bytes, index: int) -> bytes:
    return b"X" + len(word).to_bytes(4, "little") + word + b"r" + index.to_bytes(4, "little") + b"K\x05"


@pytest.mark.parametrize("run_mode", sorted(RUN_MODES))
def test_a_put_run_stops_at_the_bytes_that_have_arrived(run_mode: str, monkeypatch: pytest.MonkeyPatch,
                                                        matcher_counts: Callable[[str], list[int]]) -> None:
    _use_run_mode(monkeypatch, run_mode)
    taken = matcher_counts("_match_put_run")
    entries = b"".join(_put_entry(f"w{i:06d}".encode(), i + 1) for i in range(60_000))
    real = b"\x80\x02}q\x00(" + entries + b"u."
    assert pickle.loads(real) == {f"w{i:06d}": 5 for i in range(60_000)}
    expected = _summary(walk(real, POLICY))
    assert sum(taken) == 60_000  # in one run or a few
    double = AlignedPut(real, first=6, width=19)
    taken.clear()
    assert _summary(walk(double.buf, POLICY, filling=double)) == expected  # type: ignore[arg-type]
    assert sum(taken) > 30_000  # the runs were taken while the file arrived, not only op by op


def test_analysis_matches_on_a_joblib_file_with_object_arrays(tmp_path: Path) -> None:
    X, y = make_classification(200, 4, random_state=0)
    model = RandomForestClassifier(2, random_state=0).fit(X, y)
    model.classes_ = np.array(["no", "yes"], dtype=object)  # an object array: a nested pickle
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    real = path.read_bytes()
    expected = analyse(real, POLICY)
    double = Lockstep(real, 7)
    got = analyse(double.buf, POLICY, double)  # type: ignore[arg-type]
    assert got.trace is not None and expected.trace is not None
    assert _summary(got.trace) == _summary(expected.trace)
    assert got.plain_view is not None and expected.plain_view is not None
    assert _summary(got.plain_view) == _summary(expected.plain_view)


# -- the real background reader -------------------------------------------------------------

def _big_model() -> tuple[Any, np.ndarray]:
    """A fitted model of ~5 MB (a wide coef_), above the background-read threshold."""
    from sklearn.linear_model import LogisticRegression

    width = 650_000
    model = LogisticRegression().fit(*make_classification(50, 5, random_state=0))
    model.coef_ = np.random.RandomState(0).rand(1, width)
    model.n_features_in_ = width
    return model, np.random.RandomState(1).rand(3, width)


def _filling(path: Path, claimed: int, buf: bytearray | None = None) -> Filling:
    return Filling(os.open(path, os.O_RDONLY), buf if buf is not None else bytearray(claimed), claimed, str(path))


def test_filling_reads_the_file_exactly(tmp_path: Path) -> None:
    data = os.urandom((3 << 20) + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    buf = bytearray(len(data))
    filling = _filling(path, len(data), buf)
    assert filling.wait(10) >= 10
    filling.finish()
    assert filling.avail == len(data)
    assert buf == data


def test_cancel_stops_the_read_and_later_waits_fail(tmp_path: Path) -> None:
    path = tmp_path / "c.bin"
    path.write_bytes(os.urandom(8 << 20))
    filling = _filling(path, 8 << 20)
    filling.cancel()
    with pytest.raises(MalformedModelError):
        filling.finish()


def test_filling_notices_a_file_that_shrank(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(os.urandom(2 << 20))
    filling = _filling(path, (2 << 20) + 5)  # fstat said 5 more bytes than the read finds
    with pytest.raises(MalformedModelError, match="changed size"):
        filling.wait((2 << 20) + 5)
    with pytest.raises(MalformedModelError, match="changed size"):
        filling.finish()


def test_filling_notices_a_file_that_grew(tmp_path: Path) -> None:
    path = tmp_path / "long.bin"
    path.write_bytes(os.urandom(2 << 20))
    filling = _filling(path, (2 << 20) - 1)
    assert filling.wait((2 << 20) - 1) == (2 << 20) - 1  # every claimed byte is there...
    with pytest.raises(MalformedModelError, match="changed size"):
        filling.finish()  # ...but the file is longer than when it was measured


def test_load_and_scan_of_a_big_file_that_changes_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that grows after fstat: load refuses it, scan reports an error, neither says safe."""
    from safeload import _containers

    model, _ = _big_model()
    path = tmp_path / "grows.joblib"
    joblib.dump(model, path)
    assert path.stat().st_size >= _containers._BACKGROUND_READ_BYTES
    real_fstat = os.fstat

    def short_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                               st.st_size - 1, st.st_atime, st.st_mtime, st.st_ctime))

    monkeypatch.setattr(_containers, "_usable_cores", lambda: 2)
    monkeypatch.setattr(_containers.os, "fstat", short_fstat)
    with pytest.raises(safeload.SafeloadError):
        safeload.load(path)
    report = safeload.scan(path)
    assert report.verdict == "error", report


def test_big_file_load_and_scan_use_the_background_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload import _containers

    started: list[int] = []
    real_init = Filling.__init__

    def spy(self: Filling, fd: int, buf: Any, size: int, path: str) -> None:
        started.append(size)
        real_init(self, fd, buf, size, path)

    monkeypatch.setattr(_containers, "_usable_cores", lambda: 2)
    monkeypatch.setattr(Filling, "__init__", spy)
    model, X = _big_model()
    path = tmp_path / "big.joblib"
    joblib.dump(model, path)
    loaded = safeload.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    report = safeload.scan(path, digest=True)
    assert report.safe
    import hashlib

    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert started == [path.stat().st_size] * 2


@pytest.mark.parametrize("run_mode", sorted(RUN_MODES))
def test_mutated_files_walk_the_same_while_they_arrive(
        zoo_store: zoo.Zoo, run_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken input exercises the truncation and length paths: the walks must still be identical."""
    _use_run_mode(monkeypatch, run_mode)
    rng = random.Random(11)
    sources = [zoo_store.path(name, fmt).read_bytes() for name, fmt in zoo.cases()
               if fmt in ("joblib", "pickle-p0", "pickle-p2", "pickle-p5") and name in (
                   "LogisticRegression", "x_random_state_object_forest", "x_column_transformer_df_pipeline",
                   "CountVectorizer", "HistGradientBoostingClassifier", "KNeighborsClassifier")]
    assert len(sources) >= 12
    for k in range(250):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            how = rng.randrange(4)
            at = rng.randrange(len(data))
            if how == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif how == 1:
                del data[at:]
                data += b"." if rng.random() < 0.5 else b""
            elif how == 2:
                data[at:at] = bytes([rng.choice((0x58, 0x42, 0x8D, 0x8E, 0x96, 0x95, 0x49, 0x63, 0x8C))]) + \
                    rng.randbytes(rng.randrange(1, 9))
            else:
                data[at:at + 4] = rng.randbytes(4)
        if data and _walked(bytes(data)):
            _assert_same_walks(bytes(data), f"mutant {k}")


# -- the compiled reader (_speedups.fill) ------------------------------------------------------

def test_background_reads_use_the_compiled_reader() -> None:
    """CI builds _speedups: if fill() were missing, big files would silently be read before the walk."""
    from safeload import _filling, _speedups

    assert hasattr(_speedups, "fill") and _filling.available()


def _fill_args(path: Path, size: int) -> tuple[int, bytearray, Any]:
    import array

    return os.open(path, os.O_RDONLY), bytearray(size), array.array("q", [0, 0])


def test_fill_reads_exactly_and_publishes_its_progress(tmp_path: Path) -> None:
    from safeload import _speedups

    data = os.urandom((1 << 20) * 3 + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd, buf, state = _fill_args(path, len(data) + 10)
    try:
        assert _speedups.fill(fd, buf, len(data) + 10, 4096, state) == (len(data), 0)  # the file ended early
    finally:
        os.close(fd)
    assert bytes(buf[:len(data)]) == data and buf[len(data):] == bytes(10)
    assert _speedups.progress(state) == state[0] == len(data)


def test_fill_stops_when_cancelled_and_reports_errors(tmp_path: Path) -> None:
    from safeload import _speedups

    path = tmp_path / "g.bin"
    path.write_bytes(b"x" * 100)
    fd, buf, state = _fill_args(path, 100)
    state[1] = 1
    try:
        assert _speedups.fill(fd, buf, 100, 10, state) == (0, 0)
    finally:
        os.close(fd)
    assert buf == bytes(100) and state[0] == 0
    state[1] = 0
    import errno

    assert _speedups.fill(fd, buf, 100, 10, state) == (0, errno.EBADF)  # fd is closed now


@pytest.mark.parametrize("case", ["size past the buffer", "negative size", "chunk 0", "short progress",
                                  "read-only buffer", "misaligned progress"])
def test_fill_refuses_arguments_that_would_write_out_of_bounds(tmp_path: Path, case: str) -> None:
    import array

    from safeload import _speedups

    path = tmp_path / "h.bin"
    path.write_bytes(b"y" * 64)
    fd = os.open(path, os.O_RDONLY)
    buf: Any = bytearray(64)
    state: Any = array.array("q", [0, 0])
    size, chunk = 64, 16
    if case == "size past the buffer":
        size = 65
    elif case == "negative size":
        size = -1
    elif case == "chunk 0":
        chunk = 0
    elif case == "short progress":
        state = array.array("q", [0])
    elif case == "read-only buffer":
        buf = bytes(64)
    else:
        state = memoryview(bytearray(17))[1:]
    try:
        with pytest.raises((ValueError, TypeError)):
            _speedups.fill(fd, buf, size, chunk, state)
    finally:
        os.close(fd)
    assert not any(buf)


def test_without_the_extension_big_files_are_read_before_the_walk(tmp_path: Path) -> None:
    """A pure-Python install reads the file first (a Python reader would need the GIL per chunk)."""
    import subprocess
    import sys

    model, X = _big_model()
    path = tmp_path / "big.joblib"
    joblib.dump(model, path)
    np.save(tmp_path / "X.npy", X)
    script = f"""
import sys
sys.modules["safeload._speedups"] = None  # as if it had not been built
import numpy as np, joblib, safeload
from safeload import _containers, _filling
assert not _filling.available()
_containers._usable_cores = lambda: 2
source = _containers.read_source({str(path)!r}, safeload.Policy().limits)
assert source.filling is None and len(source.data) == {path.stat().st_size}
X = np.load({str(tmp_path / "X.npy")!r})
np.testing.assert_array_equal(safeload.load({str(path)!r}).predict_proba(X), joblib.load({str(path)!r}).predict_proba(X))
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_an_inflated_stream_is_walked_whole_not_as_far_as_its_file_was_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressed joblib file read in the background inflates to a stream many times its size; the
    background reader counts the file's bytes, not the stream's. Handed on to the walker with the
    inflated buffer, it cut the walk at the compressed size: the benchmark's 99 MB forest, inflated
    from 18.6 MB of zlib, was refused as truncated (session 25, once the walker read through a
    window no larger than what the reader said had arrived)."""
    from safeload import _analysis, _containers

    monkeypatch.setattr(_containers, "_BACKGROUND_READ_BYTES", 1 << 16)  # (4 MB in real use)
    monkeypatch.setattr(_containers, "_usable_cores", lambda: 2)
    X, y = make_classification(n_samples=3000, n_features=8, random_state=0)
    model = RandomForestClassifier(n_estimators=150, random_state=0).fit(X, y)
    path = tmp_path / "forest.zlib.joblib"
    joblib.dump(model, path, compress=3)
    size = path.stat().st_size
    assert size > 1 << 16

    readers: list[Any] = []
    real_filling = _containers.Filling

    def counted(*args: Any) -> Any:
        readers.append(real_filling(*args))
        return readers[-1]

    walks: list[tuple[int, Any]] = []
    real_walk = _analysis.walk

    def spy(data: Any, policy: Any, **kw: Any) -> Any:
        walks.append((len(data), kw.get("filling")))
        return real_walk(data, policy, **kw)

    monkeypatch.setattr(_containers, "Filling", counted)
    monkeypatch.setattr(_analysis, "walk", spy)
    report = safeload.scan(str(path))
    assert report.verdict == "safe", [f.message for f in report.findings]
    loaded = safeload.load(str(path))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert readers, "the file was not read in the background: the test proves nothing"
    assert walks and all(n > size + (1 << 19) for n, _ in walks)  # the inflated stream spans windows
    assert all(f is None for _, f in walks), "the file's reader was handed on with the inflated stream"


def test_the_walker_ignores_a_reader_of_another_buffer() -> None:
    """Defence in depth for the above: a filling whose size is not the buffer's is not trusted."""
    X, y = make_classification(n_samples=2000, n_features=8, random_state=1)
    data = pickle.dumps(RandomForestClassifier(n_estimators=80, random_state=0).fit(X, y), protocol=5)
    short = Lockstep(data[: len(data) // 10], 0)
    short.finish()
    assert len(data) > 3 * (1 << 18)
    assert _summary(walk(data, POLICY, filling=short)) == _summary(walk(data, POLICY))  # type: ignore[arg-type]


def test_the_memo_is_pruned_while_the_file_still_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``_PRUNE_AT`` memo entries the walker drops the slots no GET can read; the candidates need
    the whole file, so it waits for the rest of the read there. It used to prune only once its own
    view of the read had reached the end: a walker ahead of the reader kept every object of a 36 MB
    file of 10**6 small objects (598 MiB) in one run of three."""
    import struct

    monkeypatch.setattr(_walker, "_PRUNE_AT", 1_000)
    blob = b"\x01" * (1 << 20)
    head = b"\x80\x04]\x94" + b"}\x94a" * 3_000
    real = (head + b"\x8e" + struct.pack("<Q", len(blob)) + blob + b"0" + b"}\x94a" * 10 + b"h\x01a.")
    assert len(pickle.loads(real)) == 3_011
    first_unread: list[int] = []

    def watch(i: int, view: Any) -> None:
        if not first_unread and any(v is _walker.UNREAD for v in view.memo().values()):
            first_unread.append(i)

    double = Lockstep(real, 2)
    expected = _summary(walk(real, POLICY))
    assert _summary(walk(double.buf, POLICY, filling=double, observer=watch)) == expected  # type: ignore[arg-type]
    assert first_unread and first_unread[0] <= 4 + 3 * 1_002, first_unread  # at the 1,001st MEMOIZE
