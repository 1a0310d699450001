"""Containers read at a cost linear in the file: ``.npy`` headers and compressed joblib streams.

Each class of input is built here; cost classes are held to a bound the previous code exceeded
(a child process's time and peak memory, or a count of the bytes handed to decompressors).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lz4.frame
import numpy as np
import pytest
from _measure import measure

import safeload
from safeload import _containers as C
from safeload._policy import Limits

MiB = 1 << 20
#: The work bounds below: a stream is handed slices starting at FIRST_SLICE bytes, at most SLICE,
#: and its output is taken OUT_CHUNK at a time (safeload._containers' _IN_FIRST, _IN_MAX, _OUT_CHUNK).
FIRST_SLICE, SLICE, OUT_CHUNK = 256, MiB, 16 * MiB
DATA = pickle.dumps({"w": [1.5, 2.5], "n": "x"}, protocol=4)

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "zlib": zlib.compress, "gzip": lambda b: gzip.compress(b, mtime=0), "bz2": bz2.compress,
    "xz": lzma.compress, "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE), "lz4": lz4.frame.compress,
}

def cost(fn: str, path: Path, timeout: float = 60) -> dict[str, Any]:
    """``safeload.<fn>(path)`` in a fresh process (``tests/_measure``, the resource script's child):
    seconds, peak RSS growth, and ``outcome``: scan's verdict or the error's class."""
    try:
        result = measure(fn, path, timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"safeload.{fn} took over {timeout} s")
    return {**result, "outcome": result["error"] or result.get("verdict")}


# --------------------------------------------------------------------------- .npy headers


def npy(header: str, version: int = 2, data: bytes = b"") -> bytes:
    """A .npy file with exactly ``header`` as its header text (the caller pads it)."""
    raw = header.encode("utf8" if version == 3 else "latin1")
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I" if version > 1 else "<H", len(raw)) + raw + data


def padded(text: str, length: int) -> str:
    return text + " " * (length - len(text) - 1) + "\n"


DICT = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"


@pytest.mark.parametrize("version", [1, 2, 3])
def test_npy_header_length_is_numpys(version: int, tmp_path: Path) -> None:
    """Exactly what numpy.load reads: a header of 10000 characters, not one more."""
    body = np.arange(2.0).tobytes()
    for length, readable in ((10000, True), (10001, False)):
        if version == 1 and length > 0xFFFF:
            continue
        path = tmp_path / f"h{length}.npy"
        path.write_bytes(npy(padded(DICT, length), version, body))
        try:
            np.load(path)
            numpy_reads = True
        except ValueError:
            numpy_reads = False
        assert numpy_reads is readable
        if readable:
            assert np.array_equal(safeload.load(path), np.arange(2.0))
            assert safeload.scan(path).verdict == "no-code"
        else:
            with pytest.raises(safeload.MalformedModelError, match="longer than numpy.load reads"):
                safeload.load(path)
            report = safeload.scan(path)
            assert report.verdict == "error" and report.findings[0].rule == "malformed"
            assert "longer than numpy.load reads" in report.findings[0].message


def test_npy_utf8_header_counts_characters_as_numpy_does(tmp_path: Path) -> None:
    """A format 3.0 header is UTF-8 (field names outside latin-1); numpy counts its characters."""
    arr = np.zeros(2, dtype=[("名前", "<f8")])
    buf = io.BytesIO()
    with pytest.warns(UserWarning, match="format 3.0"):
        np.save(buf, arr)
    assert buf.getvalue()[6] == 3
    (tmp_path / "u.npy").write_bytes(buf.getvalue())
    assert safeload.load(tmp_path / "u.npy").dtype == arr.dtype
    wide = "{'descr': [('" + "名" * 3000 + "', '<f8')], 'fortran_order': False, 'shape': (2,), }"
    path = tmp_path / "wide.npy"
    path.write_bytes(npy(padded(wide, 9984), 3, bytes(16)))  # ~15 kB of UTF-8, 9984 characters
    assert len(np.load(path).dtype.names[0]) == 3000
    assert safeload.load(path).dtype == np.load(path).dtype


@pytest.mark.parametrize("fn", ["scan", "load"])
def test_a_header_as_long_as_the_file_costs_what_reading_it_costs(fn: str, tmp_path: Path) -> None:
    """A 4 MB header: literal-evaluated whole it took 1.9 GB and 7 s; now refused before parsing."""
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (0,), 'x': [" + "0," * 2_000_000 + "]}"
    path = tmp_path / "big.npy"
    path.write_bytes(npy(padded(text, len(text) + 64 - (len(text) + 12) % 64)))
    result = cost(fn, path)
    assert result["outcome"] in ("error", "MalformedModelError"), result
    assert result["peak"] <= 2 * path.stat().st_size + 64 * MiB, result
    assert result["seconds"] < 5.0, result  # (0.2 s; loose: the suite shares the cores)


def test_npy_header_is_refused_before_it_is_read() -> None:
    """Only the length field is needed to refuse: a 12-byte head claiming a 4 GiB header."""
    with pytest.raises(ValueError, match="longer than numpy.load reads"):
        C.npy_header(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF))


# --------------------------------------------------------------------------- compressed streams


class Counting:
    """A decompressor that counts the input bytes it is handed (what a copy of them costs)."""

    fed = 0

    def __init__(self, real: Any) -> None:
        self._real = real

    def decompress(self, data: Any, *args: Any, **kwargs: Any) -> bytes:
        Counting.fed += len(data)
        out: bytes = self._real.decompress(data, *args, **kwargs)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[Counting]:
    real = C._decompressor
    monkeypatch.setattr(C, "_decompressor", lambda fmt: Counting(real(fmt)))
    Counting.fed = 0
    return Counting


@pytest.mark.parametrize("kind", ["bz2", "xz", "lzma", "lz4"])
def test_concatenated_streams_are_read_as_joblib_reads_them(kind: str) -> None:
    """bz2.BZ2File, lzma.LZMAFile and LZ4FrameFile (joblib's readers) read on after a stream."""
    import joblib

    compress = COMPRESSORS[kind]
    data = compress(DATA[:7]) + compress(b"") + compress(DATA[7:])
    assert joblib.load(io.BytesIO(data)) == pickle.loads(DATA)
    assert safeload.load(io.BytesIO(data)) == pickle.loads(DATA)
    assert safeload.scan(io.BytesIO(data)).verdict == "safe"


@pytest.mark.parametrize("kind", ["zlib", "gzip"])
@pytest.mark.parametrize("after", [b"", b"junk"])
def test_nothing_may_follow_a_zlib_or_gzip_stream(kind: str, after: bytes) -> None:
    """joblib's BinaryZlibFile never gets past the end of the first stream: it hands the finished
    decompressor its unused_data, which it appends to unused_data, doubling until memory runs out.
    A second gzip member (read on before) is trailing data, as after a zlib stream."""
    compress = COMPRESSORS[kind]
    data = compress(DATA) + (after or compress(b""))
    report = safeload.scan(io.BytesIO(data))
    assert report.verdict == "unsafe" and [f.rule for f in report.findings] == ["trailing-data"]
    with pytest.raises(safeload.UnsafeModelError, match=f"bytes follow the {kind} stream"):
        safeload.load(io.BytesIO(data))
    assert safeload.load(io.BytesIO(compress(DATA))) == pickle.loads(DATA)


def test_joblib_itself_does_not_get_past_a_gzip_stream() -> None:
    """What the rule above mirrors (joblib 1.6), seen in a child with its address space capped at
    1 GiB.  Should joblib ever read on, ``decompress`` should too."""
    data = gzip.compress(DATA, mtime=0) + gzip.compress(b"", mtime=0)
    code = ("import io, resource, sys, joblib\n"  # (imported before the cap)
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "try:\n    joblib.load(io.BytesIO(sys.stdin.buffer.read()))\nexcept MemoryError:\n    print('MemoryError')\n"
            "else:\n    print('loaded')\n")
    proc = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.stdout.decode().strip() == "MemoryError", proc.stderr


@pytest.mark.parametrize("kind", ["bz2", "xz", "lz4"])
def test_many_concatenated_streams_cost_linear_work(kind: str, counted: type[Counting]) -> None:
    """4000 empty streams: each was handed the whole rest of the file (13 kB x 4000 copied for
    bz2, 3 MB took 10 s), now a slice of a few hundred bytes."""
    compress = COMPRESSORS[kind]
    data = compress(DATA) + compress(b"") * 4000
    assert bytes(C.decompress(C.sniff(data), data, Limits())) == DATA
    assert counted.fed <= 2 * len(data) + 4001 * 2 * FIRST_SLICE, (counted.fed, len(data))


def test_a_long_inflate_copies_no_more_than_a_slice_per_output_chunk(counted: type[Counting]) -> None:
    """120 MiB of zeros then 8 MiB of noise in one zlib stream: at each 16 MiB of output, zlib's
    unconsumed_tail copied the whole rest of the file (about 8 MiB, 8 times)."""
    noise = np.random.default_rng(0).integers(0, 256, 8 * MiB, dtype=np.uint8).tobytes()
    packer = zlib.compressobj(1)
    data = packer.compress(bytes(120 * MiB)) + packer.compress(noise) + packer.flush()
    out = C.decompress(C.Format.ZLIB, data, Limits())
    assert len(out) == 128 * MiB and out[-16:] == noise[-16:]
    chunks = len(out) // OUT_CHUNK + 1
    assert counted.fed <= 2 * len(data) + chunks * SLICE, (counted.fed, len(data))


@pytest.mark.parametrize("kind", ["bz2", "xz", "lz4"])
def test_too_many_concatenated_streams_are_a_limit(kind: str) -> None:
    """More streams than the file's size pays for (4096 plus one per 4 KiB) are refused early."""
    compress = COMPRESSORS[kind]
    data = compress(DATA) + compress(b"") * 20000
    with pytest.raises(safeload.LimitExceededError, match="concatenated"):
        safeload.load(io.BytesIO(data))
    report = safeload.scan(io.BytesIO(data))
    assert report.verdict == "error" and report.findings[0].rule == "limit"
    below = compress(DATA) + compress(b"") * 4000
    assert safeload.load(io.BytesIO(below)) == pickle.loads(DATA)


@pytest.mark.parametrize("fn", ["scan", "load"])
def test_concatenated_streams_cost_what_reading_costs(fn: str, tmp_path: Path) -> None:
    """800,000 empty bz2 streams (10.7 MB): 3.4 s even once copies were linear; every stream a
    decompressor.  The stream limit keeps it within 3x reading the file + 1 s."""
    path = tmp_path / "many.pkl.bz2"
    path.write_bytes(bz2.compress(DATA) + bz2.compress(b"") * 800_000)
    result = cost(fn, path)
    assert result["outcome"] in ("error", "LimitExceededError"), result
    assert result["seconds"] < 5.0, result  # (0.3 s; loose: the suite shares the cores)
    assert result["peak"] <= 2 * path.stat().st_size + 64 * MiB, result


def test_corrupt_streams_keep_their_errors() -> None:
    """Truncated, corrupted and appended-to streams of every format: a SafeloadError each time."""
    raw = pickle.dumps(list(range(3000)), protocol=4)
    for kind, compress in COMPRESSORS.items():
        good = compress(raw)
        variants = [good[:k] for k in range(1, len(good), max(1, len(good) // 25))]
        variants += [good + b"junk", good + bytes(10), good[:6] + bytes(50)]
        for i in range(6, len(good), max(1, len(good) // 40)):
            flipped = bytearray(good)
            flipped[i] ^= 0x10
            variants.append(bytes(flipped))
        for data in variants:
            try:
                safeload.load(io.BytesIO(data))
            except safeload.SafeloadError:
                pass
            report = safeload.scan(io.BytesIO(data))
            assert "cannot analyse" not in str(report.findings), (kind, report.findings)
