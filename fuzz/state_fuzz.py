"""State fuzzer: tamper with the *loaded state* of real fitted models (issue 12).

The byte fuzzer (``fuzz_load.py``) mutates files; this one mutates objects, as
an attacker who keeps every name allowed would. For a zoo artifact it picks one
field reachable from the model (an instance attribute, a list item, a dict
value, an array) and perturbs it: integers (sign flip, 0, -1, +-10**9, int32
overflow), array values (out-of-range indices, NaN), array length / shape /
ndim / dtype / order / strides, list lengths, dict entries, and instance keys
that shadow class attributes. The result is written with ``joblib.dump``; a
worker process ``safeload.load``s it and, if load accepts, calls every public
method the object has on valid inputs (dense and sparse). A worker killed by a
signal (or ended by the runtime) after an accepted load is a failure: the file
and what to call are saved to ``fuzz/state_crashes/`` and replayed by
``tests/test_state_fuzz.py``.

    python fuzz/state_fuzz.py --seconds 480 --seed 1
    python fuzz/state_fuzz.py --cases 200 --seed 7 --models KMeans,OneHotEncoder
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import pickle
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CRASH_DIR = ROOT / "fuzz" / "state_crashes"
sys.path.insert(0, str(ROOT / "tests"))

#: Public methods called after an accepted load (those the object has), with the probe input.
METHODS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "inverse_transform",
    "score_samples",
    "kneighbors",
    "radius_neighbors",
    "kneighbors_graph",
    "apply",
    "decision_path",
    "staged_predict",
    "staged_predict_proba",
    "staged_decision_function",
    "mahalanobis",
)
CASE_SECONDS = 20
#: The worker's address space (its models and probes need a few hundred MB).
WORKER_MEMORY = 6 << 30
MAX_TARGETS = 4000

_INTS = (0, -1, 1, 2, 10**9, -(10**9), 2**31, 2**31 - 1, -(2**31) - 1, 2**63 - 1)


# --------------------------------------------------------------------------
# mutation
# --------------------------------------------------------------------------


@dataclass
class Target:
    """One mutable slot: ``holder[key]`` (a dict, list, or an instance's ``__dict__``)."""

    holder: Any
    key: Any
    where: str
    owner: Any = None  # the instance whose __dict__ this is, if any


def targets(root: Any) -> list[Target]:
    """Mutable slots reachable from ``root`` in BFS order (deterministic, bounded)."""
    found: list[Target] = []
    seen: set[int] = set()
    queue: deque[tuple[Any, str]] = deque([(root, "")])
    while queue and len(found) < MAX_TARGETS:
        obj, where = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        slots: list[tuple[Any, Any, str, Any]] = []
        if isinstance(obj, dict):
            slots = [(obj, k, f"{where}[{k!r}]", None) for k in list(obj)[:50]]
        elif isinstance(obj, list):
            slots = [(obj, i, f"{where}[{i}]", None) for i in range(min(len(obj), 50))]
        elif isinstance(obj, np.ndarray) and obj.dtype == object:
            slots = [(obj, i, f"{where}[{i}]", None) for i in range(min(obj.size, 50)) if obj.ndim == 1]
        elif isinstance(obj, tuple):
            for i, item in enumerate(obj[:50]):
                queue.append((item, f"{where}[{i}]"))
        elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            d = vars(obj)
            slots = [(d, k, f"{where}.{k}", obj) for k in list(d)]
            found.append(Target(d, None, f"{where}.<new key>", obj))
        for holder, key, w, owner in slots:
            found.append(Target(holder, key, w, owner))
            queue.append((holder[key], w))
    return found


def mutate_int(value: int, rng: random.Random) -> int:
    choice = rng.choice([*_INTS, -value, value + 1, value - 1, value * 2 + 1])
    return int(choice)


def mutate_array(arr: np.ndarray[Any, Any], rng: random.Random) -> Any:
    kind = rng.randrange(12)
    a = arr.copy()
    if kind <= 3 and a.size and a.dtype.kind in "iu":
        flat = a.reshape(-1)
        value = rng.choice([-1, a.size, int(flat.max()) + 1, 10**6, int(np.iinfo(a.dtype).max)])
        info = np.iinfo(a.dtype)
        flat[rng.randrange(flat.size)] = min(max(value, int(info.min)), int(info.max))
        return a
    if kind <= 3 and a.size and a.dtype.kind == "f":
        flat = a.reshape(-1)
        flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -1.0, 1e300])
        return a
    if kind == 4 and a.ndim >= 1 and a.shape[0] > 0:
        return a[: rng.randrange(a.shape[0])]  # shorter
    if kind == 5 and a.ndim >= 1 and a.shape[0] > 0:
        return np.concatenate([a, a[-1:]])  # one longer
    if kind == 6:
        return a.reshape(-1) if a.ndim != 1 else a.reshape(-1, 1)  # ndim
    if kind == 7 and a.ndim >= 1:
        return np.asfortranarray(a) if a.ndim > 1 else a[::-1]
    if kind == 8 and a.size > 1:
        return np.repeat(a, 2, axis=0)[::2]  # non-contiguous view of a copy
    if kind == 9 and a.dtype.kind in "iuf":
        return a.astype(rng.choice([np.int32, np.int64, np.float32, np.float64, np.uint8, np.intp]))
    if kind == 10:
        return np.zeros((0,) + a.shape[1:], dtype=a.dtype)
    if a.dtype.kind in "iu" and a.size:
        return -a - 1
    return a.T if a.ndim > 1 else a.reshape(-1)[:1]


