"""safeload's own cost on adversarial inputs, side by side with plain ``pickle.load``.

The property (issue 11): on every input, ``safeload.load``'s peak memory stays within
2x plain ``pickle.load``'s + 64 MiB and its time within 3x + 1 s (when plain pickle
finishes at all), and ``safeload.scan`` within the same of reading the file. A safe
loader that turns a 94-byte file into 17 GiB of path strings is a denial of service
of its own making: validation must cost O(objects) with a small constant.

Each measurement runs in a fresh child process (peak RSS is per process): the child
imports everything first, resets its peak resident set (``/proc/self/clear_refs``), records
its RSS, loads, and reports the peak growth (VmHWM after minus RSS before) and the wall time.

    python benchmarks/resources.py            # the full set (object arrays up to 10**8)
    python benchmarks/resources.py --quick    # small sizes (what tests/test_resources.py runs)
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, pickle, resource, sys, time
import numpy, sklearn  # noqa: F401 - imported before the baseline, as a real program would have them
import safeload
mode, path = sys.argv[1], sys.argv[2]
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
try:  # reset the peak (VmHWM) so that the imports' transient peak does not count
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    peak_of = hwm
except OSError:
    peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
t = time.perf_counter()
error = None
try:
    if mode == "pickle":
        with open(path, "rb") as fh:
            obj = pickle.load(fh)
    elif mode == "load":
        obj = safeload.load(path)
    elif mode == "scan":
        obj = safeload.scan(path).verdict
    else:
        with open(path, "rb") as fh:
            obj = len(fh.read())
except Exception as exc:
    error = type(exc).__name__
elapsed = time.perf_counter() - t
peak = peak_of()
verdict = str(getattr(obj, "value", obj)) if mode == "scan" and error is None else None
print(json.dumps({"seconds": elapsed, "peak": max(0, peak - base), "error": error, "verdict": verdict}))
"""

Builder = Callable[[int], bytes]


def _object_array(n: int) -> bytes:
    import numpy as np

    return pickle.dumps(np.empty(n, dtype=object), protocol=4)  # n Nones: one byte each in the file


def _shared_object_array(n: int) -> bytes:
    import numpy as np

    arr = np.empty(n, dtype=object)
    arr[:] = [{"shared": 1}]  # one dict referenced n times: a BINGET per element
    return pickle.dumps(arr, protocol=4)


def _wide_dict(n: int) -> bytes:
    return pickle.dumps({i: None for i in range(n)}, protocol=4)


def _wide_set(n: int) -> bytes:
    return pickle.dumps(set(range(n)), protocol=4)


def _nested(n: int) -> bytes:
    depth = min(n, 50_000)  # the walker refuses a stack deeper than max_stack_depth (100,000)
    return b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."


def _none_pop_pairs(n: int) -> bytes:
    """n NONE/POP pairs: the walker's cost per opcode, nothing else (a stack of 0-1 items once
    reallocated the list at every pair: a third of the walk)."""
    return b"\x80\x04" + b"N0" * n + b"}."


def _small_objects(n: int) -> bytes:
    from sklearn._loss.link import Interval

    return pickle.dumps([Interval(float(i), float(i + 1), False, True) for i in range(n)], protocol=4)


def _runs_read_back(n: int) -> bytes:
    """n vocabulary runs (8 memoized texts each, the walker takes a run in one step), then one memo
    read into each, last run first: the walker once searched its runs linearly, 30 s for 60,000."""
    import struct

    body = bytearray(b"\x80\x04")
    for k in range(n):
        body += b"(" + b"".join(b"\x8c\x02" + bytes([65 + k % 26, 65 + j]) + b"\x94K\x01" for j in range(8)) + b"t0"
    for k in reversed(range(n)):
        body += b"j" + struct.pack("<I", 8 * k) + b"0"
    return bytes(body + b"N.")


def _get_texts_before_a_blob(n: int) -> bytes:
    """50,000 0x67 bytes (each could start a GET text), an n-byte blob ending in a newline, then
    200,001 memoized Nones (the walker looks for GET candidates past 100,000 memo entries): the
    walker once searched and copied each candidate's line to its newline, n bytes 50,000 times."""
    import struct

    texts = b"g" * 50_000
    blob = b"\x01" * n + b"\n"
    return (b"\x80\x04X" + struct.pack("<I", len(texts)) + texts + b"0" + b"\x8e" + struct.pack("<Q", len(blob))
            + blob + b"0" + b"N\x940" * 200_001 + b"N.")


def _int_line(n: int) -> bytes:
    """A protocol-0 INT of n hex digits (plain pickle builds the 4n-bit int): safeload's strtol once
    added the digits up one by one, quadratic in n (10**6 decimal digits: 80 s)."""
    return b"(I0x" + b"f" * n + b"\n."


def _long_line(n: int) -> bytes:
    """A protocol-0 LONG of n hex digits and its 'L': the walker once copied the line three times
    (the line, the line less its 'L', the text to its NUL): 343 MiB for a 95 MiB file."""
    return b"(L0x" + b"f" * n + b"L\n."


def _text(opcode: bytes) -> Builder:
    """One n-character text: the walker once copied it before decoding (scan held 3x the file)."""
    def build(n: int) -> bytes:
        if opcode == b"S":
            return b"(S'" + b"a" * n + b"'\n."
        if opcode == b"V":
            return b"(V" + b"a" * n + b"\n."
        return b"(" + opcode + n.to_bytes(4, "little") + b"a" * n + b"."  # BINUNICODE, BINSTRING
    return build


