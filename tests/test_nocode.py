"""The recognisers of formats without code (``safeload._nocode``) on hostile headers.

Whatever the bytes, ``recognise`` answers a ``Recognised`` or ``None`` (never raises), and its work is
bounded by the file: a safetensors header is refused before its JSON tree is built when it holds more
than a real header would for its data section, and an ONNX walk stops after more top-level protobuf
fields than any model has.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from _measure import measure
from hypothesis import given, settings
from hypothesis import strategies as st

import safeload
from safeload import _nocode as N

_VERDICTS = {"no-code", "not-judged", "not-a-model", "error"}


def safetensors(header: str | bytes, body: int = 0) -> bytes:
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw)) + raw + bytes(body)


def entry(dtype: object = "F32", shape: object = (1,), offsets: object = (0, 4)) -> dict[str, object]:
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


def judged(header: dict[str, Any] | str, body: int = 4) -> N.Recognised:
    found = N.recognise(safetensors(header if isinstance(header, str) else json.dumps(header), body))
    assert found is not None and found.format == "safetensors", found
    return found


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


ONNX = b"\x08\x08" + field(2, b"test") + field(7, field(2, b"g")) + field(8, b"\x10\x11")


# --------------------------------------------------------------------------- cost: the audit's probes


def _ints(size: int) -> bytes:
    return safetensors(b'{"a":[' + b"0," * (size // 2) + b'0]}')


def _objs(size: int) -> bytes:
    return safetensors(b'{"a":[' + b"{}," * (size // 3) + b'0]}')


def _entries(size: int) -> bytes:
    one = '"t{}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
    return safetensors("{" + ",".join(one.format(i) for i in range(size // 55)) + "}")


def _onnx_fields(size: int) -> bytes:
    return b"\x08\x00" * (size // 2) + field(7, b"")


_COSTLY = {
    "safetensors [0,0,...] 40 MB": (_ints, 40_000_000),  # was 8.6 s and 251 MiB (a parse_int call per 2 bytes)
    "safetensors [{},{},...] 8 MB": (_objs, 8_000_000),  # was 233 MiB of empty dicts
    "safetensors 145,000 empty tensors": (_entries, 8_000_000),  # was 122 MiB (~500 bytes of objects each)
    "onnx 2-byte fields 20 MB": (_onnx_fields, 20_000_000),  # was 22 s: a Python step per field
}


@pytest.mark.parametrize("case", list(_COSTLY))
def test_recognising_costs_what_reading_costs(case: str, tmp_path: Path) -> None:
    """``scan`` of a header built to be expensive stays within the resource bound: memory 2x reading the
    file + 64 MiB, time in the loose test form (8x + 5 s) of tests/test_resources.py."""
    build, size = _COSTLY[case]
    path = tmp_path / "case.bin"
    path.write_bytes(build(size))
    base = measure("read", path)
    safe = measure("scan", path)
    assert safe["peak"] <= 2 * base["peak"] + (64 << 20), (case, base, safe)
    assert safe["seconds"] <= 8 * base["seconds"] + 5.0, (case, base, safe)


def test_onnx_walk_stops_after_more_fields_than_a_model_has(monkeypatch: pytest.MonkeyPatch) -> None:
    """500,000 `ir_version` fields, then a graph: once a varint step per field (1,000,002 steps)."""
    steps = 0
    real = N._varint

    def counting(data: Any, pos: int) -> tuple[int, int]:
        nonlocal steps
        steps += 1
        return real(data, pos)

    monkeypatch.setattr(N, "_varint", counting)
    found = N.recognise(_onnx_fields(1_000_000))
    assert steps <= 100_000
    assert found is None


def test_onnx_models_with_many_fields_are_still_recognised() -> None:
    """Opset imports, metadata entries and local functions are top-level fields: hundreds of them, or
    up to the limit, and a big graph (one field however long), keep the no-code verdict."""
    metadata = b"".join(field(14, field(1, b"k%d" % i) + field(2, b"v")) for i in range(1_000))
    functions = b"".join(field(25, field(1, b"F%d" % i) + field(2, b"local")) for i in range(300))
    opsets = b"".join(field(8, field(1, b"dom%d" % i) + b"\x10\x01") for i in range(20))
    graph = field(7, bytes(8 << 20))  # its contents are not read
    for data in (ONNX, ONNX + metadata + functions + opsets, ONNX + graph):
        found = N.recognise(data)
        assert found is not None and (found.format, found.verdict) == ("onnx", "no-code"), len(data)
    at_limit = ONNX + b"\x08\x08" * (N._ONNX_MAX_FIELDS - 4)
    assert N.recognise(at_limit) is not None
    assert N.recognise(at_limit + b"\x08\x08") is None


def test_precheck_refusals_are_malformed_headers() -> None:
    """A header refused before parsing gets the verdict of any malformed header, and what a header may
    hold grows with the data section it describes."""
    dense = '{"t":{"dtype":"U8","shape":[' + "1," * N._SAFETENSORS_FREE_TOKENS + '1],"data_offsets":[0,1]}}'
    found = judged(dense, 1)
    assert (found.verdict, found.rule) == ("error", "malformed") and "JSON values" in found.message
    assert judged(dense, 2048 * 16).verdict == "no-code"
    padded = '{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}' + " " * N._SAFETENSORS_FREE_HEADER + "}"
    found = judged(padded, 1)
    assert (found.verdict, found.rule) == ("error", "malformed") and "header for" in found.message
    assert judged(padded, 16 * 64).verdict == "no-code"


def test_real_looking_headers_keep_their_verdict() -> None:
    """20,000 tensors, and a training tool's JSON-in-a-string metadata of 100,000 tags (its commas and
    colons count as tokens): both within what any file may hold."""
    many = {f"layer.{i}.weight": entry("F32", (1,), (4 * i, 4 * i + 4)) for i in range(20_000)}
    assert judged(many, 80_000).verdict == "no-code"
    tags = json.dumps({"10_data": {f"tag number {i}": i for i in range(100_000)}})
    lora = {"__metadata__": {"ss_tag_frequency": tags, "format": "pt"}, "w": entry()}
    found = judged(lora)
    assert found.verdict == "no-code", found


# --------------------------------------------------------------------------- hostile JSON value types


@pytest.mark.parametrize(("header", "message"), [
    ({"t": entry(dtype=[1])}, "unknown dtype [1]"),  # was TypeError: unhashable type: 'list'
    ({"t": entry(dtype={"F32": 1})}, "unknown dtype"),
    ({"t": entry(dtype=4)}, "unknown dtype 4"),
    ({"t": entry(dtype=None)}, "unknown dtype None"),
    ({"t": entry(dtype=True)}, "unknown dtype True"),
    ({"t": entry(shape={"0": 1})}, "shape is not a list"),
    ({"t": entry(shape="1")}, "shape is not a list"),
    ({"t": entry(shape=[[1]])}, "shape is not a list"),
    ({"t": entry(shape=[True])}, "shape is not a list"),  # bool is an int to Python only
    ({"t": entry(shape=[1.0])}, "shape is not a list"),
    ({"t": entry(shape=[-1, -1])}, "shape is not a list"),
    ('{"t":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}}', "shape is not a list"),
    ('{"t":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}', "shape is not a list"),
    ({"t": entry(offsets={"0": 0, "1": 4})}, "data_offsets"),
    ({"t": entry(offsets=[0])}, "data_offsets"),
    ({"t": entry(offsets=["0", "4"])}, "data_offsets"),
    ({"t": entry(offsets=[False, True], dtype="U8")}, "data_offsets"),  # was judged no-code
    ({"t": entry(offsets=[0, 4.0])}, "data_offsets"),
    ({"t": entry(offsets=[4, 0])}, "data_offsets"),
    ({"t": entry(offsets=[-4, 0])}, "data_offsets"),
    ({"t": entry(offsets=[[0], [4]])}, "data_offsets"),
    ({"t": [1, 2]}, "entry is not an object"),
    ({"t": None}, "entry is not an object"),
    ({"__metadata__": [["a", "b"]]}, "__metadata__"),
    ({"__metadata__": {"a": 1}}, "__metadata__"),
    ({"__metadata__": {"a": {"b": "c"}}}, "__metadata__"),
    ('{"t":' * 5000 + "0" + "}" * 5000, "not JSON"),  # deeper than the interpreter recurses
    ('{"t":{"dtype":"F32"}', "not JSON"),
])
def test_hostile_value_types_are_malformed(header: dict[str, Any] | str, message: str) -> None:
    found = judged(header)
    assert (found.verdict, found.rule) == ("error", "malformed"), found
    assert message in found.message, found.message


def test_long_names_and_values_are_shortened_in_messages() -> None:
    found = judged({"n" * 1_000_000: entry(dtype="X" * 1_000_000)})
    assert found.verdict == "error" and len(found.message) < 300, len(found.message)


def test_unhashable_dtype_is_a_safetensors_error_in_scan(tmp_path: Path) -> None:
    """The audit's file: once a TypeError caught by scan's catch-all ("cannot analyse")."""
    path = tmp_path / "t.safetensors"
    path.write_bytes(safetensors('{"t": {"dtype": [1], "shape": [1], "data_offsets": [0, 1]}}') + b"x")
    report = safeload.scan(path)
    assert (report.format, report.verdict) == ("safetensors", "error"), report
    assert not any("cannot analyse" in f.message for f in report.findings), report.findings
    with pytest.raises(safeload.SafeloadError, match="unknown dtype"):
        safeload.load(path)


_NAMES = sorted(N._SAFETENSORS_DTYPES) + ["__metadata__", "dtype", "shape", "data_offsets", "", "F32 "]
_KEYS = st.one_of(st.sampled_from(_NAMES), st.text(max_size=4)).map(json.dumps)
_NUMBER_TEXT = st.one_of(
    st.integers(min_value=-(2**66), max_value=2**66).map(str),
    st.integers(min_value=0, max_value=64).map(str),
    st.floats().map(json.dumps),  # NaN, Infinity, -Infinity included
    st.sampled_from(["1e400", "-1e400", "-0", "0.0", "4E0", "9" * 30, "-" + "9" * 30, "1" + "0" * 4_000]),
)
_SCALAR_TEXT = st.one_of(_NUMBER_TEXT, _KEYS, st.sampled_from(["true", "false", "null"]))


def _object(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(st.tuples(_KEYS, values), max_size=4)
    return pairs.map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}")


def _array(values: st.SearchStrategy[str], min_size: int = 0) -> st.SearchStrategy[str]:
    return st.lists(values, min_size=min_size, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")


_VALUE_TEXT = st.recursive(_SCALAR_TEXT, lambda kids: _object(kids) | _array(kids), max_leaves=16)
_ENTRY_TEXT = st.tuples(
    st.one_of(st.sampled_from(_NAMES).map(json.dumps), _VALUE_TEXT),
    st.one_of(_array(_NUMBER_TEXT), _VALUE_TEXT),
    st.one_of(_array(st.integers(min_value=-1, max_value=64).map(str), 2), _array(_NUMBER_TEXT), _VALUE_TEXT),
).map(lambda t: '{{"dtype":{},"shape":{},"data_offsets":{}}}'.format(*t))
_HEADER_TEXT = st.one_of(
    st.lists(st.tuples(_KEYS, st.one_of(_ENTRY_TEXT, _VALUE_TEXT)), max_size=5).map(
        lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
    _VALUE_TEXT,
)


@settings(max_examples=400, deadline=None)
@given(header=_HEADER_TEXT, body=st.integers(min_value=0, max_value=80), spaced=st.booleans(),
       cut=st.integers(min_value=0, max_value=3))
def test_any_json_header_is_a_verdict(header: str, body: int, spaced: bool, cut: int) -> None:
    """Headers of any JSON values where tensor entries, dtypes, shapes, offsets and metadata go: the
    recogniser answers, it never raises (a stray exception was a "cannot analyse" in scan)."""
    text = header.replace(",", ", ") if spaced else header
    data = safetensors(text[:len(text) - cut] if cut else text, body)
    for found in (N.recognise(data), N._safetensors(data)):
        assert found is None or (isinstance(found, N.Recognised) and found.verdict in _VERDICTS), found


@settings(max_examples=300, deadline=None)
@given(magic=st.sampled_from([b"GGUF", b"\x08", b"version https://git-lfs.github.com/spec/v1\n", b"\x00" * 8 + b"{",
                              b"\x89HDF\r\n\x1a\n"]),
       rest=st.binary(max_size=64))
def test_any_bytes_after_a_magic_are_a_verdict(magic: bytes, rest: bytes) -> None:
    found = N.recognise(magic + rest)
    assert found is None or found.verdict in _VERDICTS, found
