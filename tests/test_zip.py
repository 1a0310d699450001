"""Zip handling under adversarial input: every zip is built here from raw bytes (as the audit's probes were).

One class of denial of service per section: overlapping entries and nesting (work that grew as K^3),
decompression bombs in zip and ``.npz`` members, central directories too big to parse, copies of the
whole buffer, and exceptions that escaped the handlers (turning an ``unsafe`` verdict into ``error``).
Costs are held by counting work (members judged, ``ZipInfo`` objects built, bytes allocated) or, for
memory, in a child process as ``tests/test_resources.py`` does.  These tests use only names that
existed before ``safeload._zip`` (except the ones that test it), so they can be run on the old code.
"""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _measure import measure as _measure

import safeload
from safeload import Limits, Policy

EVIL = b"cos\nsystem\n(S'echo pwned'\ntR."
CLEAN = pickle.dumps({"a": [1, 2.0, "x"]}, protocol=4)


# -- raw zip construction ------------------------------------------------------------------------


def _local(name: bytes, stored: bytes, usize: int, crc: int, method: int, flags: int, version: int) -> bytes:
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", version, flags, method, 0, 0, crc, len(stored), usize,
                       len(name), 0) + name + stored


def _central(name: bytes, offset: int, csize: int, usize: int, crc: int, method: int, flags: int,
             version: int) -> bytes:
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, version, flags, method, 0, 0, crc, csize, usize,
                       len(name), 0, 0, 0, 0, 0, offset) + name


def member(name: str | bytes, data: bytes, *, method: int = zipfile.ZIP_STORED, stored: bytes | None = None,
           usize: int | None = None, crc: int | None = None, flags: int = 0, version: int = 20) -> dict[str, Any]:
    """One member: ``data`` deflated when ``method`` says so (or ``stored`` given as is)."""
    if stored is None:
        if method == zipfile.ZIP_DEFLATED:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            stored = c.compress(data) + c.flush()
        else:
            stored = data
    return {"name": name.encode() if isinstance(name, str) else name, "stored": stored,
            "usize": len(data) if usize is None else usize, "crc": zlib.crc32(data) if crc is None else crc,
            "method": method, "flags": flags, "version": version}


def raw_zip(members: list[dict[str, Any]], *, listed: int = 1, comment: bytes = b"", zip64: bool = False) -> bytes:
    """The local entries, then a central directory listing each of them ``listed`` times (more than once:
    overlapping entries), then the end record (and a zip64 end record and locator before it)."""
    body = b""
    cd = b""
    for m in members:
        offset = len(body)
        body += _local(m["name"], m["stored"], m["usize"], m["crc"], m["method"], m["flags"], m["version"])
        cd += _central(m["name"], offset, len(m["stored"]), m["usize"], m["crc"], m["method"], m["flags"],
                       m["version"]) * listed
    count = len(members) * listed
    tail = b""
    if zip64:
        record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(cd), len(body))
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body) + len(cd), 1)
        tail = record + locator
        eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    else:
        eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), len(cd),
                           len(body), len(comment))
    return body + cd + tail + eocd + comment


