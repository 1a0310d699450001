"""Output formats for ``safeload scan``: one module per format, each a pure ``render`` function.

Renderers only build strings (pip-audit style): the CLI decides where they go, so the
same report can be printed, written to ``--output`` or embedded by other tools.
Every renderer has the signature ``render(reports, root, *, explain=False) -> str``;
``root`` is the directory paths are shown relative to (the SARIF ``%SRCROOT%``).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from types import ModuleType
from typing import NamedTuple, Protocol

from safeload._report import RULES, Finding, ScanReport, Verdict

__all__ = [
    "CLI_RULES",
    "FAILING_VERDICTS",
    "FORMATS",
    "LOADABLE_FORMATS",
    "ordered_findings",
    "Piecewise",
    "placed",
    "Renderer",
    "display_path",
    "get_piecewise",
    "get_renderer",
    "is_failure",
    "rule_text",
    "shown_findings",
    "summarize",
]

FORMATS: tuple[str, ...] = ("text", "json", "sarif")

# Verdicts that make ``safeload scan`` exit 1: what ``safeload.load`` would refuse, and formats it did
# not judge (unless ``--not-judged pass``).  ``not-a-model`` fails too for files that should have
# been models (named explicitly or like a model file): the CLI decides that and sets ``failed``.
FAILING_VERDICTS: frozenset[str] = frozenset({Verdict.UNSAFE, Verdict.ERROR, Verdict.UNSUPPORTED,
                                              Verdict.NOT_JUDGED})
# Formats ``safeload.load`` opens: only for those can allowing a name make a refused file load.
LOADABLE_FORMATS = re.compile(r"^(pickle|joblib(\+\w+)?|skops|npy|npz)$")
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


class Renderer(Protocol):
    def __call__(self, reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> str: ...


class Piecewise(NamedTuple):
    """A format whose reports render one by one (JSON: a line each): ``piece`` renders a report,
    ``join`` the document from all reports and their pieces (``render`` is ``join`` of every
    ``piece``).  The CLI renders pieces as reports come in, while the workers still judge."""

    piece: Callable[[ScanReport, str, bool], str]
    join: Callable[[Sequence[ScanReport], Sequence[str]], str]


def get_renderer(name: str) -> Renderer:
    """The ``render`` function of format ``name`` (imported lazily: the CLI needs only one)."""
    render: Renderer = _module(name).render
    return render


def get_piecewise(name: str) -> Piecewise | None:
    """Format ``name`` rendered piece by piece, if it can be."""
    pieces: Piecewise | None = getattr(_module(name), "PIECEWISE", None)
    return pieces


def _module(name: str) -> ModuleType:
    if name not in FORMATS:
        raise ValueError(f"unknown output format {name!r} (choose from {', '.join(FORMATS)})")
    return importlib.import_module(f"safeload._format.{name}")


def is_failure(report: ScanReport) -> bool:
    """Does the file fail the audit?  The CLI's decision (``report.failed``) when it made one, else the verdict's."""
    if report.failed is not None:
        return report.failed
    return report.verdict in FAILING_VERDICTS


def ordered_findings(report: ScanReport, explain: bool) -> list[Finding]:
    """The findings to render: verdict-deciding ones first, duplicates once, fickling's notes only with ``explain``."""
    seen: set[tuple[object, ...]] = set()
    out: list[Finding] = []
    for f in report.findings:
        if f.rule == "fickling" and not explain:
            continue
        key = (f.rule, f.severity, f.message, f.names, f.location)
        if key in seen:
            continue
        seen.add(key)
        out.append(f)
    return sorted(out, key=lambda f: _SEVERITY_ORDER.get(f.severity, 1))


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@functools.lru_cache(maxsize=64)
def _abspath(root: str) -> str:
    """The root of a report, once per report rather than once per file (10,000 files: ~0.1 s)."""
    return os.path.abspath(root)


def display_path(path: str, root: str) -> str:
    """``path`` relative to ``root`` with forward slashes, or absolute (POSIX style) if outside it; URLs as they are."""
    return placed(path, root)[0]


def placed(path: str, root: str) -> tuple[str, bool]:
    """``(display_path(path, root), whether path is under root)``, with one ``abspath`` of ``path`` (SARIF needs both)."""
    if _URL.match(path):
        return path, False
    abs_path = os.path.abspath(path)
    abs_root = _abspath(root) if os.path.isabs(root) else os.path.abspath(root)  # a relative one follows the cwd
    if abs_path.startswith(abs_root) and abs_path[len(abs_root):len(abs_root) + 1] == os.sep and abs_root != os.sep:
        # under the root (both normalised by abspath): what relpath returns, without its work
        return abs_path[len(abs_root) + 1:].replace(os.sep, "/"), True
    try:
        common = os.path.commonpath([abs_path, abs_root])
    except ValueError:  # different drives on Windows
        common = ""
    if common == abs_root:
        return PurePath(os.path.relpath(abs_path, abs_root)).as_posix(), True
    return Path(abs_path).as_posix(), False


def summarize(reports: Sequence[ScanReport]) -> dict[str, int]:
    """Counts per verdict plus the number of non-informational findings (the JSON ``summary``)."""
    counts = {
        "files": len(reports),
        "safe": 0,
        "unsafe": 0,
        "error": 0,
        "unsupported": 0,
        "not_a_model": 0,
        "no_code": 0,
        "not_judged": 0,
    }
    for r in reports:
        key = r.verdict.replace("-", "_")
        counts[key] = counts.get(key, 0) + 1
    counts["findings"] = sum(1 for r in reports for f in r.findings if f.severity != "info")
    counts["failed"] = sum(1 for r in reports if is_failure(r))
    return counts


def shown_findings(report: ScanReport, explain: bool) -> list[Finding]:
    """Findings worth showing a human: informational notes (fickling hints) only with ``--explain``,
    unless they are all the file has (e.g. "unsupported container", "not a model")."""
    findings = ordered_findings(report, explain)
    real = [f for f in findings if f.severity != "info"]
    if explain or not real:
        return findings
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
