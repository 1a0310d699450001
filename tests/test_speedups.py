"""The compiled run counter (safeload/_speedups.c) against a plain-Python reading of the same rule.

It parses untrusted bytes in C, so besides agreeing with the reference it must stay inside
``data[start:end]`` for any arguments, and refuse what is not a buffer without crashing.
"""

from __future__ import annotations

import mmap
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
vocab = {f"w{i}\\u0514": i for i in range(5000)}
assert safeload.loads(pickle.dumps(vocab, 5)) == vocab
unsafe = pickle.dumps({"a": 1, "posix": 2, "system": 3, **{f"k{i}": i for i in range(20)}}, 4)[:-1]
report = safeload.scan(unsafe + b"h\\x02h\\x03\\x93\\x940.")
assert not report.safe and "posix.system" in str(report.findings), report.findings
print("fallback ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fallback ok"
