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

from safeload._containers import COMPRESSED, ZIP_ERRORS, Buffer, Format, decompress, npy_header, sniff
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

__all__ = ["Analysis", "NpyMember", "analyse", "analyse_or_raise", "build_npy", "raise_for"]


@dataclass
class NpyMember:
    """One ``.npy`` array (a whole ``.npy`` file, or one member of an ``.npz``).

    ``trace``: the walk of the pickle an object array is stored as (``None`` for plain
    arrays, whose bytes numpy reads without unpickling anything).
    """

    name: str
    data: Buffer
    header: dict[str, Any]
    data_offset: int
    trace: Trace | None = None


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
            model_checks: bool = False, **options: Any) -> Analysis:
    """``filling``: ``data`` is still being read; only the opcode walk can start before it ends.

    ``numpy_files``: also accept ``.npy`` / ``.npz`` files (``load`` does); otherwise they raise
    ``UnsupportedFormatError``.  ``options``: ``pickle.load``'s ``encoding``/``errors``/
    ``fix_imports`` for the walker (only non-default ones are passed).

    ``model_checks``: also run load's estimator validators on the model's static twin
    (``_static_model``; ``scan`` asks for it: ``load`` runs the validators on what it built).
    """
    if filling is not None:
        filling.wait(8)
    fmt = sniff(data)
    if filling is not None and fmt is not Format.PICKLE:
        filling.finish()
    compression: str | None = None
    if fmt in COMPRESSED:
        compression = fmt.value
        data = decompress(fmt, data, policy.limits)
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
        if numpy_files:
            npz = _npz_members(data, policy)
            if npz is not None:
                return _analyse_npz(data, npz, policy, options)
            if not _has_member(data, "schema.json"):
                raise UnsupportedFormatError(
                    "a zip archive that is neither a skops file nor an .npz (a PyTorch checkpoint?): "
                    "safeload.load does not open it; `safeload scan` judges the pickles inside")
        result = audit(data, policy)
        return Analysis("skops", None, data, skops=result)
    if fmt is not Format.PICKLE:
        raise UnsupportedFormatError(f"not a model file safeload can load (detected: {fmt.value})")
    trace = walk(data, policy, joblib=True, filling=filling, **options)
    analysis = Analysis("joblib" if trace.arrays or compression else "pickle", compression, data, trace)
    if trace.arrays:
        analysis.plain_view = walk(data, policy, joblib=False, filling=filling, **options)
    if model_checks and trace.ok and _twin_can_open(trace.root):
        from safeload._mirrors import StaticChecks
        from safeload._static_model import check_model  # (imports the validators and class data)

        trace.issues.extend(check_model(trace, StaticChecks(policy, data, filling, trace.issues)))
    trace.root = None  # the simulated model: not kept alive while load builds the real one
    return analysis


def _npy_member(name: str, data: Buffer, policy: Policy, options: dict[str, Any]) -> NpyMember:
    import numpy as np

    try:
        header, end = npy_header(data)
        dtype = np.dtype(header["descr"])
    except Exception as exc:  # noqa: BLE001 - numpy/ast errors on a corrupt header
        raise MalformedModelError(f"{name or 'npy'}: corrupt .npy header: {type(exc).__name__}: {exc}") from None
    trace = walk(data, policy, start=end, **options) if dtype.hasobject else None
    return NpyMember(name, data, header, end, trace)


def _analyse_npy(data: Buffer, policy: Policy, options: dict[str, Any]) -> Analysis:
    member = _npy_member("", data, policy, options)
    return Analysis("npy", None, data, trace=member.trace, npy=[member])


def _npz_members(data: Buffer, policy: Policy) -> list[tuple[str, bytes]] | None:
    """The members of an ``.npz`` (a zip of ``.npy`` files only), or ``None`` for another zip."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    with zf:
        infos = zf.infolist()
        if not infos or not all(i.filename.endswith(".npy") for i in infos):
            return None
        limits = policy.limits
        if len(infos) > limits.max_zip_members:
            raise LimitExceededError(f".npz has {len(infos)} members (limit max_zip_members {limits.max_zip_members})")
        total = sum(i.file_size for i in infos)
        if total > limits.max_zip_bytes:
            raise LimitExceededError(f".npz members hold {total} bytes (limit max_zip_bytes {limits.max_zip_bytes})")
        out: list[tuple[str, bytes]] = []
        for info in infos:
            try:
                raw = zf.read(info)
            except ZIP_ERRORS as exc:
                raise MalformedModelError(f".npz member {info.filename}: {exc}") from None
            if sniff(raw) is not Format.NPY:
                return None
            out.append((info.filename, raw))
        return out


def _has_member(data: Buffer, name: str) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
            return name in zf.namelist()
    except ZIP_ERRORS:
        return True  # let the skops reader say what is wrong with it


def _analyse_npz(data: Buffer, members: list[tuple[str, bytes]], policy: Policy,
                 options: dict[str, Any]) -> Analysis:
    parsed = [_npy_member(name, raw, policy, options) for name, raw in members]
    return Analysis("npz", None, data, npy=parsed)


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

    def one(member: NpyMember) -> Any:
        if member.trace is None:
            return np.load(io.BytesIO(bytes(member.data)), allow_pickle=False)
        obj = run_c(member.data, member.trace, policy)
        validate(obj)
        return obj

    if analysis.format == "npy":
        return one(members[0])
    if all(m.trace is None for m in members):
        return np.load(io.BytesIO(bytes(analysis.stream)), allow_pickle=False)
    return {m.name[:-len(".npy")]: one(m) for m in members}


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
