"""The compiled run counter (safeload/_speedups.c) against a plain-Python reading of the same rule.

It parses untrusted bytes in C, so besides agreeing with the reference it must stay inside
``data[start:end]`` for any arguments, and refuse what is not a buffer without crashing.
"""

from __future__ import annotations

import mmap
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeload import _walker


def _count(data: bytes | bytearray | memoryview | mmap.mmap, start: int, end: int) -> tuple[int, int]:
    from safeload._speedups import count_entries

    return count_entries(data, start, end)


def _decodes(text: bytes) -> bool:
    try:
        text.decode("utf-8", "surrogatepass")  # what the unpickler does with SHORT_BINUNICODE
    except UnicodeDecodeError:
        return False
    return True


def reference(data: bytes, start: int, end: int) -> tuple[int, int]:
    """SHORT_BINUNICODE <len> <text> MEMOIZE then BININT1 / BININT2 / BININT, entry by entry,
    up to the first entry whose text would not decode."""
    end = min(end, len(data))
    if start < 0 or start > end:
        return start, 0
    i, count = start, 0
    while True:
        if i + 2 > end or data[i] != 0x8C:
            return i, count
        memo = i + 2 + data[i + 1]
        if memo + 2 > end or data[memo] != 0x94:
            return i, count
        width = _WIDTH.get(data[memo + 1])
        if width is None or memo + 2 + width > end or not _decodes(data[i + 2:memo]):
            return i, count
        i = memo + 2 + width
        count += 1


def entry(text: bytes, op: int, value: bytes) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text + b"\x94" + bytes([op]) + value


_WIDTH = {0x4B: 1, 0x4D: 2, 0x4A: 4}
# Texts: any bytes (0x94 and 0x8c included, mostly not UTF-8), and real text of every plane,
# lone surrogates included (the unpickler accepts those), sometimes cut mid-character.
_TEXT = st.one_of(
    st.binary(max_size=255),
    st.text(st.characters(exclude_categories=()), max_size=80).map(
        lambda t: t.encode("utf-8", "surrogatepass")[:255]),
)
_ENTRY = st.tuples(_TEXT, st.sampled_from(sorted(_WIDTH)), st.binary(min_size=4, max_size=4)).map(
    lambda t: entry(t[0], t[1], t[2][: _WIDTH[t[1]]]))


def test_the_extension_is_built_and_used() -> None:
    """CI builds it (gcc is there): if the build silently fell back, the benchmarks would not be what
    the README says, so this fails rather than skips."""
    assert _walker._speedups is not None, "safeload._speedups was not built: pip install -e . with a C compiler"
    assert _walker._match_run is _walker._compiled_run
    assert _walker._match_put_run is _walker._compiled_put_run
    assert _walker._match_values is _walker._compiled_values
    assert _walker._expand is _walker._compiled_expand
    assert _walker._offsets is _walker._compiled_offsets
    assert _walker._text is _walker._compiled_text


def test_vocabulary_entries_are_counted() -> None:
    run = b"".join(entry(f"w{i}".encode(), 0x4B, bytes([i])) for i in range(100))
    data = b"\x80\x05(" + run + b"u."
    assert _count(data, 3, len(data)) == (3 + len(run), 100)
    assert _count(data, 3, len(data) - 1) == (3 + len(run), 100)
    last = len(entry(b"w99", 0x4B, b"c"))
    assert _count(data, 3, 3 + len(run) - 1) == (3 + len(run) - last, 99)  # the last entry cut by ``end``
    assert _count(data, 0, len(data)) == (0, 0)
    assert _count(b"", 0, 0) == (0, 0)


@pytest.mark.parametrize("start, end", [(-1, 10), (-(2**62), 2**62), (11, 10), (50, 60), (0, -5), (3, 2**62), (0, 2**62), (0, 40)])
def test_bounds_outside_the_buffer_read_nothing_past_it(start: int, end: int) -> None:
    data = entry(b"abc", 0x4A, b"\x01\x02\x03\x04") * 3
    assert _count(data, start, end) == reference(data, start, end)
    cut = data[:-2]  # the last integer is cut short: an ``end`` past the buffer must not complete it
    assert _count(cut, start, end) == reference(cut, start, end)


