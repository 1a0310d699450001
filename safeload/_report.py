"""The findings model every output format renders (frozen, so reports can be shared freely)."""

from __future__ import annotations

from dataclasses import dataclass, field

from safeload._errors import LimitExceededError, MalformedModelError, SafeloadError, UnsafeModelError

__all__ = ["Finding", "GlobalVerdict", "Location", "RULES", "ScanReport", "Verdict", "failed_report", "finding_for",
           "with_outcome"]


class Verdict:
    SAFE = "safe"
    UNSAFE = "unsafe"
    ERROR = "error"  # malformed or over a limit: load would refuse it
    UNSUPPORTED = "unsupported"  # a model-like container that load does not accept
    NOT_A_MODEL = "not-a-model"
    NO_CODE = "no-code"  # a format with no code path (safetensors, ONNX, GGUF, numeric arrays): nothing to run
    NOT_JUDGED = "not-judged"  # recognised, but safeload has no rules for it (Keras/HDF5): fails unless accepted


@dataclass(frozen=True)
class Location:
    offset: int | None = None
    member: str | None = None


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "high", "medium", "low", "info"
    message: str
    names: tuple[str, ...] = ()
    location: Location = field(default_factory=Location)
    decompiled: str | None = None


@dataclass(frozen=True)
class GlobalVerdict:
    name: str
    allowed: bool
    kind: str | None
    offsets: tuple[int, ...]
    member: str | None = None


@dataclass(frozen=True)
class ScanReport:
    path: str
    format: str
    verdict: str
    findings: tuple[Finding, ...]
    globals: tuple[GlobalVerdict, ...]
    size: int
    sha256: str = ""  # only when asked for: scan(..., digest=True); the CLI always asks
    # Set by the CLI: does this file fail the audit?  ``None`` means "decided by the verdict alone";
    # the CLI also fails files named like models or named explicitly that are not loadable, and
    # applies ``--not-judged`` and the baseline.
    failed: bool | None = None

    @property
    def safe(self) -> bool:
        return self.verdict == Verdict.SAFE


