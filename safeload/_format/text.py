"""Human-readable report: a summary table, then the findings of every file that is not safe.

The details end with the exact ``--allow`` / ``allow=[...]`` spelling for refused names, because
"how do I load this file I trust" is the first question after a refusal.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from safeload._format import LOADABLE_FORMATS, display_path, is_failure, shown_findings, summarize
from safeload._report import Finding, ScanReport, Verdict

__all__ = ["render"]

# Rules whose names the caller may allow explicitly; other findings cannot be allowed away.
_ALLOWABLE_RULES = frozenset({"disallowed-global", "skops-untrusted"})
_INDENT = "  "


def render(reports: Sequence[ScanReport], root: str, *, explain: bool = False) -> str:
    """Render ``reports`` as plain text (with fickling's decompiled code when ``explain``)."""
    lines: list[str] = []
    if reports:
        lines.extend(_table(reports, root))
    for report in reports:
        if report.verdict in (Verdict.SAFE, Verdict.NO_CODE) and not explain and not is_failure(report):
            continue
        details = _details(report, root, explain)
        if details:
            lines.append("")
            lines.extend(details)
    if lines:
        lines.append("")
    lines.append(_summary_line(reports))
    return "\n".join(lines) + "\n"


def _table(reports: Sequence[ScanReport], root: str) -> list[str]:
    header = ("FILE", "FORMAT", "VERDICT", "FINDINGS")
    rows = [(display_path(r.path, root), r.format, r.verdict, str(_count(r))) for r in reports]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    out = []
    for row in [header, *rows]:
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    return out


def _count(report: ScanReport) -> int:
    return sum(1 for f in report.findings if f.severity != "info")


def _where(finding: Finding) -> str:
    parts = []
    if finding.location.member is not None:
        parts.append(f"member {finding.location.member}")
    if finding.location.offset is not None:
        parts.append(f"byte {finding.location.offset}")
    return f" at {', '.join(parts)}" if parts else ""


def _details(report: ScanReport, root: str, explain: bool) -> list[str]:
    path = display_path(report.path, root)
    findings = shown_findings(report, explain)
    if report.verdict == Verdict.SAFE and not findings and not (explain and report.globals):
        return []
    digest = f", sha256 {report.sha256[:16]}..." if report.sha256 else ""
    out = [f"{path}: {report.verdict} ({report.format}, {report.size} bytes{digest})"]
    for f in findings:
        out.append(f"{_INDENT}[{f.severity}] {f.rule}{_where(f)}: {f.message}")
    if explain:
        out.extend(_globals(report))
        out.extend(_decompiled(report))
    out.extend(_allow_hint(report, path))
    return out


def _globals(report: ScanReport) -> list[str]:
    if not report.globals:
        return []
    out = [f"{_INDENT}globals:"]
    for g in report.globals:
        status = "allowed" if g.allowed else "REFUSED"
        kind = f" ({g.kind})" if g.kind else ""
        where = f" in {g.member}" if g.member else ""
        out.append(f"{_INDENT * 2}{status:8} {g.name}{kind}{where}")
    return out


def _decompiled(report: ScanReport) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for f in report.findings:
        code = f.decompiled
        if not code or code in seen:
            continue
        seen.add(code)
        member = f" of {f.location.member}" if f.location.member else ""
        out.append(f"{_INDENT}decompiled{member} (fickling, never executed):")
        out.extend(f"{_INDENT * 2}{line}" for line in code.splitlines())
    return out


def _allow_hint(report: ScanReport, path: str) -> list[str]:
    """How to allow refused names -- only where that can help: a format ``load`` opens, names that do not run code."""
    if not LOADABLE_FORMATS.match(report.format):
        return []  # containers load() cannot open (torch, tar, zip, npz): allowing names changes nothing
    names = sorted({n for f in report.findings if f.rule in _ALLOWABLE_RULES for n in f.names if _is_name(n)})
    if not names:
        return []
    dangerous = [n for n in names if _dangerous(n)]
    if dangerous:
        return [f"{_INDENT}Do not load this file: {', '.join(dangerous)} would let it run code or touch the "
                "system; a model file never needs that. Treat the file as malicious."]
    flags = " ".join(f"--allow {shlex.quote(n)}" for n in names)
    listed = ", ".join(repr(n) for n in names)
    out = [
        f"{_INDENT}If you trust this file and these names, allow them explicitly:",
        f"{_INDENT * 2}safeload scan {flags} {shlex.quote(path)}",
        f"{_INDENT * 2}safeload.load({path!r}, allow=[{listed}])",
    ]
    others = [f for f in report.findings if f.severity in ("high", "medium") and f.rule not in _ALLOWABLE_RULES]
    if others:
        out.append(f"{_INDENT}(the other findings above are not about names and cannot be allowed)")
    return out


def _dangerous(name: str) -> bool:
    try:
        from safeload._policy import is_dangerous  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # an older policy module: its fixed list
        from safeload._policy import DANGEROUS_NAMES

        return name in DANGEROUS_NAMES
    return bool(is_dangerous(name))


def _is_name(name: str) -> bool:
    """Only real dotted names get an allow hint (text misread as a pickle yields nonsense ones)."""
    return all(part.isidentifier() for part in name.split("."))


def _summary_line(reports: Sequence[ScanReport]) -> str:
    counts = summarize(reports)
    n = counts["files"]
    if n == 0:
        return "No model files found."
    parts = [f"{counts[key]} {label}" for key, label in (
        ("safe", "safe"), ("unsafe", "unsafe"), ("error", "error"), ("unsupported", "unsupported"),
        ("not_a_model", "not a model"), ("no_code", "no code"), ("not_judged", "not judged")) if counts[key]]
    failing = f" {counts['failed']} failing." if counts["failed"] else ""
    return f"{n} file{'s' if n != 1 else ''} scanned: {', '.join(parts)}.{failing}"