def test_a_text_that_would_not_decode_ends_the_run() -> None:
    """The unpickler decodes with "utf-8", "surrogatepass": such an entry is left to the opcode-by-opcode
    path, which reports it (a run would hide it from scan until load fails)."""
    good = [b"abc", "é".encode(), "\U0001f600".encode(), "\ud800".encode("utf-8", "surrogatepass"), b""]
    bad = [b"\x94", b"\xff", b"\xc0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", "é".encode()[:1],
           b"\xed\xa0", b"\xf0\x9f\x98"]
    for text in good + bad:
        data = entry(b"a", 0x4B, b"\x01") * 3 + entry(text, 0x4B, b"\x02") + entry(b"z", 0x4B, b"\x03")
        assert _count(data, 0, len(data)) == reference(data, 0, len(data))
        assert _count(data, 0, len(data))[1] == (5 if text in good else 3), text


def test_every_buffer_kind_the_walker_hands_over() -> None:
    data = entry("\u0514".encode(), 0x4D, b"\x94\x94") * 10 + b"."  # d4 94: the MEMOIZE byte inside the text
    expected = reference(data, 0, len(data))
    assert expected == (len(data) - 1, 10)
    with mmap.mmap(-1, len(data)) as mm:
        mm[:] = data
        for buf in (data, bytearray(data), memoryview(data), mm):
            assert _count(buf, 0, len(data)) == expected
    with pytest.raises(TypeError):
        _count("text", 0, 4)  # type: ignore[arg-type]
    with pytest.raises((TypeError, BufferError, ValueError)):
        _count(memoryview(data)[::2], 0, 4)  # not contiguous


@settings(max_examples=400, deadline=None)
@given(st.lists(_ENTRY, max_size=40), st.binary(max_size=8), st.integers(-3, 12), st.integers(-3, 12),
       st.integers(0, 20))
def test_agrees_with_the_reference(entries: list[bytes], tail: bytes, start: int, cut: int, flips: int) -> None:
    data = bytearray(b"".join(entries) + tail)
    rng = random.Random(len(data) * 31 + flips)
    for _ in range(flips if data else 0):  # corrupt some bytes: lengths, opcodes, MEMOIZE bytes
        data[rng.randrange(len(data))] = rng.choice((0x8C, 0x94, 0x4A, 0x4B, 0x4D, rng.randrange(256)))
    blob = bytes(data)
    end = len(blob) - cut
    assert _count(blob, start, end) == reference(blob, start, end)
    assert _count(blob, 0, len(blob)) == reference(blob, 0, len(blob))