# Rule id -> (short description, help text); SARIF needs one rule per finding kind.
RULES: dict[str, tuple[str, str]] = {
    "disallowed-global": ("Global not in the allowlist",
                          "The file imports a name outside safeload's exact allowlist. If you trust the file and the "
                          "name, allow it explicitly (safeload.load(path, allow=['module.Name']) or --allow)."),
    "joblib-legacy": ("Legacy joblib format",
                      "joblib < 0.10 formats make joblib open side files with allow_pickle=True. Re-save the model."),
    "build-on-global": ("BUILD on a class or function",
                        "The pickle sets attributes on a global object, changing it for the whole process."),
    "mutate-global": ("Container operation on a global", "The pickle appends to or sets items on a global object."),
    "call-not-callable": ("Non-callable name called",
                          "A name allowed only as a value or for __new__ is called with pickle-chosen arguments."),
    "call-non-global": ("Call of a computed value", "REDUCE/OBJ on a value that is not a named, allowed callable."),
    "new-non-global": ("NEWOBJ on a computed value", "NEWOBJ on a value that is not a named, allowed class."),
    "new-value": ("Value instantiated", "A name allowed only as a value is instantiated."),
    "guard": ("Constructor arguments refused", "An allowed constructor is given arguments its guard refuses."),
    "unresolved-global": ("Global name not resolvable statically",
                          "STACK_GLOBAL operands are not plain strings, so the name cannot be judged."),
    "ambiguous-name": ("Ambiguous global name", "The same raw name resolves to two different names."),
    "ext": ("EXT opcode", "The copyreg extension registry is never used by model files."),
    "persid": ("Persistent id", "Persistent ids are not used by scikit-learn model files."),
    "out-of-band": ("Out-of-band buffer", "NEXT_BUFFER/READONLY_BUFFER need buffers supplied by the caller."),
    "trailing-data": ("Data after STOP", "Bytes follow the pickle's STOP: a stacked pickle or an appended archive."),
    "hidden-in-array-data": ("Payload hidden in joblib array data",
                             "pickle.load (instead of joblib.load) would execute the joblib array bytes as opcodes."),
    "joblib-object-mmap": ("Object array marked mmap-able", "joblib would memory-map raw object pointers and crash."),
    "joblib-wrapper": ("Invalid joblib array header", "The NumpyArrayWrapper state is not a valid array header."),
    "joblib-dtype": ("Invalid joblib dtype", "A zero-size dtype makes joblib divide by zero."),
    "frame-crossing": ("Opcode crosses a frame", "CPython's unpicklers disagree on what this stream contains."),
    "frame-overlap": ("Overlapping frames", "A FRAME starts before the previous frame ends."),
    "frame-truncated": ("Truncated frame", "A FRAME claims more bytes than the file holds."),
    "limit-memo": ("Memo index out of range", "The C unpickler would allocate a memo table of this size."),
    "limit-array": ("Array larger than the file", "An array header claims more memory than the file contains."),
    "limit-stack": ("Stack too deep", "The stream nests deeper than any real model."),
    "limit-marks": ("Too many MARKs", "The stream nests deeper than any real model."),
    "limit-opcodes": ("Too many opcodes", "The stream exceeds the opcode limit."),
    "limit-nesting": ("Too many nested pickles", "Too many nested object-array pickles."),
    "limit-tuple-depth": ("Tuples nested too deep",
                          "CPython hashes nested tuples recursively in C without a limit: a deep one crashes the "
                          "process that hashes it."),
    "limit-hash": ("Hashing without end", "Tuples shared through the memo make the unpickler's hashing of keys or "
                   "set items exponential in the file's size."),
    "limit": ("Resource limit exceeded", "The input exceeds a configured resource limit."),
    "malformed": ("Malformed input", "The input is truncated or corrupt; a loader would fail on it."),
    "unsupported": ("Unsupported container", "safeload.load does not accept this container."),
    "skops-state": ("Unsafe skops archive state",
                    "A skops member does not have the shape its type's native code reads without checks, or the "
                    "archive names a member twice."),
    "skops-untrusted": ("skops type not in the allowlist", "The skops schema names a type outside the allowlist."),
    "fickling": ("fickling analysis", "fickling's overt-malice analysis flagged this stream (advisory)."),
    "dtype-state": ("Invalid numpy dtype state",
                    "numpy's dtype.__setstate__ would build a corrupt dtype (fields outside the item, wrong types)."),
    "array-state": ("Invalid ndarray state",
                    "numpy's ndarray.__setstate__ would refuse this state (data size, version or type); a loader "
                    "fails on it."),
    "tree-structure": ("Unsafe decision-tree structure",
                       "A Tree's node arrays point outside themselves; predict() would read out of bounds or crash."),
    "stack-underflow": ("Stack underflow", "An opcode pops more than the stream pushed."),
    "truncated": ("Truncated stream", "The stream ends before its STOP opcode or inside an argument."),
    "bad-opcode": ("Invalid opcode", "A byte that is not a pickle opcode."),
    "bad-string": ("Invalid STRING argument", "A protocol-0 STRING argument is not quoted."),
    "bad-target": ("Invalid container target", "SETITEM/APPEND/BUILD on a value that cannot take it."),
    "bad-args": ("Invalid call arguments", "REDUCE/NEWOBJ arguments are not a tuple."),
    "memo": ("Memo lookup failed", "A GET refers to a memo slot that was never set."),
    "negative-length": ("Negative length", "A length-prefixed opcode has a negative length."),
    "no-mark": ("Missing MARK", "An opcode needs a MARK that is not on the stack."),
    "odd-dict": ("Odd DICT items", "DICT needs key/value pairs."),
    "unhashable": ("Unhashable key or set item",
                   "A list, dict or set is used as a dict key or set item: the unpickler fails on it."),
    "new-args": ("Arguments to a class that takes none",
                 "NEWOBJ passes arguments to the __new__ of a class the policy only rebuilds (or to a guarded "
                 "callable, which NEWOBJ would instantiate without its guard)."),
    "odd-setitems": ("Odd SETITEMS items", "SETITEMS needs key/value pairs."),
    "protocol": ("Unsupported protocol", "The PROTO opcode names a protocol above 5."),
    "internal-error": ("Internal error", "safeload could not analyse this input; it is refused."),
    "not-a-model": ("Not a model artifact", "The file is not a pickle, joblib, skops, zip or numpy file."),
    "empty": ("Empty file", "The file has no bytes: a model was expected here (a failed download or checkout?)."),
    "lfs-pointer": ("Git LFS pointer instead of the model",
                    "The file is a Git LFS pointer, not the model it stands for: run `git lfs pull` (or fetch the "
                    "object) before scanning. A CI checkout without LFS scans pointers, never the models."),
    "not-loadable": ("Not loadable although a model was expected",
                     "The file was named explicitly or is named like a model file, but nothing can load it."),
    "no-code": ("Format without a code path",
                "safetensors, ONNX, GGUF and numeric numpy arrays hold data only; loading them runs no code."),
    "not-judged": ("Format not judged",
                   "safeload recognises this format but has no rules for it (e.g. Keras Lambda layers can carry "
                   "code): it is not called safe. Use --not-judged pass to accept such files."),
    "torch-weights-only": ("PyTorch checkpoint judged by weights-only rules",
                           "The checkpoint's pickles use only the globals torch.load(weights_only=True) allows; "
                           "load it with torch.load(weights_only=True), not with safeload.load."),
    "ranged-read": ("Judged from ranged reads",
                    "A large remote zip (PyTorch, TorchScript, Keras) was judged from its central directory and "
                    "pickles alone; the report carries no sha256 of the whole object."),
    "archive": ("Archive member", "A finding inside a tar or zip archive; the member is named."),
    "polyglot": ("File is also a pickle",
                 "The file is a valid data format and also a pickle that imports a refused name: a loader that "
                 "unpickles it by mistake would run it."),
    "baseline": ("Accepted in the baseline", "This finding is listed in the baseline file with a reason."),
}


def finding_for(exc: SafeloadError, member: str | None = None) -> Finding:
    """A refusal (unsafe, limit, malformed, unsupported) as a finding; ``member``: where in an archive."""
    if isinstance(exc, UnsafeModelError):
        return Finding(exc.rule, "high", str(exc), exc.names, Location(None, member))
    if isinstance(exc, LimitExceededError):
        return Finding("limit", "medium", str(exc), (), Location(None, member))
    if isinstance(exc, MalformedModelError):
        return Finding("malformed", "medium", str(exc), (), Location(None, member))
    return Finding("unsupported", "medium", str(exc), (), Location(None, member))


def failed_report(name: str, fmt_name: str, exc: SafeloadError, size: int) -> ScanReport:
    """The report of a file, archive or member that could not be judged: ``exc`` as its one finding."""
    verdict = Verdict.UNSAFE if isinstance(exc, UnsafeModelError) else Verdict.ERROR
    return ScanReport(name, fmt_name, verdict, (finding_for(exc),), (), size)


def with_outcome(report: ScanReport, sha256: str, failed: bool | None) -> ScanReport:
    """``report`` with its digest and its audit outcome: the constructor, ~5x cheaper than
    ``dataclasses.replace``, and a store scan copies each of 10,000 reports twice this way."""
    return ScanReport(report.path, report.format, report.verdict, report.findings, report.globals, report.size,
                      sha256, failed)
