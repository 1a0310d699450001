"""Unit tests of the walker's reading rules on hand-assembled streams.

Each case checks the verdict of ``scan`` and the exception of ``load`` together,
because the two must agree.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

import numpy as np
import pytest
from _oracle import MATCHERS

import safeload
from safeload._policy import Policy
from safeload._walker import walk


def su(s: str) -> bytes:  # SHORT_BINUNICODE
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def verdict(data: bytes) -> tuple[bool, type[BaseException] | None]:
    report = safeload.scan(data)
    try:
        safeload.loads(data)
        err = None
    except safeload.SafeloadError as exc:
        err = type(exc)
    assert report.safe == (err is None), (report.verdict, err, report.findings)
    return report.safe, err


def test_vocabulary_run_memo_feeds_stack_global() -> None:
    """Strings memoized inside a regex-matched run must still resolve for STACK_GLOBAL."""
    entries = b"".join(su(w) + b"\x94" + b"K" + bytes([k]) for k, w in enumerate(["a", "b", "posix", "c", "system",
                                                                                  "d", "e", "f", "g", "h"]))
    # memo: 0 = the dict; run strings get indices 1..10 ("posix" = 3, "system" = 5)
    body = b"}\x94(" + entries + b"u" + b"h\x03h\x05\x93\x94" + b"0" + b".",
    data = b"\x80\x04" + frame(body[0])
    trace = walk(data, Policy.default())
    assert [g.name for g in trace.globals] == ["posix.system"]
    assert verdict(data) == (False, safeload.UnsafeModelError)


def test_vocabulary_run_loads_identically() -> None:
    vocab = {f"w{i}\u00e9": i * 997 for i in range(5000)}
    for proto in range(6):
        data = pickle.dumps(vocab, proto)
        assert verdict(data) == (True, None)
        assert safeload.loads(data) == vocab


def test_frame_crossing_refused_but_boundary_argument_accepted() -> None:
    inner = su("hello")
    crossing = b"\x80\x04" + frame(b"\x8c\x05he") + b"llo" + b"."  # argument starts inside, ends outside
    assert verdict(crossing) == (False, safeload.UnsafeModelError)
    at_boundary = b"\x80\x04" + frame(b"\x8c\x05") + b"hello" + b"."  # argument starts exactly at the end
    assert pickle.loads(at_boundary) == "hello"
    assert verdict(at_boundary) == (True, None)
    assert safeload.loads(b"\x80\x04" + frame(inner + b".")) == "hello"


def test_overlapping_frames_refused() -> None:
    data = b"\x80\x04" + b"\x95" + struct.pack("<Q", 20) + frame(b"N.") + b"\x00" * 9
    assert verdict(data)[0] is False


def test_fix_imports_remaps_before_judging() -> None:
    assert walk(b"\x80\x02c__builtin__\nset\n.", Policy.default()).globals[0].name == "builtins.set"
    assert walk(b"\x80\x03c__builtin__\nset\n.", Policy.default()).globals[0].name == "__builtin__.set"
    assert verdict(b"\x80\x02c__builtin__\neval\n.") == (False, safeload.UnsafeModelError)
    assert verdict(b"c__builtin__\nset\n(]tR.")[0] is True  # protocol 0: remapped, allowed, called


def test_huge_memo_index_is_refused_before_the_unpickler_allocates() -> None:
    data = b"\x80\x02N" + b"r" + struct.pack("<I", 0x3FFFFFFF) + b"."
    assert verdict(data) == (False, safeload.LimitExceededError)


def test_build_on_a_class_is_refused() -> None:
    data = (b"\x80\x04" + su("sklearn._loss.loss") + su("HalfSquaredError") + b"\x93"
            + b"N}" + su("predict") + b"N" + b"s\x86b.")
    assert verdict(data) == (False, safeload.UnsafeModelError)


def test_calling_a_new_only_class_is_refused() -> None:
    data = (b"\x80\x04" + su("scipy.sparse._csr") + su("csr_matrix") + b"\x93"
            + b"J\x00\xca\x9a;J\x00\xca\x9a;\x86\x85R.")
    assert verdict(data) == (False, safeload.UnsafeModelError)


def test_dotted_name_judged_in_full() -> None:
    data = b"\x80\x04" + su("numpy") + su("testing._private.utils.runstring") + b"\x93."
    safe, err = verdict(data)
    assert err is safeload.UnsafeModelError
    with pytest.raises(safeload.UnsafeModelError) as info:
        safeload.loads(data)
    assert "numpy.testing._private.utils.runstring" in str(info.value)
    assert "allow=" not in str(info.value)  # a code-running gadget is never suggested for the allowlist


def test_trailing_and_stacked_data_refused() -> None:
    good = pickle.dumps([1, 2], 4)
    assert verdict(good + good) == (False, safeload.UnsafeModelError)
    assert verdict(good + b"PK\x05\x06" + b"\x00" * 18) == (False, safeload.UnsafeModelError)


def test_numpy_arrays_all_protocols() -> None:
    arrays = [np.arange(10.0), np.ones((3, 4), order="F"), np.array(["a", "bc"]), np.array([1, "x"], dtype=object),
              np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]), np.float32(3.5), np.dtype([("a", "<i4"), ("b", "O")])]
    for proto in range(6):
        data = pickle.dumps(arrays, proto)
        assert verdict(data) == (True, None)
        out = safeload.loads(data)
        for a, b in zip(arrays[:3], out[:3], strict=True):
            np.testing.assert_array_equal(a, b)
        assert out[4].mask.tolist() == [False, True, False]


def test_every_runtime_guard_has_a_static_mirror() -> None:
    """A guard the walker does not mirror lets scan say safe where load refuses (found by fuzzing:
    the SeedSequence unpickle helper called for another class)."""
    import ast
    from pathlib import Path

    from safeload._guards import GUARDS, _passthrough

    # Read from the source file: the installed walker may be compiled (mypyc), which has no source.
    tree = ast.parse((Path(__file__).resolve().parents[1] / "safeload" / "_mirrors.py").read_text(encoding="utf-8"))
    method = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "check_guard")
    source = ast.unparse(method).replace("'", '"')
    checked = [gid for gid, make in GUARDS.items() if make is not _passthrough]
    missing = [gid for gid in checked if f'"{gid}"' not in source]
    assert not missing, f"runtime guards without a static mirror in StaticChecks.check_guard: {missing}"


def _trace_key(trace: Any) -> Any:
    return ([(i.rule, i.offset, i.message) for i in trace.issues], [(g.name, g.offset) for g in trace.globals],
            trace.end, trace.opcodes)


def test_runs_walk_exactly_like_single_opcodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run fast paths (compiled, and the regular expressions with their tail entry) must not change a
    walk: same memo indices, issues, globals, end and opcode count as the opcode-by-opcode walk, including
    integers and texts that contain the MEMOIZE byte."""
    import random

    from safeload import _walker

    rng = random.Random(5)
    cases = []
    for _ in range(60):
        size = rng.choice((9, 20, 300, 3000))
        values = [rng.choice((0x94, 0x94 * 256 + 1, 0x1294, 0x94949494 - 2**32, rng.randrange(0, 2**31)))
                  if rng.random() < 0.2 else rng.randrange(0, 70000) for _ in range(size)]
        if size >= 300 and rng.random() < 0.5:  # a block of integers whose high byte is 0x94
            start = rng.randrange(size - 260)
            values[start:start + 256] = range(0x9400, 0x9500)
        # "\u0514" is d4 94 in UTF-8, and 148-byte words have 0x94 as their length byte
        extra = ("é", "\u0514", "x" * 146, "") if rng.random() < 0.5 else ("é",)
        vocab = {f"w{i}_{rng.randrange(10**6)}" + (rng.choice(extra) if i % 7 == 0 else ""): v
                 for i, v in enumerate(values)}
        data = pickle.dumps(vocab, rng.choice((2, 3, 4, 5)))
        cases.append(data)
        # Memo references into runs: STACK_GLOBAL from memoized run strings (refused either way).
        names = list(vocab)
        proto4 = pickle.dumps(vocab, 4)[:-1]  # drop STOP, then push two memoized strings and resolve them
        cases.append(proto4 + b"h\x03h\x05\x93\x94" + b"0" + b".")
        cases.append(proto4 + b"j" + (len(names) // 2).to_bytes(4, "little") + b"0.")
        cut = rng.randrange(len(data) // 2, len(data))  # a run that ends in a truncated entry
        cases.append(data[:cut])
    assert _walker._speedups is not None, "safeload._speedups was not built: pip install -e . with a C compiler"
    runs_taken = dict.fromkeys(MATCHERS, 0)
    put_runs_taken = dict.fromkeys(MATCHERS, 0)
    for data in cases:
        _walk_alike_in_every_mode(monkeypatch, data, {"run": runs_taken, "put_run": put_runs_taken}, _trace_key)
    assert runs_taken["compiled"] > 100 and runs_taken["regex"] > 100  # the fast paths were really taken
    assert put_runs_taken["compiled"] > 30 and put_runs_taken["regex"] > 30  # (protocols 2-3 too)


def _walk_alike_in_every_mode(monkeypatch: pytest.MonkeyPatch, data: bytes, taken: dict[str, dict[str, int]],
                              key: Any) -> None:
    """Walk ``data`` with each table of one-step matchers (counting, for each matcher named in ``taken``,
    the calls that took a step); ``key`` of the trace must be the opcode-by-opcode walk's."""
    from safeload import _walker

    keys = {}
    for mode, matchers in MATCHERS.items():
        matchers.install(monkeypatch.setattr)
        for kind, counts in taken.items():
            monkeypatch.setattr(_walker, f"_match_{kind}", _counting(getattr(matchers, kind), counts, mode))
        keys[mode] = key(walk(data, Policy.default()))
    monkeypatch.undo()
    assert keys["compiled"] == keys["none"], data[:80]
    assert keys["regex"] == keys["none"], data[:80]


def _counting(match_run: Any, taken: dict[str, int], mode: str) -> Any:
    def run(data: Any, i: int, end: int, *first: int) -> tuple[int, int]:
        j, count = match_run(data, i, end, *first)
        taken[mode] += count > 0
        return j, count

    return run


def _shape(x: Any, depth: int = 0) -> Any:
    """The walker's simulated value as far as a one-step batch could change it: every container's kind,
    item count and kept items, recursively."""
    from safeload._simulated import Cont, Obj

    if depth > 20:
        return "..."
    if type(x) is Cont:
        return ("cont", x.kind, x.count, [_shape(v, depth + 1) for v in x.flat])
    if type(x) is Obj:
        return ("obj", x.callee, _shape(x.state, depth + 1), _shape(x.args, depth + 1))
    if type(x) is tuple:
        return tuple(_shape(v, depth + 1) for v in x)
    return repr(x)


def _value_cases(rng: Any) -> list[bytes]:
    """Streams with batches of plain values around the walker's kept-items caps, in every container
    kind and protocol, with memo reads, odd counts, wrong targets, and cuts."""
    import collections

    from safeload._walker import _DICT_CAP, _LIST_CAP

    cases: list[bytes] = []
    scalars: list[Any] = [None, True, False, 0, 1, 255, 256, 65535, 65536, -1, 2**31 - 1, -2**31, 0.5, float("nan")]
    for _ in range(40):
        proto = rng.choice((1, 2, 3, 4, 5))
        n = rng.choice((2 * _DICT_CAP - 1, 2 * _DICT_CAP, 2 * _DICT_CAP + 1, 200, 1500, _LIST_CAP - 1, _LIST_CAP,
                        _LIST_CAP + 1, 5000))
        vals = [rng.choice(scalars) for _ in range(n)]
        shared = {"s": 1}
        kind = rng.choice(("dict", "list", "set", "objarray", "shared", "ordered", "counter", "nested"))
        if kind == "dict":
            obj: Any = {k: v for k, v in zip(range(n), vals, strict=True)}
        elif kind == "list":
            obj = vals
        elif kind == "set":
            obj = set(range(n)) | {None, True}
        elif kind == "objarray":
            obj = np.array(vals + [shared], dtype=object)
        elif kind == "shared":
            obj = [shared] * n + [shared, None] * (n // 4)
        elif kind == "ordered":
            obj = collections.OrderedDict((k, v) for k, v in zip(range(n), vals, strict=True))
        elif kind == "counter":
            obj = collections.Counter({k: 1 for k in range(n)})
        else:
            obj = {"a": [vals, {k: None for k in range(n)}], "b": (vals[:50], set(range(300)))}
        data = pickle.dumps(obj, proto)
        cases.append(data)
        cases.append(data[:rng.randrange(len(data) // 2, len(data))])  # cut inside a batch
        blob = bytearray(data)
        for _ in range(rng.choice((1, 3))):  # a corrupted byte: an odd batch, a wrong opcode, a bad read
            blob[rng.randrange(len(blob))] = rng.choice((0x75, 0x65, 0x90, 0x4E, 0x68, 0x6A, 0x28, 0x30))
        cases.append(bytes(blob))
    odd = b"".join(b"K" + bytes([k % 256]) + b"N" for k in range(80))
    cases.append(b"\x80\x04}(" + odd + b"u(" + odd + b"Nu.")  # a second batch with an odd count
    cases.append(b"\x80\x04](" + b"N" * 5000 + b"u.")  # SETITEMS on a list
    cases.append(b"\x80\x04}(" + b"N" * 300 + b"u(" + b"N" * 300 + b"e.")  # APPENDS on a dict
    cases.append(b"\x80\x04](" + b"N" * 5000 + b"e(" + b"h\x09" * 100 + b"e.")  # a read of an empty slot
    return cases


def test_value_batches_walk_exactly_like_single_opcodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of plain values taken in one step (compiled, and the pure-Python loop) leaves the walk
    exactly as the opcode-by-opcode walk does: issues, globals, end, opcode count, and every container's
    count and kept items."""
    import random

    taken = dict.fromkeys(MATCHERS, 0)
    for data in _value_cases(random.Random(11)):
        _walk_alike_in_every_mode(monkeypatch, data, {"values": taken},
                                  lambda trace: (_trace_key(trace), _shape(trace.root)))
    assert taken["compiled"] > 200 and taken["regex"] > 200  # the batches were really taken
    assert taken["none"] == 0


def _array_pickle(state: bytes) -> bytes:
    """Protocol 2: _reconstruct(ndarray, (0,), b'b') then BUILD with the given state opcodes."""
    head = pickle.dumps(np.array([1, "x"], dtype=object), 2)
    build_at = head.index(b"(K\x01")  # the state tuple starts with MARK, version 1
    return head[:build_at] + state + b"b."


def _obj_dtype() -> bytes:
    return b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"


def _u1_dtype() -> bytes:
    return b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"


def test_object_array_states_must_list_every_element() -> None:
    """numpy copies shape-many items out of the state's list without checking its length."""
    import subprocess
    import sys

    short5 = _array_pickle(b"(K\x01K(\x85" + _obj_dtype() + b"\x89](K\x01K\x02et")  # 2 items, 40 elements
    short4 = _array_pickle(b"(K(\x85" + _obj_dtype() + b"\x89](K\x01K\x02et")  # the version-0 form
    exact = _array_pickle(b"(K\x01K\x02\x85" + _obj_dtype() + b"\x89](K\x01K\x02et")
    longer = _array_pickle(b"(K\x01K\x02\x85" + _obj_dtype() + b"\x89](K\x01K\x02K\x03et")  # numpy ignores extras
    judge = ("import sys, safeload; data = sys.stdin.buffer.read(); print(safeload.scan(data).verdict)\n"
             "try:\n    safeload.loads(data)\nexcept safeload.UnsafeModelError:\n    print('refused')")
    for data in (short5, short4):
        crashed = subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                                 input=data, capture_output=True, timeout=60)
        assert crashed.returncode < 0, "the state must really crash plain pickle, or this test proves nothing"
        # in a child too: if the check regresses, safeload crashes the same way
        judged = subprocess.run([sys.executable, "-c", judge], input=data, capture_output=True, timeout=60)
        assert judged.returncode == 0 and judged.stdout.split() == [b"unsafe", b"refused"], judged
    for data in (exact, longer):
        assert verdict(data) == (True, None)
        assert safeload.loads(data).tolist() == [1, 2]


def test_numpy_array_state_refusals_are_mirrored_by_scan() -> None:
    """What ndarray.__setstate__ refuses, scan reports as malformed instead of calling the file safe."""
    good = _array_pickle(b"(K\x01K\x03\x85" + _u1_dtype() + b"\x89C\x03\x00\x01\x02t")
    assert verdict(good) == (True, None)
    assert safeload.loads(good).tolist() == [0, 1, 2]
    for state in (b"(K\x01K\x03\x85" + _u1_dtype() + b"\x89C\x02\x00\x01t",  # 2 bytes for 3 elements
                  b"(K\x02K\x03\x85" + _u1_dtype() + b"\x89C\x03\x00\x01\x02t",  # version 2
                  b"(K\x01K\x03\x85" + _u1_dtype() + b"\x89](K\x01K\x02K\x03et"):  # a list for a byte dtype
        data = _array_pickle(state)
        with pytest.raises(Exception):  # noqa: B017 - numpy's own ValueError / TypeError
            pickle.loads(data)
        assert verdict(data) == (False, safeload.MalformedModelError)


def test_compiled_runs_leave_undecodable_text_to_the_opcode_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A text the unpickler cannot decode ends a compiled run, so the walk reports it exactly where the
    opcode-by-opcode walk does (the regex path does not decode: there, scan says safe and load raises)."""
    from safeload import _walker

    vocab = {f"w{i:04d}": i for i in range(400)}
    clean = pickle.dumps(vocab, 4)
    for bad in (b"\xff", b"\x94", b"\xc3"):  # invalid start byte, a lone continuation (MEMOIZE), a cut 2-byte char
        at = clean.index(b"w0217")
        data = clean[:at + 4] + bad + clean[at + 5:]  # same length: the structure is intact
        with pytest.raises(UnicodeDecodeError):
            pickle.loads(data)
        keys = {}
        for mode, match_run in (("compiled", _walker._compiled_run), ("none", MATCHERS["none"].run)):
            monkeypatch.setattr(_walker, "_match_run", match_run)
            keys[mode] = _trace_key(walk(data, Policy.default()))
        monkeypatch.undo()
        assert keys["compiled"] == keys["none"]
        assert keys["none"][0], "the opcode-by-opcode walk reports the text"
        assert verdict(data)[0] is False  # scan and load agree (verdict() asserts it)


@pytest.mark.parametrize("size", [3, 70])  # under and over the walker's kept-items cap (64)
def test_odd_setitems_refused_like_cpython(size: int) -> None:
    """CPython refuses SETITEMS with an odd number of items, whether or not the walker keeps the
    dict's items (it pairs them up without a length check)."""
    body = b"".join(b"K" + bytes([k % 256]) + b"K\x00" for k in range(size))
    data = b"\x80\x04}(" + body + b"u(K\x01K\x02K\x03u."
    with pytest.raises(pickle.UnpicklingError, match="odd number of items"):
        pickle.loads(data)
    trace = walk(data, Policy.default())
    assert [i.rule for i in trace.issues] == ["odd-setitems"]


def test_the_walk_pauses_the_cyclic_gc_and_restores_it() -> None:
    import gc

    seen: list[bool] = []
    data = pickle.dumps({"a": [1, 2]}, protocol=4)
    walk(data, Policy.default(), observer=lambda offset, view: seen.append(gc.isenabled()))
    assert seen and not any(seen) and gc.isenabled()
    gc.disable()
    try:
        walk(data, Policy.default())
        assert not gc.isenabled()  # a caller's choice is left as it was
    finally:
        gc.enable()
