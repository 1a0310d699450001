"""A big file read front to back on a helper thread while the walker judges what has arrived.

Reading a 100 MB model costs about as much as walking it: the kernel copies
page-cache pages into fresh memory, and ``preadv`` does that without the GIL.
So the read runs on a second core (in ``_speedups.fill``, which never takes the GIL
until the file is in), and whoever looks at the buffer first asks :meth:`Filling.wait`
for the bytes it is about to touch. Nothing changes about
what is judged: every byte is read once, into memory only we can write, and
``load`` builds nothing before :meth:`Filling.finish` has confirmed the whole
file arrived and did not change size meanwhile.
"""

from __future__ import annotations

import array
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from safeload._errors import MalformedModelError, SafeloadError, UnsupportedFormatError

try:
    from safeload import _speedups
except ImportError:  # not built: files are read before they are judged
    _speedups = None  # type: ignore[assignment]

_fill: Callable[[int, Any, int, int, Any], tuple[int, int]] | None = getattr(_speedups, "fill", None)  # no pread: None
_progress: Callable[[Any], int] | None = getattr(_speedups, "progress", None)

__all__ = ["CHUNK", "Filling", "available"]

#: Bytes per read: the walker can start ~1 ms after the first call.
CHUNK = 1 << 20

#: How long a walker that has caught up with the read sleeps (without the GIL) before it looks again.
_POLL = 50e-6


def available() -> bool:
    """Can a file be judged while it is read?  Only with the compiled reader.

    A reader in Python must take the GIL to publish each chunk, and the compiled walker holds the
    GIL while it works: measured on 2 cores, the reader then waited up to a switch interval (5 ms)
    per chunk and the walker for it, and loads were slower than reading the file first (median of
    25 interleaved rounds: 99 MB forest 342 ms against 133 ms, 10 MB forest pickle 51 ms against
    34 ms). ``_speedups.fill`` publishes progress with an atomic store instead.
    """
    return _fill is not None


class Filling:
    """``buf[:avail]`` holds the file's first ``avail`` bytes; ``avail`` only grows."""

    def __init__(self, fd: int, buf: Any, size: int, path: str) -> None:
        if _fill is None:
            raise RuntimeError("background reads need safeload._speedups (see available())")
        self.size = size
        self._fd = fd
        self._view = memoryview(buf)
        self._path = path
        self._state = array.array("q", [0, 0])  # [bytes read (fill() stores it), cancel]
        self._error: SafeloadError | None = None
        self._done = False
        self._thread = threading.Thread(target=self._read, name="safeload-read", daemon=True)
        self._thread.start()

    @property
    def avail(self) -> int:
        assert _progress is not None
        return _progress(self._state)

    def _read(self) -> None:
        assert _fill is not None
        error: SafeloadError | None = None
        try:
            pos, err = _fill(self._fd, self._view, self.size, CHUNK, self._state)
            if err:
                raise OSError(err, os.strerror(err))
            if not self._state[1] and (pos < self.size or os.pread(self._fd, 1, self.size)):
                error = MalformedModelError(f"{self._path} changed size while it was being read")
        except OSError as exc:
            error = UnsupportedFormatError(f"cannot read {self._path}: {exc.strerror or exc}")
        finally:
            self._view.release()
            os.close(self._fd)
            self._error = error
            self._done = True  # after _error: a waiter that sees _done sees the error

    def wait(self, end: int) -> int:
        """Block until the first ``end`` bytes (at most the whole file) are in; return how many are."""
        end = min(end, self.size)
        while True:
            avail = self.avail
            if avail >= end:
                return avail
            if self._done:
                break
            time.sleep(_POLL)  # releases the GIL; the reader does not need it
        avail = self.avail
        if avail < end:  # the read failed or was cancelled before reaching ``end``
            raise self._error or MalformedModelError(f"reading {self._path} was cancelled")
        return avail

    def finish(self) -> None:
        """Wait for the whole file; raise if it could not be read or changed size while it was read."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._state[1]:
            raise MalformedModelError(f"reading {self._path} was cancelled")

    def cancel(self) -> None:
        """Stop reading (the result is abandoned); returns once the helper thread has let go of the buffer."""
        self._state[1] = 1
        self._thread.join()
