"""The cyclic garbage collector's pace while a store is scanned, and only then.

A store scan keeps a report per file and, by its first files, has imported numpy, scikit-learn
and the validators: hundreds of thousands of long-lived objects. At CPython's default pace a
``safeload scan`` of 10,003 small models spent 0.75 s of 5 s collecting (measured with
``gc.callbacks``), 0.45 s of it in 9 full collections, each traversing everything imported,
triggered by the reports piling up. Nothing a scan keeps is garbage before it ends, and what one
file leaves is mostly garbage in the young generations (the walker and the static twin pause the
collector while they run; the next young collection finds their cycles). So, while a store is
scanned, the young generations are collected at the default pace (memory within one file is as
before: an archive's members are still freed one by one) and the oldest one only once per
``_FULL_EVERY`` bytes judged: a few of a file's cycles, which can hold its bytes, live long enough
to reach it, and a store of many big files must not keep them all. The previous thresholds are
restored on exit, also on error: unlike ``gc.freeze()`` (tried and reverted in session 25),
nothing is left changed.
"""

from __future__ import annotations

import gc
from types import TracebackType

__all__ = ["StorePace"]

_NEVER = 1 << 30  # young collections between full ones: only StorePace.judged asks for one
_FULL_EVERY = 64 << 20  # bytes judged between full collections


class StorePace:
    """``with StorePace() as pace:``, then ``pace.judged(size)`` after each file. Nests."""

    def __init__(self) -> None:
        self._before: tuple[int, ...] = ()
        self._bytes = 0

    def __enter__(self) -> StorePace:
        self._before = gc.get_threshold()
        gc.set_threshold(self._before[0], self._before[1], _NEVER)
        return self

    def judged(self, size: int) -> None:
        self._bytes += size
        if self._bytes >= _FULL_EVERY:
            self._bytes = 0
            gc.collect()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        gc.set_threshold(*self._before)
