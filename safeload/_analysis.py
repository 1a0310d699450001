"""Parse and judge one input (containers, then the opcode walk) without building anything.

``load`` and ``scan`` both start here, so they see the same bytes, the same
format decision and the same issues.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from safeload._containers import COMPRESSED, Buffer, Format, decompress, sniff
from safeload._errors import (
    LimitExceededError,
    MalformedModelError,
    SafeloadError,
    UnsafeModelError,
    UnsupportedFormatError,
)
from safeload._filling import Filling
from safeload._policy import Policy, refusal_message
from safeload._skops import SkopsAudit, audit
from safeload._walker import LIMIT, UNSAFE, Issue, Trace, walk

__all__ = ["Analysis", "analyse", "analyse_or_raise", "raise_for"]


@dataclass
class Analysis:
    format: str
    compression: str | None
    stream: Buffer
    trace: Trace | None = None
    plain_view: Trace | None = None
    skops: SkopsAudit | None = None

    @property
    def is_joblib(self) -> bool:
        return self.trace is not None and bool(self.trace.arrays)

    def issues(self) -> list[Issue]:
        out: list[Issue] = []
        if self.trace is not None:
            out.extend(self.trace.all_issues())
        if self.plain_view is not None:
            # Read as a plain pickle, joblib's raw array bytes are mostly garbage (and nested object-array
            # pickles see the outer memo), so only a refused name that pickle.load could actually import
            # counts here: a module that does not exist fails the import before anything runs.
            for issue in self.plain_view.all_issues():
                if issue.rule == "joblib-legacy" or (
                        issue.rule == "disallowed-global" and all(_importable(n) for n in issue.names)):
                    out.append(Issue("hidden-in-array-data", UNSAFE, issue.offset,
                                     f"pickle.load (not joblib) would read the joblib array bytes as opcodes: "
                                     f"{issue.message}", issue.names))
        return out


def _importable(name: str) -> bool:
    """Does the top-level package exist?  ``find_spec`` on a top-level name runs no module code."""
    top = name.partition(".")[0]
    if not top.isidentifier():
        return False
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def analyse(data: Buffer, policy: Policy, filling: Filling | None = None) -> Analysis:
    """``filling``: ``data`` is still being read; only the opcode walk can start before it ends."""
    if filling is not None:
        filling.wait(8)
    fmt = sniff(data)
    if filling is not None and fmt is not Format.PICKLE:
        filling.finish()
    compression: str | None = None
    if fmt in COMPRESSED:
        compression = fmt.value
        data = decompress(fmt, data, policy.limits)
        fmt = sniff(data)
        if fmt is not Format.PICKLE:
            raise UnsupportedFormatError(f"{compression}-compressed data is not a joblib/pickle stream ({fmt.value})")
    if fmt is Format.JOBLIB_ZF:
        raise UnsafeModelError(
            "legacy joblib 'ZF' container (joblib < 0.10): joblib reads it with an unrestricted unpickler "
            "and side files; re-save the model with a current joblib", rule="joblib-legacy")
    if fmt is Format.ZIP:
        result = audit(data, policy)
        return Analysis("skops", None, data, skops=result)
    if fmt is not Format.PICKLE:
        raise UnsupportedFormatError(f"not a model file safeload can load (detected: {fmt.value})")
    trace = walk(data, policy, joblib=True, filling=filling)
    analysis = Analysis("joblib" if trace.arrays or compression else "pickle", compression, data, trace)
    if trace.arrays:
        analysis.plain_view = walk(data, policy, joblib=False, filling=filling)
    return analysis


def raise_for(analysis: Analysis, source: str | None) -> None:
    """Raise the error ``load`` owes for these issues (unsafe before limits before malformed)."""
    if analysis.skops is not None and analysis.skops.refused:
        names = analysis.skops.refused
        raise UnsafeModelError(refusal_message(names, source), names=names, source=source)
    issues = analysis.issues()
    if not issues:
        return
    unsafe = [i for i in issues if i.severity == UNSAFE]
    where = f" in {source}" if source else ""
    if unsafe:
        names = tuple(sorted({n for i in unsafe for n in i.names}))
        globals_only = all(i.rule == "disallowed-global" for i in unsafe)
        if globals_only:
            raise UnsafeModelError(refusal_message(names, source), names=names, source=source)
        details = "; ".join(f"{i.message} (offset {i.offset})" for i in unsafe[:10])
        hint = ""
        if any(i.rule == "disallowed-global" for i in unsafe):
            hint = (" If you trust this file and these names, allow them explicitly: "
                    f"safeload.load(..., allow={names!r})")
        raise UnsafeModelError(f"refused to load{where}: {details}.{hint}", names=names, source=source)
    limits = [i for i in issues if i.severity == LIMIT]
    if limits:
        raise LimitExceededError(f"refused to load{where}: {limits[0].message} (offset {limits[0].offset})")
    first = issues[0]
    raise MalformedModelError(f"cannot load{where}: {first.message} (offset {first.offset})")


def analyse_or_raise(data: Buffer, policy: Policy, source: str | None, filling: Filling | None = None) -> Analysis:
    try:
        analysis = analyse(data, policy, filling)
    except SafeloadError as exc:
        if source and source not in str(exc):
            exc.args = (f"{source}: {exc}",) + exc.args[1:]
        raise
    raise_for(analysis, source)
    return analysis

