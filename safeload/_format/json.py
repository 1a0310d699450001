"""Machine-readable report with a stable, versioned schema (documented in docs/json-format.md).

Every key is always present (``null`` when unknown) so consumers never need ``.get``;
new keys may be added within schema version 1, existing ones never change meaning.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from safeload._format import display_path, is_failure, ordered_findings, summarize
from safeload._report import Finding, GlobalVerdict, ScanReport

__all__ = ["SCHEMA_VERSION", "render", "to_document"]

SCHEMA_VERSION = 1


#: One result per line, written by json's C encoder: ``indent`` switches json to its pure-Python
#: encoder, which cost more than judging the files on a store of 10,000 small models.
_RESULT = json.JSONEncoder(separators=(", ", ": "))


def render(reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> str:
    """Render ``reports`` as a JSON document (fickling's advisory notes only with ``explain``):
    the head two-space indented, each result on one line."""
    doc = to_document(reports, root, explain=explain)
    results = doc.pop("results")
    head = json.dumps(doc, indent=2)[:-2]  # without the closing "\n}"
    if not results:
        return head + ',\n  "results": []\n}\n'
    body = ",\n    ".join(_RESULT.encode(r) for r in results)
    return f'{head},\n  "results": [\n    {body}\n  ]\n}}\n'


def to_document(reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> dict[str, Any]:
    from safeload import __version__

    return {
        "version": SCHEMA_VERSION,
        "tool": {"name": "safeload", "version": __version__},
        "summary": summarize(reports),
        "results": [_result(r, root, explain) for r in reports],
    }


def _result(report: ScanReport, root: str, explain: bool) -> dict[str, Any]:
    return {
        "path": display_path(report.path, root),
        "format": report.format,
        "verdict": report.verdict,
        "safe": report.safe,
        "failed": is_failure(report),
        "size": report.size,
        "sha256": report.sha256 or None,
        "findings": [_finding(f) for f in ordered_findings(report, explain)],
        "globals": [_global(g) for g in report.globals],
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "severity": f.severity,
        "message": f.message,
        "names": list(f.names),
        "offset": f.location.offset,
        "member": f.location.member,
        "decompiled": f.decompiled,
    }


def _global(g: GlobalVerdict) -> dict[str, Any]:
    return {
        "name": g.name,
        "allowed": g.allowed,
        "kind": g.kind,
        "offsets": list(g.offsets),
        "member": g.member,
    }