def test_without_the_extension_the_walker_falls_back_to_the_regular_expressions() -> None:
    """An install without a C compiler: same answers from the pure-Python path."""
    import subprocess
    import sys

    script = """
import pickle, sys
sys.modules["safeload._speedups"] = None  # as if it had not been built
import safeload
from safeload import _walker
assert _walker._speedups is None and _walker._match_run is _walker._regex_run
assert _walker._match_put_run is _walker._python_put_run
assert _walker._match_values is _walker._python_values
big = {i: None for i in range(5000)}
assert safeload.loads(pickle.dumps(big, 4)) == big and safeload.scan(pickle.dumps(big, 4)).safe
vocab = {f"w{i}\\u0514": i for i in range(5000)}
for proto in (2, 3, 5):
    assert safeload.loads(pickle.dumps(vocab, proto)) == vocab
unsafe = pickle.dumps({"a": 1, "posix": 2, "system": 3, **{f"k{i}": i for i in range(20)}}, 4)[:-1]
report = safeload.scan(unsafe + b"h\\x02h\\x03\\x93\\x940.")
assert not report.safe and "posix.system" in str(report.findings), report.findings
print("fallback ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fallback ok"


# Protocols 1-3 write the same vocabulary as BINUNICODE <len4> <text> BINPUT|LONG_BINPUT <index> BININT*,
# and a run is only a run while the k-th PUT writes slot ``first + k`` (what the memo holds next).


def _count_put(data: bytes | bytearray | memoryview | mmap.mmap, start: int, end: int, first: int) -> tuple[int, int]:
    from safeload._speedups import count_put_entries

    return count_put_entries(data, start, end, first)


def reference_put(data: bytes, start: int, end: int, first: int) -> tuple[int, int]:
    """Entry by entry, up to the first one that is cut by ``end``, puts elsewhere, or would not decode."""
    end = min(end, len(data))
    if start < 0 or start > end or first < 0:
        return start, 0
    i, count = start, 0
    while True:
        if i + 5 > end or data[i] != 0x58:
            return i, count
        put = i + 5 + int.from_bytes(data[i + 1:i + 5], "little")
        if put + 2 > end:
            return i, count
        if data[put] == 0x71:
            index, after = data[put + 1], put + 2
        elif data[put] == 0x72 and put + 5 <= end:
            index, after = int.from_bytes(data[put + 1:put + 5], "little"), put + 5
        else:
            return i, count
        if index != first + count or after + 1 > end:
            return i, count
        width = _WIDTH.get(data[after])
        if width is None or after + 1 + width > end or not _decodes(data[i + 5:put]):
            return i, count
        i = after + 1 + width
        count += 1


def put_entry(text: bytes, index: int, op: int, value: bytes, long_put: bool = False) -> bytes:
    put = b"r" + index.to_bytes(4, "little") if long_put or index > 255 else b"q" + bytes([index])
    return b"X" + len(text).to_bytes(4, "little") + text + put + bytes([op]) + value


def test_protocol_2_vocabularies_are_counted_from_the_slot_the_memo_holds_next() -> None:
    vocab = {f"w{i}": i for i in range(300)}
    data = pickle.dumps(vocab, 2)
    start = data.index(b"X")
    assert data[start + 7] == 0x71  # "w0": BINUNICODE <4> w0, then BINPUT <index>
    first = data[start + 8]
    stop, count = _count_put(data, start, len(data), first)
    assert count == 300 and data[stop:stop + 1] == b"u"  # one batch (the pickler's is 1000): SETITEMS ends it
    assert _count_put(data, start, len(data), first + 1) == (start, 0)  # the memo is elsewhere: no run
    assert _count_put(data, start, len(data), -1) == (start, 0)
    assert (stop, count) == reference_put(data, start, len(data), first)
    assert _walker._python_put_run(data, start, len(data), first) == (stop, count)
    assert _walker._compiled_put_run(data, start, len(data), first) == (stop, count)
    short = b"".join(put_entry(b"a", k, 0x4B, b"\x01") for k in range(_walker._MIN_RUN - 1))
    assert _walker._python_put_run(short, 0, len(short), 0) == (0, 0)  # too short to be worth a run
    assert _walker._compiled_put_run(short, 0, len(short), 0) == (0, 0)


@pytest.mark.parametrize("start, end, first", [(-1, 10, 0), (-(2**62), 2**62, 0), (11, 10, 0), (50, 60, 0),
                                               (0, -5, 0), (3, 2**62, 0), (0, 2**62, 0), (0, 40, 0),
                                               (0, 2**62, 2**62), (0, 2**62, -(2**62))])
def test_put_run_bounds_outside_the_buffer_read_nothing_past_it(start: int, end: int, first: int) -> None:
    data = b"".join(put_entry(b"abc", k, 0x4A, b"\x01\x02\x03\x04", long_put=k == 1) for k in range(3))
    assert _count_put(data, start, end, first) == reference_put(data, start, end, first)
    cut = data[:-2]
    assert _count_put(cut, start, end, first) == reference_put(cut, start, end, first)
    huge = b"X\xff\xff\xff\xff" + b"q\x00K\x01" * 3  # a text length far past the buffer
    assert _count_put(huge, 0, 2**62, 0) == (0, 0) == reference_put(huge, 0, 2**62, 0)


def test_every_buffer_kind_the_walker_hands_over_put_runs() -> None:
    data = b"".join(put_entry("\u0514".encode(), 250 + k, 0x4D, b"q\x00") for k in range(10)) + b"."
    expected = reference_put(data, 0, len(data), 250)
    assert expected == (len(data) - 1, 10)
    with mmap.mmap(-1, len(data)) as mm:
        mm[:] = data
        for buf in (data, bytearray(data), memoryview(data), mm):
            assert _count_put(buf, 0, len(data), 250) == expected
    with pytest.raises(TypeError):
        _count_put("text", 0, 4, 0)  # type: ignore[arg-type]


_PUT_ENTRY = st.tuples(_TEXT, st.sampled_from(sorted(_WIDTH)), st.binary(min_size=4, max_size=4),
                       st.integers(0, 3), st.booleans())


@settings(max_examples=400, deadline=None)
@given(st.lists(_PUT_ENTRY, max_size=40), st.integers(0, 300), st.binary(max_size=8), st.integers(-3, 12),
       st.integers(-3, 12), st.integers(0, 20))
def test_put_runs_agree_with_the_reference(entries: list[tuple[bytes, int, bytes, int, bool]], first: int,
                                           tail: bytes, start: int, cut: int, flips: int) -> None:
    """Mostly well-formed runs (the index is off by ``skew`` one time in four), then corrupted bytes; the
    compiled counter and the pure-Python fallback both give the reference's answer."""
    parts = [put_entry(text, first + k + (skew if skew == 3 else 0), op, value[:_WIDTH[op]], long_put)
             for k, (text, op, value, skew, long_put) in enumerate(entries)]
    data = bytearray(b"".join(parts) + tail)
    rng = random.Random(len(data) * 37 + flips)
    for _ in range(flips if data else 0):
        data[rng.randrange(len(data))] = rng.choice((0x58, 0x71, 0x72, 0x4A, 0x4B, 0x4D, 0x00, rng.randrange(256)))
    blob = bytes(data)
    end = len(blob) - cut
    assert _count_put(blob, start, end, first) == reference_put(blob, start, end, first)
    whole = reference_put(blob, 0, len(blob), first)
    assert _count_put(blob, 0, len(blob), first) == whole
    expected = whole if whole[1] >= _walker._MIN_RUN else (0, 0)
    assert _walker._python_put_run(blob, 0, len(blob), first) == expected
    assert _walker._compiled_put_run(blob, 0, len(blob), first) == expected


