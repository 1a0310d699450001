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
import threading
from collections.abc import Iterable, Mapping
from typing import IO, Any

from safeload._analysis import Analysis, analyse, member_issue, npy_prefix
from safeload._archive import MAX_DEPTH, aggregate, inflate_head, is_tar, scan_tar
from safeload._containers import COMPRESSED, Buffer, Format, npy_header, read_source, sniff
from safeload._errors import (
    LimitExceededError,
    SafeloadError,
    UnsupportedFormatError,
)
from safeload._filling import Filling
from safeload._load import effective_policy
from safeload._nocode import Recognised, might_recognise, recognise
from safeload._policy import Policy
from safeload._report import (
    Finding,
    GlobalVerdict,
    Location,
    ScanReport,
    Verdict,
    failed_report,
    finding_for,
    with_outcome,
)
from safeload._torch import TorchJudgement, is_legacy, judge_legacy, judge_pickle, torch_policy
from safeload._walker import LIMIT, UNSAFE, Issue, Trace, walk
from safeload._zip import Archive, Budget, is_dir

__all__ = ["scan", "scan_bytes"]

_SEVERITY = {UNSAFE: "high", LIMIT: "medium", "malformed": "medium"}
_THREADED_DIGEST_BYTES = 4 * 1024 * 1024
_DIGEST_STEP = 8 * 1024 * 1024


def scan(file: Any, *, allow: Iterable[str] | Mapping[str, str] = (), policy: Policy | None = None,
         explain: bool = False, digest: bool = False) -> ScanReport:
    """Judge ``file`` (path or binary file object) without executing or importing anything it names.

    ``digest=True`` fills ``ScanReport.sha256`` (the CLI always asks for it): hashing a big file
    costs about as much as judging it, so callers who only want the verdict do not pay for it.
    """
    # the configuration found from the file, as load finds it (bytes given to scan are data, not a path)
    pol = effective_policy(policy, allow, near=None if isinstance(file, (bytes, bytearray, memoryview)) else file)
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
               filling: Filling | None, depth: int = 0, budget: Budget | None = None) -> ScanReport:
    """``budget``: what the archives this file was found in left to open and inflate (a new one
    for a file of its own), shared by everything nested in it."""
    hasher = _Digest(data, filling) if digest else None
    try:
        report = _scan_bytes(data, policy, name, explain, filling, depth, budget)
        if filling is not None:
            filling.finish()  # a file that changed size while it was read has no verdict
    except Exception as exc:  # noqa: BLE001 - a scan reports; it never raises on content
        message = str(exc) if isinstance(exc, SafeloadError) else f"cannot analyse: {type(exc).__name__}: {exc}"
        report = ScanReport(name, "unknown", Verdict.ERROR, (Finding("malformed", "medium", message),),
                            (), len(data))
    return with_outcome(report, hasher.hexdigest(), report.failed) if hasher is not None else report


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