def mutate_value(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, np.integer)):
        return mutate_int(int(value), rng)
    if isinstance(value, (float, np.floating)):
        return rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e300])
    if isinstance(value, np.ndarray) and value.dtype != object:
        return mutate_array(value, rng)
    if isinstance(value, list):
        kind = rng.randrange(3)
        if kind == 0 or not value:
            return value[:-1] if value else [0]
        if kind == 1:
            return [*value, value[-1]]
        return value[: len(value) // 2]
    if isinstance(value, dict) and value:
        k = rng.choice(sorted(value, key=repr))
        out = dict(value)
        if rng.random() < 0.5:
            del out[k]
        else:
            out[k] = mutate_value(value[k], rng)
        return out
    if isinstance(value, tuple) and value:
        return tuple(mutate_value(v, rng) if i == 0 else v for i, v in enumerate(value))
    if isinstance(value, str):
        return rng.choice(["", "zero", "c_svc", "precomputed", "mahalanobis", "brute", value + "x"])
    return rng.choice([None, 0, -1, np.zeros(3), []])


def shadow(owner: Any, rng: random.Random) -> tuple[str, Any] | None:
    """A key naming a class-level attribute of ``owner`` and a plausible value for it."""
    names = sorted({n for base in type(owner).__mro__ for n in vars(base) if not n.startswith("__")})
    if not names:
        return None
    name = rng.choice(names)
    value = getattr(type(owner), name, None)
    if isinstance(value, (str, int, float, bool)):
        return name, mutate_value(value, rng)
    return name, rng.choice([0, -1, "c_svc", True, np.zeros(2)])


def mutate(root: Any, rng: random.Random) -> str | None:
    """Apply one mutation in place; returns a description, or None if nothing applied."""
    found = targets(root)
    if not found:
        return None
    # fitted state (arrays, integers, private attributes) is what native code reads: favour it
    fitted = [t for t in found if t.key is not None and _fitted(t)]
    t = rng.choice(fitted) if fitted and rng.random() < 0.7 else rng.choice(found)
    if t.key is None:  # a new key on an instance
        pair = shadow(t.owner, rng)
        if pair is None:
            return None
        t.holder[pair[0]] = pair[1]
        return f"{t.where.replace('<new key>', pair[0])} = {_short(pair[1])} (shadows the class)"
    old = t.holder[t.key]
    if isinstance(t.holder, dict) and t.owner is not None and rng.random() < 0.05:
        del t.holder[t.key]
        return f"del {t.where}"
    new = mutate_value(old, rng)
    t.holder[t.key] = new
    return f"{t.where}: {_short(old)} -> {_short(new)}"


def _fitted(t: Target) -> bool:
    value = t.holder[t.key]
    if isinstance(value, (np.ndarray, int, np.integer)) and not isinstance(value, bool):
        return True
    return isinstance(t.key, str) and (t.key.endswith("_") or t.key.startswith("_"))


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array({v.dtype}, {v.shape}, {'C' if v.flags.c_contiguous else 'F' if v.flags.f_contiguous else 'strided'})"
    text = repr(v)
    if " at 0x" in text:  # default reprs carry an address: not reproducible
        return f"<{type(v).__module__}.{type(v).__qualname__}>"
    return text if len(text) < 60 else text[:57] + "..."


# --------------------------------------------------------------------------
# worker: load with safeload, then use
# --------------------------------------------------------------------------


def probes(probe: Any) -> list[Any]:
    out = [probe]
    with contextlib.suppress(Exception):
        import scipy.sparse as sp

        if isinstance(probe, np.ndarray) and probe.ndim == 2 and probe.dtype.kind in "iuf":
            out.append(sp.csr_matrix(probe))
    return out


#: Most cells the fuzzer densifies a sparse output to (1 GiB of float64).
DENSE_CELLS = 1 << 27


def _cells(result: Any) -> int:
    shape = getattr(result, "shape", ())
    return int(np.prod([int(k) for k in shape], dtype=object)) if shape else 0


def use(obj: Any, probe: Any, exhausted: list[str] | None = None) -> list[str]:
    """Call every public method the object has on valid inputs; Python errors are fine, but a
    MemoryError (the worker's address space is capped) is listed in ``exhausted``: a method of a
    tampered model that asks for gigabytes on a probe of a few rows."""
    called = []
    for data in probes(probe):
        for name in METHODS:
            try:
                method = getattr(obj, name, None)
            except Exception:  # noqa: BLE001 - available_if raises
                continue
            if not callable(method):
                continue
            called.append(name)
            try:
                result = method(data)
                if name.startswith("staged_"):
                    deque(result, maxlen=1)
                elif name == "inverse_transform" or name == "transform":
                    # densify a sparse output (reads every index), unless the fuzzer itself would then
                    # ask for gigabytes: a hashing transformer with 10**9 columns returns a fine sparse
                    # matrix, and densifying it is the fuzzer's doing, not the model's (seed 87: 73 notes)
                    if hasattr(result, "toarray") and _cells(result) <= DENSE_CELLS:
                        result.toarray()
            except MemoryError:
                if exhausted is not None:
                    exhausted.append(name)
                continue
            except Exception:  # noqa: BLE001,S112 - refusing bad input in Python is the safe outcome
                continue
        for name in ("score",):
            with contextlib.suppress(Exception):
                getattr(obj, name)(data, None)
    return called


def worker() -> None:
    """Read 'path<TAB>probe-path' lines; answer one JSON line per case."""
    import safeload
    from safeload._errors import SafeloadError

    warnings.simplefilter("ignore")
    import resource

    # a method that allocates gigabytes for a probe of a few rows raises MemoryError instead of
    # swapping the machine: counted as a note (like a timeout), not a memory-safety failure
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    # the protocol gets its own copy of fd 1; anything a model prints (Python or C) goes to stderr
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        path, probe_path = line.rstrip("\n").split("\t")
        with open(probe_path, "rb") as f:
            probe = pickle.load(f)  # written by the parent: trusted
        signal.alarm(CASE_SECONDS)
        answer: dict[str, Any]
        try:
            obj = safeload.load(path)
        except SafeloadError as exc:
            answer = {"load": "refused", "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        except Exception as exc:  # noqa: BLE001 - a non-Safeload error from load is a finding
            answer = {"load": "stray", "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        else:
            Path(path + ".accepted").touch()  # survives the worker if a method kills it
            answer = {"load": "accepted"}
        # scan judges the same file (before any method runs): it must agree with load
        try:
            answer["scan"] = "safe" if safeload.scan(path).safe else "unsafe"
        except Exception as exc:  # noqa: BLE001 - scan reports, it does not raise: a finding
            answer["scan"] = f"error {type(exc).__name__}: {str(exc)[:200]}"
        if answer["load"] == "accepted":
            exhausted: list[str] = []
            answer["called"] = use(obj, probe, exhausted)
            answer["exhausted"] = exhausted
        signal.alarm(0)
        print(json.dumps(answer), file=answers, flush=True)


class Worker:
    def __init__(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        # stderr goes to a file: a pipe nobody reads fills up and blocks the worker
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
        )

    def stderr_tail(self) -> str:
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - 1500))
        return self.stderr.read()

    def run(self, path: str, probe_path: str) -> tuple[dict[str, Any] | None, bool, str]:
        """(answer, accepted-before-death, stderr tail). answer None: the worker died."""
        assert self.proc.stdin and self.proc.stdout
        marker = Path(path + ".accepted")
        marker.unlink(missing_ok=True)
        self.proc.stdin.write(f"{path}\t{probe_path}\n")
        self.proc.stdin.flush()
        # one line per case, so select() on the pipe cannot miss a line already buffered
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_SECONDS * 3)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            return None, marker.exists(), "parent timeout"
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            return None, marker.exists(), self.stderr_tail()
        return json.loads(line), marker.exists(), ""

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.stderr.close()


