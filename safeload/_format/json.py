"""Machine-readable report with a stable, versioned schema (documented in docs/json-format.md).

Every key is always present (``null`` when unknown) so consumers never need ``.get``;
new keys may be added within schema version 1, existing ones never change meaning.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _text  # (the C encoder's own escaping)
from typing import Any

from safeload._format import Piecewise, display_path, is_failure, ordered_findings, summarize
from safeload._report import Finding, GlobalVerdict, ScanReport

__all__ = ["PIECEWISE", "SCHEMA_VERSION", "render", "to_document"]

SCHEMA_VERSION = 1


#: One result per line, written by json's C encoder: ``indent`` switches json to its pure-Python
#: encoder, which cost more than judging the files on a store of 10,000 small models.
_RESULT = json.JSONEncoder(separators=(", ", ": "))


def render(reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> str:
    """Render ``reports`` as a JSON document (fickling's advisory notes only with ``explain``):
    the head two-space indented, each result on one line."""
    return _join(reports, [_line(r, root, explain) for r in reports])


def _join(reports: Sequence[ScanReport], lines: Sequence[str]) -> str:
    head = json.dumps(_head(reports), indent=2)[:-2]  # without the closing "\n}"
    if not reports:
        return head + ',\n  "results": []\n}\n'
    body = ",\n    ".join(lines)
    return f'{head},\n  "results": [\n    {body}\n  ]\n}}\n'


def _line(report: ScanReport, root: str, explain: bool) -> str:
    """One result as ``_RESULT.encode(_result(...))`` writes it; its globals (the bulk of a store's
    report: ~5 per file) written directly, without a dict each for the encoder to walk."""
    result = _result(report, root, explain, with_globals=False)
    return _RESULT.encode(result)[:-1] + ', "globals": [' + ", ".join([_global_text(g) for g in report.globals]) + "]}"


def _global_text(g: GlobalVerdict) -> str:
    return (f'{{"name": {_text(g.name)}, "allowed": {"true" if g.allowed else "false"}, '
            f'"kind": {"null" if g.kind is None else _text(g.kind)}, "offsets": [{", ".join(map(str, g.offsets))}], '
            f'"member": {"null" if g.member is None else _text(g.member)}}}')


PIECEWISE = Piecewise(_line, _join)


def to_document(reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> dict[str, Any]:
    """The document ``render`` writes, as Python values."""
    return {**_head(reports), "results": [_result(r, root, explain) for r in reports]}


def _head(reports: Sequence[ScanReport]) -> dict[str, Any]:
    from safeload import __version__

    return {"version": SCHEMA_VERSION, "tool": {"name": "safeload", "version": __version__},
            "summary": summarize(reports)}


def _result(report: ScanReport, root: str, explain: bool, with_globals: bool = True) -> dict[str, Any]:
    result = {
        "path": display_path(report.path, root),
        "format": report.format,
        "verdict": report.verdict,
        "safe": report.safe,
        "failed": is_failure(report),
        "size": report.size,
        "sha256": report.sha256 or None,
        "findings": [_finding(f) for f in ordered_findings(report, explain)],
    }
    if with_globals:
        result["globals"] = [_global(g) for g in report.globals]
    return result


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
