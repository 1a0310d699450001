"""fickling where it is strong: a readable decompilation and overt-malice hints.

Never the gate: fickling flags every real scikit-learn model, cannot parse
protocol 5 or joblib streams, and is slow on large vocabularies.  Every call is
wrapped; a fickling failure becomes a note, not an error.
"""

from __future__ import annotations

import ast

__all__ = ["decompile", "overt_malice"]

_MAX_BYTES = 8 * 1024 * 1024


def decompile(data: bytes) -> str | None:
    if len(data) > _MAX_BYTES:
        return None
    try:
        from fickling.fickle import Pickled

        return ast.unparse(Pickled.load(data).ast)
    except Exception as exc:  # noqa: BLE001 - fickling raises anything on odd input
        return f"# fickling could not decompile this stream: {type(exc).__name__}: {exc}"


def overt_malice(data: bytes) -> list[str]:
    if len(data) > _MAX_BYTES:
        return []
    try:
        from fickling.analysis import check_safety
        from fickling.fickle import Pickled

        results = check_safety(Pickled.load(data))
        return [f"{getattr(r, 'analysis_name', type(r).__name__)}: {r}" for r in results.results][:20]
    except Exception as exc:  # noqa: BLE001
        return [f"fickling analysis unavailable: {type(exc).__name__}"]