# --------------------------------------------------------------------------
# campaign
# --------------------------------------------------------------------------


def load_zoo(names: list[str] | None) -> tuple[Any, list[str]]:
    import zoo

    store = zoo.ensure_zoo()
    chosen = sorted(store.entries)
    if names:
        chosen = [n for n in chosen if any(w in n for w in names)]
    chosen = [n for n in chosen if "pickle-p5" in store.entries[n].files]
    return store, chosen


def case_rng(seed: int, index: int) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "little"))


def make_case(store: Any, names: list[str], seed: int, index: int) -> tuple[str, bytes, str] | None:
    """(artifact name, mutated joblib bytes, description) for case ``index``; deterministic."""
    rng = case_rng(seed, index)
    name = rng.choice(names)
    with open(store.path(name, "pickle-p5"), "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = pickle.load(f)  # our own zoo: trusted
    try:
        done = [mutate(obj, rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    except Exception:  # noqa: BLE001 - a mutation the generator cannot apply is not a case
        return None
    if not any(done):
        return None
    what = "; ".join(d for d in done if d)
    buf = io.BytesIO()
    try:
        import joblib

        joblib.dump(obj, buf)
    except Exception:  # noqa: BLE001 - a mutation joblib cannot write is not a case
        return None
    return name, buf.getvalue(), what


def save_crash(name: str, payload: bytes, what: str, outcome: str, probe: Any, seed: int, index: int) -> Path:
    CRASH_DIR.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(payload).hexdigest()[:16]
    base = CRASH_DIR / f"{digest}"
    base.with_suffix(".joblib").write_bytes(payload)
    with open(base.with_suffix(".probe.pkl"), "wb") as f:
        pickle.dump(probe, f)
    base.with_suffix(".json").write_text(
        json.dumps({"artifact": name, "mutation": what, "outcome": outcome, "seed": seed, "case": index}, indent=1)
    )
    return base


def campaign(
    seed: int,
    cases: int | None,
    seconds: float | None,
    names: list[str] | None,
    log: Callable[[str], None] = print,
) -> Counter[str]:
    store, chosen = load_zoo(names)
    stats: Counter[str] = Counter()
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="state_fuzz_"))
    probe_paths: dict[str, str] = {}
    gaps: Counter[str] = Counter()
    verbose_gaps = bool(os.environ.get("STATE_FUZZ_GAPS"))
    w = Worker()
    index = 0
    try:
        while (cases is None or index < cases) and (seconds is None or time.monotonic() - start < seconds):
            made = make_case(store, chosen, seed, index)
            index += 1
            if made is None:
                stats["skipped"] += 1
                continue
            name, payload, what = made
            path = tmp / "case.joblib"
            path.write_bytes(payload)
            if name not in probe_paths:
                p = tmp / f"probe{len(probe_paths)}.pkl"
                with open(p, "wb") as f:
                    pickle.dump(store.entries[name].probe, f)
                probe_paths[name] = str(p)
            answer, accepted, err = w.run(str(path), probe_paths[name])
            stats["cases"] += 1
            if answer is None:
                rc = w.proc.returncode
                w.close()
                w = Worker()
                probe = store.entries[name].probe
                if rc in (-signal.SIGALRM, -signal.SIGKILL):
                    # too slow (a Python-level loop on a huge mutated size) is not a memory-safety failure
                    stats["timeout (note)"] += 1
                    log(f"note: timeout case {index - 1} {name}: {what}")
                    continue
                kind = "FAIL crash after accepted load" if accepted else "FAIL crash during load"
                stats[kind] += 1
                saved = save_crash(
                    name, payload, what, f"rc={rc} accepted={accepted} {err[-300:]}", probe, seed, index - 1
                )
                log(f"{kind}: case {index - 1} {name}: {what}: rc={rc} -> {saved}")
                continue
            stats[answer["load"]] += 1
            if answer["load"] == "stray":
                log(f"stray exception case {index - 1} {name}: {what}: {answer['error']}")
            scan = answer.get("scan", "")
            if answer["load"] == "accepted" and scan != "safe":
                # scan refuses a file load accepts: the static twin judged something load did not
                stats["FAIL scan unsafe, load accepts"] += 1
                saved = save_crash(name, payload, what, f"scan {scan}, load accepted",
                                   store.entries[name].probe, seed, index - 1)
                log(f"FAIL scan unsafe, load accepts: case {index - 1} {name}: {what}: {scan} -> {saved}")
            elif answer["load"] == "refused" and scan == "safe":
                stats["scan safe, load refuses (gap)"] += 1
                gaps[answer["error"].split(":")[0] + ": " + _gap_kind(answer["error"])] += 1
                if verbose_gaps:
                    log(f"gap case {index - 1} {name}: {what}: {answer['error']}")
            elif scan.startswith("error"):
                stats["FAIL scan error"] += 1
                log(f"FAIL scan error: case {index - 1} {name}: {what}: {scan}")
            if answer["load"] == "accepted":
                stats["method calls"] += len(answer["called"])
                if answer.get("exhausted"):
                    stats["memory exhausted (note)"] += 1
                    log(f"note: memory exhausted case {index - 1} {name}: {what}: {answer['exhausted']}")
            if index % 500 == 0:
                log(f"[{time.monotonic() - start:.0f}s] {dict(stats)}")
    finally:
        w.close()
    stats["seconds"] = int(time.monotonic() - start)
    stats["artifacts"] = len(chosen)
    for kind, n in gaps.most_common(12):
        log(f"gap {n}: {kind}")
    return stats


def _gap_kind(error: str) -> str:
    """The attribute a refusal names (``...tree_.n_features: ...`` -> ``n_features``), to group gaps."""
    head = error.partition(": ")[2].partition(": ")[0]
    return head.rpartition(".")[2].split("[")[0][:40]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--models", help="comma-separated substrings of zoo artifact names")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return 0
    if args.cases is None and args.seconds is None:
        args.cases = 100
    stats = campaign(args.seed, args.cases, args.seconds, args.models.split(",") if args.models else None)
    print(json.dumps(dict(stats), indent=1))
    return 1 if any(k.startswith("FAIL") for k in stats) else 0


if __name__ == "__main__":
    raise SystemExit(main())
