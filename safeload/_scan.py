"""``scan``: judge a file the way ``load`` would, without building anything.

The verdict for pickle, joblib and skops files comes from the same analysis
``load`` runs first (``_analysis.analyse``), so a file is ``safe`` exactly when
``load`` would accept it.  Other containers (zips of pickles such as PyTorch
checkpoints, ``.npy``/``.npz`` with object arrays) are opened and every pickle
inside is judged; ``load`` refuses those containers, so they are never ``safe``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from safeload._analysis import Analysis, analyse
from safeload._containers import COMPRESSED, Buffer, Format, npy_header, read_source, sniff
from safeload._errors import LimitExceededError, MalformedModelError, SafeloadError, UnsafeModelError
from safeload._filling import Filling
from safeload._load import effective_policy
from safeload._policy import Policy
from safeload._report import Finding, GlobalVerdict, Location, ScanReport, Verdict
from safeload._walker import LIMIT, UNSAFE, Issue, Trace, walk

__all__ = ["scan", "scan_bytes"]

_SEVERITY = {UNSAFE: "high", LIMIT: "medium", "malformed": "medium"}
_MAX_MEMBER = 4 * 1024**3
_AUTO_EXPLAIN_BYTES = 64 * 1024
_THREADED_DIGEST_BYTES = 4 * 1024 * 1024
_DIGEST_STEP = 8 * 1024 * 1024


def scan(file: Any, *, allow: Iterable[str] | Mapping[str, str] = (), policy: Policy | None = None,
         explain: bool = False, digest: bool = False) -> ScanReport:
    """Judge ``file`` (path or binary file object) without executing or importing anything it names.

    ``digest=True`` fills ``ScanReport.sha256`` (the CLI always asks for it): hashing a big file
    costs about as much as judging it, so callers who only want the verdict do not pay for it.
    """
    pol = effective_policy(policy, allow)
    try:
        source = read_source(file, pol.limits)
    except SafeloadError as exc:
        return ScanReport(str(file), "unknown", Verdict.ERROR,
                          (Finding("malformed", "medium", str(exc)),), (), 0)
    try:
        return _scan_data(source.data, pol, source.name, explain, digest, source.filling)
    finally:
        source.close()


def scan_bytes(data: Buffer, policy: Policy, name: str = "<bytes>", *, explain: bool = False,
               digest: bool = False) -> ScanReport:
    return _scan_data(data, policy, name, explain, digest, None)


def _scan_data(data: Buffer, policy: Policy, name: str, explain: bool, digest: bool,
               filling: Filling | None) -> ScanReport:
    hasher = _Digest(data, filling) if digest else None
    try:
        report = _scan_bytes(data, policy, name, explain, filling)
        if filling is not None:
            filling.finish()  # a file that changed size while it was read has no verdict
    except Exception as exc:  # noqa: BLE001 - a scan reports; it never raises on content
        message = str(exc) if isinstance(exc, SafeloadError) else f"cannot analyse: {type(exc).__name__}: {exc}"
        report = ScanReport(name, "unknown", Verdict.ERROR, (Finding("malformed", "medium", message),),
                            (), len(data))
    return dataclasses.replace(report, sha256=hasher.hexdigest()) if hasher is not None else report


class _Digest:
    """The report's sha256, hashed on another core while the walker runs.

    hashlib releases the GIL on large buffers, so on a 99 MB forest the ~70 ms of
    hashing overlaps the walk instead of adding to it. It follows a background read
    (``filling``) chunk by chunk. Nobody writes to ``data`` meanwhile: the walker
    only reads it, and it is our own memory.
    """

    def __init__(self, data: Buffer, filling: Filling | None) -> None:
        self._hash = hashlib.sha256()
        self._thread: threading.Thread | None = None
        self._failed = False
        if len(data) < _THREADED_DIGEST_BYTES and filling is None:
            self._hash.update(data)
        else:
            self._thread = threading.Thread(target=self._run, args=(data, filling), name="safeload-sha256",
                                            daemon=True)
            self._thread.start()

    def _run(self, data: Buffer, filling: Filling | None) -> None:
        if filling is None:
            self._hash.update(data)
            return
        view = memoryview(data)
        try:
            pos = 0
            while pos < len(data):
                end = filling.wait(pos + _DIGEST_STEP)
                self._hash.update(view[pos:end])
                pos = end
        except SafeloadError:
            self._failed = True  # the read failed; the report says so, and carries no digest
        finally:
            view.release()

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._thread.join()
        return "" if self._failed else self._hash.hexdigest()


def _scan_bytes(data: Buffer, policy: Policy, name: str, explain: bool, filling: Filling | None) -> ScanReport:
    """The report without its sha256 (``_scan_data`` adds it)."""
    size = len(data)
    if filling is not None:
        filling.wait(8)
    try:
        fmt = sniff(data)
    except SafeloadError as exc:
        return ScanReport(name, "empty", Verdict.NOT_A_MODEL, (Finding("not-a-model", "info", str(exc)),),
                          (), size)
    if filling is not None and fmt is not Format.PICKLE:
        filling.finish()  # only the opcode walk reads a file while it arrives
    if fmt is Format.UNKNOWN:
        return ScanReport(name, "unknown", Verdict.NOT_A_MODEL,
                          (Finding("not-a-model", "info", "not a pickle, joblib, skops, zip or numpy file"),),
                          (), size)
    if fmt is Format.ZIP and not _is_skops(data):
        return _scan_zip(data, policy, name, size)
    if fmt is Format.NPY:
        fmt_name, findings, globs = _scan_npy(data, policy, None)
        return _report(name, fmt_name, findings, globs, size, container=True)
    try:
        analysis = analyse(data, policy, filling)
        if filling is not None:
            filling.finish()
    except SafeloadError as exc:
        return ScanReport(name, _fmt_name(fmt), _verdict_for(exc), (_finding_for(exc),), (), size)
    findings = _analysis_findings(analysis)
    globs = _globals(analysis.trace.all_globals() if analysis.trace else [], policy)
    fmt_name = analysis.format + (f"+{analysis.compression}" if analysis.compression else "")
    if analysis.skops is not None:
        globs = tuple(GlobalVerdict(t, policy.allows(t) or t not in analysis.skops.refused,
                                    _kind(policy, t), ()) for t in analysis.skops.types)
    # fickling is slow on big streams: decompile automatically only small unsafe ones.
    if explain or (any(f.severity == "high" for f in findings) and len(analysis.stream) <= _AUTO_EXPLAIN_BYTES):
        findings = _with_fickling(analysis, findings)
    return _report(name, fmt_name, findings, globs, size)


def _fmt_name(fmt: Format) -> str:
    return f"joblib+{fmt.value}" if fmt in COMPRESSED else fmt.value


def _verdict_for(exc: SafeloadError) -> str:
    return Verdict.UNSAFE if isinstance(exc, UnsafeModelError) else Verdict.ERROR


def _finding_for(exc: SafeloadError, member: str | None = None) -> Finding:
    if isinstance(exc, UnsafeModelError):
        return Finding(exc.rule, "high", str(exc), exc.names, Location(None, member))
    if isinstance(exc, LimitExceededError):
        return Finding("limit", "medium", str(exc), (), Location(None, member))
    if isinstance(exc, MalformedModelError):
        return Finding("malformed", "medium", str(exc), (), Location(None, member))
    return Finding("unsupported", "medium", str(exc), (), Location(None, member))


def _issue_findings(issues: Iterable[Issue], member: str | None = None) -> list[Finding]:
    return [Finding(i.rule, _SEVERITY.get(i.severity, "medium"), i.message, i.names, Location(i.offset, member))
            for i in issues]


def _analysis_findings(analysis: Analysis) -> list[Finding]:
    if analysis.skops is not None:
        return [Finding("skops-untrusted", "high", f"skops schema names {t}, which is not in the allowlist", (t,),
                        Location(None, "schema.json")) for t in analysis.skops.refused]
    return _issue_findings(analysis.issues())


def _kind(policy: Policy, name: str) -> str | None:
    kind = policy.kind(name)
    return kind.value if kind is not None else None


def _globals(refs: Iterable[Any], policy: Policy, member: str | None = None) -> tuple[GlobalVerdict, ...]:
    offsets: dict[str, list[int]] = defaultdict(list)
    allowed: dict[str, bool] = {}
    for g in refs:
        offsets[g.name].append(g.offset)
        allowed[g.name] = g.allowed
    return tuple(GlobalVerdict(n, allowed[n], _kind(policy, n), tuple(offsets[n]), member) for n in sorted(offsets))


def _report(name: str, fmt: str, findings: list[Finding], globs: tuple[GlobalVerdict, ...], size: int,
            container: bool = False) -> ScanReport:
    real = [f for f in findings if f.severity != "info"]
    if any(f.severity == "high" for f in real):
        verdict = Verdict.UNSAFE
    elif real:
        verdict = Verdict.ERROR
    elif container:
        verdict = Verdict.UNSUPPORTED
        findings = findings + [Finding("unsupported", "info",
                                       f"{fmt} container: its pickles look clean, but safeload.load does not load it")]
    else:
        verdict = Verdict.SAFE
    return ScanReport(name, fmt, verdict, tuple(findings), globs, size)


def _is_skops(data: Buffer) -> bool:
    try:
        return "schema.json" in zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read a member leniently (as torch does): a bad CRC does not hide its content."""
    with zf.open(info) as fh:
        fh._expected_crc = None  # type: ignore[attr-defined]
        return fh.read(_MAX_MEMBER)


