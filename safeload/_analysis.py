"""Parse and judge one input (containers, then the opcode walk) without building anything.

``load`` and ``scan`` both start here, so they see the same bytes, the same
format decision and the same issues.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

from safeload._containers import COMPRESSED, NPY_MAX_HEADER, Buffer, Format, decompress, npy_header, npy_length, sniff
from safeload._errors import (
    LimitExceededError,
    MalformedModelError,
    SafeloadError,
    TruncatedModelError,
    UnsafeModelError,
    UnsupportedFormatError,
)
from safeload._filling import Filling
from safeload._policy import Policy, is_dangerous, refusal_message
from safeload._skops import SkopsAudit, audit
from safeload._walker import LIMIT, UNSAFE, Issue, Trace, walk
from safeload._zip import Archive, Budget, Member

__all__ = ["Analysis", "NpyMember", "analyse", "analyse_or_raise", "build_npy", "raise_for"]


@dataclass
class NpyMember:
    """One ``.npy`` array (a whole ``.npy`` file, or one member of an ``.npz``).

    ``trace``: the walk of the pickle an object array is stored as (``None`` for plain
    arrays, whose bytes numpy reads without unpickling anything).  ``data`` is ``None`` for
    a plain array in an ``.npz``: only its header was read (``info`` reads it again if needed),
    so that judging an archive holds one member at a time, not all of them.
    """

    name: str
    data: Buffer | None
    header: dict[str, Any]
    data_offset: int
    trace: Trace | None = None
    info: zipfile.ZipInfo | None = None


@dataclass
class Analysis:
    format: str
    compression: str | None
    stream: Buffer
    trace: Trace | None = None
    plain_view: Trace | None = None
    skops: SkopsAudit | None = None
    npy: list[NpyMember] | None = None
    npy_issues: list[Issue] = field(default_factory=list)

    @property
    def is_joblib(self) -> bool:
        return self.trace is not None and bool(self.trace.arrays)

    def issues(self) -> list[Issue]:
        out: list[Issue] = list(self.npy_issues)
        if self.trace is not None:
            out.extend(self.trace.all_issues())
        for member in self.npy or ():
            if member.trace is not None and member.trace is not self.trace:
                out.extend(Issue(i.rule, i.severity, i.offset, f"{member.name}: {i.message}", i.names)
                           for i in member.trace.all_issues())
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


#: Every opcode byte of protocols 0-5 (``pickletools.opcodes``); on any other byte CPython's
#: unpicklers stop with "invalid load key" (tests/test_analysis_plain.py holds both to it).
OPCODE_BYTES: frozenset[int] = frozenset(b"().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}\x80\x81\x82\x83\x84\x85\x86"
                                         b"\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98")


def _plain_reads_on(data: Buffer, trace: Trace) -> bool:
    """Would ``pickle.load`` read anything past the first joblib array? The two readings agree up to
    its BUILD; after it joblib reads the array's bytes, ``pickle.load`` reads the next byte as an
    opcode. joblib pads every array it aligns with a length byte (1-16, no opcode), so on the files
    joblib writes ``pickle.load`` stops right there, having run nothing the joblib walk has not
    judged, and the second walk (a fifth of judging a small joblib file, measured on a store) is not
    needed."""
    first = min(span.build_offset for span in trace.arrays) + 1
    return first >= len(data) or data[first] in OPCODE_BYTES


def _twin_can_open(root: Any) -> bool:
    """Can the static twin open this root at all? A list or dict past the walker's caps, a set, a
    global or a plain value holds nothing it would judge, and an adversarial file of 10**6 list
    items should not pay for importing the validators (about 0.1 s) to learn nothing."""
    from safeload._simulated import Cont, Obj

    if type(root) is Cont:
        return root.kind != "set" and root.complete()
    return type(root) is Obj or type(root) is tuple


def _importable(name: str) -> bool:
    """Does the top-level package exist?  ``find_spec`` on a top-level name runs no module code."""
    top = name.partition(".")[0]
    if not top.isidentifier():
        return False
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def analyse(data: Buffer, policy: Policy, filling: Filling | None = None, *, numpy_files: bool = False,
            model_checks: bool = False, budget: Budget | None = None, archive: Archive | None = None,
            **options: Any) -> Analysis:
    """``filling``: ``data`` is still being read; only the opcode walk can start before it ends.

    ``numpy_files``: also accept ``.npy`` / ``.npz`` files (``load`` does); otherwise they raise
    ``UnsupportedFormatError``.  ``options``: ``pickle.load``'s ``encoding``/``errors``/
    ``fix_imports`` for the walker (only non-default ones are passed).

    ``model_checks``: also run load's estimator validators on the model's static twin
    (``_static_model``; ``scan`` asks for it: ``load`` runs the validators on what it built).

    ``budget``: what may still be inflated (a scan shares it with the archive ``data`` came from;
    otherwise one for ``data``'s size); ``archive``: ``data`` already opened as a zip (``scan``
    opens it once per judgement).
    """
    if filling is not None:
        filling.wait(8)
    fmt = sniff(data)
    if filling is not None and fmt is not Format.PICKLE:
        filling.finish()
    if budget is None:  # load's own: the same as scan's for a file of this size, so that they agree
        budget = Budget(policy.limits, len(data))
    compression: str | None = None
    if fmt in COMPRESSED:
        compression = fmt.value
        data = decompress(fmt, data, policy.limits, budget)
        # The inflated stream is whole: the background read was of the compressed file, and its
        # byte count is not this buffer's (the walker reads no further than ``filling`` says has
        # arrived: handed on, it stopped a 99 MB stream inflated from 18.6 MB at 18.6 MB).
        filling = None
        fmt = sniff(data)
        if fmt is not Format.PICKLE:
            raise UnsupportedFormatError(f"{compression}-compressed data is not a joblib/pickle stream ({fmt.value})")
    if fmt is Format.JOBLIB_ZF:
        raise UnsafeModelError(
            "legacy joblib 'ZF' container (joblib < 0.10): joblib reads it with an unrestricted unpickler "
            "and side files; re-save the model with a current joblib", rule="joblib-legacy")
    if numpy_files and fmt is Format.NPY:
        return _analyse_npy(data, policy, options)
    if fmt is Format.ZIP:
        return _analyse_zip(data, policy, numpy_files, budget, archive, options)
    if fmt is not Format.PICKLE:
        raise UnsupportedFormatError(f"not a model file safeload can load (detected: {fmt.value})")
    trace = walk(data, policy, joblib=True, filling=filling, **options)
    analysis = Analysis("joblib" if trace.arrays or compression else "pickle", compression, data, trace)
    if trace.arrays and _plain_reads_on(data, trace):
        analysis.plain_view = walk(data, policy, joblib=False, filling=filling, **options)
    if model_checks and trace.ok and _twin_can_open(trace.root):
        from safeload._mirrors import StaticChecks
        from safeload._static_model import check_model  # (imports the validators and class data)

        trace.issues.extend(check_model(trace, StaticChecks(policy, data, filling, trace.issues)))
    trace.root = None  # the simulated model: not kept alive while load builds the real one
    return analysis


def _npy_parse(name: str, data: Buffer) -> tuple[dict[str, Any], int, Any]:
    """A ``.npy`` header, where its data starts, and its dtype."""
    import numpy as np

    try:
        header, end = npy_header(data)
        dtype = np.dtype(header["descr"])
    except Exception as exc:  # noqa: BLE001 - numpy/ast errors on a corrupt header
        raise MalformedModelError(f"{name or 'npy'}: corrupt .npy header: {type(exc).__name__}: {exc}") from None
    return header, end, dtype


def _npy_member(name: str, data: Buffer, policy: Policy, options: dict[str, Any]) -> NpyMember:
    header, end, dtype = _npy_parse(name, data)
    trace = walk(data, policy, start=end, **options) if dtype.hasobject else None
    return NpyMember(name, data, header, end, trace)


def _analyse_npy(data: Buffer, policy: Policy, options: dict[str, Any]) -> Analysis:
    member = _npy_member("", data, policy, options)
    return Analysis("npy", None, data, trace=member.trace, npy=[member])


def npy_prefix(member: Member) -> bytearray:
    """A zip member's first bytes, through the end of its ``.npy`` header when it has one: all that
    judging a numeric array needs (its data is never unpickled), so the rest is not inflated."""
    head = member.read(10)
    if len(head) == 10 and head[:6] == b"\x93NUMPY":
        width = npy_length(head)[0]
        head += member.read(width - 2)
        length = npy_length(head)[1]
        # a longer header npy_header refuses on its length alone: its text is never read
        head += member.read(min(length, 4 * NPY_MAX_HEADER))
    return head


def _analyse_zip(data: Buffer, policy: Policy, numpy_files: bool, budget: Budget, archive: Archive | None,
                 options: dict[str, Any]) -> Analysis:
    """An ``.npz`` or a skops file, from one opening of the zip (its directory checked first)."""
    opened = archive if archive is not None else Archive(data, policy.limits, budget)
    try:
        if numpy_files:
            npz = _analyse_npz(data, opened, policy, options)
            if npz is not None:
                return npz
            if "schema.json" not in opened.names:
                raise UnsupportedFormatError(
                    "a zip archive that is neither a skops file nor an .npz (a PyTorch checkpoint?): "
                    "safeload.load does not open it; `safeload scan` judges the pickles inside")
    finally:
        if archive is None:
            opened.close()
    result = audit(data, policy)
    return Analysis("skops", None, data, skops=result)


def _analyse_npz(data: Buffer, archive: Archive, policy: Policy, options: dict[str, Any]) -> Analysis | None:
    """An ``.npz`` (a zip of ``.npy`` files only), or ``None`` for another zip.

    One member at a time: a numeric array's header is all that is read of it; an object array is
    read whole (under the member caps) and walked.  A member that cannot be read or parsed is an
    issue of its own, so it does not hide what another member holds.
    """
    infos = archive.infos
    if not infos or not all(i.filename.endswith(".npy") for i in infos):
        return None
    limits = policy.limits
    total = archive.declared()
    if total > limits.max_zip_bytes:
        raise LimitExceededError(f".npz members hold {total} bytes (limit max_zip_bytes {limits.max_zip_bytes})")
    members: list[NpyMember] = []
    issues: list[Issue] = []
    for info in infos:
        try:
            with archive.open(info) as reader:
                head = npy_prefix(reader)
                if head[:6] != b"\x93NUMPY":
                    return None  # (sniff's test for Format.NPY)
                header, end, dtype = _npy_parse(info.filename, head)
                if not dtype.hasobject:
                    members.append(NpyMember(info.filename, None, header, end, None, info))
                    continue
                reader.read(into=head)
            trace = walk(head, policy, start=end, **options)
            members.append(NpyMember(info.filename, head, header, end, trace, info))
        except SafeloadError as exc:
            issues.append(member_issue(exc, info.filename))
    return Analysis("npz", None, data, npy=members, npy_issues=issues)


def member_issue(exc: SafeloadError, member: str | None = None) -> Issue:
    """A member that could not be judged, as an issue of the archive (``raise_for``'s severities)."""
    message = f"{member}: {exc}" if member and member not in str(exc) else str(exc)
    if isinstance(exc, UnsafeModelError):
        return Issue(exc.rule, UNSAFE, 0, message, exc.names)
    if isinstance(exc, LimitExceededError):
        return Issue("limit", LIMIT, 0, message)
    return Issue("truncated" if isinstance(exc, TruncatedModelError) else "malformed", "malformed", 0, message)


def build_npy(analysis: Analysis, policy: Policy) -> Any:
    """What ``numpy.load(allow_pickle=False)`` returns for plain arrays; object arrays are built
    from their (already judged) pickles by safeload's engine.

    An ``.npz`` with object arrays comes back as a ``dict`` of arrays (``numpy.load`` would
    return a lazy ``NpzFile`` that refuses them without ``allow_pickle=True``).
    """
    import numpy as np

    from safeload._engine import run_c
    from safeload._validate import validate

    members = analysis.npy
    assert members is not None

    def one(member: NpyMember, archive: Archive | None) -> Any:
        data = member.data
        if data is None:  # a numeric array of an .npz: only its header was read
            assert archive is not None and member.info is not None
            data = archive.read(member.info)
        if member.trace is None:
            return np.load(io.BytesIO(bytes(data)), allow_pickle=False)
        obj = run_c(data, member.trace, policy)
        validate(obj)
        return obj

    if analysis.format == "npy":
        return one(members[0], None)
    if all(m.trace is None for m in members):
        return np.load(io.BytesIO(bytes(analysis.stream)), allow_pickle=False)
    with Archive(analysis.stream, policy.limits) as archive:
        return {m.name[:-len(".npy")]: one(m, archive) for m in members}


def raise_for(analysis: Analysis, source: str | None, *, hint: bool = True) -> None:
    """Raise the error ``load`` owes for these issues (unsafe before limits before malformed).

    ``hint=False``: never suggest ``allow=`` (for a container ``load`` cannot open).  A
    dangerous name is never suggested either: the message says the file is malicious.
    """
    if analysis.skops is not None and analysis.skops.refused:
        names = analysis.skops.refused
        raise UnsafeModelError(refusal_message(names, source, hint=hint), names=names, source=source)
    issues = analysis.issues()
    if not issues:
        return
    unsafe = [i for i in issues if i.severity == UNSAFE]
    where = f" in {source}" if source else ""
    if unsafe:
        names = tuple(sorted({n for i in unsafe for n in i.names}))
        globals_only = all(i.rule == "disallowed-global" for i in unsafe)
        if globals_only:
            raise UnsafeModelError(refusal_message(names, source, hint=hint), names=names, source=source)
        details = "; ".join(f"{i.message} (offset {i.offset})" for i in unsafe[:10])
        refused = sorted({n for i in unsafe if i.rule == "disallowed-global" for n in i.names})
        dangerous = [n for n in refused if is_dangerous(n)]
        extra = ""
        if dangerous:
            extra = " " + refusal_message(dangerous, source).split(": ", 1)[1]
        elif refused and hint:
            extra = (" If you trust this file and these names, allow them explicitly: "
                     f"safeload.load(..., allow={refused!r})")
        raise UnsafeModelError(f"refused to load{where}: {details}.{extra}", names=names, source=source)
    limits = [i for i in issues if i.severity == LIMIT]
    if limits:
        raise LimitExceededError(f"refused to load{where}: {limits[0].message} (offset {limits[0].offset})")
    first = issues[0]
    cls = TruncatedModelError if first.rule == "truncated" else MalformedModelError
    raise cls(f"cannot load{where}: {first.message} (offset {first.offset})")


def _refuse_recognised(data: Buffer, filling: Filling | None) -> None:
    """Files that are something else by their header (an image, HDF5, a Git LFS pointer,
    safetensors/ONNX/GGUF) are "not a model safeload loads", never "a malformed pickle"."""
    from safeload._nocode import might_recognise, recognise

    if filling is not None:
        filling.wait(min(len(data), 64))
    if not might_recognise(bytes(data[:64])):
        return
    if filling is not None:
        filling.finish()
    found = recognise(data)
    if found is not None:
        raise UnsupportedFormatError(f"{found.message}; safeload.load does not load this format")


def _is_tar(head: bytes) -> bool:
    from safeload._archive import is_tar

    return is_tar(head)


def analyse_or_raise(data: Buffer, policy: Policy, source: str | None, filling: Filling | None = None,
                     **options: Any) -> Analysis:
    """``analyse`` as ``load`` uses it (``.npy``/``.npz`` accepted), then ``raise_for``."""
    try:
        if filling is not None:
            filling.wait(min(len(data), 512))
        if _is_tar(bytes(data[:512])):
            raise UnsupportedFormatError("a tar archive: safeload.load does not open archives (extract the model "
                                         "first); `safeload scan` judges the files inside")
        _refuse_recognised(data, filling)
        analysis = analyse(data, policy, filling, numpy_files=True, **options)
    except SafeloadError as exc:
        if source and source not in str(exc):
            exc.args = (f"{source}: {exc}",) + exc.args[1:]
        raise
    raise_for(analysis, source)
    return analysis
