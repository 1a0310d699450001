"""The walker compiled by mypyc (setup.py) against the same source run as plain Python.

mypyc keeps Python semantics (bounds-checked indexing, arbitrary-precision ints), but it
also checks declared types at run time, so a compiled walk could differ from the Python
one on hostile input: every sample, fuzz reproducer and a slice of the zoo must walk to the
same trace both ways. Installs without a compiler (or with SAFELOAD_PURE_PYTHON=1) run the
source itself; CI builds the compiled module and this file requires it there.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from safeload import _walker
from safeload._containers import COMPRESSED, Format, decompress, sniff
from safeload._policy import Policy

ROOT = Path(__file__).resolve().parents[1]
#: What setup.py compiles together, in import order.
MODULES = ("_hashwork", "_simulated", "_keyhash", "_mirrors", "_walker")
SOURCES = [ROOT / "safeload" / f"{name}.py" for name in MODULES]
SOURCE = SOURCES[-1]
COMPILED = not str(_walker.__file__).endswith(".py")


def _pure_walker() -> Any:
    """The compiled modules run from their sources, importing one another (not the compiled
    ones): swapped into ``sys.modules`` under their own names while they import, then put back."""
    saved = {name: sys.modules[f"safeload.{name}"] for name in MODULES}
    try:
        for name, path in zip(MODULES, SOURCES, strict=True):
            spec = importlib.util.spec_from_file_location(f"safeload.{name}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses and the next module's imports resolve it by name
            spec.loader.exec_module(module)
        assert str(module.__file__).endswith("_walker.py")
        return module
    finally:
        sys.modules.update({f"safeload.{name}": mod for name, mod in saved.items()})


_OBJECT_REPR = re.compile(r"<safeload\._(?:walker|simulated|mirrors)\.(\w+) object at 0x[0-9a-f]+>")


def _norm(trace: Any) -> Any:
    """A comparable, module-independent view of a Trace."""
    return (
        trace.start, trace.end, trace.protocol, trace.opcodes,
        [(g.name, g.raw_module, g.raw_qualname, g.offset, g.opcode, g.allowed) for g in trace.globals],
        [node.called for node in trace.nodes],
        [(i.rule, i.severity, i.offset, _OBJECT_REPR.sub(r"<\1>", i.message), i.names) for i in trace.issues],
        [(a.build_offset, a.data_offset, a.nbytes, str(a.dtype), a.shape, a.order, a.allow_mmap,
          _norm(a.nested) if a.nested is not None else None) for a in trace.arrays],
    )


def _streams() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    paths = sorted((ROOT / "malicious_samples").glob("s*_*")) + sorted((ROOT / "fuzz" / "crashes").rglob("*"))
    paths += sorted((ROOT / "tests" / ".zoo_cache").rglob("*"))[:400]
    for path in paths:
        if not path.is_file() or path.suffix in (".py", ".md", ".json"):
            continue
        data = path.read_bytes()
        try:
            fmt = sniff(data)
            if fmt in COMPRESSED:
                data = bytes(decompress(fmt, data, Policy.default().limits))
                fmt = sniff(data)
        except Exception:  # noqa: BLE001 - not a stream this test can walk
            continue
        if fmt is Format.PICKLE:
            out.append((path.name, data))
    return out


def test_ci_runs_the_compiled_walker() -> None:
    if os.environ.get("CI") and not os.environ.get("SAFELOAD_PURE_PYTHON"):
        assert COMPILED, "pip install did not compile safeload/_walker.py with mypyc (see setup.py)"
    if COMPILED:
        built = Path(str(_walker.__file__)).stat().st_mtime
        for source in SOURCES:
            assert source.stat().st_mtime <= built + 1, \
                f"safeload/{source.name} changed after it was compiled: rebuild with `pip install -e .`"


@pytest.mark.skipif(not COMPILED, reason="the walker is not compiled in this install (nothing to compare)")
def test_compiled_and_source_walk_alike() -> None:
    pure = _pure_walker()
    policy = Policy.default()
    streams = _streams()
    assert len(streams) > 100
    for name, data in streams:
        for joblib in (True, False):
            assert _norm(_walker.walk(data, policy, joblib=joblib)) == _norm(pure.walk(data, policy, joblib=joblib)), \
                name


@pytest.mark.skipif(not COMPILED, reason="the walker is not compiled in this install (nothing to compare)")
def test_compiled_and_source_walk_alike_on_mutants() -> None:
    """Byte-level mutants of the corpus (flips, runs, cuts, splices): hostile input is where mypyc's
    run-time type checks could turn a walk the Python source finishes into a TypeError."""
    import random

    pure = _pure_walker()
    policy = Policy.default()
    seeds = [data for _, data in _streams() if len(data) < 200_000]
    rng = random.Random(20261203)
    for n in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(4)
            pos = rng.randrange(len(data)) if data else 0
            if kind == 0 and data:
                data[pos] ^= 1 << rng.randrange(8)
            elif kind == 1:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif kind == 2:
                del data[pos:pos + rng.randint(1, 16)]
            else:
                other = rng.choice(seeds)
                at = rng.randrange(len(other))
                data[pos:pos] = other[at:at + rng.randint(1, 64)]
        mutant = bytes(data)
        joblib = bool(n % 2)
        assert _norm(_walker.walk(mutant, policy, joblib=joblib)) == _norm(pure.walk(mutant, policy, joblib=joblib)), \
            mutant[:200]
