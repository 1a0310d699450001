"""Formats recognised by content that safeload does not unpickle.

A model store holds more than pickles: safetensors, ONNX and GGUF files carry data
only (no code path: loading them runs nothing), Keras/HDF5 files can carry code that
safeload has no rules for, and some files are not models at all although they are
named like one (Git LFS pointers of a checkout without ``git lfs pull``, images).
Each is recognised by its bytes (never by its name) and its header sanity-checked,
so a store scan reports it for what it is instead of calling it a malformed pickle
-- or a safe one.
"""

from __future__ import annotations

import json
import reprlib
import struct
from dataclasses import dataclass

from safeload._containers import Buffer
from safeload._report import Verdict

__all__ = ["Recognised", "might_recognise", "recognise"]

_LFS = b"version https://git-lfs.github.com/spec/v1\n"
_HDF5 = b"\x89HDF\r\n\x1a\n"
_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF-", "PDF document"),
    (b"\x7fELF", "ELF executable"),
)
# safetensors' own reader refuses headers above 100 MB.
_SAFETENSORS_MAX_HEADER = 100_000_000
# Parsing a header costs time per byte and ~128 bytes of Python objects per JSON token, so what a header
# may hold grows with the tensor bytes it describes, as scan's budget grows with the file: this many header
# bytes, plus one per 16 data bytes (real headers: ~100 bytes per tensor, and tensors of KBs to GBs),
_SAFETENSORS_FREE_HEADER = 8 << 20
# and this many JSON tokens (keys and values: at most one per `{ [ , :`), plus one per 2 KiB of data (real
# headers: ~10 per tensor). Past either, the header is refused before anything is parsed.
_SAFETENSORS_FREE_TOKENS = 1 << 18
_SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
                       "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
                       "C64": 8, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1}
# ONNX ModelProto top-level fields: number -> protobuf wire type.
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
# A real ModelProto has a handful of top-level fields plus one per opset import, metadata entry, training
# info and local function (the graph, however big, is one field): tens to hundreds. Past this many the
# bytes are not taken for ONNX (each field costs ~2 us of Python: 2-byte fields made 100 MB take 80 s).
_ONNX_MAX_FIELDS = 10_000
# Values shown in messages: a header's names and values can be megabytes long or deeply nested.
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlong = 40


@dataclass(frozen=True)
class Recognised:
    """What the bytes are: ``verdict`` is ``no-code``, ``not-judged``, ``not-a-model`` or ``error``."""

    format: str
    verdict: str
    rule: str
    severity: str
    message: str


def might_recognise(head: bytes) -> bool:
    """Could ``recognise`` claim a file starting with ``head`` (≥ 16 bytes)?  Cheap, for the background reader."""
    return (head.startswith((_LFS[:16], _HDF5, b"GGUF", b"PK\x03\x04")) or any(head.startswith(m) for m, _ in _IMAGES)
            or (len(head) > 8 and head[8:9] == b"{") or head[:1] == b"\x08")


def recognise(data: Buffer) -> Recognised | None:
    """The non-pickle format of ``data``, or ``None`` when it is none of them (pickle, joblib, zip...)."""
    head = bytes(data[:64])
    if head.startswith(_LFS):
        return _lfs(data)
    for magic, what in _IMAGES:
        if head.startswith(magic):
            return Recognised(what.split()[0].lower(), Verdict.NOT_A_MODEL, "not-a-model", "info",
                              f"{what}, not a model file")
    if head.startswith(_HDF5):
        return Recognised("hdf5", Verdict.NOT_JUDGED, "not-judged", "medium",
                          "HDF5 file (Keras .h5 or other): safeload does not judge HDF5 models; Keras Lambda "
                          "layers in them can run code")
    if head.startswith(b"GGUF"):
        return _gguf(data)
    if len(head) > 8 and head[8:9] == b"{":
        found = _safetensors(data)
        if found is not None:
            return found
    if head[:1] == b"\x08":
        return _onnx(data)
    return None


def _lfs(data: Buffer) -> Recognised:
    text = bytes(data[:1024]).decode("utf-8", "replace")
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    oid = fields.get("oid", "?")
    size = fields.get("size", "?")
    return Recognised("lfs-pointer", Verdict.NOT_A_MODEL, "lfs-pointer", "medium",
                      f"Git LFS pointer ({oid}, {size} bytes), not the file itself: run `git lfs pull` "
                      "before scanning")


def _gguf(data: Buffer) -> Recognised:
    size = len(data)
    if size < 24:
        return Recognised("gguf", Verdict.ERROR, "malformed", "medium", "truncated GGUF header")
    version = struct.unpack_from("<I", data, 4)[0]
    if version not in (1, 2, 3):
        return Recognised("gguf", Verdict.ERROR, "malformed", "medium", f"GGUF version {version} is unknown")
    if version == 1:
        tensors, kvs = struct.unpack_from("<II", data, 8)
    else:
        tensors, kvs = struct.unpack_from("<QQ", data, 8)
    # Every tensor info and key/value pair takes at least a length-prefixed name and a type: > 8 bytes.
    if (tensors + kvs) * 8 > size:
        return Recognised("gguf", Verdict.ERROR, "malformed", "medium",
                          f"GGUF header claims {tensors} tensors and {kvs} metadata entries in a {size}-byte file")
    return Recognised("gguf", Verdict.NO_CODE, "no-code", "info",
                      f"GGUF v{version} ({tensors} tensors): a data-only format, loading it runs no code")


