"""Every allowed name that builds an object, classified by how that object hashes.

The walker stands for dict keys and set items by proxies (``_keyhash``) and refuses keys that
cannot be hashed (``_mirrors.UNHASHABLE_CALLEES``). Both lists are hand-kept or generated; this
audit imports every CALL and NEW entry of the default policy (allowed in tests, never in
``scan``) and fails when an entry's real hashing is not the one the walker assumes:

* ``__hash__ is None`` (arrays, kernels, sparse matrices, dict subclasses): must be listed as
  unhashable, or ``scan`` calls a file safe that ``load`` fails to build;
* a value hash (``complex``, ``frozenset``, namedtuples...): must be evaluated by the proxy or
  counted as colliding when it cannot be (``_keyhash.VALUE_HASHED``), unless the hash is
  randomised per process (``str``/``bytes``-based: checked here across two hash seeds);
* the identity hash of ``object``: must be in neither list.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from typing import Any

import pytest

from safeload._allowlist import DEFAULT_ENTRIES, Kind
from safeload._keyhash import VALUE_HASHED
from safeload._mirrors import NAMEDTUPLES, UNHASHABLE_CALLEES

#: Allowed calls that are functions: what they return, as the walker models it.
FUNCTION_RESULTS: dict[str, str] = {
    "_codecs.encode": "randomised",  # bytes
    "copyreg._reconstructor": "instance",  # of its class argument, itself audited (walker: _BUILDS_FIRST_ARG)
    "numpy._core.multiarray._reconstruct": "unhashable",  # ndarray
    "numpy.core.multiarray._reconstruct": "unhashable",
    "numpy._core.numeric._frombuffer": "unhashable",
    "numpy.core.numeric._frombuffer": "unhashable",
    "numpy.ma.core._mareconstruct": "unhashable",  # MaskedArray
    "numpy._core.multiarray.scalar": "value",  # a numpy scalar hashes as the Python number it holds
    "numpy.core.multiarray.scalar": "value",
    "numpy.random._pickle.__bit_generator_ctor": "identity",
    "numpy.random._pickle.__generator_ctor": "identity",
    "numpy.random._pickle.__randomstate_ctor": "identity",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": "identity",
    "sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss": "identity",
    "sklearn.metrics._dist_metrics.newObj": "instance",
    "sklearn.neighbors._ball_tree.newObj": "instance",
    "sklearn.neighbors._kd_tree.newObj": "instance",
}

#: Value-hashed classes whose hash is computed from str/bytes (randomised per process): a file
#: cannot choose values that share one.
RANDOMISED: dict[str, str] = {
    "builtins.bytes": "bytes: SipHash, keyed per process",
    "datetime.date": "hashes its packed bytes (SipHash) when naive",
    "datetime.datetime": "hashes its packed bytes (SipHash) when naive; no tzinfo class is allowed",
}


def _resolve(name: str) -> Any:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(name)


def _hashing(cls: type) -> str:
    if cls.__hash__ is None:
        return "unhashable"
    if cls.__hash__ is object.__hash__:
        return "identity"
    return "value"


def _built() -> list[tuple[str, str]]:
    out = []
    for entry in DEFAULT_ENTRIES:
        if entry.kind is Kind.VALUE:
            continue
        obj = _resolve(entry.name)
        out.append((entry.name, _hashing(obj) if inspect.isclass(obj) else FUNCTION_RESULTS.get(entry.name, "?")))
    return out


@pytest.mark.parametrize(("name", "hashing"), _built())
def test_the_walker_assumes_how_each_built_object_hashes(name: str, hashing: str) -> None:
    assert hashing != "?", f"{name} is a function: add what it returns to FUNCTION_RESULTS"
    unhashable = name in UNHASHABLE_CALLEES
    evaluated = name in VALUE_HASHED or name in NAMEDTUPLES
    if hashing == "unhashable":
        assert unhashable, f"{name}'s instances cannot be hashed: list it in _mirrors.UNHASHABLE_CALLEES"
    elif hashing == "value":
        assert not unhashable
        assert evaluated or name in RANDOMISED, (
            f"{name} hashes by value: evaluate it in _keyhash (and list it in VALUE_HASHED) or justify it in RANDOMISED")
    else:
        assert not unhashable and not evaluated, f"{name} hashes by {hashing}: the walker must not assume otherwise"


def test_the_lists_name_nothing_the_policy_does_not_build() -> None:
    built = {e.name for e in DEFAULT_ENTRIES if e.kind is not Kind.VALUE}
    assert VALUE_HASHED <= built
    assert set(RANDOMISED) <= built
    assert set(FUNCTION_RESULTS) <= built


_SAMPLES = {
    "builtins.bytes": "bytes(range(7))",
    "datetime.date": "datetime.date(2020, 1, 2)",
    "datetime.datetime": "datetime.datetime(2020, 1, 2, 3, 4, 5)",
}


@pytest.mark.parametrize("name", sorted(RANDOMISED))
def test_randomised_hashes_really_change_with_the_hash_seed(name: str) -> None:
    """Not taken on trust: the same value hashes differently under two ``PYTHONHASHSEED``s."""
    code = f"import datetime; print(hash({_SAMPLES[name]}))"
    seen = {subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True,
                           text=True, check=True).stdout for seed in ("1", "2")}
    assert len(seen) == 2, name
