"""Differential campaign: the walker's machine model against CPython's unpickler (issue 11, part 1).

Each case draws one valid pickle stream from the grammar in ``tests/_oracle.py`` (protocols 0-5,
vocabulary runs, memo reads into and past them, PUT overwrites and holes, MEMOIZE after POP / POP_MARK
/ DUP, frames, nested containers and objects), then walks it with the walker's observer stepping the
oracle in lockstep: before every walker step, offset, ``memo_len``, marks and the whole stack (the
whole memo every 4th step and at STOP) must equal CPython's, and the walker must reach STOP (every grammar stream is valid). The
run matcher rotates per case between the compiled one, the regular expressions and none; every 4th
case is a joblib stream (NumpyArrayWrapper arrays, object arrays as nested pickles), walked both as
joblib reads it and as pickle would; 2 cases in 8 get 1-3 byte edits (then only agreement wherever
the walker goes is required).

``--corpus`` instead runs the property over every malicious sample, fuzz reproducer and zoo artifact
in every format (joblib's and pickle's reading of each; long streams compared in full every 200 steps, as in CI).
``--mutation NAME`` runs the cases against a mutated walker (see ``_oracle.MUTATIONS``) and reports
how many catch it.

Usage::

    python fuzz/oracle_campaign.py --count 100000 --seed 1 --jobs 1
    python fuzz/oracle_campaign.py --seconds 480 --seed 7
    python fuzz/oracle_campaign.py --replay 1:12345          # seed:index of a reported failure
    python fuzz/oracle_campaign.py --corpus
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import _oracle  # noqa: E402

from safeload import _walker  # noqa: E402
from safeload._load import effective_policy  # noqa: E402

POLICY = effective_policy(None, ())


MATCHERS = _oracle.MATCHERS
ORDER = sorted(MATCHERS)


#: Opcode bytes the mutator inserts (every opcode CPython knows).
_OPCODES = bytes(sorted({op.code.encode("latin1")[0] for op in __import__("pickletools").opcodes}))


def mutate(rnd: random.Random, data: bytes) -> bytes:
    """1-3 byte edits (overwrite, insert an opcode with or without an argument byte, delete)."""
    b = bytearray(data)
    for _ in range(rnd.choice((1, 1, 2, 3))):
        k = rnd.random()
        if not b:  # earlier edits deleted every byte (a stream of one or two bytes)
            break
        i = rnd.randrange(len(b))
        if k < 0.3:
            b[i] = rnd.randrange(256)
        elif k < 0.6:
            b[i:i] = bytes([rnd.choice(_OPCODES)])
        elif k < 0.8:
            b[i:i] = bytes([rnd.choice(_OPCODES), rnd.randrange(256)])
        else:
            del b[i]
    return bytes(b)


def case(seed: int, index: int) -> tuple[bytes, str, bool, bool]:
    """The stream, run matcher, joblib flag and mutated flag of case ``index`` of campaign ``seed``
    (reproducible): every 4th case is a joblib stream (wrapper arrays, nested object-array pickles);
    cases 5 and 6 of every 8 are mutated (no longer valid: the walker may stop anywhere, but wherever
    it goes, it must agree)."""
    rnd = random.Random(f"{seed}:{index}")
    joblib = index % 4 == 3
    data = _oracle.generate(rnd, joblib=joblib)
    mutated = index % 8 in (5, 6)
    return (mutate(rnd, data) if mutated else data), ORDER[index % len(ORDER)], joblib, mutated


#: What ``_walker._PRUNE_AT`` is in real walks; every other case runs with 0 (every memo slot no GET
#: can read is dropped from the first MEMOIZE on), so that the campaign checks the pruned memo too;
#: half of those with ``_ALWAYS_KEPT`` 0 (slots 0-255 pruned as well, as real walks never do).
_PRUNE_AT = _walker._PRUNE_AT


def run_case(seed: int, index: int, walk: Any) -> tuple[str, int, int, int, str | None]:
    """(outcome, protocol, bytes, steps, message); outcome 'ok', 'divergence', 'short' (the walker
    stopped before STOP on a valid stream), 'unsure' (the oracle cannot tell) or 'lenient' (pickle's
    reading of a joblib stream: the walker went on past an opcode CPython refuses; not a failure)."""
    data, matcher, joblib, mutated = case(seed, index)
    MATCHERS[matcher].install()
    prune_at = 0 if index % 2 else _PRUNE_AT
    if hasattr(walk, "__globals__"):  # a mutant: exec'd from the source
        walk.__globals__["_PRUNE_AT"] = prune_at
        walk.__globals__["_ALWAYS_KEPT"] = 0 if index % 4 == 1 else 256
    else:  # the installed walker (compiled by mypyc: its module's attribute)
        _walker._PRUNE_AT = prune_at
        _walker._ALWAYS_KEPT = 0 if index % 4 == 1 else 256  # (BINGET slots pruned too, every 4th case)
    # protocols 0 and 1 have no PROTO opcode: counted as 1; -1: a mutated PROTO
    proto = (data[1] if len(data) > 1 and data[1] <= 5 else -1) if data[:1] == b"\x80" else 1
    # the memo (O(memo) per comparison) every 4 steps and at STOP; everything else at every step
    out = _oracle.differential(data, POLICY, walk=walk, memo_every=4, joblib=joblib)
    plain = out
    if out.ok and joblib:  # and pickle's reading of the same bytes, wherever the walker goes
        plain = _oracle.differential(data, POLICY, walk=walk, memo_every=4)
        if not plain.ok:
            return "divergence", proto, len(data), out.steps, f"{matcher} (joblib, pickle's reading): {plain.divergence}"
    if not out.ok:
        return "divergence", proto, len(data), out.steps, f"{matcher}{' (joblib)' * joblib}: {out.divergence}"
    if out.unsure is not None:
        return "unsure", proto, len(data), out.steps, out.unsure
    if out.lenient is not None or (joblib and plain.lenient is not None):
        return "lenient", proto, len(data), out.steps, out.lenient or plain.lenient
    if mutated:
        return "ok-mutated", proto, len(data), out.steps, None
    if out.walker_end != len(data):
        return "short", proto, len(data), out.steps, f"{matcher}: the walker stopped before STOP"
    return "ok", proto, len(data), out.steps, None


def worker(args: tuple[int, int, int, int, float, str | None, int]) -> dict[str, Any]:
    seed, start, stop, step, deadline, mutation, progress = args
    began = time.time()
    walk = _oracle.mutant(mutation).walk if mutation else _walker.walk
    counts: collections.Counter[str] = collections.Counter()
    by_proto: collections.Counter[int] = collections.Counter()
    failures: list[tuple[int, str]] = []
    size = steps = 0
    done = 0
    for index in range(start, stop, step):
        if deadline and time.time() > deadline:
            break
        try:
            outcome, proto, n, k, message = run_case(seed, index, walk)
        except Exception as exc:  # noqa: BLE001 - a crash of the harness or the walker is a failure too
            outcome, proto, n, k, message = "error", -1, 0, 0, f"{type(exc).__name__}: {exc}"
        done += 1
        counts[outcome] += 1
        by_proto[proto] += 1
        size += n
        steps += k
        # A failure is always kept and printed; 'lenient' notes (not failures) only the first 20, so
        # they never crowd a failure out of the report.
        failing = outcome not in ("ok", "ok-mutated", "unsure", "lenient")
        if failing or (outcome == "lenient" and len(failures) < 20):
            failures.append((index, f"[{outcome}] {message or ''}"))
            if progress:
                print(f"[job {start}] {seed}:{index} [{outcome}] {(message or '')[:300]}", file=sys.stderr, flush=True)
        if progress and done % progress == 0:  # a long campaign leaves a trail if it is cut short
            bad = sum(v for o, v in counts.items() if o not in ("ok", "ok-mutated", "unsure", "lenient"))
            print(f"[job {start}] {done} streams in {time.time() - began:.0f} s, failures {bad}, "
                  f"{dict(sorted(counts.items()))}", file=sys.stderr, flush=True)
    return {"done": done, "counts": counts, "by_proto": by_proto, "failures": failures, "bytes": size, "steps": steps}


def campaign(opts: argparse.Namespace) -> int:
    jobs = max(1, opts.jobs)
    deadline = time.time() + opts.seconds if opts.seconds else 0.0
    count = opts.count if opts.count else 10**12
    started = time.time()
    tasks = [(opts.seed, j, count, jobs, deadline, opts.mutation, opts.progress) for j in range(jobs)]
    if jobs == 1:
        results = [worker(tasks[0])]
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(worker, tasks)
    elapsed = time.time() - started
    counts: collections.Counter[str] = collections.Counter()
    by_proto: collections.Counter[int] = collections.Counter()
    failures: list[tuple[int, str]] = []
    for r in results:
        counts.update(r["counts"])
        by_proto.update(r["by_proto"])
        failures.extend(r["failures"])
    done = sum(r["done"] for r in results)
    print(f"seed {opts.seed}: {done} generated streams in {elapsed:.0f} s ({done / max(elapsed, 1e-9):.0f}/s, "
          f"{jobs} job(s)), {sum(r['bytes'] for r in results)} bytes, {sum(r['steps'] for r in results)} walker "
          f"steps compared" + (f", mutation {opts.mutation}" if opts.mutation else ""))
    print("outcomes:", dict(sorted(counts.items())))
    print("protocols:", dict(sorted(by_proto.items())))
    print("matchers:", {m: (done + len(ORDER) - 1 - k) // len(ORDER) for k, m in enumerate(ORDER)})
    for index, message in failures:
        print(f"  {'NOTE' if message.startswith('[lenient]') else 'FAIL'} {opts.seed}:{index}  {message[:300]}")
    failed = sum(v for k, v in counts.items() if k not in ("ok", "ok-mutated", "unsure", "lenient"))
    print(f"failures: {failed}")
    if opts.mutation:
        return 0 if failed else 1  # a mutation nobody catches is the failure
    return 1 if failed else 0


def corpus(opts: argparse.Namespace) -> int:
    import zoo
    from test_walker_oracle import CORPUS, pickle_streams

    started = time.time()
    items: list[tuple[str, bytes]] = list(CORPUS)
    store = zoo.ensure_zoo()
    for name, fmt in zoo.cases():
        if fmt != "skops":
            items.extend((f"{name}.{fmt}", d) for d in pickle_streams(store.path(name, fmt).read_bytes()))
    bad = unsure = lenient = walks = done = 0
    deadline = started + opts.seconds if opts.seconds else 0.0
    for label, data in items:
        if deadline and time.time() > deadline:
            break
        done += 1
        for joblib in (True, False):
            small = len(data) < 3000
            out = _oracle.differential(data, POLICY, joblib=joblib, every=1 if small else 200,
                                       memo_every=1 if small else 2000)
            walks += 1
            if not out.ok:
                bad += 1
                print(f"  FAIL {label} (joblib={joblib}): {out.divergence}")
            elif out.unsure:
                unsure += 1
            elif out.lenient:
                lenient += 1
    print(f"corpus: {done} of {len(items)} streams (samples and reproducers first, then the zoo), {walks} walks "
          f"in {time.time() - started:.0f} s; divergences {bad}, unsure {unsure}, lenient {lenient}")
    return 1 if bad else 0


def replay(spec: str) -> int:
    seed, _, index = spec.partition(":")
    data, matcher, joblib, mutated = case(int(seed), int(index))
    print(f"{len(data)} bytes, matcher {matcher}, joblib {joblib}, mutated {mutated}: {data!r}")
    MATCHERS[matcher].install()
    out = _oracle.differential(data, POLICY, joblib=joblib)
    print(out)
    return 0 if out.ok and (mutated or out.walker_end == len(data)) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=0, help="number of generated streams (default: until --seconds)")
    ap.add_argument("--seconds", type=float, default=0, help="wall-clock limit")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--progress", type=int, default=0, metavar="N", help="print a line to stderr every N streams per job")
    ap.add_argument("--mutation", choices=sorted(_oracle.MUTATIONS), help="run against a mutated walker")
    ap.add_argument("--corpus", action="store_true", help="samples, reproducers and the whole zoo instead")
    ap.add_argument("--replay", metavar="SEED:INDEX", help="rerun one generated case and print it")
    opts = ap.parse_args(argv)
    if opts.replay:
        return replay(opts.replay)
    if opts.corpus:
        return corpus(opts)
    if not opts.count and not opts.seconds:
        opts.count = 1000
    return campaign(opts)


if __name__ == "__main__":
    sys.exit(main())