# A batch of plain values (count_values): each opcode pushes one value; memo reads only with a memo
# dict, and only of a slot it holds.

_VALUE_OPS = {0x4E: 0, 0x88: 0, 0x89: 0, 0x4B: 1, 0x4D: 2, 0x4A: 4, 0x47: 8}


def _count_values(data: bytes | bytearray | memoryview | mmap.mmap, start: int, end: int,
                  memo: dict[int, object] | None) -> tuple[int, int]:
    from safeload._speedups import count_values

    return count_values(data, start, end, memo)


def reference_values(data: bytes, start: int, end: int, memo: dict[int, object] | None) -> tuple[int, int]:
    """Opcode by opcode, up to the first that is not a plain value, is cut by ``end``, or reads an
    empty memo slot."""
    end = min(end, len(data))
    if start < 0 or start > end:
        return start, 0
    i, count = start, 0
    while i < end:
        op = data[i]
        if op in _VALUE_OPS:
            width = _VALUE_OPS[op]
        elif memo is not None and op in (0x68, 0x6A):
            width = 1 if op == 0x68 else 4
            if i + 1 + width > end or int.from_bytes(data[i + 1:i + 1 + width], "little") not in memo:
                return i, count
        else:
            return i, count
        if i + 1 + width > end:
            return i, count
        i += 1 + width
        count += 1
    return i, count


def test_plain_values_are_counted() -> None:
    data = pickle.dumps({k: None for k in range(300)}, 4)  # EMPTY_DICT MEMOIZE MARK (key NONE)*300 SETITEMS
    start = data.index(b"(") + 1
    stop, count = _count_values(data, start, len(data), None)
    assert count == 600 and data[stop:stop + 1] == b"u"
    assert (stop, count) == reference_values(data, start, len(data), None)
    assert _walker._python_values(data, start, len(data), None) == (stop, count)
    assert _walker._compiled_values(data, start, len(data), None) == (stop, count)
    shared = b"\x80\x04]\x94}\x94(" + b"h\x01" * 99 + b"j\x01\x00\x00\x00e."  # 100 reads of one dict
    memo = {0: object(), 1: object()}
    stop, count = _count_values(shared, 7, len(shared), memo)
    assert (stop, count) == reference_values(shared, 7, len(shared), memo) == (len(shared) - 2, 100)
    assert _count_values(shared, 7, len(shared), None) == (7, 0)  # no memo: memo reads end the batch
    assert _count_values(shared, 7, len(shared), {0: None}) == (7, 0)  # an empty slot ends it
    few = b"N" * (_walker._MIN_VALUES - 1) + b"e"
    assert _walker._python_values(few, 0, len(few), None) == (0, 0) == _walker._compiled_values(few, 0, len(few), None)
    with pytest.raises(TypeError):
        _count_values(data, 0, 4, [])  # type: ignore[arg-type]


