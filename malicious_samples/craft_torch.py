"""PyTorch checkpoints in the legacy (pre-zip) format that run code when unpickled.

A legacy checkpoint is five pickles back to back (magic number, protocol version, system
info, the object, the storage keys) followed by raw storage bytes; ``torch.load`` with
``weights_only=False`` unpickles them one after the other with the plain unpickler.  These
samples follow PyTorch's documented layout (torch is not installed here): the loader that
proves them live is ``pickle_stream``, which reads the pickles in sequence the same way, and
the payload in the object pickle runs before its first persistent id is reached.
``safeload scan`` judges every pickle by torch's weights-only allowlist and names the global;
``safeload.load`` refuses the file (it does not load checkpoints).
"""

from __future__ import annotations

import pickle
import struct

import craft as C
from craft import Sample, glob, u2

_MAGIC = 0x1950A86A20F9469CFC6C
_SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


def _g(module: str, name: str) -> bytes:
    return glob(module, name)


def _tensor(key: str) -> bytes:
    """``torch._utils._rebuild_tensor_v2(<storage key>, 0, (1,), (1,), False, OrderedDict())``."""
    pid = (C.MARK + u2("storage") + _g("torch", "FloatStorage") + u2(key) + u2("cpu") + C.i(1) + b"N" + C.TUPLE)
    return (_g("torch._utils", "_rebuild_tensor_v2") + C.MARK + pid + C.BINPERSID + C.i(0) + C.MARK + C.i(1)
            + C.TUPLE + C.MARK + C.i(1) + C.TUPLE + b"\x89" + _g("collections", "OrderedDict") + C.MARK
            + C.TUPLE + C.REDUCE + C.TUPLE + C.REDUCE)


def _legacy(payload: bytes) -> bytes:
    """A legacy checkpoint whose state dict holds ``payload`` under "note" before a real tensor."""
    state = (b"\x80\x02" + _g("collections", "OrderedDict") + C.MARK + C.TUPLE + C.REDUCE
             + u2("note") + payload + b"s" + u2("weight") + _tensor("0") + b"s" + C.STOP)
    return b"".join([pickle.dumps(_MAGIC, protocol=2), pickle.dumps(1001, protocol=2),
                     pickle.dumps(_SYS_INFO, protocol=2), state, pickle.dumps(["0"], protocol=2),
                     struct.pack("<q", 1), struct.pack("<f", 1.0)])


def samples() -> list[Sample]:
    out = [
        Sample("s7_torch_legacy_exec.pth", "torch-legacy-exec", "1",
               "Legacy PyTorch checkpoint (five stacked pickles, then storage bytes) whose state dict holds "
               "builtins.exec(src) before its tensor: torch.load(weights_only=False) runs it; scan judges the "
               "checkpoint by torch's weights-only allowlist and names the global.",
               _legacy(_g("builtins", "exec") + C.MARK + u2(C.PY) + C.TUPLE + C.REDUCE), "torch-legacy",
               C.CANARY, loader="pickle_stream"),
        Sample("s7_torch_legacy_rebuild_gadget.pth", "torch-legacy-runpy", "1",
               "Legacy PyTorch checkpoint calling runpy._run_code(src, {}) where a rebuild function belongs: a "
               "name outside torch's rebuild functions, refused by the static weights-only judgement.",
               _legacy(_g("runpy", "_run_code") + C.MARK + u2(C.PY) + C.EMPTY_DICT + C.TUPLE + C.REDUCE),
               "torch-legacy", C.CANARY, loader="pickle_stream"),
    ]
    return out
