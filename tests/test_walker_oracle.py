"""Walker == unpickler (issue 11, part 1): the walker's whole machine model against a reference.

Before every step the walker takes, its view (offset, ``memo_len``, mark stack, stack and memo, with
identities compared through the offsets that created the objects) must equal what CPython's C
unpickler holds at that point, as modelled by ``tests/_oracle.py``, which runs nothing. The property
holds on every malicious sample, every fuzz reproducer, a slice of the zoo (every fourth artifact in
one format, rotating; ``fuzz/oracle_campaign.py --corpus`` runs all of it), on streams from a grammar of
valid pickles and joblib files (checked against CPython's and joblib's own unpicklers), on protocol 0/1
text arguments and on random bytes, for both vocabulary-run matchers and with runs disabled. Mutated
copies of the walker with known memo-model bugs (round 1's double count among them) must fail it.

Where the walker goes on past an opcode CPython refuses (``Outcome.lenient``: e.g. a key whose
hashability the walker cannot know, such as an object built by REDUCE), the comparison ends without
failing: CPython builds nothing after that opcode. (An unhashable key between vocabulary runs was such a
case until the walker learnt to check it: see the test at the end.)
"""

from __future__ import annotations

import pickle
import random
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zoo
from _oracle import (
    MATCHERS,
    MUTATIONS,
    Oracle,
    canon,
    cpython_loads,
    cpython_memo_and_result,
    differential,
    generate,
    joblib_loads,
    mutant,
    oracle_memo_and_result,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import safeload
from safeload._containers import COMPRESSED, Format, decompress, sniff
from safeload._load import effective_policy

ROOT = Path(__file__).resolve().parent.parent
POLICY = effective_policy(None, ())


DEFAULT_MATCHER = "compiled" if "compiled" in MATCHERS else "regex"


def use_matcher(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    MATCHERS[name].install(monkeypatch.setattr)


@pytest.fixture(params=sorted(MATCHERS))
def matcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    use_matcher(monkeypatch, str(request.param))
    return str(request.param)


def pickle_streams(data: bytes) -> list[bytes]:
    """The pickle stream a file holds (decompressed), or nothing for zip / npy / unreadable inputs."""
    try:
        fmt = sniff(data)
        if fmt in COMPRESSED:
            data = bytes(decompress(fmt, data, POLICY.limits))
            fmt = sniff(data)
    except safeload.SafeloadError:
        return []
    return [data] if fmt is Format.PICKLE else []


def assert_agrees(data: bytes, label: str, every: int = 1, memo_every: int = 1) -> None:
    """Both walks the analysis makes: joblib's reading (arrays skipped, nested pickles) and pickle's."""
    for joblib in (True, False):
        out = differential(data, POLICY, joblib=joblib, every=every, memo_every=memo_every)
        assert out.ok, f"{label} (joblib={joblib}): {out.divergence}"


def _corpus() -> Iterator[tuple[str, bytes]]:
    files = sorted((ROOT / "malicious_samples").iterdir()) + sorted((ROOT / "fuzz" / "crashes").rglob("*.bin"))
    for path in files:
        if path.is_file() and not path.name.startswith("."):
            for data in pickle_streams(path.read_bytes()):
                yield str(path.relative_to(ROOT)), data


CORPUS = list(_corpus())


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) > 100
    assert any(label.startswith("fuzz/") for label, _ in CORPUS)
    assert any(label.endswith((".joblib", "zlib_no_extension")) for label, _ in CORPUS)


@pytest.mark.parametrize("run_matcher", sorted(MATCHERS))
def test_malicious_samples_and_fuzz_reproducers(run_matcher: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small streams compared in full at every step; longer ones in full every 32 steps (offset, memo_len
    and marks at every step, the stack's top and targets before every opcode that acts on them)."""
    use_matcher(monkeypatch, run_matcher)
    for label, data in CORPUS:
        if run_matcher == DEFAULT_MATCHER or b"\x8c" in data or b"X" in data:  # only where runs can be
            small = len(data) < 3000
            assert_agrees(data, label, every=1 if small else 32, memo_every=1 if small else 256)


ZOO_FORMATS = [f for f in zoo.FORMATS if f != "skops"]


@pytest.mark.parametrize("fmt", ZOO_FORMATS)
def test_zoo_slice(zoo_store: zoo.Zoo, fmt: str) -> None:
    """Every fourth artifact once, in a format that rotates with its name (CI's one-core budget; the
    campaign's ``--corpus`` runs every artifact in every format)."""
    k = ZOO_FORMATS.index(fmt)
    names = [name for name, f in zoo.cases() if f == fmt]
    picked = [name for i, name in enumerate(sorted(names)) if i % (4 * len(ZOO_FORMATS)) == 4 * k]
    assert picked
    for name in picked:
        for data in pickle_streams(zoo_store.path(name, fmt).read_bytes()):
            assert_agrees(data, f"{name}.{fmt}", every=200, memo_every=2000)


# -- generated streams ------------------------------------------------------------------------------

@given(st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_streams_are_valid_for_cpython(rnd: random.Random) -> None:
    """The grammar emits what CPython's C unpickler loads (with stand-in globals), and the oracle runs
    the same streams to their STOP with the same memo: otherwise the property below would say little."""
    data = generate(rnd, budget=rnd.choice((5, 15, 30)))
    oracle = Oracle(data)
    oracle.run()
    assert oracle.end == len(data)
    # The oracle against the real thing: CPython's own memo after the load (slot -> value, objects by
    # identity class) and its result equal the oracle's.
    assert oracle_memo_and_result(data) == cpython_memo_and_result(data)


@given(st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
def test_generated_streams(matcher: str, rnd: random.Random) -> None:
    data = generate(rnd, budget=rnd.choice((5, 15, 30)))  # CI's share; the campaign draws bigger ones too
    out = differential(data, POLICY)
    assert out.ok, f"{matcher}: {out.divergence}\n{data!r}"
    assert out.unsure is None and out.lenient is None
    assert out.walker_end == len(data), "the walker stopped short on a valid stream"


@given(st.randoms(use_true_random=False))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_joblib_streams_are_valid_for_joblib(rnd: random.Random) -> None:
    """joblib's own NumpyUnpickler (stand-ins for the other globals) reads the generated joblib streams
    (arrays after their BUILD, object arrays as nested pickles), and so does the oracle, to the end."""
    data = generate(rnd, budget=rnd.choice((5, 15, 30)), joblib=True)
    joblib_loads(data)
    oracle = Oracle(data, joblib=True)
    oracle.run()
    assert oracle.end == len(data)


@given(st.randoms(use_true_random=False))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
def test_generated_joblib_streams(matcher: str, rnd: random.Random) -> None:
    """Nested object-array pickles start with a fresh memo (depth 1) and the outer memo goes on after
    them; pickle's reading of the same bytes (array bytes as opcodes) agrees wherever the walker goes."""
    data = generate(rnd, budget=rnd.choice((5, 15, 30)), joblib=True)
    out = differential(data, POLICY, joblib=True)
    assert out.ok, f"{matcher}: {out.divergence}\n{data!r}"
    assert out.walker_end == len(data), "the walker stopped short on a valid joblib stream"
    plain = differential(data, POLICY, joblib=False)
    assert plain.ok, f"{matcher} (pickle's reading): {plain.divergence}\n{data!r}"


def test_a_fixed_slice_of_the_grammar(matcher: str) -> None:
    """Seeds 0..89 in every protocol: what CI always runs, whatever hypothesis draws."""
    for seed in range(90):
        data = generate(random.Random(seed), proto=seed % 6)
        out = differential(data, POLICY)
        assert out.ok, f"seed {seed} ({matcher}): {out.divergence}"
        assert out.walker_end == len(data), f"seed {seed} ({matcher}): the walker stopped short"


def test_the_grammar_with_the_memo_pruned(matcher: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same streams, joblib ones too, with the walker dropping every memo slot no GET can read from
    the first MEMOIZE on (real walks do it past 100,000 entries): slot counts, reads and every later
    MEMOIZE and PUT must still be CPython's."""
    from safeload import _walker

    monkeypatch.setattr(_walker, "_PRUNE_AT", 0)
    monkeypatch.setattr(_walker, "_ALWAYS_KEPT", 0)  # (real walks keep slots 0-255: BINGET's)
    pruned = 0
    for seed in range(120):
        joblib = seed % 4 == 3
        data = generate(random.Random(seed), proto=seed % 6 if not joblib else None, joblib=joblib)
        assert _walker._memo_reads(data, len(data)) is not None
        seen: list[bool] = []

        def watch(_i: int, view: Any, seen: list[bool] = seen) -> None:
            seen.append(any(v is _walker.UNREAD for v in view.memo().values()))

        _walker.walk(data, POLICY, joblib=joblib, observer=watch)
        pruned += any(seen)
        out = differential(data, POLICY, joblib=joblib)
        assert out.ok, f"seed {seed} ({matcher}): {out.divergence}"
        assert out.walker_end == len(data), f"seed {seed} ({matcher}): the walker stopped short"
    assert pruned >= 20  # (30 of the 120: protocol 4-5 streams memoize slots they never read)


def _many_memoized(seed: int) -> bytes:
    """300-700 memoized texts, 40 of them read back (BINGET below 256, LONG_BINGET above)."""
    rnd = random.Random(seed)
    values = [f"v{k}" for k in range(rnd.randrange(300, 700))]
    picks = [values[rnd.randrange(len(values))] for _ in range(40)]
    return pickle.dumps([values, picks, {"a": picks[:5]}], protocol=4 + seed % 2)


def test_the_pruned_memo_keeps_every_binget_slot(matcher: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real walks keep slots 0-255 whole (BINGET, one operand byte, is not looked for): streams of
    300-700 memoized values read back through BINGET, LONG_BINGET and GET, pruned from the first
    MEMOIZE on, must still be CPython's, and only slots from 256 up may be dropped."""
    from safeload import _walker

    monkeypatch.setattr(_walker, "_PRUNE_AT", 0)
    for seed in range(12):
        data = _many_memoized(seed)
        dropped: set[int] = set()

        def watch(_i: int, view: Any, dropped: set[int] = dropped) -> None:
            dropped.update(k for k, v in view.memo().items() if v is _walker.UNREAD)

        _walker.walk(data, POLICY, observer=watch)
        assert dropped and min(dropped) >= 256, (seed, sorted(dropped)[:5])
        out = differential(data, POLICY)
        assert out.ok, f"seed {seed} ({matcher}): {out.divergence}"
        assert out.walker_end == len(data)


def test_memo_reads_cover_every_get() -> None:
    """Every GET, BINGET and LONG_BINGET the opcodes hold reads a candidate slot, in every stream."""
    import pickletools

    from safeload import _walker

    for seed in range(200):
        data = generate(random.Random(seed), proto=seed % 6)
        reads = _walker._memo_reads(data, len(data))
        assert reads is not None
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ("GET", "BINGET", "LONG_BINGET"):
                assert int(arg) in reads, (seed, op.name, arg)


# The held-out attack's shape: a vocabulary run, a memo read landing inside it, then MEMOIZEs.
RUN = b"".join(b"\x8c\x02w" + bytes([48 + k]) + b"\x94K" + bytes([k]) for k in range(10))
READ_INTO_RUN = (b"\x80\x04}\x94(" + RUN + b"u\x94"  # dict at slot 0, run at 1..10, dict again at 11
                 + b"h\x03\x94" + b"\x8c\x01x\x94" + b"h\x0c" + b"\x86\x94.")


# A run left on the stack under a MARK (no SETITEMS takes it): the walker's mark positions count a run
# as one item, CPython's as its values; the observer must translate (campaign seed 11, case 11718).
RUN_UNDER_MARK = b"\x80\x04]\x94" + RUN + b"(K\x01l(K\x02K\x03t\x94h\x05."


# A PUT after a MEMOIZE run (session 24: the run stays lazy past the first PUT, its slots counted in
# lazy_total): the next MEMOIZE lands at memo_len = 1 + 10 + 1 + 1 (dict, run, dict again, the PUT),
# and reads of the run's slots and of that slot come back right.
PUT_AFTER_RUN = (b"\x80\x04}\x94(" + RUN + b"u\x94" + b"Nqd0" + b"\x8c\x01y\x94" + b"h\x0d" + b"h\x02"
                 + b"h\x0a" + b"\x87\x94" + b"Nq\x050" + b"h\x05" + b"h\x06" + b"\x86\x94\x86.")

# The first PUT lands inside a MEMOIZE run (campaign seed 2401, case 11400: the run stayed lazy while
# the PUT wrote its slot too, so memo_len counted that slot twice): it must settle the run.
FIRST_PUT_INTO_RUN = (b"\x80\x04}\x94(" + RUN + b"uq\x050" + b"\x8c\x01z\x94" + b"h\x0b" + b"h\x05" + b"h\x06"
                      + b"\x87.")


# TUPLE2/TUPLE3 over a run and a value: they take the run's last values, not the run as one item
# (campaign seed 11, case 430845: the walker's stack fell 27 values short of CPython's).
TUPLE2_OVER_RUN = b"\x80\x04" + RUN + b"\x8c\x01a\x94\x86\x94h\x0b."
TUPLE3_OVER_RUN = b"\x80\x04" + RUN + b"\x8c\x01a\x94\x87\x94h\x0b."


@pytest.mark.parametrize("data", [READ_INTO_RUN, RUN_UNDER_MARK, TUPLE2_OVER_RUN, TUPLE3_OVER_RUN, PUT_AFTER_RUN,
                                  FIRST_PUT_INTO_RUN],
                         ids=["read-into-run", "run-under-mark", "tuple2-over-run", "tuple3-over-run",
                              "put-after-run", "first-put-into-run"])
def test_crafted_streams(matcher: str, data: bytes) -> None:
    cpython_loads(data)
    assert oracle_memo_and_result(data) == cpython_memo_and_result(data)
    out = differential(data, POLICY)
    assert out.ok, out.divergence
    assert out.walker_end == len(data)


# -- the property catches a broken model -------------------------------------------------------------

def _caught(module: types.ModuleType, streams: list[bytes]) -> int:
    """Valid streams on which the mutant diverges, or stops short of STOP (the walker completes every
    stream of the grammar: a stricter model is a broken one too)."""
    caught = 0
    for data in streams:
        out = differential(data, POLICY, walk=module.walk)
        caught += not out.ok or out.walker_end != len(data)
    return caught


def test_unmutated_copy_passes() -> None:
    """The mutant machinery itself: an exec'd copy with a no-op patch agrees everywhere."""
    MUTATIONS["identity"] = ("mlen += 1  # ORACLE-MUTATION-POINT", "mlen += 1  # ORACLE-MUTATION-POINT")
    try:
        module = mutant("identity")
    finally:
        del MUTATIONS["identity"]
    streams = [READ_INTO_RUN] + [generate(random.Random(s)) for s in range(40)]
    assert _caught(module, streams) == 0


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_property_catches_a_mutated_walker(name: str) -> None:
    module = mutant(name)
    if "skip" in name or "prune" in name or "binget" in name:
        module._PRUNE_AT = 0  # (real walks prune past 100,000 memo entries; these streams are short)
    if "binget" not in name:
        module._ALWAYS_KEPT = 0  # (real walks keep slots 0-255; the generated streams rarely have more)
    streams = [READ_INTO_RUN, PUT_AFTER_RUN, FIRST_PUT_INTO_RUN] + [generate(random.Random(s), proto=(4, 5, 2, 3)[s % 4])
                                                for s in range(160)] + [_many_memoized(s) for s in range(4)]
    caught = _caught(module, streams)
    assert caught > 0, f"mutation {name} went unnoticed on {len(streams)} streams"


def test_the_double_count_is_caught_on_the_crafted_stream() -> None:
    out = differential(READ_INTO_RUN, POLICY, walk=mutant("double-count").walk)
    assert not out.ok
    assert "memo" in (out.divergence or "")


@example(b"\x80\x04(\x8c\x01a\x94\x8c\x01b\x940\x94.")  # MEMOIZE after POP
@given(st.binary(max_size=64))
@settings(max_examples=100, deadline=None)
def test_random_bytes_agree_where_the_walker_goes(data: bytes) -> None:
    """Arbitrary bytes: wherever the walker steps, CPython's unpickler is in the same state."""
    out = differential(data, POLICY)
    assert out.ok, out.divergence


# -- protocol 0/1 text arguments: the oracle parses them as _pickle.c does ---------------------------

_TEXT_ALPHABET = st.sampled_from(list(b"0123456789+-_ .eExXLlnaifINFo\x00\t\v'\"\\ub"))


def _c_result(data: bytes) -> Any:
    try:
        return ("value", canon(cpython_loads(data)))
    except Exception:  # noqa: BLE001 - any refusal: the oracle must refuse too
        return ("refused",)


def _oracle_result(data: bytes) -> Any:
    try:
        return ("value", canon(Oracle(data).run()))
    except Exception:  # noqa: BLE001
        return ("refused",)


@example(op=b"I", text=b"+1")
@example(op=b"I", text=b"010")
@example(op=b"I", text=b"1\x00x")
@example(op=b"F", text=b"1_0")
@example(op=b"F", text=b"1e999")
@example(op=b"L", text=b"0x1fL")
@example(op=b"g", text=b" 0")
@given(op=st.sampled_from([b"I", b"L", b"F", b"S", b"V", b"g", b"p"]),
       text=st.lists(_TEXT_ALPHABET, max_size=12).map(bytes))
@settings(max_examples=200, deadline=None)
def test_text_arguments_parse_as_in_cpython(op: bytes, text: bytes) -> None:
    """INT / LONG / FLOAT / STRING / UNICODE / GET / PUT texts: the oracle accepts exactly what the C
    unpickler accepts, with the same value; and the walker agrees with both wherever it goes."""
    if op == b"g":
        data = b"K\x05p0\n" + op + text + b"\n."
    elif op == b"p":
        data = b"K\x05" + op + text + b"\n0g0\n."
    else:
        data = op + text + b"\n."
    assert _oracle_result(data) == _c_result(data), data
    out = differential(data, POLICY)
    assert out.ok, out.divergence


# A dict key read from the memo between two vocabulary runs in one SETITEMS: CPython raises TypeError
# (unhashable dict key); the walker used to skip its unhashable-key check when the items held a run and
# walked on, so scan said safe where load failed. Found by fuzz/oracle_campaign.py (seed 20261203, case 12059).
UNHASHABLE_KEY_BETWEEN_RUNS = b"\x80\x04}\x94(" + RUN[:56] + b"h\x00K\x00" + RUN[:56] + b"u."  # 8 entries each


@pytest.mark.parametrize("run_matcher", sorted(set(MATCHERS) - {"none"}))  # without runs the walker stops
def test_the_walker_stops_where_cpython_refuses_an_unhashable_key_between_runs(
        run_matcher: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_matcher(monkeypatch, run_matcher)
    with pytest.raises(TypeError):
        cpython_loads(UNHASHABLE_KEY_BETWEEN_RUNS)
    out = differential(UNHASHABLE_KEY_BETWEEN_RUNS, POLICY)
    assert out.ok
    assert out.lenient is None, out.lenient


def test_memo_reads_give_up_before_they_cost_memory() -> None:
    """More distinct LONG_BINGET candidates than _MAX_READ_CANDIDATES (or 0x67 bytes than
    _MAX_TEXT_GETS): no read set (the memo is kept whole), decided before the candidates become a
    Python set."""
    import struct

    from safeload import _walker

    many = b"".join(b"\x6a" + struct.pack("<I", k) for k in range(_walker._MAX_READ_CANDIDATES + 1))
    assert _walker._memo_reads(many, len(many)) is None
    texts = b"g1\n" * (_walker._MAX_TEXT_GETS + 1)
    assert _walker._memo_reads(texts, len(texts)) is None
    few = b"\x80\x04h\x05j\x07\x01\x00\x00g9\n."
    assert _walker._memo_reads(few, len(few)) == {5, 263, 9}
    assert _walker._memo_reads(few, len(few), 256) == {263, 9}  # (the walker keeps the BINGET slots)


def _text_reads_one_by_one(data: bytes) -> set[int]:
    """The reading the walker's own GET does, applied at every 0x67: the line to its newline, parsed."""
    from safeload._textops import parse_get

    out: set[int] = set()
    for p in range(len(data)):
        if data[p] == 0x67:
            e = data.find(b"\n", p + 1)
            if e >= 0:
                try:
                    out.add(parse_get(data[p + 1:e]))
                except (ValueError, OverflowError):
                    pass
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([b"g", b"\n", b"\0", b"0", b"1", b"7", b"42", b" ", b"_", b"-", b"+", b"\x80",
                                 b"\t", b"x", b"99999999999999999999"]), max_size=40))
@example([b"g", b"1", b"\0", b"g", b"2", b"\n"])  # a NUL cuts the first text before the second g
@example([b"g", b"1", b"g", b"2", b"\n"])  # the first text holds the second g: only 2
@example([b"g", b"0", b"0", b"7", b"\0"])  # no newline after the NUL: truncated, nothing read
def test_text_candidates_read_as_the_walker_reads_them(parts: list[bytes]) -> None:
    """Looking for each GET text only up to the next 0x67 finds exactly the indexes that reading every
    candidate's whole line finds (a text that reaches the next 0x67 holds a g and parses to nothing)."""
    from safeload import _walker

    data = b"".join(parts)
    assert _walker._memo_reads(data, len(data)) == _text_reads_one_by_one(data)


class _CountingBytes(bytes):
    """Bytes that count how many bytes ``find``/``rfind`` search and slices copy."""

    touched = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        _CountingBytes.touched += (len(self) if end is None else end) - (start or 0)
        return super().find(sub, start, end)

    def rfind(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        _CountingBytes.touched += (len(self) if end is None else end) - (start or 0)
        return super().rfind(sub, start, end)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, slice):
            _CountingBytes.touched += len(range(*key.indices(len(self))))
        return super().__getitem__(key)


@pytest.mark.parametrize("newline", [b"", b"\n"])
def test_text_candidates_cost_the_file_not_the_file_per_candidate(newline: bytes) -> None:
    """50,000 0x67 bytes before a 1 MB blob (with or without a newline after it): the candidates are
    read in a few passes over the file. Reading each to its newline searched (and copied) the blob once
    per candidate, 5 * 10**10 bytes for this 1 MB file."""
    from safeload import _walker

    data = _CountingBytes(b"g" * (_walker._MAX_TEXT_GETS - 1) + b"\x01" * (1 << 20) + newline + b"g5\n")
    _CountingBytes.touched = 0
    assert _walker._memo_reads(data, len(data)) == {5}
    assert _CountingBytes.touched <= 4 * len(data), _CountingBytes.touched
