"""The one child-process measurement of safeload's cost that tests hold to issue 11's bounds:
``benchmarks/resources.py``'s (peak RSS growth after the imports, wall time, the error class, and
scan's verdict), loaded from the script so that the tests and the benchmark cannot drift apart."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _resources() -> Any:
    spec = importlib.util.spec_from_file_location("safeload_resources_bench", ROOT / "benchmarks" / "resources.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


R = _resources()


def measure(mode: str, path: Path, timeout: float = 3600) -> dict[str, Any]:
    """``mode`` (pickle, load, read, scan) of ``path`` in a fresh child: seconds, peak, error, verdict."""
    result: dict[str, Any] = R.measure(mode, path, timeout)
    return result
