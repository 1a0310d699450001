"""A baseline of accepted findings: known ones become notes, only new ones fail the audit.

The file is JSON::

    {"version": 1,
     "accepted": [{"path": "models/legacy.pkl", "sha256": "ab12...", "rule": "disallowed-global",
                   "names": ["mypkg.Scaler"], "reason": "our own class, reviewed 2026-11-02"}]}

An entry matches a finding with the same rule and names in a file with the same SHA-256 (or,
when the entry has no ``sha256``, at the same path).  Every entry needs a non-empty ``reason``:
``--write-baseline`` writes the current findings with empty reasons, and the baseline is refused
until someone has written down why each one is accepted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from safeload._errors import SafeloadError
from safeload._report import Finding, ScanReport

__all__ = ["Baseline", "BaselineError", "apply", "load_baseline", "write_baseline"]

_VERSION = 1


class BaselineError(SafeloadError, ValueError):
    """The baseline file is missing, malformed or has an entry without a reason."""


@dataclass(frozen=True)
class _Entry:
    path: str | None
    sha256: str | None
    rule: str
    names: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Baseline:
    entries: tuple[_Entry, ...]
    #: (rule, names, "sha256" or "path", its value) -> the first entry that says so, with its index:
    #: a lookup per finding, not a pass over every entry (a baseline of a large store has thousands).
    _index: dict[tuple[str, tuple[str, ...], str, str], tuple[int, _Entry]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, tuple[str, ...], str, str], tuple[int, _Entry]] = {}
        for i, e in enumerate(self.entries):
            # An entry with a sha256 matches by it alone; only one without names a path.
            key = (e.rule, e.names, "sha256", e.sha256) if e.sha256 is not None else (
                e.rule, e.names, "path", e.path) if e.path is not None else None
            if key is not None:
                index.setdefault(key, (i, e))
        object.__setattr__(self, "_index", index)

    def match(self, path: str, sha256: str, finding: Finding) -> _Entry | None:
        """The first entry (in file order) accepting ``finding`` in this file, if any."""
        names = tuple(finding.names)
        by_sha = self._index.get((finding.rule, names, "sha256", sha256))
        by_path = self._index.get((finding.rule, names, "path", path))
        found = min((m for m in (by_sha, by_path) if m is not None), default=None, key=lambda m: m[0])
        return found[1] if found is not None else None


def load_baseline(path: str) -> Baseline:
    try:
        with open(path, encoding="utf-8") as fh:
            doc: Any = json.load(fh)
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise BaselineError(f"baseline {path}: arrays or objects nested too deeply to read") from None
    except ValueError as exc:  # also a non-UTF-8 file, and an integer of over 4300 digits
        raise BaselineError(f"baseline {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != _VERSION or not isinstance(doc.get("accepted"), list):
        raise BaselineError(f"baseline {path}: expected {{\"version\": 1, \"accepted\": [...]}}")
    entries = []
    for i, raw in enumerate(doc["accepted"]):
        if not isinstance(raw, dict) or not isinstance(raw.get("rule"), str):
            raise BaselineError(f"baseline {path}: entry {i} needs a rule")
        reason = raw.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise BaselineError(f"baseline {path}: entry {i} ({raw.get('path')}, {raw['rule']}) has no reason; "
                                "write down why this finding is accepted")
        names = raw.get("names", [])
        sha, where = raw.get("sha256"), raw.get("path")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BaselineError(f"baseline {path}: entry {i}: names must be a list of strings")
        if not isinstance(sha, str) and not isinstance(where, str):
            raise BaselineError(f"baseline {path}: entry {i} needs a sha256 or a path")
        entries.append(_Entry(where if isinstance(where, str) else None, sha if isinstance(sha, str) else None,
                              raw["rule"], tuple(names), reason.strip()))
    return Baseline(tuple(entries))


def apply(report: ScanReport, shown_path: str, baseline: Baseline, failing: bool) -> ScanReport:
    """Turn the accepted findings of ``report`` into notes; it fails only if a real finding is left.

    ``failing``: whether the report fails without the baseline.  ``shown_path`` is the path as the
    report shows it (relative to the scan root), the one a baseline entry names.
    """
    out: list[Finding] = []
    accepted = 0
    for f in report.findings:
        entry = baseline.match(shown_path, report.sha256, f) if f.severity != "info" else None
        if entry is None:
            out.append(f)
            continue
        accepted += 1
        out.append(Finding("baseline", "info", f"accepted in the baseline ({entry.reason}): [{f.rule}] {f.message}",
                           f.names, f.location))
    if not accepted:
        return report
    left = [f for f in out if f.severity != "info"]
    return dataclasses.replace(report, findings=tuple(left + [f for f in out if f.severity == "info"]),
                               failed=failing and bool(left))


def write_baseline(path: str, reports: Sequence[tuple[str, ScanReport]]) -> int:
    """Write every non-informational finding as an entry with an empty reason; return how many."""
    accepted = [{"path": shown, "sha256": r.sha256 or None, "rule": f.rule, "names": list(f.names), "reason": ""}
                for shown, r in reports for f in r.findings if f.severity != "info"]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"version": _VERSION, "accepted": accepted}, fh, indent=2)
        fh.write("\n")
    return len(accepted)