def _scan_bytes(data: Buffer, policy: Policy, name: str, explain: bool, filling: Filling | None,
                depth: int = 0, budget: Budget | None = None) -> ScanReport:
    """The report without its sha256 (``_scan_data`` adds it)."""
    size = len(data)
    if budget is None:
        budget = Budget(policy.limits, size)
    if size == 0:
        return ScanReport(name, "empty", Verdict.NOT_A_MODEL, (Finding("empty", "medium", "empty file (0 bytes)"),),
                          (), 0)
    if filling is not None:
        filling.wait(min(size, 64))
    if might_recognise(bytes(data[:64])):
        if filling is not None:
            filling.finish()  # a format judged by its header: wait for all of it
        found = recognise(data)
        if found is not None:
            return _recognised(data, policy, name, found)
    fmt = sniff(data)
    if filling is not None and fmt is not Format.PICKLE:
        filling.finish()  # only the opcode walk reads a file while it arrives
    if fmt is Format.UNKNOWN:
        if is_tar(bytes(data[:512])):
            return _scan_tar(data, policy, name, "tar", explain, depth, budget)
        return ScanReport(name, "unknown", Verdict.NOT_A_MODEL,
                          (Finding("not-a-model", "info", "not a pickle, joblib, skops, zip, numpy, PyTorch, "
                                   "safetensors, ONNX, GGUF or tar file"),), (), size)
    if fmt in COMPRESSED and is_tar(inflate_head(fmt, data)):
        # inflated as its members are read, one held at a time (``_tar.InflateReader``)
        return _scan_tar(data, policy, name, f"tar+{fmt.value}", explain, depth, budget, fmt)
    if fmt is Format.ZIP:
        return _scan_zip(data, policy, name, size, explain, depth, budget)
    if fmt is Format.NPY:
        judged = _by_analysis(data, policy, name, explain, filling, budget)
        if judged is not None:
            return judged
        fmt_name, findings, globs = _scan_npy(data, policy, None)
        if not findings and not globs and fmt_name == "npy":
            return _no_code(name, "npy", "numeric .npy array: loading it unpickles nothing", size)
        return _report(name, fmt_name, findings, globs, size, container=True)
    if fmt is Format.PICKLE and is_legacy(data):
        if filling is not None:
            filling.finish()
        return _scan_torch_legacy(data, policy, name, size)
    if fmt is Format.PICKLE and size >= 512:
        if filling is not None:
            filling.wait(512)
        if is_tar(bytes(data[:512])):  # a tar whose first member name starts with an opcode byte
            if filling is not None:
                filling.finish()
            return _scan_tar(data, policy, name, "tar", explain, depth, budget)
    judged = _by_analysis(data, policy, name, explain, filling, budget)
    assert judged is not None
    return judged


def _by_analysis(data: Buffer, policy: Policy, name: str, explain: bool, filling: Filling | None,
                 budget: Budget, archive: Archive | None = None) -> ScanReport | None:
    """Judge through ``_analysis.analyse``, exactly as ``load`` does; ``None`` for ``.npy``/``.npz`` inputs
    that ``load`` does not accept (yet): their pickles are judged by ``_scan_npy`` instead.

    ``archive``: ``data`` opened as a zip (by ``_scan_zip``, which judges it from that one opening)."""
    size = len(data)
    fmt = sniff(data)
    try:
        # .npy/.npz exactly as load judges them; load's estimator validators on the model's static twin
        analysis = analyse(data, policy, filling, numpy_files=True, model_checks=True, budget=budget,
                           archive=archive)
        if filling is not None:
            filling.finish()
    except SafeloadError as exc:
        if isinstance(exc, UnsupportedFormatError) and fmt in (Format.NPY, Format.ZIP):
            return None  # a numpy file load does not open: judged by _scan_npy instead
        skops = archive is not None and "schema.json" in archive.names
        fmt_name = _fmt_name(fmt) if fmt is not Format.ZIP or skops else "npz"
        return failed_report(name, fmt_name, exc, size)
    if analysis.npy is not None:
        return _npy_report(name, analysis, policy, size)
    findings = _analysis_findings(analysis)
    globs = _globals(analysis.trace.all_globals() if analysis.trace else [], policy)
    fmt_name = analysis.format + (f"+{analysis.compression}" if analysis.compression else "")
    if analysis.skops is not None:
        globs = tuple(GlobalVerdict(t, policy.allows(t) or t not in analysis.skops.refused,
                                    _kind(policy, t), ()) for t in analysis.skops.types)
    if explain:  # fickling is advisory: only on request (and slow on big streams)
        findings = _with_fickling(analysis, findings)
    return _report(name, fmt_name, findings, globs, size)


def _npy_report(name: str, analysis: Analysis, policy: Policy, size: int) -> ScanReport:
    """``.npy``/``.npz`` as ``load`` judges them: object arrays through the policy, plain arrays carry no code."""
    findings = _analysis_findings(analysis)
    globs: list[GlobalVerdict] = []
    for member in analysis.npy or ():
        if member.trace is not None:
            globs.extend(_globals(member.trace.all_globals(), policy, member.name or None))
    if not findings and not any(m.trace is not None for m in analysis.npy or ()):
        what = "numeric .npy array" if analysis.format == "npy" else "numeric .npz arrays"
        return _no_code(name, analysis.format, f"{what}: loading unpickles nothing", size)
    return _report(name, analysis.format, findings, tuple(globs), size)