@pytest.mark.parametrize("start, end", [(-1, 10), (-(2**62), 2**62), (11, 10), (50, 60), (0, -5), (3, 2**62),
                                        (0, 2**62), (0, 17)])
def test_value_bounds_outside_the_buffer_read_nothing_past_it(start: int, end: int) -> None:
    data = b"NK\x01M\x01\x02J\x01\x02\x03\x04G" + b"\x00" * 8 + b"h\x00j\x00\x00\x00\x00"
    memo = {0: None}
    for cut in range(len(data) + 1):  # every cut: a value cut short is not counted
        blob = data[:cut]
        for m in (None, memo):
            assert _count_values(blob, start, end, m) == reference_values(blob, start, end, m)


def test_every_buffer_kind_the_walker_hands_over_values() -> None:
    data = b"K\x01" * 20 + b"j\x05\x00\x00\x00" * 5 + b"e"
    expected = reference_values(data, 0, len(data), {5: 0})
    assert expected == (len(data) - 1, 25)
    with mmap.mmap(-1, len(data)) as mm:
        mm[:] = data
        for buf in (data, bytearray(data), memoryview(data), mm):
            assert _count_values(buf, 0, len(data), {5: 0}) == expected
    with pytest.raises(TypeError):
        _count_values("text", 0, 4, None)  # type: ignore[arg-type]


_VALUE = st.one_of(st.sampled_from([b"N", b"\x88", b"\x89"]),
                   st.binary(min_size=1, max_size=1).map(lambda b: b"K" + b),
                   st.binary(min_size=2, max_size=2).map(lambda b: b"M" + b),
                   st.binary(min_size=4, max_size=4).map(lambda b: b"J" + b),
                   st.binary(min_size=8, max_size=8).map(lambda b: b"G" + b),
                   st.integers(0, 20).map(lambda k: b"h" + bytes([k])),
                   st.integers(0, 2**32 - 1).map(lambda k: b"j" + k.to_bytes(4, "little")))


@settings(max_examples=400, deadline=None)
@given(st.lists(_VALUE, max_size=60), st.sets(st.integers(0, 20)), st.booleans(), st.binary(max_size=8),
       st.integers(-3, 12), st.integers(-3, 12), st.integers(0, 20))
def test_values_agree_with_the_reference(values: list[bytes], slots: set[int], with_memo: bool, tail: bytes,
                                         start: int, cut: int, flips: int) -> None:
    """Well-formed batches, then corrupted bytes; the compiled counter and the pure-Python path both
    give the reference's answer."""
    data = bytearray(b"".join(values) + tail)
    rng = random.Random(len(data) * 41 + flips)
    for _ in range(flips if data else 0):
        data[rng.randrange(len(data))] = rng.choice((0x4E, 0x4B, 0x4D, 0x4A, 0x47, 0x68, 0x6A, rng.randrange(256)))
    blob = bytes(data)
    memo: dict[int, object] | None = dict.fromkeys(slots) if with_memo else None
    end = len(blob) - cut
    expected = reference_values(blob, start, end, memo)
    assert _count_values(blob, start, end, memo) == expected
    if 0 <= start <= len(blob):
        python = _walker._python_values(blob, start, end, memo)
        assert python == (expected if expected[1] >= _walker._MIN_VALUES else (start, 0))
        assert _walker._compiled_values(blob, start, end, memo) == python


# Expanding a delimited run (expand_run): the values and memoized texts the walker reads out of a run
# when an opcode looks inside it. It parses untrusted bytes in C, so it is held to the Python reading
# (_walker._python_expand) on every run the counters delimit, and must refuse, not misread, any other span.


def _both_expansions(data: bytes, start: int, end: int, put: bool) -> tuple[list[object], list[str]]:
    from safeload._simulated import Run
    from safeload._speedups import expand_run

    count = 0  # the Run's count is not read by either expansion
    compiled = expand_run(data, start, end, put)
    assert compiled == _walker._python_expand(data, Run(start, end, count, put))
    values, strings = compiled
    assert values[::2] == strings and all(a is b for a, b in zip(values[::2], strings, strict=True))  # one object each
    return compiled


