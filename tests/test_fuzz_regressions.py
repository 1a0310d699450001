"""Every input the fuzzer ever crashed or confused safeload with stays fixed.

``fuzz/crashes/`` keeps the reproducers (crashes of numpy/sklearn native code reached
through safeload, scan/load disagreements, exceptions that escaped). They are replayed in
one child process, so a crash fails the test instead of killing the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CRASHES = Path(__file__).resolve().parent.parent / "fuzz" / "crashes"
FILES = sorted(CRASHES.rglob("*.bin"))

_CHILD = textwrap.dedent(
    """
    import sys, tempfile, os
    import safeload
    for path in sys.argv[1:]:
        print("replaying", path, flush=True)
        data = open(path, "rb").read()
        error = None
        try:
            obj = safeload.loads(data)
            loaded = True
        except safeload.SafeloadError as exc:
            loaded = False
            error = exc
        report = safeload.scan(data)
        writable = safeload.scan(bytearray(data))  # (a file read from disk is a writable buffer)
        if writable.verdict != report.verdict:
            print("DISAGREE", path, "scan of bytes", report.verdict, "of a bytearray", writable.verdict, flush=True)
            sys.exit(6)
        if report.safe and isinstance(error, safeload.UnsafeModelError) and error.path is None:
            # scan may miss only what it cannot foresee: a constructor failing, or structural
            # validation of a built object (UnsafeModelError with .path). A policy refusal is a bug.
            print("DISAGREE", path, "scan safe, load refused:", error, flush=True)
            sys.exit(4)
        if loaded and report.verdict == "no-code":  # nothing that runs code: numeric arrays come back
            if type(obj).__name__ not in ("ndarray", "NpzFile"):
                print("DISAGREE", path, "no-code, but load returned", type(obj), flush=True)
                sys.exit(5)
        elif loaded and not report.safe:
            print("DISAGREE", path, report.verdict, flush=True)
            sys.exit(3)
    print("ALL OK", flush=True)
    """
)


def test_there_are_reproducers() -> None:
    assert len(FILES) >= 20


@pytest.mark.timeout(600)
def test_every_reproducer_is_refused_or_loaded_without_crashing() -> None:
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _CHILD, *map(str, FILES)],
                          capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, f"child exited {proc.returncode}:\\n{tail}"
    assert "ALL OK" in proc.stdout, tail
