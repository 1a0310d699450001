"""A big file read front to back on a helper thread while the walker judges what has arrived.

Reading a 100 MB model costs about as much as walking it: the kernel copies
page-cache pages into fresh memory, and ``preadv`` does that without the GIL.
So the read runs on a second core, and whoever looks at the buffer first asks
:meth:`Filling.wait` for the bytes it is about to touch. Nothing changes about
what is judged: every byte is read once, into memory only we can write, and
``load`` builds nothing before :meth:`Filling.finish` has confirmed the whole
file arrived and did not change size meanwhile.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from safeload._errors import MalformedModelError, SafeloadError, UnsupportedFormatError

__all__ = ["CHUNK", "Filling"]

#: Bytes per read: big enough to amortise the GIL round trip that publishing progress
#: takes, small enough that the walker starts ~1 ms after the first call.
CHUNK = 1 << 20


class Filling:
    """``buf[:avail]`` holds the file's first ``avail`` bytes; ``avail`` only grows."""

    def __init__(self, fd: int, buf: Any, size: int, path: str) -> None:
        self.size = size
        self.avail = 0
        self._fd = fd
        self._view = memoryview(buf)
        self._path = path
        self._error: SafeloadError | None = None
        self._done = False
        self._cancel = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="safeload-read", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pos = 0
        error: SafeloadError | None = None
        try:
            while pos < self.size and not self._cancel:
                got = os.preadv(self._fd, [self._view[pos:min(pos + CHUNK, self.size)]], pos)
                if got <= 0:
                    error = MalformedModelError(f"{self._path} changed size while it was being read")
                    break
                pos += got
                with self._cond:
                    self.avail = pos
                    self._cond.notify_all()
            if error is None and not self._cancel and os.pread(self._fd, 1, self.size):
                error = MalformedModelError(f"{self._path} changed size while it was being read")
        except OSError as exc:
            error = UnsupportedFormatError(f"cannot read {self._path}: {exc.strerror or exc}")
        finally:
            self._view.release()
            os.close(self._fd)
            with self._cond:
                self._error = error
                self._done = True
                self._cond.notify_all()

    def wait(self, end: int) -> int:
        """Block until the first ``end`` bytes (at most the whole file) are in; return how many are."""
        end = min(end, self.size)
        if self.avail >= end:
            return self.avail
        with self._cond:
            while self.avail < end and not self._done:
                self._cond.wait()
            if self.avail < end:  # the read failed or was cancelled before reaching ``end``
                raise self._error or MalformedModelError(f"reading {self._path} was cancelled")
            return self.avail

    def finish(self) -> None:
        """Wait for the whole file; raise if it could not be read or changed size while it was read."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._cancel:
            raise MalformedModelError(f"reading {self._path} was cancelled")

    def cancel(self) -> None:
        """Stop reading (the result is abandoned); returns once the helper thread has let go of the buffer."""
        self._cancel = True
        self._thread.join()