@settings(max_examples=300, deadline=None)
@given(st.lists(_ENTRY, max_size=40), st.binary(max_size=8))
def test_expanding_a_memoize_run_agrees_with_the_python_reading(entries: list[bytes], tail: bytes) -> None:
    blob = b"".join(entries) + tail
    stop, count = reference(blob, 0, len(blob))
    values, strings = _both_expansions(blob, 0, stop, False)
    assert len(strings) == count and len(values) == 2 * count
    assert list(pickle.loads(b"\x80\x04(" + blob[:stop] + b"t.")) == values  # the unpickler's own reading


@settings(max_examples=300, deadline=None)
@given(st.lists(_PUT_ENTRY, max_size=40), st.integers(0, 300), st.binary(max_size=8))
def test_expanding_a_put_run_agrees_with_the_python_reading(entries: list[tuple[bytes, int, bytes, int, bool]],
                                                            first: int, tail: bytes) -> None:
    blob = b"".join(put_entry(text, first + k, op, value[:_WIDTH[op]], long_put)
                    for k, (text, op, value, _skew, long_put) in enumerate(entries)) + tail
    stop, count = reference_put(blob, 0, len(blob), first)
    values, strings = _both_expansions(blob, 0, stop, True)
    assert len(strings) == count and len(values) == 2 * count
    assert list(pickle.loads(b"\x80\x02(" + blob[:stop] + b"t.")) == values  # the unpickler's own reading


def test_expanding_reads_the_integers_as_the_unpickler_does() -> None:
    from safeload._speedups import expand_run

    data = (entry(b"a", 0x4B, b"\xff") + entry(b"b", 0x4D, b"\xff\xff") + entry(b"c", 0x4A, b"\xff\xff\xff\xff")
            + entry(b"d", 0x4A, b"\x00\x00\x00\x80") + entry(b"e", 0x4A, b"\xff\xff\xff\x7f"))
    values, _ = expand_run(data, 0, len(data), False)
    assert values[1::2] == [255, 65535, -1, -(2**31), 2**31 - 1]
    assert values == list(pickle.loads(b"\x80\x04(" + data + b"t."))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_ENTRY, _PUT_ENTRY.map(lambda t: put_entry(t[0], t[3], t[1], t[2][:_WIDTH[t[1]]], t[4]))),
                max_size=20), st.booleans(), st.integers(-3, 300), st.integers(-3, 300), st.integers(0, 20))
def test_expanding_any_other_span_refuses_without_reading_past_it(entries: list[bytes], put: bool, start: int,
                                                                  end: int, flips: int) -> None:
    """Corrupted runs, spans cut mid-entry, ends past the buffer: the answer is the Python reading's
    when that reading is well defined, else ValueError; never a read past ``end`` or the buffer."""
    from safeload._simulated import Run
    from safeload._speedups import expand_run

    data = bytearray(b"".join(entries))
    rng = random.Random(len(data) * 41 + flips)
    for _ in range(flips if data else 0):
        data[rng.randrange(len(data))] = rng.choice((0x58, 0x71, 0x72, 0x8C, 0x94, 0x4A, 0x4B, 0x4D, rng.randrange(256)))
    blob = bytes(data)
    for buf in (blob, blob + b"\x4a\x01\x02\x03\x04" * 4):  # bytes after ``end`` must not complete an entry
        try:
            got = expand_run(buf, start, end, put)
        except ValueError:
            continue
        except UnicodeDecodeError:
            continue
        window = buf[:max(0, min(end, len(buf)))]
        assert got == _walker._python_expand(window, Run(start, len(window), 0, put))


# One memo read into a run (run_offsets / run_text): the entry the read lands on, decoded alone, so
# that a run stays in the file (issue 11's resource property: reading runs back must not hold every
# text in the walker's memo). Held to the Python path and to the full expansion, at every slot.