def _safetensors(data: Buffer) -> Recognised | None:
    """A safetensors file: an 8-byte header length, a JSON header, then the tensor bytes.  A header larger
    or denser than a real one for its data section is refused unparsed: its tree would cost 10-25x its size."""
    size = len(data)
    n = struct.unpack_from("<Q", data, 0)[0]
    if n > size - 8 or n > _SAFETENSORS_MAX_HEADER:
        if n > 1 << 40:
            return None  # not even a plausible length: some other format that happens to have '{' at 8
        return _bad_safetensors(f"header length {n} is past the end of the {size}-byte file")
    body = size - 8 - n
    if n > _SAFETENSORS_FREE_HEADER + body // 16:
        return _bad_safetensors(f"a {n}-byte header for {body} bytes of tensors (at most "
                                f"{_SAFETENSORS_FREE_HEADER + body // 16})")
    try:
        with memoryview(data)[8:8 + n] as view:  # no copy of the bytes; released before an mmap closes
            text = str(view, "utf-8")
    except UnicodeDecodeError as exc:
        return _bad_safetensors(f"header is not JSON: {exc}")
    # Before json builds the tree: a header of `[{},{},...]` was 1 GiB of dicts for 40 MB.
    tokens = text.count("{") + text.count("[") + text.count(",") + text.count(":") + 1
    if tokens > _SAFETENSORS_FREE_TOKENS + body // 2048:
        return _bad_safetensors(f"header has up to {tokens} JSON values for {body} bytes of tensors (at most "
                                f"{_SAFETENSORS_FREE_TOKENS + body // 2048})")
    try:
        header = json.loads(text, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:
        return _bad_safetensors(f"header is not JSON: {exc}")
    del text
    if not isinstance(header, dict):
        return _bad_safetensors("header is not a JSON object")
    count = 0
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                return _bad_safetensors("__metadata__ must map strings to strings")
            continue
        problem = _tensor_problem(entry, body)
        if problem is not None:
            return _bad_safetensors(f"tensor {_SHOW.repr(name)}: {problem}")
        count += 1
    return Recognised("safetensors", Verdict.NO_CODE, "no-code", "info",
                      f"safetensors ({count} tensors): a data-only format, loading it runs no code")


def _json_int(text: str) -> int:
    """A JSON integer of a safetensors header: past 20 characters, any value outside every file
    (2**64, signed). Converting thousands of 4,000-digit numbers took seconds; the verdict only
    asks whether a dimension or an offset fits the file."""
    if len(text) <= 20:
        return int(text)
    return -(1 << 64) if text.startswith("-") else 1 << 64


def _tensor_problem(entry: object, body: int) -> str | None:
    """Why a header entry is no tensor of the ``body``-byte data section; any JSON value may come here."""
    if not isinstance(entry, dict):
        return "entry is not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
        return f"unknown dtype {_SHOW.repr(dtype)}"
    # `type(...) is int`: JSON's `true` is an int to Python (bool subclasses int), not to safetensors
    if not isinstance(shape, list) or not all(type(d) is int for d in shape) or min(shape, default=0) < 0:
        return "shape is not a list of non-negative integers"
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body):
        return f"data_offsets {_SHOW.repr(offsets)} are outside the {body}-byte data section"
    if dtype.startswith(("F4", "F6")):
        return None  # sub-byte types: packed, the byte count rounds
    mismatch = "shape and dtype do not match the data length"
    elements = 0 if 0 in shape else 1
    for d in shape if elements else ():
        elements *= d
        if elements > body:  # (each element takes a byte or more) stop: the product of thousands of
            return mismatch  # 4,000-digit dims was quadratic, 126 s for a 6.4 MB header
    if elements * _SAFETENSORS_DTYPES[dtype] != offsets[1] - offsets[0]:
        return mismatch
    return None


def _bad_safetensors(why: str) -> Recognised:
    return Recognised("safetensors", Verdict.ERROR, "malformed", "medium", f"invalid safetensors file: {why}")


def _varint(data: Buffer, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _onnx(data: Buffer) -> Recognised | None:
    """An ONNX ModelProto: protobuf fields of the known numbers only, ending exactly at the end, with a graph."""
    pos, seen, fields = 0, set(), 0
    try:
        while pos < len(data):
            fields += 1
            if fields > _ONNX_MAX_FIELDS:
                return None  # more top-level fields than any model has
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            if _ONNX_FIELDS.get(number) != wire:
                return None
            value, pos = _varint(data, pos)
            if wire == 2:
                pos += value
                if pos > len(data):
                    return None
            seen.add(number)
    except ValueError:
        return None
    if 7 not in seen or 1 not in seen:
        return None
    return Recognised("onnx", Verdict.NO_CODE, "no-code", "info",
                      "ONNX model: a data-only format (operators are named, not code), loading it runs no code")
