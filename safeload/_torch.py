"""PyTorch checkpoints judged by PyTorch's own weights-only rules, statically, without importing torch.

``torch.load(weights_only=True)`` unpickles with an allowlist of its own (tensor and storage
rebuild functions, dtypes, storage and tensor classes, ``OrderedDict``, a few builtins) and
accepts persistent ids only when they are storage records.  This module mirrors that
allowlist as a safeload ``Policy`` and runs the *same opcode walker and limits* as every
other pickle, so a checkpoint that passes here uses nothing ``weights_only=True`` would refuse.
Loading stays ``torch.load(weights_only=True)``'s job: ``safeload.load`` does not build tensors.

Persistent ids (``BINPERSID``) are what a checkpoint uses to refer to its storages; the
walker refuses them in model files, so each ``BINPERSID`` byte is replaced by ``TUPLE1``
(same stack effect: pop one value, push one) before the walk, after checking that the id
it consumes is a ``("storage", ...)`` tuple as torch requires.  Offsets are unchanged.

Two layouts are recognised by content: the zip format (``<prefix>/data.pkl`` plus raw
storage members, torch >= 1.6) and the legacy format (a magic-number pickle, a protocol
pickle, a system-info pickle, the object pickle, the storage-key pickle, then raw bytes).
TorchScript archives (``code/`` members) carry code and are reported as not judged.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass, field

from safeload._allowlist import Entry, Kind
from safeload._containers import Buffer
from safeload._policy import Policy
from safeload._walker import MALFORMED, UNSAFE, Issue, Trace, walk

__all__ = ["LEGACY_MAGIC", "TorchJudgement", "is_legacy", "judge_legacy", "judge_pickle", "torch_policy"]

# pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) without its STOP: the first bytes of a legacy checkpoint.
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
_LEGACY_PICKLES = 5  # magic, protocol version, sys_info, the object, the storage keys

_WHY = "torch.load(weights_only=True) allows it"
_REBUILD = ("_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_tensor",
            "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage",
            "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_numpy",
            "_rebuild_device_tensor_from_cpu_tensor")
_CALLABLE = ("collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
             "torch.serialization._get_layout", "torch.Size", "torch.device", "torch._tensor._rebuild_from_type_v2",
             "builtins.set", "builtins.complex", *(f"torch._utils.{f}" for f in _REBUILD))
_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
           "complex32", "complex64", "complex128", "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
           "uint16", "uint32", "uint64", "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz",
           "float8_e8m0fnu", "float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
           *(f"uint{i}" for i in range(1, 8)), *(f"int{i}" for i in range(1, 8)))
_STORAGE = ("Double", "Float", "Half", "Long", "Int", "Short", "Char", "Byte", "Bool", "BFloat16", "ComplexDouble",
            "ComplexFloat", "QUInt8", "QInt8", "QInt32", "QUInt4x2", "QUInt2x4")
_TENSOR = ("Double", "Float", "Half", "Long", "Int", "Short", "Char", "Byte", "Bool", "BFloat16")
_VALUES = ("torch.Tensor", "torch.storage.TypedStorage", "torch.storage.UntypedStorage", "torch.per_tensor_affine",
           "torch.per_tensor_symmetric", "torch.per_channel_affine", "torch.per_channel_symmetric",
           "torch.per_channel_affine_float_qparams", *(f"torch.{d}" for d in _DTYPES),
           *(f"torch.{s}Storage" for s in _STORAGE), *(f"torch.{t}Tensor" for t in _TENSOR),
           *(f"torch.cuda.{t}Tensor" for t in _TENSOR))
# Shared with the default policy: same guards (the walker mirrors them statically).
_SHARED = ("_codecs.encode", "builtins.bytearray")


def torch_policy(base: Policy) -> Policy:
    """torch's weights-only allowlist as a Policy, with ``base``'s limits and the names its user allowed."""
    entries: dict[str, Entry] = {n: Entry(n, Kind.CALL, _WHY) for n in _CALLABLE}
    entries.update((n, Entry(n, Kind.VALUE, _WHY)) for n in _VALUES)
    default = Policy.default().entries
    entries.update((n, default[n]) for n in _SHARED if n in default)
    entries.update((n, e) for n, e in base.entries.items() if e.user)
    return Policy(entries, base.limits)


@dataclass
class TorchJudgement:
    """The walks of a checkpoint's pickles (member name or ``None``) and the issues found around them."""

    traces: list[tuple[str | None, Trace]] = field(default_factory=list)
    issues: list[tuple[str | None, Issue]] = field(default_factory=list)