def _recognised(data: Buffer, policy: Policy, name: str, found: Recognised) -> ScanReport:
    """A format recognised by its header; a pickle hiding in it (a polyglot) still makes it unsafe."""
    size = len(data)
    findings = [Finding(found.rule, found.severity, found.message)]
    verdict = found.verdict
    try:
        pickle_like = sniff(data) is Format.PICKLE
    except SafeloadError:
        pickle_like = False
    if pickle_like and found.verdict in (Verdict.NO_CODE, Verdict.NOT_A_MODEL):
        trace = walk(data, policy)
        refused = sorted({g.name for g in trace.all_globals() if not g.allowed and _importable_name(g.raw_module)
                          and _importable_name(g.raw_qualname)})
        if refused:
            verdict = Verdict.UNSAFE
            findings.insert(0, Finding("polyglot", "high", f"read as a pickle, this {found.format} file imports "
                                       f"{', '.join(refused)}", tuple(refused)))
    return ScanReport(name, found.format, verdict, tuple(findings), (), size)


def _importable_name(dotted: str) -> bool:
    return bool(dotted) and all(part.isidentifier() for part in dotted.split("."))


def _no_code(name: str, fmt_name: str, message: str, size: int) -> ScanReport:
    return ScanReport(name, fmt_name, Verdict.NO_CODE, (Finding("no-code", "info", message),), (), size)


def _scan_tar(data: Buffer, policy: Policy, name: str, fmt_name: str, explain: bool, depth: int,
              budget: Budget, compressed: Format | None = None) -> ScanReport:
    def judge(member: bytes, member_name: str, inner_depth: int) -> ScanReport:
        if inner_depth > MAX_DEPTH:
            return _too_deep(member_name, len(member))
        try:
            budget.take_entries(1, f"tar member {member_name!r}")
        except LimitExceededError as exc:
            return failed_report(member_name, "archive", exc, len(member))
        return _scan_data(member, policy, member_name, explain, False, None, inner_depth, budget)

    return scan_tar(data, policy, name, fmt_name, judge, depth, compressed, budget)


def _scan_torch_legacy(data: Buffer, policy: Policy, name: str, size: int) -> ScanReport:
    tpol = torch_policy(policy)
    return _torch_report(name, "torch-legacy", judge_legacy(data, tpol), tpol, size)


def _torch_report(name: str, fmt_name: str, judgement: TorchJudgement, tpol: Policy, size: int) -> ScanReport:
    tpol_findings: list[Finding] = []
    globs: list[GlobalVerdict] = []
    for member, trace in judgement.traces:
        tpol_findings.extend(_issue_findings(trace.all_issues(), member))
        globs.extend(_globals(trace.all_globals(), tpol, member))
    for member, issue in judgement.issues:
        tpol_findings.extend(_issue_findings([issue], member))
    report = _report(name, fmt_name, tpol_findings, tuple(globs), size)
    if report.verdict == Verdict.SAFE:
        note = Finding("torch-weights-only", "info", "PyTorch checkpoint within torch.load(weights_only=True)'s "
                       "rules; load it with torch.load(weights_only=True) (safeload.load does not load tensors)")
        report = dataclasses.replace(report, findings=report.findings + (note,))
    return report


def _fmt_name(fmt: Format) -> str:
    return f"joblib+{fmt.value}" if fmt in COMPRESSED else fmt.value


def _too_deep(member: str, size: int) -> ScanReport:
    return ScanReport(member, "archive", Verdict.ERROR,
                      (Finding("limit", "medium", f"archives nested deeper than {MAX_DEPTH}"),), (), size)


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
    offsets: dict[str, list[int]] = {}
    allowed: dict[str, bool] = {}
    for g in refs:
        found = offsets.get(g.name)
        if found is None:
            offsets[g.name] = found = []
        found.append(g.offset)
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