CASES: dict[str, tuple[Builder, tuple[int, ...], tuple[int, ...]]] = {
    # name: (builder, full sizes, quick sizes)
    "object array of None": (_object_array, (10**7, 10**8), (10**6,)),
    "object array, one shared dict": (_shared_object_array, (10**7,), (10**6,)),
    "wide dict": (_wide_dict, (10**7,), (10**6,)),
    "wide set": (_wide_set, (10**7,), (10**6,)),
    "deep nesting": (_nested, (50_000,), (50_000,)),
    "many small objects": (_small_objects, (10**6,), (10**5,)),
    "NONE/POP pairs": (_none_pop_pairs, (5 * 10**7,), (10**6,)),
    "memo runs read back in reverse": (_runs_read_back, (200_000,), (60_000,)),
    "GET texts before a blob": (_get_texts_before_a_blob, (10**8,), (10**6,)),
    "INT line of hex digits": (_int_line, (10**8,), (10**6,)),
    "LONG line of hex digits": (_long_line, (10**8,), (10**6,)),
    "STRING of n characters": (_text(b"S"), (10**8,), (10**6,)),
    "UNICODE of n characters": (_text(b"V"), (10**8,), (10**6,)),
    "BINUNICODE of n characters": (_text(b"X"), (10**8,), (10**6,)),
    "BINSTRING of n characters": (_text(b"T"), (10**8,), (10**6,)),
}


def _torch_zip_opcodes(n: int) -> bytes:
    """A PyTorch zip checkpoint whose data.pkl is n pushes and pops (NONE, POP) before an empty
    state dict: its BINPERSIDs were once located by a pure-Python ``pickletools`` pass (7 s for 10 MB)."""
    import io
    import zipfile

    stream = b"\x80\x02" + b"N0" * n + b"}."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", stream)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def _torch_legacy_marks(n: int) -> bytes:
    """A legacy PyTorch checkpoint whose protocol pickle is n MARKs: that pass kept ~95 bytes per MARK."""
    from safeload._torch import LEGACY_MAGIC

    return LEGACY_MAGIC + b"." + b"\x80\x02" + b"(" * n + b"."


#: Files that are not one pickle: ``scan`` is held to reading them (``load`` refuses them).
SCAN_CASES: dict[str, tuple[Builder, tuple[int, ...], tuple[int, ...]]] = {
    "PyTorch zip checkpoint of n opcodes": (_torch_zip_opcodes, (5 * 10**7,), (10**6,)),
    "PyTorch legacy checkpoint of n MARKs": (_torch_legacy_marks, (10**8,), (2 * 10**6,)),
}


def measure(mode: str, path: Path, timeout: float = 3600) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path)], capture_output=True, text=True,
                         timeout=timeout, check=False)
    if out.returncode != 0:
        return {"seconds": float("nan"), "peak": 0, "error": f"exit {out.returncode}: {out.stderr[-300:]}"}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def within(safe: dict[str, Any], base: dict[str, Any]) -> bool:
    """2x + 64 MiB memory, 3x + 1 s time (only checkable when the baseline finished)."""
    if base["error"] is not None:
        return True
    return safe["peak"] <= 2 * base["peak"] + (64 << 20) and safe["seconds"] <= 3 * base["seconds"] + 1.0


def run(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, full, small) in CASES.items():
            for n in small if quick else full:
                path = Path(tmp) / "case.pkl"
                path.write_bytes(build(n))
                row: dict[str, Any] = {"case": name, "n": n, "bytes": path.stat().st_size}
                for mode in ("pickle", "load", "read", "scan"):
                    row[mode] = measure(mode, path)
                row["load_ok"] = within(row["load"], row["pickle"])
                row["scan_ok"] = within(row["scan"], row["read"])
                rows.append(row)
                os.unlink(path)
        for name, (build, full, small) in SCAN_CASES.items():
            for n in small if quick else full:
                path = Path(tmp) / "case.bin"
                path.write_bytes(build(n))
                row = {"case": name, "n": n, "bytes": path.stat().st_size}
                for mode in ("pickle", "load", "read", "scan"):
                    row[mode] = measure(mode, path)
                row["load_ok"] = True  # (neither loader takes these: only scan is measured against reading)
                row["scan_ok"] = within(row["scan"], row["read"])
                rows.append(row)
                os.unlink(path)
    return rows


def _fmt(m: dict[str, Any]) -> str:
    err = f" [{m['error']}]" if m["error"] else ""
    return f"{m['peak'] / 2**20:8.1f} MiB {m['seconds']:7.2f} s{err}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.quick)
    print(f"{'case':32} {'n':>11} {'file':>10}  {'pickle.load':>22}  {'safeload.load':>22}  ok  "
          f"{'read file':>22}  {'safeload.scan':>22}  ok")
    for r in rows:
        print(f"{r['case']:32} {r['n']:>11} {r['bytes'] / 2**20:8.1f}MB  {_fmt(r['pickle']):>22}  "
              f"{_fmt(r['load']):>22}  {'yes' if r['load_ok'] else 'NO ':3} {_fmt(r['read']):>22}  "
              f"{_fmt(r['scan']):>22}  {'yes' if r['scan_ok'] else 'NO'}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["load_ok"] and r["scan_ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
