"""Scan judges large vocabularies as load does: ``_speedups.index_census`` and the twin's use of it.

A vocabulary past the walker's 64-pair cap was unknown to scan's static twin, so a tampered one
(a column out of range, a column used twice) scanned *safe* while load's ``_check_index_map``
refused it: the largest class of scan/load disagreements the byte fuzzer counted. The walker now
records a dict's vocabulary entries (runs, and ``str`` keys with ``int`` values, or with values no
index map may hold: ``str``, ``float``, ``None``, bytes), and the twin judges them from the bytes: keys
pairwise distinct and values exactly ``0..n-1``. Equal keys (the built dict is smaller than the
stream) make the twin build the dict CPython builds, within its budget, for load's own check.

The census is held to a Python reading of the same entries (``_walker._expand``), over generated
buffers in both run forms, with equal keys, bad values and run bounds that lie; and scan == load
is checked end to end on real vectorizers, intact and tampered, in every format.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from typing import Any

import joblib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import MultiLabelBinarizer

import safeload
from safeload import _static_model
from safeload._simulated import Run

index_census = pytest.importorskip("safeload._speedups").index_census  # CI builds it


def _value(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _memo_entry(text: bytes, v: int) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text + b"\x94" + _value(v)


def _put_entry(text: bytes, slot: int, v: int) -> bytes:
    put = b"q" + bytes([slot]) if slot < 256 else b"r" + struct.pack("<I", slot)
    return b"X" + struct.pack("<I", len(text)) + text + put + _value(v)


_TEXTS = st.sampled_from(["a", "b", "w1", "w2", "é", "\ud800", "x" * 200, "", "w10"]).map(
    lambda t: t.encode("utf-8", "surrogatepass"))
_VALUES = st.one_of(st.integers(0, 12), st.integers(-3, 70_000), st.just(-(2**31)))
_PAIR_VALUES = st.one_of(_VALUES, st.just(2**70), st.just(1.0), st.just("3"))


@st.composite
def _vocabularies(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    """A buffer of runs in both forms and the recorded pieces (runs and pairs) for it."""
    data = bytearray(b"\x00" * draw(st.integers(0, 3)))
    vocab: list[Any] = []
    slot = 0
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["memo", "put", "pair"]))
        entries = draw(st.lists(st.tuples(_TEXTS, _VALUES), min_size=1, max_size=8))
        if kind == "pair":
            text, v = entries[0][0], draw(_PAIR_VALUES)
            vocab += [text.decode("utf-8", "surrogatepass"), v]
            continue
        start = len(data)
        for text, v in entries:
            data += _memo_entry(text, v) if kind == "memo" else _put_entry(text, slot, v)
            slot += 1
        vocab.append(Run(start, len(data), len(entries), kind == "put"))
    return bytes(data), vocab


def _python(data: bytes, vocab: list[Any]) -> tuple[int, int, int, Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_static_model, "_index_census", None)
        return _static_model.census(data, vocab)


@settings(max_examples=800, deadline=None)
@given(_vocabularies())
def test_the_census_agrees_with_the_python_reading(case: tuple[bytes, list[Any]]) -> None:
    data, vocab = case
    assert _static_model.census(data, vocab) == _python(data, vocab)


def test_a_permutation_is_accepted_and_each_flaw_found() -> None:
    data = b"".join(_memo_entry(f"w{i}".encode(), v) for i, v in enumerate([2, 0, 1]))
    run = Run(0, len(data), 3)
    assert index_census(data, [(0, len(data), 3, False)]) == (3, 0, -1, 0)
    assert _static_model.census(data, [run, "x", 3]) == (4, 0, -1, 0)
    assert _static_model.census(data, [run, "x", 4]) == (4, 1, 3, 4)  # out of range
    assert _static_model.census(data, [run, "x", 1]) == (4, 1, 3, 1)  # column 1 twice
    assert _static_model.census(data, [run, "x", 2.5]) == (4, 1, 3, 2.5)  # not an int
    assert _static_model.census(data, [run, "w1", 3])[1] == 2  # equal keys: unknown
    assert _static_model.census(data, ["x", 2**70, run])[:3] == (4, 1, 0)


@pytest.mark.parametrize(("start", "end", "count", "status"), [
    (-1, 10, 1, 2), (5, 2, 1, 2), (0, 10**9, 1, 0), (0, 20, 5, 2), (3, 20, 1, 2), (0, 0, 1, 2), (0, 20, 0, 0),
    (0, 7, 1, 0), (0, 6, 1, 2)])
def test_runs_that_lie_about_their_bounds_are_unknown_not_read_past(start: int, end: int, count: int,
                                                                    status: int) -> None:
    """(An entry is 7 bytes here; the end is clamped to the buffer.)"""
    data = _memo_entry(b"w0", 0) + _memo_entry(b"w1", 1)
    assert index_census(data, [(start, end, count, False)])[1] == status


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        index_census(b"", [("x", 1)])  # a pair's key must be bytes
    with pytest.raises(TypeError):
        index_census(b"", (0, 0, 0, False))
    with pytest.raises(ValueError):
        index_census(b"", [(0, 0, -1, False)])


# -- end to end: scan == load on real vectorizers ---------------------------------------------------------

_DOCS = [" ".join(f"w{(i * 7 + j) % 300}" for j in range(12)) for i in range(120)]


def _models() -> dict[str, Any]:
    dv = DictVectorizer().fit([{f"f{i}": 1.0 for i in range(k, k + 40)} for k in range(0, 200, 20)])
    mlb = MultiLabelBinarizer().fit([[f"l{i}", f"l{i + 1}"] for i in range(100)])
    mlb.transform([["l1"]])  # fills _cached_dict
    return {"count": CountVectorizer().fit(_DOCS), "tfidf": TfidfVectorizer().fit(_DOCS), "dict": dv, "mlb": mlb}


_MODELS = _models()


def _mapping(model: Any) -> dict[str, Any]:
    return model._cached_dict if isinstance(model, MultiLabelBinarizer) else model.vocabulary_


def _tampered(name: str, how: str) -> Any:
    model = pickle.loads(pickle.dumps(_MODELS[name]))
    mapping = _mapping(model)
    keys = list(mapping)
    if how == "out-of-range":
        mapping[keys[5]] = len(keys) + 3
    elif how == "repeated":
        mapping[keys[7]] = mapping[keys[2]]
    elif how == "negative":
        mapping[keys[-1]] = -1
    elif how == "float":
        mapping[keys[4]] = 4.0
    elif how == "str":
        mapping[keys[4]] = "4"
    elif how == "bytes":
        mapping[keys[4]] = b"4"
    elif how == "dropped":
        del mapping[keys[len(keys) // 2]]  # column n-1 now out of range... unless it was the dropped one
    return model


def _dump(model: Any, fmt: str, path: str) -> None:
    if fmt.startswith("p"):
        with open(path, "wb") as fh:
            pickle.dump(model, fh, protocol=int(fmt[1]))
    elif fmt == "joblib":
        joblib.dump(model, path)
    else:
        joblib.dump(model, path, compress=("zlib", 3))


def _agree(model: Any, fmt: str, tmp_path: Any) -> tuple[bool, bool]:
    path = os.path.join(str(tmp_path), f"m-{fmt}")
    _dump(model, fmt, path)
    return _verdicts(path)


def _verdicts(path: str) -> tuple[bool, bool]:
    """(scan says safe, load accepts)."""
    scan_safe = safeload.scan(path).safe
    try:
        safeload.load(path)
        loaded = True
    except safeload.UnsafeModelError:
        loaded = False
    return scan_safe, loaded


_FORMATS = ["p0", "p1", "p2", "p3", "p4", "p5", "joblib", "zlib"]


@pytest.mark.parametrize("name", sorted(_MODELS))
@pytest.mark.parametrize("how", ["intact", "out-of-range", "repeated", "negative", "dropped", "float", "str",
                                 "bytes"])
@pytest.mark.parametrize("fmt", _FORMATS)
def test_scan_judges_large_vocabularies_as_load_does(name: str, how: str, fmt: str, tmp_path: Any) -> None:
    model = _MODELS[name] if how == "intact" else _tampered(name, how)
    scan_safe, loaded = _agree(model, fmt, tmp_path)
    assert loaded is (how == "intact")
    assert scan_safe is loaded


def test_the_fallback_judges_the_same(tmp_path: Any) -> None:
    for how in ("intact", "repeated", "negative"):
        model = _MODELS["tfidf"] if how == "intact" else _tampered("tfidf", how)
        buf = io.BytesIO()
        joblib.dump(model, buf)
        path = os.path.join(str(tmp_path), f"{how}.joblib")
        with open(path, "wb") as fh:
            fh.write(buf.getvalue())
        fast = safeload.scan(path).safe
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_static_model, "_index_census", None)
            assert safeload.scan(path).safe is fast is (how == "intact")


def _with_repeated_key(data: bytes, key: str, value: int) -> bytes:
    """A protocol 2/3 stream with one more SETITEMS entry, right after ``key``'s, that sets ``key``
    again (to ``value``): CPython keeps the key's first position and the last value."""
    text = key.encode()
    start = data.index(b"X" + struct.pack("<I", len(text)) + text + b"q")
    j = start + 5 + len(text) + 2
    j += {ord("K"): 2, ord("M"): 3, ord("J"): 5}[data[j]]
    slot = data[start + 5 + len(text) + 1]  # (the key's own slot: it memoises an equal string again)
    entry = b"X" + struct.pack("<I", len(text)) + text + b"q" + bytes([slot]) + _value(value)
    return data[:j] + entry + data[j:]


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(("again", "loads"), [("same", True), ("taken", False), ("past", False)])
def test_repeated_keys_are_judged_on_the_dict_cpython_builds(protocol: int, again: str, loads: bool,
                                                           tmp_path: Any) -> None:
    """Equal keys in the stream (byte fuzz seed 1919: a duplicated range) were unknown to scan; the
    twin now builds the dict CPython builds (first position, last value) for load's own check."""
    model = _MODELS["count"]
    vocab = model.vocabulary_
    value = {"same": vocab["w5"], "taken": vocab["w6"], "past": len(vocab)}[again]
    data = _with_repeated_key(pickle.dumps(model, protocol=protocol), "w5", value)
    built = pickle.loads(data).vocabulary_
    assert len(built) == len(vocab) and built["w5"] == value and list(built) == list(vocab)
    path = os.path.join(str(tmp_path), "m.pkl")
    with open(path, "wb") as fh:
        fh.write(data)
    assert _verdicts(path) == (loads, loads)
    with pytest.MonkeyPatch.context() as mp:  # the pure-Python census reaches the same verdict
        mp.setattr(_static_model, "_index_census", None)
        assert safeload.scan(path).safe is loads
