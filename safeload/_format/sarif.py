"""SARIF 2.1.0 report that GitHub code scanning accepts.

Design choices, each for a consumer we know:

* One ``run``; ``tool.driver.rules`` holds exactly the rules used, with the texts of
  ``safeload._report.RULES``; ``defaultConfiguration.level`` is the worst level seen for the rule.
* Artifact URIs are relative to the scanned root with ``uriBaseId`` ``%SRCROOT%`` (what
  GitHub maps onto the repository); files outside the root get an absolute ``file:`` URI.
* Model files are binary, so the region carries ``byteOffset`` when the opcode offset is
  known.  GitHub only places annotations on regions that have a ``startLine``, so every
  region also has ``startLine: 1`` (the file itself) -- the same compromise OpenSSF
  Scorecard makes for binary artifacts.
* ``partialFingerprints`` are computed here (rule, path, names, member, offset) because
  the upload action cannot compute line hashes that mean anything for binary files.
* Findings inside archives (skops, zip, npz) name the member in the message and in
  ``properties.member``.
* Safe files and files that are not models produce no results (nothing to alert on);
  informational notes on refused files become ``note`` results.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from safeload._format import display_path, is_failure, ordered_findings, placed, rule_text
from safeload._report import Finding, ScanReport, Verdict

__all__ = ["INFORMATION_URI", "SARIF_SCHEMA", "SARIF_VERSION", "render", "to_document"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://pypi.org/project/safeload/"
SRCROOT = "%SRCROOT%"

_LEVEL = {"high": "error", "medium": "warning", "low": "note", "info": "note"}
_RANK = {"error": 3, "warning": 2, "note": 1}
# GitHub's security-severity scale: >= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, < 4.0 low.
_SECURITY_SEVERITY = {"error": "9.0", "warning": "5.0", "note": "2.0"}
# Refused names / structures mean "loading this runs attacker-chosen code": CWE-502.
_CWE_502 = "external/cwe/cwe-502"


#: Artifacts and results one per line, written by json's C encoder: ``indent`` switches json to its
#: pure-Python encoder (a store of 10,003 clean files: 0.44 s, most of the SARIF report's cost).
_ITEM = json.JSONEncoder(separators=(", ", ": "))
_ITEMS = ("artifacts", "results")


def render(reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> str:
    """Render ``reports`` as a SARIF 2.1.0 log; ``explain`` adds fickling's decompiled code to results.

    The head (tool, rules: safeload's own texts, nothing from a file) two-space indented, each
    artifact and result on one line."""
    doc = to_document(reports, root, explain=explain)
    run = doc["runs"][0]
    lists = {key: run[key] for key in _ITEMS}
    for key in _ITEMS:
        run[key] = f"\x00{key}\x00"  # a marker: the head holds no text from a file, so none can collide
    out = json.dumps(doc, indent=2)
    for key, items in lists.items():
        body = "[]" if not items else "[\n        " + ",\n        ".join(map(_ITEM.encode, items)) + "\n      ]"
        out = out.replace(f'"\\u0000{key}\\u0000"', body, 1)
    return out + "\n"


def to_document(reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> dict[str, Any]:
    from safeload import __version__

    levels: dict[str, str] = {}
    for report in reports:
        if _alerts(report):
            for f in ordered_findings(report, explain):
                level = _LEVEL.get(f.severity, "warning")
                if f.rule not in levels or _RANK[level] > _RANK[levels[f.rule]]:
                    levels[f.rule] = level  # a rule's default level is the worst one it was reported at
    rule_ids = sorted(levels)
    index = {rule: i for i, rule in enumerate(rule_ids)}
    results = [
        _result(f, report, root, index[f.rule], artifact_index, explain)
        for artifact_index, report in enumerate(reports)
        if _alerts(report)
        for f in ordered_findings(report, explain)
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "safeload",
                        "informationUri": INFORMATION_URI,
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_rule(rule, levels[rule]) for rule in rule_ids],
                    }
                },
                "artifacts": [_artifact(r, root) for r in reports],
                "results": results,
            }
        ],
    }


def _alerts(report: ScanReport) -> bool:
    """Only files that fail the audit produce results; the others are listed as artifacts."""
    return is_failure(report) and report.verdict != Verdict.SAFE


def _artifact_location(path: str, root: str) -> dict[str, Any]:
    if "://" in path:  # a remote store (s3://, gs://, https://): the URL is the location
        return {"uri": path}
    shown, inside = placed(path, root)
    if inside:
        return {"uri": quote(shown, safe="/", errors="surrogateescape"), "uriBaseId": SRCROOT}
    return {"uri": Path(os.path.abspath(path)).as_uri()}


def _artifact(report: ScanReport, root: str) -> dict[str, Any]:
    artifact: dict[str, Any] = {
        "location": _artifact_location(report.path, root),
        "length": report.size,
        "roles": ["analysisTarget"],
        "properties": {"format": report.format, "verdict": report.verdict},
    }
    if report.sha256:
        artifact["hashes"] = {"sha-256": report.sha256}
    return artifact


def _rule(rule: str, level: str) -> dict[str, Any]:
    short, help_text = rule_text(rule)
    tags = ["security", "deserialization"]
    if level == "error":
        tags.append(_CWE_502)
    return {
        "id": rule,
        "name": "".join(part.capitalize() for part in rule.split("-")),
        "shortDescription": {"text": short},
        "fullDescription": {"text": help_text},
        "help": {"text": help_text, "markdown": f"**{short}.** {help_text}"},
        "defaultConfiguration": {"level": level},
        "properties": {"tags": tags, "security-severity": _SECURITY_SEVERITY[level]},
    }


def _message(f: Finding) -> str:
    where = []
    if f.location.member is not None:
        where.append(f"in archive member {f.location.member}")
    if f.location.offset is not None:
        where.append(f"at byte offset {f.location.offset}")
    return f"{f.message} ({', '.join(where)})" if where else f.message


def _fingerprint(f: Finding, path: str) -> str:
    key = "\x00".join([f.rule, path, ",".join(f.names), f.location.member or "", str(f.location.offset)])
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _result(f: Finding, report: ScanReport, root: str, rule_index: int, artifact_index: int,
            explain: bool) -> dict[str, Any]:
    location = dict(_artifact_location(report.path, root), index=artifact_index)
    region: dict[str, Any] = {"startLine": 1}
    if f.location.offset is not None:
        region["byteOffset"] = f.location.offset
    properties: dict[str, Any] = {"severity": f.severity, "verdict": report.verdict}
    if f.names:
        properties["names"] = list(f.names)
    if f.location.member is not None:
        properties["member"] = f.location.member
    if f.location.offset is not None:
        properties["offset"] = f.location.offset
    if explain and f.decompiled:
        properties["decompiled"] = f.decompiled
    return {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": _LEVEL.get(f.severity, "warning"),
        "message": {"text": _message(f)},
        "locations": [{"physicalLocation": {"artifactLocation": location, "region": region}}],
        "partialFingerprints": {"safeloadFinding/v1": _fingerprint(f, display_path(report.path, root))},
        "properties": properties,
    }