def judge_zip_directory(fh: IO[bytes], policy: Policy, name: str, size: int) -> ScanReport | None:
    """Judge a zip from its central directory and its pickled members alone, or ``None`` when that is not
    enough (skops, ``.npz`` and other zips need every byte: the caller reads the whole file then).

    For remote stores: a 2 GB PyTorch checkpoint is judged from a few ranged reads (the directory and
    ``data.pkl``), by the same code and to the same verdict as the whole file read locally.
    """
    try:
        archive = Archive(fh, policy.limits, Budget(policy.limits, size))
    except LimitExceededError as exc:  # what the whole read would report, without reading it
        return failed_report(name, "zip", exc, size)
    except SafeloadError:
        return None  # (a failed ranged read looks the same): the whole read reports it as a local scan does
    with archive:
        if "schema.json" in archive.names:
            return None  # skops: judged by load's own analysis, which reads the whole archive
        report = _zip_directory(archive, policy, name, size)
        # Overlapping local headers are only seen as members are read here; the whole read refuses
        # the archive (every local header is checked when it is opened from a buffer): let it decide.
        return None if archive.overlapped else report


def _zip_directory(archive: Archive, policy: Policy, name: str, size: int) -> ScanReport | None:
    """What a zip's central directory decides on its own (limits, PyTorch, TorchScript, Keras), else ``None``.
    (``Archive`` already refused more than ``max_zip_members`` entries.)"""
    if archive.declared() > policy.limits.max_zip_bytes:
        return ScanReport(name, "zip", Verdict.ERROR,
                          (Finding("limit", "medium", "zip members exceed max_zip_bytes"),), (), size)
    names = [i.filename for i in archive.infos]
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        if any("/code/" in n or n.startswith("code/") for n in names):
            return ScanReport(name, "torchscript", Verdict.NOT_JUDGED,
                              (Finding("not-judged", "medium", "TorchScript archive: it carries code "
                                       "(code/ members), which safeload does not judge"),), (), size)
        return _scan_torch_zip(archive, policy, name, size)
    if "config.json" in names and ("model.weights.h5" in names or "metadata.json" in names):
        return ScanReport(name, "keras", Verdict.NOT_JUDGED,
                          (Finding("not-judged", "medium", "Keras archive: Lambda layers and custom objects can "
                                   "carry code, which safeload does not judge"),), (), size)
    return None


def _scan_zip(data: Buffer, policy: Policy, name: str, size: int, explain: bool, depth: int,
              budget: Budget) -> ScanReport:
    """A zip opened once (its directory counted and checked for overlaps first) and judged from that opening:
    skops and ``.npz`` as ``load`` judges them, PyTorch by its pickles, any other zip member by member."""
    try:
        archive = Archive(data, policy.limits, budget)
    except SafeloadError as exc:
        return failed_report(name, "zip", exc, size)
    with archive:
        if "schema.json" in archive.names:
            judged = _by_analysis(data, policy, name, explain, None, budget, archive)
            if judged is not None:
                return judged
        decided = _zip_directory(archive, policy, name, size)
        if decided is not None:
            return decided
        files = [i for i in archive.infos if not is_dir(i)]
        if files and all(i.filename.endswith(".npy") for i in files):
            judged = _by_analysis(data, policy, name, explain, None, budget, archive)
            if judged is not None:
                return judged
            return _scan_npz(archive, policy, name, size)
        return _scan_members(archive, policy, name, size, explain, depth, budget)