def _scan_zip(data: Buffer, policy: Policy, name: str, size: int) -> ScanReport:
    findings: list[Finding] = []
    globs: list[GlobalVerdict] = []
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return ScanReport(name, "zip", Verdict.ERROR, (Finding("malformed", "medium", f"corrupt zip: {exc}"),),
                          (), size)
    if len(infos) > policy.limits.max_zip_members:
        return ScanReport(name, "zip", Verdict.ERROR,
                          (Finding("limit", "medium", f"zip has {len(infos)} members"),), (), size)
    kind = "zip"
    for info in infos:
        if info.is_dir():
            continue
        try:
            member = _read_member(zf, info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            findings.append(Finding("malformed", "medium", f"unreadable member: {exc}", (), Location(None, info.filename)))
            continue
        if member.startswith(b"\x93NUMPY"):
            kind = "npz"
            _, f, g = _scan_npy(member, policy, info.filename)
            findings.extend(f)
            globs.extend(g)
            continue
        try:
            mfmt = sniff(member)
        except SafeloadError:
            continue
        if mfmt is not Format.PICKLE:
            continue
        trace = walk(member, policy)
        findings.extend(_issue_findings(trace.all_issues(), info.filename))
        globs.extend(_globals(trace.all_globals(), policy, info.filename))
        if info.filename.endswith("data.pkl"):
            kind = "torch-zip"
    return _report(name, kind, findings, tuple(globs), size, container=True)


def _scan_npy(data: Buffer, policy: Policy, member: str | None
              ) -> tuple[str, list[Finding], tuple[GlobalVerdict, ...]]:
    try:
        header, start = npy_header(data)
        descr = header["descr"]
    except (IndexError, ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError,
            RecursionError) as exc:
        return "npy", [Finding("malformed", "medium", f"invalid .npy header: {exc}", (), Location(0, member))], ()
    if "O" not in str(descr):
        return "npy", [], ()
    trace: Trace = walk(bytes(data), policy, start=start)
    return "npy", _issue_findings(trace.all_issues(), member), _globals(trace.all_globals(), policy, member)


def _with_fickling(analysis: Analysis, findings: list[Finding]) -> list[Finding]:
    """Attach fickling's decompiled view and overt-malice notes; they never change the verdict."""
    if analysis.trace is None or analysis.is_joblib:
        return findings
    try:
        from safeload._explain import decompile, overt_malice
    except ImportError:  # pragma: no cover
        return findings
    code = decompile(bytes(analysis.stream))
    out = [Finding(f.rule, f.severity, f.message, f.names, f.location, code) if f.severity == "high" else f
           for f in findings]
    out.extend(Finding("fickling", "info", note) for note in overt_malice(bytes(analysis.stream)))
    return out


def is_candidate(path: str) -> bool:
    """Cheap content check used by directory scans: could this file be a model artifact?"""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    if not head:
        return False
    try:
        return sniff(head) is not Format.UNKNOWN and not _looks_like_text(path, head)
    except SafeloadError:
        return False


def _looks_like_text(path: str, head: bytes) -> bool:
    # Protocol-0 pickles are text too; only skip obvious source/docs files whose first bytes are not opcodes.
    return head[:1] == b"#"
