"""The post-load graph walk costs O(objects), not O(elements x path strings).

Plain pickle builds an object array of 10**7 ``None`` (or of one shared object)
almost for free; a validator that formats a path per element turns that into
gigabytes. These bounds are generous (they are not speed targets): they fail
only if the walk allocates per element again.
"""

from __future__ import annotations

import time
import tracemalloc
import types
from typing import Any

import numpy as np
import pytest

from safeload._errors import UnsafeModelError
from safeload._validate import validate

N = 10**7
MIB = 1 << 20


def measure(obj: Any) -> tuple[float, int]:
    """(seconds of an untraced run, peak traced bytes of a second run)."""
    start = time.perf_counter()
    validate(obj)
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    try:
        validate(obj)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return elapsed, peak


@pytest.mark.parametrize("kind", ["nones", "shared"])
def test_big_object_arrays_are_cheap(kind: str) -> None:
    arr = np.empty(N, dtype=object)  # all None
    if kind == "shared":
        arr[:] = types.SimpleNamespace(a=1)
    elapsed, peak = measure({"model": arr})
    assert peak < 50 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert elapsed < 5, elapsed  # per-element path strings took minutes (about 0.05 s now)


def test_big_lists_and_dicts_of_shared_objects_are_cheap() -> None:
    shared = types.SimpleNamespace(a=[1, 2])
    big_list = [shared] * (N // 2)
    big_dict = dict.fromkeys(range(N // 10), shared)
    elapsed, peak = measure([big_list, big_dict, (shared,) * 1000])
    assert peak < 50 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert elapsed < 5, elapsed


def test_failing_object_path_is_rendered_on_failure() -> None:
    """Paths are rebuilt only for the failing object, and they are the same as before."""

    class Bad:
        pass

    bad = types.SimpleNamespace(predict=1)  # SimpleNamespace has no class-level 'predict': fine
    arr = np.empty(1000, dtype=object)
    arr[999] = bad
    validate({"models": [arr]})
    # an instance key that shadows a method of its class
    thing = Bad()
    thing.__dict__["__init__"] = 0
    arr[500] = thing
    with pytest.raises(UnsafeModelError) as info:
        validate({"models": [arr]})
    assert info.value.path == "['models'][0][500].__init__"


def test_two_dimensional_object_array_path() -> None:
    class Bad:
        def method(self) -> None: ...

    thing = Bad()
    thing.__dict__["method"] = 0
    arr = np.empty((3, 4), dtype=object)
    arr[2, 1] = thing
    with pytest.raises(UnsafeModelError) as info:
        validate(arr)
    assert info.value.path == "[2, 1].method"