def _scan_members(archive: Archive, policy: Policy, name: str, size: int, explain: bool, depth: int,
                  budget: Budget) -> ScanReport:
    """Every member judged like a file of its own, each on its own: one that cannot be read (or is too
    big) is a finding of its own and does not hide what the others hold."""
    members: list[tuple[str, ScanReport]] = []
    for info in archive.infos:
        if is_dir(info) or info.file_size == 0:
            continue
        if depth + 1 > MAX_DEPTH:
            members.append((info.filename, _too_deep(info.filename, info.file_size)))
            continue
        try:
            with archive.open(info) as reader:
                member = reader.read(512)
                if _plainly_not_a_model(bytes(member)):
                    continue  # (a bomb of zeros costs nothing: its rest is not inflated)
                reader.read(into=member)
        except SafeloadError as exc:
            members.append((info.filename, failed_report(info.filename, "zip", exc, info.file_size)))
            continue
        members.append((info.filename, _scan_data(member, policy, info.filename, explain, False, None, depth + 1,
                                                  budget)))
        del member
    return aggregate(name, "zip", members, [], size)


def _plainly_not_a_model(head: bytes) -> bool:
    """Does ``_scan_bytes`` call a file that starts with ``head`` (its first 512 bytes, or all of it)
    ``not-a-model`` whatever follows?  No format claims it by its header, it is not a tar, and no
    format sniffs from its first bytes.  (``aggregate`` skips such members.)"""
    if not head or might_recognise(head[:64]) or is_tar(head[:512]):
        return False
    try:
        return sniff(head) is Format.UNKNOWN
    except SafeloadError:
        return False


def _scan_npz(archive: Archive, policy: Policy, name: str, size: int) -> ScanReport:
    """A zip of ``.npy``-named members that ``load`` does not open: each object array's pickle judged."""
    findings: list[Finding] = []
    globs: list[GlobalVerdict] = []
    for info in archive.infos:
        if is_dir(info):
            continue
        try:
            with archive.open(info) as reader:
                member = npy_prefix(reader)
                if _object_npy(member):
                    reader.read(into=member)
        except SafeloadError as exc:
            findings.append(finding_for(exc, info.filename))
            continue
        _, f, g = _scan_npy(member, policy, info.filename)
        findings.extend(f)
        globs.extend(g)
    if not findings and not globs:
        return _no_code(name, "npz", "numeric .npz arrays: loading them unpickles nothing", size)
    return _report(name, "npz", findings, tuple(globs), size, container=True)


#: What ``npy_header`` and reading its ``descr`` raise on a corrupt header.
_NPY_HEADER_ERRORS = (IndexError, ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError,
                      RecursionError)


def _object_start(data: Buffer) -> int | None:
    """Where the pickle of a ``.npy`` object array starts; ``None`` for a numeric array (raises one of
    ``_NPY_HEADER_ERRORS`` on a corrupt header)."""
    header, start = npy_header(data)
    return start if "O" in str(header["descr"]) else None


def _object_npy(head: Buffer) -> bool:
    """Does this ``.npy`` header (as ``_scan_npy`` reads it) declare an object array?"""
    try:
        return _object_start(head) is not None
    except _NPY_HEADER_ERRORS:
        return False  # _scan_npy reports the header


def _scan_torch_zip(archive: Archive, policy: Policy, name: str, size: int) -> ScanReport:
    tpol = torch_policy(policy)
    judgement = TorchJudgement()
    for info in archive.infos:
        if is_dir(info) or not info.filename.endswith(".pkl"):
            continue  # storages are raw bytes; version/byteorder are text
        try:
            member = archive.read(info)
        except SafeloadError as exc:
            judgement.issues.append((info.filename, member_issue(exc)))
            continue
        trace, issues = judge_pickle(member, tpol)
        judgement.traces.append((info.filename, trace))
        judgement.issues.extend((info.filename, i) for i in issues)
    return _torch_report(name, "torch-zip", judgement, tpol, size)


def _scan_npy(data: Buffer, policy: Policy, member: str | None
              ) -> tuple[str, list[Finding], tuple[GlobalVerdict, ...]]:
    try:
        start = _object_start(data)
    except _NPY_HEADER_ERRORS as exc:
        return "npy", [Finding("malformed", "medium", f"invalid .npy header: {exc}", (), Location(0, member))], ()
    if start is None:
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
