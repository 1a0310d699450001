"""Protocol 0/1 text arguments: safeload parses them exactly as CPython's C unpickler does.

Differential: for generated texts, ``pickle.loads`` (the C unpickler, what ``load`` runs for
plain pickles) and ``safeload._textops`` must accept and reject the same texts with the same
values; so must the walker (what ``scan`` sees) and the joblib engine (a pure-Python unpickler
that would otherwise parse with Python's ``int``/``float``).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import safeload
from safeload._engine import run_joblib_py
from safeload._policy import Policy
from safeload._textops import parse_float, parse_get, parse_int, parse_long, parse_put
from safeload._walker import walk

#: Long and edge-length digit runs (strtol is emulated by converting only the significant digits).
LONG_TEXTS = [b"0" * 5000 + b"7", b" " * 5000 + b"7", b"0x" + b"f" * 50, b"0x" + b"0" * 40 + b"1",
              b"-" + b"0" * 40 + b"9223372036854775808", b"0" + b"7" * 21, b"01" + b"0" * 21, b"-01" + b"0" * 21,
              b"-01" + b"0" * 20 + b"1", b"0x8" + b"0" * 15, b"-0x8" + b"0" * 15,
              b"0x7" + b"f" * 15, b"1" * 19, b"1" * 22, b"0" * 30 + b"9" * 5, b"\t\v 0017"]
_ALPHABET = b"0123456789+-_ .eExXoObBaAfFnNiItTyYLl\t\v\f\r\x00\xa0\xff9"
texts = st.one_of(
    st.binary(max_size=12).filter(lambda b: b"\n" not in b),
    st.lists(st.sampled_from(list(_ALPHABET)), max_size=14).map(bytes).filter(lambda b: b"\n" not in b),
    st.sampled_from([b"010", b"0x10", b"0X1f", b"0o17", b"0b101", b"1_000", b"F1_0", b"1e999", b"-1e999", b"1e-999",
                     b"00", b"01", b"+1", b"-0", b" 1", b"1\x00zz", b"0x", b"08", b"9" * 30, b"0" + b"7" * 30,
                     b"inf", b"-Infinity", b"nan", b"infinit", b"1.", b".5", b"1e", b"1e+", b"12L", b"L", b"",
                     b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809", b"1" * 4301,
                     *LONG_TEXTS]),
)


def _c(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - any refusal counts as a refusal
        return "err", type(exc).__name__


def _ours(fn: Callable[[bytes], Any], text: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(text)
    except (ValueError, OverflowError) as exc:
        return "err", type(exc).__name__


def _same(c: tuple[str, Any], ours: tuple[str, Any], text: bytes) -> None:
    assert c[0] == ours[0], (text, c, ours)
    if c[0] == "ok":
        a, b = c[1], ours[1]
        assert type(a) is type(b), (text, a, b)
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (text, a, b)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts)
@example(b"010")
@example(b"F1_0")
def test_int_long_float_like_the_c_unpickler(text: bytes) -> None:
    def as_value(line: bytes) -> object:
        number, is_bool = parse_int(line)
        return number == 1 if is_bool else number

    for op, fn in ((b"I", as_value), (b"L", parse_long), (b"F", parse_float)):
        _same(_c(op + text + b"\n."), _ours(fn, text), op + text)


@pytest.mark.parametrize("text", LONG_TEXTS, ids=range(len(LONG_TEXTS)))
def test_digit_runs_at_and_past_a_long_like_the_c_unpickler(text: bytes) -> None:
    """Every one of them, not a sample: ``strtol`` is emulated by converting only the significant
    digits (22 octal digits hold 2**63), so the lengths around that bound are where it could differ."""
    test_int_long_float_like_the_c_unpickler.hypothesis.inner_test(text)  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts)
def test_memo_indices_like_the_c_unpickler(text: bytes) -> None:
    c_put = _c(b"Np" + text + b"\n.")
    if c_put == ("err", "MemoryError"):  # parsed, then the memo table of that size could not be allocated
        c_put = ("ok", None)  # (the walker refuses such indices as limit-memo before anything is built)
    ours_put = _ours(parse_put, text)
    assert c_put[0] == ours_put[0], (text, c_put, ours_put)
    c_get = _c(b"Np5\n0g" + text + b"\n.")
    ours = _ours(parse_get, text)
    assert c_get[0] == ("ok" if ours == ("ok", 5) else "err"), (text, c_get, ours)


@pytest.mark.parametrize(("stream", "value"), [
    (b"I010\n.", 8),  # strtol base 0: octal
    (b"I+1\n.", True),  # a two-character line holding 0 or 1 is a bool
    (b"I1\x00junk\n.", 1),  # C parsers stop at NUL
    (b"L12\x00junkL\n.", 12),
    (b"F1.5\x00junk\n.", 1.5),
])
def test_walker_and_joblib_engine_see_the_c_value(stream: bytes, value: object) -> None:
    assert pickle.loads(stream) == value and type(pickle.loads(stream)) is type(value)
    seen: list[Any] = []

    def observer(offset: int, view: Any) -> None:
        if view.stopped:
            seen.append(view.stack()[-1])

    trace = walk(stream, Policy.default(), observer=observer)
    assert not trace.issues and seen == [value] and type(seen[0]) is type(value)
    built = run_joblib_py(stream, trace, Policy.default())  # the pure-Python engine, with the C parsers
    assert built == value and type(built) is type(value)
    assert safeload.loads(stream) == value


@pytest.mark.parametrize("stream", [b"F1_0\n.", b"F1e999\n.", b"F 1.5\n.", b"I1_0x\n.", b"Ifoo\n."])
def test_texts_the_c_unpickler_refuses_are_refused(stream: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017 - whatever the C unpickler raises
        pickle.loads(stream)
    trace = walk(stream, Policy.default())
    assert trace.issues and trace.issues[0].severity == "malformed"
    report = safeload.scan_bytes(stream, Policy.default()) if hasattr(safeload, "scan_bytes") else None
    with pytest.raises(safeload.MalformedModelError):
        safeload.loads(stream)
    del report
