"""Output formats for ``safeload scan``: one module per format, each a pure ``render`` function.

Renderers only build strings (pip-audit style): the CLI decides where they go, so the
same report can be printed, written to ``--output`` or embedded by other tools.
Every renderer has the signature ``render(reports, root, *, explain=False) -> str``;
``root`` is the directory paths are shown relative to (the SARIF ``%SRCROOT%``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Protocol

from safeload._report import RULES, Finding, ScanReport, Verdict

__all__ = [
    "CLI_RULES",
    "FAILING_VERDICTS",
    "FORMATS",
    "Renderer",
    "display_path",
    "get_renderer",
    "is_failure",
    "is_inside",
    "rule_text",
    "shown_findings",
    "summarize",
]

FORMATS: tuple[str, ...] = ("text", "json", "sarif")

# Verdicts ``safeload.load`` would refuse; any of them makes ``safeload scan`` exit 1.
FAILING_VERDICTS: frozenset[str] = frozenset({Verdict.UNSAFE, Verdict.ERROR, Verdict.UNSUPPORTED})


class Renderer(Protocol):
    def __call__(self, reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> str: ...


def get_renderer(name: str) -> Renderer:
    """The ``render`` function of format ``name`` (imported lazily: the CLI needs only one)."""
    if name not in FORMATS:
        raise ValueError(f"unknown output format {name!r} (choose from {', '.join(FORMATS)})")
    module = importlib.import_module(f"safeload._format.{name}")
    render: Renderer = module.render
    return render


def is_failure(report: ScanReport) -> bool:
    """True when ``load`` would refuse the file (``not-a-model`` is reported but not a failure)."""
    return report.verdict in FAILING_VERDICTS


def display_path(path: str, root: str) -> str:
    """``path`` relative to ``root`` with forward slashes, or absolute (POSIX style) if outside it."""
    abs_path = os.path.abspath(path)
    abs_root = os.path.abspath(root)
    try:
        common = os.path.commonpath([abs_path, abs_root])
    except ValueError:  # different drives on Windows
        common = ""
    if common == abs_root:
        return PurePath(os.path.relpath(abs_path, abs_root)).as_posix()
    return Path(abs_path).as_posix()


def is_inside(path: str, root: str) -> bool:
    abs_path = os.path.abspath(path)
    abs_root = os.path.abspath(root)
    try:
        return os.path.commonpath([abs_path, abs_root]) == abs_root
    except ValueError:
        return False


def summarize(reports: Sequence[ScanReport]) -> dict[str, int]:
    """Counts per verdict plus the number of non-informational findings (the JSON ``summary``)."""
    counts = {
        "files": len(reports),
        "safe": 0,
        "unsafe": 0,
        "error": 0,
        "unsupported": 0,
        "not_a_model": 0,
    }
    for r in reports:
        key = r.verdict.replace("-", "_")
        counts[key] = counts.get(key, 0) + 1
    counts["findings"] = sum(1 for r in reports for f in r.findings if f.severity != "info")
    return counts


def shown_findings(report: ScanReport, explain: bool) -> list[Finding]:
    """Findings worth showing a human: informational notes (fickling hints) only with ``--explain``,
    unless they are all the file has (e.g. "unsupported container", "not a model")."""
    real = [f for f in report.findings if f.severity != "info"]
    if explain or not real:
        return list(report.findings)
    return real


# Rules produced by the CLI itself rather than by ``scan``.
CLI_RULES: dict[str, tuple[str, str]] = {
    "internal-error": ("safeload failed on this file",
                       "safeload raised an unexpected error while scanning this file; the file is treated as "
                       "refused. Please report this as a bug."),
}


def rule_text(rule: str) -> tuple[str, str]:
    """(short, help) for a rule id; ids the report table does not know yet get a generic text."""
    if rule in RULES:
        return RULES[rule]
    if rule in CLI_RULES:
        return CLI_RULES[rule]
    words = rule.replace("-", " ")
    return (f"Malformed stream ({words})",
            f"The input is not a valid stream ({words}); a loader would fail on it, so safeload refuses it.")