def deflated_zeros(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zeros (and its CRC), built in milliseconds: one fully
    flushed segment for 1 MiB repeated (a full flush resets the history, so segments are independent)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(bytes(1 << 20), crc)
    return segment * mib + b"\x03\x00", crc


def npy(arr: np.ndarray[Any, Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npy_header(nbytes: int) -> bytes:
    """A float64 .npy header for ``nbytes`` of data (the data itself is appended by the caller)."""
    hdr = b"{'descr': '<f8', 'fortran_order': False, 'shape': (%d,), }" % (nbytes // 8)
    hdr += b" " * (-(10 + len(hdr) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load_outcome(path: Path, policy: Policy | None = None) -> type[BaseException] | None:
    try:
        safeload.load(path, policy=policy)
    except safeload.SafeloadError as exc:
        return type(exc)
    return None


def policy(**limits: Any) -> Policy:
    return Policy.default().extended((), limits=Limits(**limits))


def nested(k: int, leaf: bytes = EVIL) -> bytes:
    """The audit's zipnest: three levels, each listing its one stored member ``k`` times."""
    z2 = raw_zip([member("m.pkl", leaf)], listed=k)
    z1 = raw_zip([member("b.zip", z2)], listed=k)
    return raw_zip([member("a.zip", z1)], listed=k)


def count_judged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the members ``scan`` judges (every nesting level), recorded."""
    from safeload import _scan

    judged: list[str] = []
    real = _scan._scan_data

    def counting(data: Any, policy: Policy, name: str, *args: Any, **kwargs: Any) -> Any:
        judged.append(name)
        return real(data, policy, name, *args, **kwargs)

    monkeypatch.setattr(_scan, "_scan_data", counting)
    return judged


# -- 1. overlapping entries, nesting -------------------------------------------------------------


def test_overlapping_entries_are_refused_not_judged_k_cubed_times(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The 12 KB probe (K = 80) took 75 s: 512,000 leaves judged.  Here K = 12 (1,728 leaves on the old
    code); an overlapping entry is now refused before any member is read."""
    path = write(tmp_path, "nest.zip", nested(12))
    judged = count_judged(monkeypatch)
    report = safeload.scan(path)
    assert report.verdict == "error"
    assert "overlap" in report.findings[0].message
    assert len(judged) <= 1, len(judged)  # the file itself; no member
    with pytest.raises(safeload.MalformedModelError, match="overlap"):
        safeload.load(path)


@pytest.mark.parametrize("gap", [-1, -5, -30])
def test_an_entry_that_starts_inside_the_previous_one_is_refused(tmp_path: Path, gap: int) -> None:
    """Not only the same offset listed twice: the second entry starts inside the first one's data."""
    first, second = member("a.pkl", CLEAN), member("b.pkl", EVIL)
    body = _local(first["name"], first["stored"], first["usize"], first["crc"], 0, 0, 20)
    off2 = len(body) + gap
    body = body[:off2] + _local(second["name"], second["stored"], second["usize"], second["crc"], 0, 0, 20)
    cd = (_central(first["name"], 0, len(first["stored"]), first["usize"], first["crc"], 0, 0, 20)
          + _central(second["name"], off2, len(second["stored"]), second["usize"], second["crc"], 0, 0, 20))
    data = body + cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 2, 2, len(cd), len(body), 0)
    report = safeload.scan(write(tmp_path, "overlap.zip", data))
    assert report.verdict == "error" and "overlap" in report.findings[0].message


def test_entries_that_run_into_the_central_directory_are_refused(tmp_path: Path) -> None:
    m = member("a.pkl", EVIL)
    m["stored"] += b"\0" * 8  # the directory says 8 more bytes than the entry has before it
    data = raw_zip([m])
    local_size = 30 + len(m["name"]) + len(m["stored"])
    cd = data[local_size:]
    cd = cd[:20] + struct.pack("<L", len(m["stored"]) + 64) + cd[24:]  # compressed size past the directory
    report = safeload.scan(write(tmp_path, "intodir.zip", data[:local_size] + cd))
    assert report.verdict == "error" and "overlap" in report.findings[0].message


def test_nesting_shares_one_member_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_zip_members held each zip, not the scan: 10 zips of 10 members judged 100 leaves under a limit
    of 50.  Now the entries of every nesting level count against one max_zip_members."""
    inner = raw_zip([member(f"m{i}.pkl", CLEAN) for i in range(10)])
    outer = raw_zip([member(f"z{i}.zip", inner, method=zipfile.ZIP_DEFLATED) for i in range(10)])
    path = write(tmp_path, "outer.zip", outer)
    judged = count_judged(monkeypatch)
    report = safeload.scan(path, policy=policy(max_zip_members=50))
    assert report.verdict == "error"
    assert any(f.rule == "limit" and "every nesting level" in f.message for f in report.findings)
    assert len(judged) - 1 <= 50, len(judged)  # (the file itself, then its members)
    assert safeload.scan(path).verdict == "unsupported"  # under the default limit: all 110 judged


def test_nesting_shares_one_inflation_budget(tmp_path: Path) -> None:
    """Each member under its own cap, but together past what the whole scan may inflate."""
    payload = pickle.dumps(bytes(600 << 10), protocol=4)  # 600 KiB, deflates to ~1 KB
    inner = [raw_zip([member("m.pkl", payload, method=zipfile.ZIP_DEFLATED)]) for _ in range(3)]
    outer = raw_zip([member(f"z{i}.zip", z) for i, z in enumerate(inner)])
    path = write(tmp_path, "outer.zip", outer)
    report = safeload.scan(path, policy=policy(max_decompressed_bytes=1 << 20))
    assert report.verdict == "error"
    assert any(f.rule == "limit" and "every nesting level" in f.message for f in report.findings)
    assert safeload.scan(path).verdict == "unsupported"


def test_a_legitimate_nested_zip_is_still_judged(tmp_path: Path) -> None:
    inner = raw_zip([member("clean.pkl", CLEAN), member("evil.pkl", EVIL, method=zipfile.ZIP_DEFLATED)])
    outer = raw_zip([member("readme.txt", b"hello\n"), member("inner.zip", inner, method=zipfile.ZIP_DEFLATED)])
    report = safeload.scan(write(tmp_path, "outer.zip", outer))
    assert report.verdict == "unsafe"
    assert any(f.location.member == "inner.zip/evil.pkl" for f in report.findings)


# -- 2. decompression bombs ---------------------------------------------------------------------


def test_a_zip_member_is_capped_like_a_joblib_stream(tmp_path: Path) -> None:
    """The member inflates under max(256 MiB, max_inflate_ratio x compressed) (here max_decompressed_bytes,
    lowered to 4 MiB): 16 MiB of zeros is refused, with a limit finding, before it is inflated."""
    bomb = member("x.pkl", b"N" * (16 << 20), method=zipfile.ZIP_DEFLATED)
    data = raw_zip([bomb, member("evil.pkl", EVIL)])
    report = safeload.scan(write(tmp_path, "bomb.zip", data), policy=policy(max_decompressed_bytes=4 << 20))
    assert report.verdict == "unsafe"  # the other member is still judged
    limits = [f for f in report.findings if f.rule == "limit"]
    assert limits and limits[0].location.member == "x.pkl" and "inflates" in limits[0].message


def test_a_member_inflates_no_further_than_its_declared_size(tmp_path: Path) -> None:
    """zipfile returns the declared size; a stream that inflates further is cut there (never read on)."""
    from safeload._zip import Archive

    stream, _ = deflated_zeros(64)
    data = raw_zip([member("x.bin", b"", stored=stream, method=zipfile.ZIP_DEFLATED, usize=1000, crc=0)])
    with Archive(data, Limits()) as archive:
        assert archive.read(archive.infos[0]) == bytes(1000)


def _within_bounds(path: Path, modes: tuple[str, ...] = ("scan",)) -> dict[str, Any]:
    """scan (and load) of ``path`` in a child: peak within 2x reading the file + 64 MiB; time loosely
    (8x + 5 s: the suite shares the machine; see tests/test_resources.py)."""
    base = _measure("read", path)
    assert base["error"] is None, base
    out = {}
    for mode in modes:
        got = _measure(mode, path)
        assert got["peak"] <= 2 * base["peak"] + (64 << 20), (mode, base, got)
        assert got["seconds"] <= 8 * base["seconds"] + 5.0, (mode, base, got)
        out[mode] = got
    return out


@pytest.mark.parametrize("mib", [200, 300])
def test_a_zip_bomb_stays_within_the_memory_bound(tmp_path: Path, mib: int) -> None:
    """300 MiB of zeros in a 300 KB zip: the old code held it twice (~600 MiB), now refused unread (past
    the 256 MiB cap).  200 MiB (under it): the first bytes say it is no model, so the rest is not inflated."""
    stream, crc = deflated_zeros(mib)
    data = raw_zip([member("x.pkl", b"", stored=stream, method=zipfile.ZIP_DEFLATED, usize=mib << 20, crc=crc)])
    path = write(tmp_path, "bomb.zip", data)
    report = safeload.scan(path)
    if mib > 256:
        assert report.verdict == "error" and report.findings[0].rule == "limit"
    else:
        assert report.verdict == "not-a-model"
    _within_bounds(path)


# -- 3. .npz -------------------------------------------------------------------------------------


def test_npz_members_are_judged_one_at_a_time(tmp_path: Path) -> None:
    """Numeric arrays: only their headers are read.  The old code read every member into a list first
    (4 x 8 MiB here, all of it allocated at once)."""
    data = np.zeros(1 << 20)  # 8 MiB
    path = tmp_path / "a.npz"
    np.savez_compressed(path, a=data, b=data, c=data, d=data)
    safeload.scan(path)  # (the first scan imports modules: not counted)
    tracemalloc.start()
    try:
        report = safeload.scan(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.verdict == "no-code"
    assert peak < 8 << 20, peak
    loaded = safeload.load(path)
    assert np.array_equal(loaded["c"], data)


def test_an_npz_bomb_stays_within_the_memory_bound(tmp_path: Path) -> None:
    """Two members of 300 MiB of zeros each (declared): refused by the member cap, unread, by scan and load
    (the old code held both: ~1.2 GiB)."""
    stream, _ = deflated_zeros(300)
    header = npy_header(300 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    members = [member(f"a{i}.npy", b"", stored=head + stream, method=zipfile.ZIP_DEFLATED,
                      usize=len(header) + (300 << 20), crc=0) for i in range(2)]  # (zipfile checks it last)
    path = write(tmp_path, "bomb.npz", raw_zip(members))
    assert safeload.scan(path).verdict == "error"
    assert load_outcome(path) is safeload.LimitExceededError
    _within_bounds(path, ("scan", "load"))


def test_one_unreadable_npz_member_does_not_hide_an_unsafe_one(tmp_path: Path) -> None:
    evil = npy(np.array([_Reduce()], dtype=object))
    plain = npy(np.arange(3))
    broken = member("b.npy", plain, method=zipfile.ZIP_DEFLATED)
    broken["stored"] = b"\xff" * len(broken["stored"])  # not a deflate stream
    path = write(tmp_path, "mixed.npz", raw_zip([broken, member("e.npy", evil)]))
    report = safeload.scan(path)
    assert report.verdict == "unsafe", report.findings
    assert any(f.rule == "malformed" for f in report.findings)
    assert load_outcome(path) is safeload.UnsafeModelError


class _Reduce:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("echo pwned",))


def test_an_npz_with_object_and_plain_arrays_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "o.npz"
    np.savez_compressed(path, plain=np.arange(5), objects=np.array([{"k": 1}], dtype=object))
    out = safeload.load(path)
    assert list(out["plain"]) == [0, 1, 2, 3, 4] and out["objects"][0] == {"k": 1}


# -- 4. huge central directories -----------------------------------------------------------------


def _many_entries(n: int) -> bytes:
    """The audit's zipcd: ``n`` directory entries, all pointing at one empty member."""
    name = b"a"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + name
    cd = (struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + name) * n
    return local + cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), len(cd),
                                    len(local), 0)


def _count_zipinfos(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []

    class Counted(zipfile.ZipInfo):
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipInfo", Counted)
    return made


def test_a_huge_central_directory_is_refused_before_zipfile_parses_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """40,000 entries (1.9 MB): the old code built 80,000 ZipInfo objects (scan) before refusing."""
    path = write(tmp_path, "cd.zip", _many_entries(40_000))
    made = _count_zipinfos(monkeypatch)
    report = safeload.scan(path)
    assert report.verdict == "error" and report.findings[0].rule == "limit"
    assert "max_zip_members" in report.findings[0].message
    assert load_outcome(path) is safeload.LimitExceededError
    assert len(made) == 0, len(made)


def test_a_huge_central_directory_is_refused_from_a_file_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """The remote (ranged read) path: refused from the directory, without reading the whole object."""
    from safeload._scan import judge_zip_directory

    data = _many_entries(40_000)
    made = _count_zipinfos(monkeypatch)
    report = judge_zip_directory(io.BufferedReader(io.BytesIO(data)), Policy.default(), "remote.zip", len(data))
    assert report is not None and report.verdict == "error" and report.findings[0].rule == "limit"
    assert len(made) == 0, len(made)


@pytest.mark.parametrize("variant", ["plain", "comment", "zip64", "zip64+comment"])
def test_end_records_are_found_as_zipfile_finds_them(tmp_path: Path, variant: str) -> None:
    data = raw_zip([member("clean.pkl", CLEAN), member("evil.pkl", EVIL)], comment=b"c" * 300 if "comment" in
                   variant else b"", zip64="zip64" in variant)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["clean.pkl", "evil.pkl"]
    report = safeload.scan(write(tmp_path, "z.zip", data))
    assert report.verdict == "unsafe"


@pytest.mark.parametrize("cut", [1, 10, 21, 22, 40, 60])
def test_a_truncated_or_garbage_end_record_is_reported_not_raised(tmp_path: Path, cut: int) -> None:
    data = raw_zip([member("evil.pkl", EVIL)], zip64=cut > 30)
    for bad in (data[:-cut], data[:-cut] + b"\xff" * cut):
        report = safeload.scan(write(tmp_path, "z.zip", bad))
        assert report.verdict in ("error", "unsafe"), report
        assert load_outcome(tmp_path / "z.zip") is not None


def test_long_names_do_not_make_a_directory_look_too_big(tmp_path: Path) -> None:
    """The count is walked, not estimated: 80 entries of 200-byte names are 80 members (a directory size / 46
    estimate would say 370, past a limit of 100)."""
    members = [member(f"{i:03d}".ljust(200, "x") + ".pkl", CLEAN) for i in range(80)]
    report = safeload.scan(write(tmp_path, "long.zip", raw_zip(members)), policy=policy(max_zip_members=100))
    assert report.verdict == "unsupported", report.findings[:2]


# -- 5. copies -----------------------------------------------------------------------------------


def test_a_big_stored_pickle_in_a_zip_stays_within_the_memory_bound(tmp_path: Path) -> None:
    """100 MB stored: the old code copied the whole file (io.BytesIO) and the member: 293 MiB for a
    254 MiB bound."""
    n = 100_000_000
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("m.pkl", b"\x80\x04\x8e" + struct.pack("<Q", n) + bytes(n) + b".")
    assert safeload.scan(path).verdict == "unsupported"
    _within_bounds(path)


def test_the_reader_copies_only_what_is_read() -> None:
    from safeload._containers import ViewReader

    data = bytearray(range(256)) * 4096
    tracemalloc.start()
    try:
        reader = ViewReader(data)
        reader.seek(-10, 2)
        tail = reader.read()
        reader.seek(100)
        piece = reader.read(5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    reader.close()
    assert tail == bytes(data[-10:]) and piece == bytes(data[100:105])
    assert peak < 64 << 10, peak
    with pytest.raises(ValueError):
        reader.seek(-1)


# -- 6. exceptions that escaped ------------------------------------------------------------------


_BROKEN: dict[str, Callable[[], dict[str, Any]]] = {
    "empty-name": lambda: member(b"", CLEAN),
    "encrypted": lambda: member("enc.pkl", CLEAN, flags=1),
    "corrupt-deflate": lambda: member("bad.pkl", CLEAN, method=zipfile.ZIP_DEFLATED, stored=b"\xff" * 40),
    "corrupt-bzip2": lambda: member("bad.pkl", CLEAN, method=zipfile.ZIP_BZIP2, stored=b"BZh9" + b"\xff" * 40),
    "corrupt-lzma": lambda: member("bad.pkl", CLEAN, method=zipfile.ZIP_LZMA, stored=b"\x09\x04\x05\x00" + b"\xff" * 40),
    "unknown-method": lambda: member("odd.pkl", CLEAN, method=99),
    "truncated-stream": lambda: member("cut.pkl", CLEAN * 50, method=zipfile.ZIP_DEFLATED, stored=zlib.compress(
        CLEAN * 50)[2:40]),
}


@pytest.mark.parametrize("kind", list(_BROKEN))
def test_a_broken_member_does_not_hide_an_unsafe_one(tmp_path: Path, kind: str) -> None:
    data = raw_zip([_BROKEN[kind](), member("evil.pkl", EVIL)])
    report = safeload.scan(write(tmp_path, "z.zip", data))
    assert report.verdict == "unsafe", report.findings
    assert not any("cannot analyse" in f.message for f in report.findings), report.findings


@pytest.mark.parametrize("kind", list(_BROKEN))
def test_a_broken_npz_member_is_a_safeload_error(tmp_path: Path, kind: str) -> None:
    """Through load's own path (``analyse``): a SafeloadError, never zipfile's exception."""
    from safeload._analysis import analyse_or_raise

    broken = _BROKEN[kind]()
    broken["name"] = b"b.npy" if broken["name"] else b""
    data = raw_zip([broken, member("a.npy", npy(np.arange(3)))])
    with pytest.raises(safeload.SafeloadError):
        analyse_or_raise(data, Policy.default(), "z.npz")


def test_an_unknown_zip_version_is_malformed_for_load_and_scan(tmp_path: Path) -> None:
    from safeload._analysis import analyse

    data = raw_zip([member("a.npy", npy(np.arange(3)), version=85)])
    with pytest.raises(safeload.MalformedModelError):
        analyse(data, Policy.default(), numpy_files=True)
    assert safeload.scan(write(tmp_path, "v.npz", data)).verdict == "error"


# -- scan and load agree -------------------------------------------------------------------------


def _crafted() -> dict[str, tuple[bytes, Policy | None]]:
    stream, crc = deflated_zeros(300)
    header = npy_header(8)
    return {
        "nest": (nested(5), None),
        "nest-npz": (raw_zip([member("a.npy", npy(np.arange(3)))], listed=3), None),
        "cd": (_many_entries(20_000), None),
        "bomb": (raw_zip([member("x.pkl", b"", stored=stream, method=zipfile.ZIP_DEFLATED, usize=300 << 20,
                                 crc=crc)]), None),
        "npz-bomb": (raw_zip([member("a.npy", b"", stored=stream, method=zipfile.ZIP_DEFLATED,
                                     usize=300 << 20, crc=crc)]), None),
        "npz-clean": (raw_zip([member("a.npy", header + bytes(8), method=zipfile.ZIP_DEFLATED)]), None),
        "npz-evil": (raw_zip([member("a.npy", npy(np.array([_Reduce()], dtype=object)))]), None),
        "npz-evil-broken": (raw_zip([_BROKEN["corrupt-deflate"]() | {"name": b"b.npy"},
                                     member("e.npy", npy(np.array([_Reduce()], dtype=object)))]), None),
        "npz-encrypted": (raw_zip([member("a.npy", header + bytes(8), flags=1)]), None),
        "npz-budget": (raw_zip([member(f"a{i}.npy", npy(np.array([{"k": i}], dtype=object)),
                                       method=zipfile.ZIP_DEFLATED) for i in range(3)]),
                       policy(max_zip_members=2)),
        "npz-inflate-budget": (raw_zip([member(f"a{i}.npy", npy(np.array([bytes(600 << 10)], dtype=object)),
                                               method=zipfile.ZIP_DEFLATED) for i in range(3)]),
                               policy(max_decompressed_bytes=1 << 20)),
        "skops-overlap": (raw_zip([member("schema.json", b"{}")], listed=2), None),
        "zip-evil-broken": (raw_zip([_BROKEN["empty-name"](), member("evil.pkl", EVIL)]), None),
        "garbage": (raw_zip([member("a.npy", header + bytes(8))])[:-7] + b"\xff" * 7, None),
    }


@pytest.mark.parametrize("case", list(_crafted()))
def test_scan_and_load_agree_on_crafted_zips(tmp_path: Path, case: str) -> None:
    """A file is ``safe``/``no-code`` exactly when load accepts it; ``unsafe`` exactly when load says
    UnsafeModelError; a limit or a malformed file is an ``error`` for scan and a SafeloadError for load."""
    data, pol = _crafted()[case]
    path = write(tmp_path, "f.npz", data)
    report = safeload.scan(path, policy=pol)
    outcome = load_outcome(path, pol)
    if outcome is None:
        assert report.verdict in ("safe", "no-code"), report
    elif outcome is safeload.UnsafeModelError:
        assert report.verdict == "unsafe", report
    elif outcome is safeload.UnsupportedFormatError:
        assert report.verdict not in ("safe", "no-code"), report
    else:
        assert report.verdict in ("error", "unsafe"), (outcome, report)
        assert report.verdict == "error" or outcome is safeload.UnsafeModelError, (outcome, report)