def is_legacy(data: Buffer) -> bool:
    return bytes(data[:len(LEGACY_MAGIC)]) == LEGACY_MAGIC


def _rewrite_persids(stream: bytes) -> tuple[bytes, list[Issue]]:
    """``stream`` with every BINPERSID turned into TUPLE1, and an issue for ids that are not storage records.

    Only locates opcodes (pickletools parses, never executes); the walk of the result judges everything.
    A stream pickletools cannot parse is returned unchanged: the walker reports why.
    """
    issues: list[Issue] = []
    persids: list[int] = []
    marks: list[int] = []
    last_tuple: tuple[int, bool] | None = None  # (position, starts with "storage")
    first_after_mark: dict[int, object] = {}
    pending_mark: int | None = None
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(stream)):
            p = pos or 0
            if pending_mark is not None:
                first_after_mark[pending_mark] = arg if op.name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE",
                                                                    "SHORT_BINSTRING", "BINSTRING",
                                                                    "STRING") else None
                pending_mark = None
            if op.name == "MARK":
                marks.append(p)
                pending_mark = p
            elif op.name == "TUPLE" and marks:
                mark = marks.pop()
                first = first_after_mark.get(mark)
                last_tuple = (p, first in ("storage", b"storage"))
            elif op.name in ("BINPUT", "LONG_BINPUT", "MEMOIZE", "PUT"):
                pass  # memoizing the id does not change what BINPERSID consumes
            elif op.name == "BINPERSID":
                if last_tuple is None or not last_tuple[1]:
                    issues.append(Issue("persid", UNSAFE, p, "persistent id that is not a ('storage', ...) record: "
                                        "torch.load(weights_only=True) refuses it"))
                persids.append(p)
                last_tuple = None
            elif op.name in ("APPENDS", "SETITEMS", "DICT", "LIST", "FROZENSET", "ADDITEMS", "OBJ", "INST", "POP_MARK"):
                if marks:
                    marks.pop()
                last_tuple = None
            else:
                last_tuple = None
            if op.name == "STOP":
                break
    except (ValueError, EOFError, KeyError, TypeError, UnicodeDecodeError, OverflowError, MemoryError):
        return stream, []
    if not persids:
        return stream, issues
    out = bytearray(stream)
    for p in persids:
        out[p] = 0x85  # TUPLE1
    return bytes(out), issues


def judge_pickle(stream: bytes, policy: Policy) -> tuple[Trace, list[Issue]]:
    """Walk one checkpoint pickle under ``policy`` (a ``torch_policy``)."""
    rewritten, issues = _rewrite_persids(stream)
    return walk(rewritten, policy), issues


def _pickle_end(data: Buffer, start: int) -> int:
    """Where the pickle starting at ``start`` ends (after STOP), or -1 if it cannot be delimited."""
    view = memoryview(data)[start:]
    try:
        for op, _, pos in pickletools.genops(io.BytesIO(view)):
            if op.name == "STOP":
                return start + (pos or 0) + 1
    except (ValueError, EOFError, KeyError, TypeError, UnicodeDecodeError, OverflowError, MemoryError):
        return -1
    finally:
        view.release()
    return -1


def judge_legacy(data: Buffer, policy: Policy) -> TorchJudgement:
    """The five pickles of a legacy (pre-zip) checkpoint; the raw storage bytes after them are data."""
    out = TorchJudgement()
    start = 0
    for index in range(_LEGACY_PICKLES):
        end = _pickle_end(data, start)
        if end < 0:
            out.issues.append((None, Issue("malformed", MALFORMED, start,
                                           f"pickle {index + 1} of the legacy checkpoint cannot be delimited")))
            return out
        trace, issues = judge_pickle(bytes(data[start:end]), policy)
        out.traces.append((None, _shifted(trace, start)))
        out.issues.extend((None, _moved(i, start)) for i in issues)
        start = end
    return out


def _moved(issue: Issue, by: int) -> Issue:
    return Issue(issue.rule, issue.severity, issue.offset + by, issue.message, issue.names)


def _shifted(trace: Trace, by: int) -> Trace:
    """Offsets relative to the whole file."""
    if by == 0:
        return trace
    trace.issues = [_moved(i, by) for i in trace.issues]
    trace.globals = [g.__class__(g.name, g.module, g.qualname, g.raw_module, g.raw_qualname, g.offset + by, g.opcode,
                                 g.allowed) for g in trace.globals]
    return trace
