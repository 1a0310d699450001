"""PyTorch checkpoints judged by PyTorch's own weights-only rules, statically, without importing torch.

``torch.load(weights_only=True)`` unpickles with an allowlist of its own (tensor and storage
rebuild functions, dtypes, storage and tensor classes, ``OrderedDict``, a few builtins) and
accepts persistent ids only when they are storage records.  This module mirrors that
allowlist as a safeload ``Policy`` and runs the *same opcode walker and limits* as every
other pickle, so a checkpoint that passes here uses nothing ``weights_only=True`` would refuse.
Loading stays ``torch.load(weights_only=True)``'s job: ``safeload.load`` does not build tensors.

Persistent ids (``BINPERSID``) are what a checkpoint uses to refer to its storages; the
walker refuses them in model files, and here (``storage_ids``) accepts each one whose id is a
``("storage", ...)`` tuple, as torch requires, and stands a storage in for it.

Two layouts are recognised by content: the zip format (``<prefix>/data.pkl`` plus raw
storage members, torch >= 1.6) and the legacy format (a magic-number pickle, a protocol
pickle, a system-info pickle, the object pickle, the storage-key pickle, then raw bytes).
TorchScript archives (``code/`` members) carry code and are reported as not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safeload._allowlist import Entry, Kind
from safeload._containers import Buffer
from safeload._policy import Policy
from safeload._walker import MALFORMED, Issue, Trace, walk

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


def judge_pickle(stream: Buffer, policy: Policy) -> tuple[Trace, list[Issue]]:
    """Walk one checkpoint pickle under ``policy`` (a ``torch_policy``), BINPERSIDs naming storages.

    (The issues list is empty: the walk's own issues say everything. A pure-Python ``pickletools``
    pass used to locate the BINPERSIDs first, at 0.5 s per MB and ~95 bytes of memory per MARK.)"""
    return walk(stream, policy, storage_ids=True), []


def judge_legacy(data: Buffer, policy: Policy) -> TorchJudgement:
    """The five pickles of a legacy (pre-zip) checkpoint; the raw storage bytes after them are data.

    Each is walked in place (offsets are the file's); where one stops, the next starts."""
    out = TorchJudgement()
    start = 0
    for index in range(_LEGACY_PICKLES):
        trace = walk(data, policy, start=start, storage_ids=True, trailing=False)
        out.traces.append((None, trace))
        if trace.end < 0:
            out.issues.append((None, Issue("malformed", MALFORMED, start,
                                           f"pickle {index + 1} of the legacy checkpoint cannot be delimited")))
            return out
        start = trace.end
    return out