@settings(max_examples=200, deadline=None)
@given(st.lists(_ENTRY, min_size=1, max_size=150), st.integers(1, 40))
def test_a_read_of_any_slot_gives_the_expanded_text(entries: list[bytes], stride: int) -> None:
    from safeload._simulated import Run

    blob = b"".join(entries) + b"."
    stop, count = reference(blob, 0, len(blob))
    run = Run(0, stop, count, False)
    strings = _walker._python_expand(blob, run)[1]
    offsets = _walker._compiled_offsets(blob, run, stride)
    assert offsets == _walker._python_offsets(blob, run, stride)
    assert len(offsets) == -(-count // stride)
    for k in range(count):
        at, skip = offsets[k // stride], k % stride
        assert _walker._compiled_text(blob, at, run, skip) == _walker._python_text(blob, at, run, skip) == strings[k]
    for k in range(count):  # through the walker's reader, index built on the first read of a long run
        assert _walker._run_text(blob, run, k) == strings[k]
    assert (run.index is not None) == (count > _walker._STRIDE)


@settings(max_examples=150, deadline=None)
@given(st.lists(_PUT_ENTRY, min_size=1, max_size=80), st.integers(0, 300), st.integers(1, 40))
def test_a_read_of_any_slot_of_a_put_run_gives_the_expanded_text(
        entries: list[tuple[bytes, int, bytes, int, bool]], first: int, stride: int) -> None:
    from safeload._simulated import Run

    blob = b"".join(put_entry(text, first + k, op, value[:_WIDTH[op]], long_put)
                    for k, (text, op, value, _skew, long_put) in enumerate(entries)) + b"."
    stop, count = reference_put(blob, 0, len(blob), first)
    run = Run(0, stop, count, True)
    strings = _walker._python_expand(blob, run)[1]
    offsets = _walker._compiled_offsets(blob, run, stride)
    assert offsets == _walker._python_offsets(blob, run, stride)
    for k in range(count):
        at, skip = offsets[k // stride], k % stride
        assert _walker._compiled_text(blob, at, run, skip) == _walker._python_text(blob, at, run, skip) == strings[k]


@pytest.mark.parametrize("at, end, skip", [(-1, 10, 0), (0, -5, 0), (0, 2**62, 2**62), (0, 2**62, -1), (11, 10, 0),
                                           (2**62, 2**62, 0), (0, 5, 0), (1, 2**62, 0), (0, 2**62, 3)])
def test_reading_a_slot_outside_whole_entries_refuses_without_reading_past_them(at: int, end: int, skip: int) -> None:
    from safeload._speedups import run_offsets, run_text

    data = entry(b"abc", 0x4A, b"\x01\x02\x03\x04") * 3
    for buf in (data, data[:-2]):  # whole, and with the last integer cut short
        try:
            text = run_text(buf, at, end, False, skip)
        except ValueError:
            continue
        assert text == "abc" and 0 <= skip < (3 if buf is data else 2) and at == 0
    with pytest.raises(ValueError):
        run_offsets(data[:-2], 0, 2**62, False, 4)
    with pytest.raises(ValueError):
        run_offsets(data, 0, len(data), False, 0)
    assert run_offsets(data, 0, len(data), False, 2) == [0, 2 * len(data) // 3]


# -- BINFLOAT read natively (_walker._f64) ------------------------------------------------------------

_EDGE_DOUBLES = [0, 1, (1 << 52) - 1, 1 << 52, 1 << 63, (1 << 63) | 1, 0x7FEFFFFFFFFFFFFF, 0x0010000000000000,
                 0x000FFFFFFFFFFFFF, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000,
                 0xFFF8000000000001, 0x7FF0000000000001, 0x3FF0000000000000]


@given(st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from(_EDGE_DOUBLES),
                 st.builds(lambda e, m: e << 52 | m, st.integers(0, 4095), st.integers(0, (1 << 52) - 1))),
       st.integers(0, 3))
@settings(max_examples=3000, deadline=None)
def test_f64_reads_every_double_as_struct_does(bits: int, pad: int) -> None:
    """Bit for bit, at any offset: zeros and subnormals keep their sign, NaNs their payload."""
    import struct

    raw = b"\xaa" * pad + bits.to_bytes(8, "big") + b"\x55"
    got = _walker._f64(raw, pad)
    assert type(got) is float
    assert struct.pack(">d", got) == bits.to_bytes(8, "big")


def test_f64_refuses_a_short_read() -> None:
    with pytest.raises(IndexError):
        _walker._f64(b"\x00" * 7, 0)
