"""scan and load agree on the calls that hash their argument's items (set, frozenset, Counter,
OrderedDict, defaultdict): an item (or a pair's key) CPython cannot hash makes the call raise at
load, so scan must not call the file safe. Session 24 found scan saying safe on ``set([[]])``.

Every case is a raw protocol-4 stream: a list of ``n`` distinct ints, one unhashable item (or pair)
put first, in the middle or past the walker's list cap, handed to the call. Plain pickle is run on
each first: it must raise TypeError for the bad item and load the control.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import pytest

import safeload
from safeload import _walker


def _global(module: str, name: str) -> bytes:
    m, n = module.encode(), name.encode()
    return b"\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n + b"\x93"


_ORDERED_DICT = _global("collections", "OrderedDict") + b")R"
#: Items no call can hash: a list, a dict, a set, a tuple holding a list, an allowed unhashable class.
BAD_ITEMS = {"list": b"]", "dict": b"}", "set": b"\x8f", "tuple-of-list": b"K\x01]\x86", "ordered-dict": _ORDERED_DICT}
#: Pairs whose key no call can hash, as a tuple and as a two-item list.
BAD_PAIRS = {"list-key": b"]K\x01\x86", "dict-key-in-list-pair": b"](}K\x01e", "tuple-of-list-key": b"K\x01]\x86K\x02\x86"}
#: The callee, whether its argument holds pairs, and what comes before the argument.
CALLS = {"set": (_global("builtins", "set"), False, b""),
         "frozenset": (_global("builtins", "frozenset"), False, b""),
         "Counter": (_global("collections", "Counter"), False, b""),
         "OrderedDict": (_global("collections", "OrderedDict"), True, b""),
         "defaultdict": (_global("collections", "defaultdict"), True, _global("builtins", "list"))}
POSITIONS = {"first": 0, "middle": 50, "past-cap": _walker._LIST_CAP + 100}


def _stream(call: str, n: int, bad: bytes | None, at: int) -> bytes:
    callee, pairs, before = CALLS[call]
    items = [b"J" + struct.pack("<i", k) + (b"K\x01\x86" if pairs else b"") for k in range(n)]
    if bad is not None:
        items.insert(at, bad)
    return (b"\x80\x04" + callee + before + b"](" + b"".join(items) + b"e"
            + (b"\x86" if before else b"\x85") + b"R.")


def _judged(data: bytes, tmp_path: Path) -> tuple[bool, type[BaseException] | None, object]:
    path = tmp_path / "case.pkl"
    path.write_bytes(data)
    safe = safeload.scan(path).safe
    try:
        return safe, None, safeload.load(path)
    except safeload.SafeloadError as exc:
        return safe, type(exc), None


@pytest.mark.parametrize("position", sorted(POSITIONS))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_unhashable_item_is_refused_by_both(call: str, position: str, tmp_path: Path) -> None:
    n = POSITIONS[position] + 200
    bad_items = BAD_PAIRS if CALLS[call][1] else BAD_ITEMS
    for name, bad in bad_items.items():
        data = _stream(call, n, bad, POSITIONS[position])
        with pytest.raises(TypeError):
            pickle.loads(data)  # the payload is live: CPython's own call fails on it
        safe, error, _ = _judged(data, tmp_path)
        assert error is safeload.MalformedModelError, (call, position, name, error)
        assert not safe, f"{call}: scan said safe with an unhashable {name} at {position}; load refused"


@pytest.mark.parametrize("call", sorted(CALLS))
def test_without_the_bad_item_both_accept(call: str, tmp_path: Path) -> None:
    data = _stream(call, POSITIONS["past-cap"] + 200, None, 0)
    expected = pickle.loads(data)
    safe, error, built = _judged(data, tmp_path)
    assert error is None and safe
    assert built == expected
