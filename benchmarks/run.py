"""safeload benchmarks: speed, peak memory and verdicts against joblib/pickle and the peer scanners.

Usage::

    python benchmarks/run.py [--rounds N] [--quick] [--out benchmarks/results/latest.json]

Inputs are built reproducibly (fixed seeds) into ``benchmarks/.data/`` on the first run and reused
afterwards (rebuilt when a file is missing, the recipe changes or a library version changes).
Every timing is interleaved in one process (A B C A B C ...) so that drift in machine load hits all
contenders alike; ratios are the median of the per-round ratios to the baseline of the same round.
See ``benchmarks/README.md`` for what is measured and how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import importlib.util
import io
import json
import logging
import os
import pickle
import platform
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("safeload") is None:  # a fresh clone that is not pip-installed
    sys.path.insert(0, str(ROOT))

RECIPE = "4"  # bump when an input builder changes: cached inputs are rebuilt
MB = 1_000_000  # file sizes in decimal MB; memory is reported in MiB
DEFAULT_DATA = ROOT / "benchmarks" / ".data"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest.json"
MALICIOUS_DIR = ROOT / "malicious_samples"

FOREST_SAMPLES = 40_000  # 100 fully grown trees on noisy labels: ~100 MB with joblib
FOREST_FEATURES = 8
FOREST_TREES = 100
VOCAB_SIZE = 500_000
ZOO_COUNT = 200

# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    """Progress line on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    """Environment for child processes: the repository importable, one BLAS thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def short(exc: BaseException, limit: int = 160) -> str:
    """One-line description of an exception."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings and the peers' loggers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def versions() -> dict[str, str]:
    """Versions of everything that shapes the inputs or the timings."""
    out = {"python": platform.python_version()}
    for mod in ("numpy", "scipy", "sklearn", "joblib", "skops", "fickling", "picklescan", "safeload"):
        try:
            module = __import__(mod)
            out[mod] = str(getattr(module, "__version__", "?"))
        except ImportError:
            out[mod] = "not installed"
    if out.get("picklescan") == "?":
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            out["picklescan"] = version("picklescan")
    return out


def _walker_runs() -> str:
    """Which run matcher the walker uses: the compiled helper needs ``pip install`` (with a C compiler)."""
    from safeload import _walker

    if _walker._speedups is not None:
        return "compiled (safeload._speedups)"
    return "pure Python (safeload._speedups not built: pip install -e . with a C compiler)"


def machine() -> dict[str, Any]:
    """Platform, CPU model, cores, load and library versions."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "loadavg_start": list(os.getloadavg()),
        "safeload_commit": commit,
        "walker_runs": _walker_runs(),
        "versions": versions(),
    }


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


@dataclass
class Input:
    """One benchmark file."""

    key: str
    path: Path
    kind: str  # "joblib", "joblib-zlib", "pickle", "skops"
    model: str
    size: int = 0
    skops_trusted: list[str] = field(default_factory=list)


def _cache_key(extra: str = "") -> str:
    v = versions()
    v.pop("safeload", None)
    v.pop("fickling", None)
    v.pop("picklescan", None)
    return hashlib.sha256(f"{RECIPE}|{sorted(v.items())}|{extra}".encode()).hexdigest()[:16]


def _dump_pickle(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=5)


def _skops_dump(obj: Any, path: Path) -> list[str]:
    """skops.io.dump, then the untrusted-type list a trusting user would pass to skops.io.load."""
    import skops.io

    skops.io.dump(obj, path)
    return [str(t) for t in skops.io.get_untrusted_types(file=path)]


def build_forest(d: Path) -> dict[str, Any]:
    """RandomForestClassifier of ~100 MB (joblib raw), also joblib zlib-3 and pickle protocol 5."""
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(FOREST_SAMPLES, FOREST_FEATURES)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=FOREST_SAMPLES) > 0).astype(np.int64)  # noisy labels: deep trees
    model = RandomForestClassifier(n_estimators=FOREST_TREES, n_jobs=2, random_state=0).fit(x, y)
    model.n_jobs = None  # the saved model carries no thread setting
    joblib.dump(model, d / "forest.joblib")
    joblib.dump(model, d / "forest.zlib3.joblib", compress=("zlib", 3))
    _dump_pickle(model, d / "forest.p5.pkl")
    nodes = sum(e.tree_.node_count for e in model.estimators_)
    return {"desc": f"RandomForestClassifier(n_estimators={FOREST_TREES}) on {FOREST_SAMPLES}x{FOREST_FEATURES}, "
                    f"{nodes} nodes"}


def _words(n: int, seed: int = 1) -> list[str]:
    """``n`` distinct pseudo-words of 3-12 lowercase letters, sorted."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        m = (n - len(words)) * 2 + 1000
        lengths = rng.integers(3, 13, size=m).tolist()
        chars = (rng.integers(0, 26, size=(m, 12), dtype=np.uint8) + ord("a")).tobytes()
        for i, length in enumerate(lengths):
            words[chars[i * 12: i * 12 + length].decode("ascii")] = None
            if len(words) == n:
                break
    return sorted(words)


def build_vocab(d: Path) -> dict[str, Any]:
    """CountVectorizer fitted on synthetic text, then given a 500,000-entry ``vocabulary_``."""
    import joblib
    from sklearn.feature_extraction.text import CountVectorizer

    words = _words(VOCAB_SIZE)
    corpus = [" ".join(words[i: i + 50]) for i in range(0, 5000, 50)]
    vec = CountVectorizer(min_df=1).fit(corpus)
    vec.vocabulary_ = {w: i for i, w in enumerate(words)}
    _dump_pickle(vec, d / "vocab.p5.pkl")
    joblib.dump(vec, d / "vocab.joblib")
    trusted = _skops_dump(vec, d / "vocab.skops")
    return {"desc": f"CountVectorizer with a {VOCAB_SIZE}-entry vocabulary_", "skops_trusted": trusted}


def build_hgb(d: Path) -> dict[str, Any]:
    """HistGradientBoostingClassifier with three categorical features."""
    import joblib
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(2)
    n = 20_000
    num = rng.normal(size=(n, 6))
    cats = np.stack([rng.integers(0, k, size=n) for k in (5, 20, 60)], axis=1).astype(float)
    x = np.hstack([num, cats])
    y = ((num[:, 0] + (cats[:, 1] % 3 == 0) + rng.normal(size=n)) > 0.5).astype(np.int64)
    model = HistGradientBoostingClassifier(max_iter=200, categorical_features=[6, 7, 8], early_stopping=False,
                                           random_state=0).fit(x, y)
    joblib.dump(model, d / "hgb.joblib")
    _dump_pickle(model, d / "hgb.p5.pkl")
    trusted = _skops_dump(model, d / "hgb.skops")
    return {"desc": "HistGradientBoostingClassifier(max_iter=200), 3 categorical features", "skops_trusted": trusted}


def _zoo_module() -> Any | None:
    """tests/zoo.py (the benign model zoo) if it exists and has the builder API."""
    path = ROOT / "tests" / "zoo.py"
    if not path.exists():
        return None
    sys.path.insert(0, str(path.parent))
    try:
        import zoo
    except Exception as exc:  # noqa: BLE001 - fall back to the local builder
        log(f"tests/zoo.py not usable ({short(exc)}); using the built-in zoo")
        return None
    finally:
        sys.path.remove(str(path.parent))
    return zoo if hasattr(zoo, "artifact_names") and hasattr(zoo, "build_spec") else None


def _fallback_zoo() -> Iterator[tuple[str, Any]]:
    """200 small models: 20 estimator types x 10 seeds."""
    import numpy as np
    from sklearn import (
        cluster,
        decomposition,
        ensemble,
        linear_model,
        naive_bayes,
        neighbors,
        neural_network,
        pipeline,
        preprocessing,
        svm,
        tree,
    )

    makers: list[tuple[str, Callable[[int], Any], bool]] = [
        ("LogisticRegression", lambda s: linear_model.LogisticRegression(random_state=s), True),
        ("RidgeClassifier", lambda s: linear_model.RidgeClassifier(), True),
        ("SGDClassifier", lambda s: linear_model.SGDClassifier(random_state=s), True),
        ("Perceptron", lambda s: linear_model.Perceptron(random_state=s), True),
        ("LinearSVC", lambda s: svm.LinearSVC(random_state=s), True),
        ("SVC", lambda s: svm.SVC(random_state=s), True),
        ("KNeighborsClassifier", lambda s: neighbors.KNeighborsClassifier(), True),
        ("DecisionTreeClassifier", lambda s: tree.DecisionTreeClassifier(random_state=s), True),
        ("RandomForestClassifier", lambda s: ensemble.RandomForestClassifier(10, random_state=s), True),
        ("ExtraTreesClassifier", lambda s: ensemble.ExtraTreesClassifier(10, random_state=s), True),
        ("GradientBoostingClassifier", lambda s: ensemble.GradientBoostingClassifier(
            n_estimators=10, random_state=s), True),
        ("HistGradientBoostingClassifier", lambda s: ensemble.HistGradientBoostingClassifier(
            max_iter=10, random_state=s), True),
        ("AdaBoostClassifier", lambda s: ensemble.AdaBoostClassifier(n_estimators=10, random_state=s), True),
        ("GaussianNB", lambda s: naive_bayes.GaussianNB(), True),
        ("MLPClassifier", lambda s: neural_network.MLPClassifier((16,), max_iter=50, random_state=s), True),
        ("ScalerLogReg", lambda s: pipeline.make_pipeline(preprocessing.StandardScaler(),
                                                          linear_model.LogisticRegression(random_state=s)), True),
        ("Ridge", lambda s: linear_model.Ridge(alpha=1.0 + s), False),
        ("Lasso", lambda s: linear_model.Lasso(alpha=0.01 * (s + 1)), False),
        ("PCA", lambda s: decomposition.PCA(3, random_state=s), False),
        ("KMeans", lambda s: cluster.KMeans(3, n_init=1, random_state=s), False),
    ]
    for seed in range(ZOO_COUNT // len(makers)):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(200, 6))
        y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
        for name, make, classifier in makers:
            yield f"{name}_seed{seed}", make(seed).fit(x, y if classifier else x[:, 1])


def build_zoo(d: Path) -> dict[str, Any]:
    """200 small fitted models saved with joblib (from tests/zoo.py when available), and as pickle protocol 4."""
    import joblib

    folder, folder_p4 = d / "zoo200", d / "zoo200-p4"
    for f in (folder, folder_p4):
        shutil.rmtree(f, ignore_errors=True)
        f.mkdir()

    def save(obj: Any, stem: str) -> None:
        plain = pickle.dumps(obj, protocol=4)  # a plain pickle that fickling can parse (no BYTEARRAY8)
        try:
            joblib.dump(obj, folder / f"{stem}.joblib")
        except BaseException:
            (folder / f"{stem}.joblib").unlink(missing_ok=True)
            raise
        (folder_p4 / f"{stem}.pkl").write_bytes(plain)

    zoo = _zoo_module()
    count, source, failed = 0, "tests/zoo.py", []
    with quiet():
        if zoo is not None:
            for name in zoo.artifact_names():
                if count == ZOO_COUNT:
                    break
                try:
                    save(zoo.build_spec(name).obj, f"{count:03d}_{name}")
                except Exception as exc:  # noqa: BLE001 - skip the artifact, take the next one
                    failed.append(f"{name}: {short(exc, 80)}")
                    continue
                count += 1
        if count < ZOO_COUNT:
            source = "built-in list (20 types x 10 seeds)" if zoo is None else source + " + built-in list"
            for name, obj in _fallback_zoo():
                if count == ZOO_COUNT:
                    break
                save(obj, f"{count:03d}_{name}")
                count += 1
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {"desc": f"{count} small models saved with joblib (source: {source}), {size / MB:.1f} MB in all; "
                    "the same as pickle protocol 4 in zoo200-p4/",
            "failed": failed}


BUILDERS: dict[str, tuple[Callable[[Path], dict[str, Any]], list[str]]] = {
    "forest": (build_forest, ["forest.joblib", "forest.zlib3.joblib", "forest.p5.pkl"]),
    "vocab": (build_vocab, ["vocab.p5.pkl", "vocab.joblib", "vocab.skops"]),
    "hgb": (build_hgb, ["hgb.joblib", "hgb.p5.pkl", "hgb.skops"]),
    "zoo": (build_zoo, ["zoo200", "zoo200-p4"]),
}


# --------------------------------------------------------------------------------------------------
# Issue 16: many common model shapes (each group selectable with --only; --quick builds smaller ones)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Sizes of the issue-16 shapes: full, or small enough for --quick."""

    name: str
    sweep: tuple[int, ...]  # tree counts of the forest sweep
    sweep_samples: int  # training samples per forest (~0.3 nodes per sample per tree on noisy labels)
    hgb_iter: int
    knn_rows: int
    pipe_steps: int
    tfidf_terms: int
    vocab_terms: int
    mid_trees: int  # the forest used for the compressed, protocol and skops files


FULL = Scale("full", (10, 100, 300, 1000), 4000, 100, 400_000, 300, 1_000_000, 500_000, 100)
QUICK = Scale("quick", (10, 30, 100), 2000, 30, 50_000, 60, 100_000, 50_000, 30)
SHAPE_GROUPS = ("forest-sweep", "hgb", "knn", "pipeline", "tfidf", "compressed", "protocols", "skops")
GROUPS = ("base", *SHAPE_GROUPS)
COMPRESSORS = ("zlib", "gzip", "lz4", "xz")
PROTOCOLS = (2, 3, 4, 5)


def _sweep_forest(sc: Scale, trees: int) -> Any:
    """A RandomForestClassifier of ``trees`` fully grown trees on noisy labels (fixed seed)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(16)
    x = rng.normal(size=(sc.sweep_samples, FOREST_FEATURES)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=sc.sweep_samples) > 0).astype(np.int64)
    model = RandomForestClassifier(n_estimators=trees, n_jobs=2, random_state=0).fit(x, y)
    model.n_jobs = None
    return model


def _hgb3(sc: Scale) -> Any:
    """HistGradientBoostingClassifier with 3 classes: 3 predictors per iteration."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(17)
    x = rng.normal(size=(20_000, 10))
    y = np.digitize(x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=20_000), [-0.5, 0.5])
    return HistGradientBoostingClassifier(max_iter=sc.hgb_iter, max_leaf_nodes=31, early_stopping=False,
                                          random_state=0).fit(x, y)


def _vocab_model(sc: Scale) -> Any:
    from sklearn.feature_extraction.text import CountVectorizer

    words = _words(sc.vocab_terms, seed=3)
    vec = CountVectorizer().fit([" ".join(words[i: i + 50]) for i in range(0, 2000, 50)])
    vec.vocabulary_ = {w: i for i, w in enumerate(words)}
    return vec


def shape_builder(group: str, sc: Scale) -> tuple[Callable[[Path], dict[str, Any]], list[str]]:
    """(builder, files) of one issue-16 group at scale ``sc``; file names carry the group."""
    import joblib

    if group == "forest-sweep":
        files = [f"sweep-{n}.joblib" for n in sc.sweep]

        def build(d: Path) -> dict[str, Any]:
            big = _sweep_forest(sc, max(sc.sweep))
            trees = {}
            for n in sc.sweep:  # nested prefixes of one forest: same tree sizes at every count
                est = list(big.estimators_)
                big.estimators_, big.n_estimators = est[:n], n
                joblib.dump(big, d / f"sweep-{n}.joblib")
                trees[str(n)] = sum(e.tree_.node_count for e in est[:n])
                big.estimators_, big.n_estimators = est, len(est)
            return {"desc": f"RandomForestClassifier on {sc.sweep_samples}x{FOREST_FEATURES}", "nodes": trees}
        return build, files
    if group == "hgb":
        def build(d: Path) -> dict[str, Any]:
            joblib.dump(_hgb3(sc), d / "hgb3.joblib")
            return {"desc": f"HistGradientBoostingClassifier, 3 classes x {sc.hgb_iter} iterations"}
        return build, ["hgb3.joblib"]
    if group == "knn":
        def build(d: Path) -> dict[str, Any]:
            import numpy as np
            from sklearn.neighbors import KNeighborsClassifier

            rng = np.random.default_rng(18)
            x = rng.normal(size=(sc.knn_rows, 10))
            joblib.dump(KNeighborsClassifier().fit(x, (x[:, 0] > 0).astype(int)), d / "knn.joblib")
            return {"desc": f"KNeighborsClassifier, _fit_X {sc.knn_rows}x10 float64 (KD tree)"}
        return build, ["knn.joblib"]
    if group == "pipeline":
        def build(d: Path) -> dict[str, Any]:
            import numpy as np
            from sklearn import linear_model, pipeline, preprocessing

            kinds = (preprocessing.StandardScaler, preprocessing.MinMaxScaler, preprocessing.MaxAbsScaler,
                     preprocessing.RobustScaler)
            steps = [kinds[i % len(kinds)]() for i in range(sc.pipe_steps)]
            rng = np.random.default_rng(19)
            x = rng.normal(size=(300, 6))
            model = pipeline.make_pipeline(*steps, linear_model.LogisticRegression()).fit(x, x[:, 0] > 0)
            joblib.dump(model, d / "pipeline.joblib")
            return {"desc": f"Pipeline of {sc.pipe_steps} small scalers + LogisticRegression"}
        return build, ["pipeline.joblib"]
    if group == "tfidf":
        def build(d: Path) -> dict[str, Any]:
            import numpy as np
            from sklearn.feature_extraction.text import TfidfVectorizer

            words = _words(sc.tfidf_terms, seed=4)
            vec = TfidfVectorizer().fit([" ".join(words[i: i + 50]) for i in range(0, 2000, 50)])
            vec.vocabulary_ = {w: i for i, w in enumerate(words)}
            vec._tfidf.idf_ = np.random.default_rng(20).uniform(1.0, 12.0, size=len(words))
            joblib.dump(vec, d / "tfidf.joblib")
            return {"desc": f"TfidfVectorizer, {sc.tfidf_terms}-term vocabulary_ and idf_"}
        return build, ["tfidf.joblib"]
    if group == "compressed":
        files = [f"forest{sc.mid_trees}.{c}.joblib" for c in COMPRESSORS]

        def build(d: Path) -> dict[str, Any]:
            model = _sweep_forest(sc, sc.mid_trees)
            for c, f in zip(COMPRESSORS, files, strict=True):
                joblib.dump(model, d / f, compress=(c, 3))
            return {"desc": f"RandomForestClassifier({sc.mid_trees}) on {sc.sweep_samples}x{FOREST_FEATURES}, "
                            "joblib compress=(name, 3)"}
        return build, files
    if group == "protocols":
        files = [f"{m}.p{k}.pkl" for m in ("vocab", f"forest{sc.mid_trees}", "hgb3") for k in PROTOCOLS]

        def build(d: Path) -> dict[str, Any]:
            models = {"vocab": _vocab_model(sc), f"forest{sc.mid_trees}": _sweep_forest(sc, sc.mid_trees),
                      "hgb3": _hgb3(sc)}
            for m, obj in models.items():
                for k in PROTOCOLS:
                    with open(d / f"{m}.p{k}.pkl", "wb") as f:
                        pickle.dump(obj, f, protocol=k)
            return {"desc": f"CountVectorizer ({sc.vocab_terms} terms), RandomForestClassifier({sc.mid_trees}), "
                            f"HGB 3 classes x {sc.hgb_iter}: pickle protocols 2-5"}
        return build, files
    if group == "skops":
        files = ["hgb3.skops", f"forest{sc.mid_trees}.skops"]

        def build(d: Path) -> dict[str, Any]:
            trusted = {"hgb3.skops": _skops_dump(_hgb3(sc), d / "hgb3.skops"),
                       files[1]: _skops_dump(_sweep_forest(sc, sc.mid_trees), d / files[1])}
            return {"desc": "skops.io.dump of HGB (3 classes) and a forest", "skops_trusted_by_file": trusted}
        return build, files
    raise ValueError(group)


def shape_inputs(d: Path, groups: Sequence[str], sc: Scale, rebuild: bool) -> list[tuple[str, Input]]:
    """Build (or reuse) the issue-16 files of ``groups`` under ``d/shapes-<scale>``; (group, Input) pairs."""
    folder = d / f"shapes-{sc.name}"
    builders = {g: shape_builder(g, sc) for g in groups}
    manifest = ensure_inputs(folder, rebuild, builders)
    out = []
    for g in groups:
        info = manifest[g]
        for name in builders[g][1]:
            p = folder / name
            kind = ("skops" if name.endswith(".skops") else "pickle" if name.endswith(".pkl")
                    else "joblib" if name.count(".") == 1 else "joblib-" + name.split(".")[-2])
            trusted = list(info.get("skops_trusted_by_file", {}).get(name, []))
            out.append((g, Input(name, p, kind, info["desc"], p.stat().st_size, trusted)))
    return out


def time_shape(inp: Input, rounds: int, budget: float, scan: bool = True) -> dict[str, Any]:
    """baseline / safeload.load / safeload.scan on one issue-16 file (no peers).

    Each contender stops when one more round would take it past ``budget`` seconds (the 1M-term
    TfidfVectorizer takes joblib.load seconds per call), so slow files get fewer rounds; ratios pair
    the rounds both ran.
    """
    import joblib

    import safeload

    p = str(inp.path)
    if inp.kind.startswith("joblib"):
        base = Contender("joblib.load", lambda: joblib.load(p), loader=True)
    elif inp.kind == "pickle":
        def pickle_load() -> Any:
            with open(p, "rb") as f:
                return pickle.load(f)
        base = Contender("pickle.load", pickle_load, loader=True)
    else:
        import skops.io

        trusted = list(inp.skops_trusted)
        base = Contender("skops.io.load(trusted)", lambda: skops.io.load(p, trusted=trusted), loader=True)
    base.core = False
    cons = [base, Contender("safeload.load", lambda: safeload.load(p), loader=True, core=False)]
    if scan:
        cons.append(Contender("safeload.scan", lambda: safeload.scan(p), tool="safeload.scan", core=False))
    _read(inp.path)  # page cache
    for c in cons[:2]:  # untimed warm-up: the first load of a model type imports its modules
        with contextlib.suppress(Exception), quiet(), contextlib.redirect_stdout(io.StringIO()):
            c.fn()
    results = time_interleaved(cons, rounds, budget)
    rows = []
    for r in results:
        ok = r.ok and results[0].ok
        rows.append({"name": r.name, "wall": r.wall, "cpu": r.cpu, "rounds": r.rounds_run, "stats": r.stats(),
                     "ratio": paired_ratio(r, results[0]) if ok else None,
                     "ratios": paired_ratios(r, results[0]) if ok else [],
                     "cpu_ratio": paired_ratio(r, results[0], "cpu") if ok else None,
                     "outcome": r.outcome, "verdict": r.verdict, "stopped": r.stopped, "core": False})
    return {"file": inp.key, "kind": inp.kind, "size": inp.size, "model": inp.model, "contenders": rows}


def _row(t: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in t["contenders"] if c["name"] == name and c["ratio"] is not None), None)


def shape_targets(shapes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 16's goals, one line per (goal, file): median ratio and the min/max of the per-round ratios."""
    out = []

    def add(label: str, t: dict[str, Any], who: str, limit: float) -> None:
        row = _row(t, who)
        value = None if row is None else row["ratio"]
        spread = [min(row["ratios"]), max(row["ratios"])] if row and row["ratios"] else None
        status = "n/a" if value is None else "met" if value <= limit else "missed"
        out.append({"label": f"{label}, {t['file']}", "file": t["file"], "contender": who, "value": value,
                    "spread": spread, "limit": limit, "status": status})

    for t in shapes:
        g, kind = t["group"], t["kind"]
        if kind == "joblib":
            add("load / joblib.load (raw)", t, "safeload.load", 0.7)
            add("scan / joblib.load (raw)", t, "safeload.scan", 0.3)
            if g == "hgb":
                add("HGB load / joblib.load", t, "safeload.load", 1.2)
        elif kind.startswith("joblib-"):
            add(f"load / joblib.load ({kind[7:]})", t, "safeload.load", 1.0)
        elif kind == "pickle":
            add("load / pickle.load", t, "safeload.load", 1.1)
        elif kind == "skops":
            add("load / skops.io.load", t, "safeload.load", 1.5)
    return out


def sweep_lines(shapes: list[dict[str, Any]], nodes: dict[str, int]) -> list[str]:
    """Cost per tree of joblib.load and safeload.load over the forest sweep, and the slope between sizes."""
    rows = []
    for t in shapes:
        if t["group"] != "forest-sweep":
            continue
        n = int(t["file"].split("-")[1].split(".")[0])
        med = {c["name"]: c["stats"].get("median") for c in t["contenders"]}
        rows.append((n, med.get("joblib.load"), med.get("safeload.load"), med.get("safeload.scan")))
    rows.sort()
    if not rows:
        return []
    lines = ["forest sweep: ms per tree (median time / trees); slope = extra ms per extra tree from the previous "
             "size"]
    prev = None
    for n, j, s, sc_ in rows:
        if j is None or s is None:
            lines.append(f"  {n:>5} trees: failed")
            continue
        slope = ""
        if prev is not None and n > prev[0]:
            slope = (f"   slope joblib {1000 * (j - prev[1]) / (n - prev[0]):.2f}  "
                     f"load {1000 * (s - prev[2]) / (n - prev[0]):.2f}")
        lines.append(f"  {n:>5} trees ({nodes.get(str(n), 0):>8} nodes): joblib.load {1000 * j / n:6.2f}  "
                     f"safeload.load {1000 * s / n:6.2f}  scan {1000 * (sc_ or 0) / n:6.2f}  "
                     f"load/joblib {s / j:.2f}x{slope}")
        prev = (n, j, s)
    return lines


def render_shapes(report: dict[str, Any]) -> list[str]:
    """The issue-16 part of the table."""
    shapes = report.get("shapes", [])
    if not shapes:
        return []
    lines = [f"issue 16 shapes ({report['config']['scale']} scale), {report['config']['rounds']} interleaved rounds; "
             "ratio = median of per-round ratios [min-max]", ""]
    hdr = f"  {'contender':<24}{'median':>9}{'min':>9}{'max':>9}{'ratio':>8}{'spread':>14}{'cpu':>8}{'n':>3}  outcome"
    for t in shapes:
        lines.append(f"{t['file']}  [{t['kind']}, {t['size'] / MB:.1f} MB]  {t['model']}")
        lines.append(hdr)
        for c in t["contenders"]:
            s = c["stats"]
            spread = f"[{min(c['ratios']):.2f}-{max(c['ratios']):.2f}]" if c["ratios"] else "-"
            lines.append(f"  {c['name']:<24}{fmt_s(s.get('median')):>9}{fmt_s(s.get('min')):>9}"
                         f"{fmt_s(s.get('max')):>9}{fmt_r(c['ratio']):>8}{spread:>14}{fmt_r(c['cpu_ratio']):>8}"
                         f"{len(c['wall']):>3}  {c['outcome'][:80]}")
        lines.append("")
    lines += sweep_lines(shapes, report.get("sweep_nodes", {}))
    lines += ["", "issue 16 targets (median ratio, [min-max] of the per-round ratios):"]
    for t in report.get("shape_targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.2f}x"
        spread = f" [{t['spread'][0]:.2f}-{t['spread'][1]:.2f}]" if t["spread"] else ""
        lines.append(f"  [{t['status']}] {t['label']}: {value}{spread} (limit {t['limit']:.2f}x)")
    lines.append("")
    return lines


def ensure_inputs(d: Path, rebuild: bool = False,
                  builders: dict[str, tuple[Callable[[Path], dict[str, Any]], list[str]]] | None = None,
                  ) -> dict[str, Any]:
    """Build every missing or stale input group into ``d``; return the manifest."""
    d.mkdir(parents=True, exist_ok=True)
    manifest_path = d / "inputs.json"
    manifest: dict[str, Any] = {}
    if manifest_path.exists() and not rebuild:
        with contextlib.suppress(ValueError):
            manifest = json.loads(manifest_path.read_text())
    zoo_src = ROOT / "tests" / "zoo.py"
    zoo_hash = hashlib.sha256(zoo_src.read_bytes()).hexdigest()[:12] if zoo_src.exists() else "none"
    for group, (builder, files) in (BUILDERS if builders is None else builders).items():
        key = _cache_key(zoo_hash if group == "zoo" else "")
        entry = manifest.get(group, {})
        if entry.get("key") == key and all((d / f).exists() for f in files):
            continue
        log(f"building inputs: {group} ...")
        start = time.perf_counter()
        info = builder(d)
        info.update(key=key, seconds=round(time.perf_counter() - start, 1), files=files)
        manifest[group] = info
        manifest_path.write_text(json.dumps(manifest, indent=1))
        log(f"built {group} in {info['seconds']} s")
    return manifest


def inputs_from(d: Path, manifest: dict[str, Any]) -> list[Input]:
    """The benchmark files, in table order."""
    spec = [
        ("forest.joblib", "joblib", "forest"), ("forest.zlib3.joblib", "joblib-zlib", "forest"),
        ("forest.p5.pkl", "pickle", "forest"), ("vocab.joblib", "joblib", "vocab"),
        ("vocab.p5.pkl", "pickle", "vocab"), ("vocab.skops", "skops", "vocab"),
        ("hgb.joblib", "joblib", "hgb"), ("hgb.p5.pkl", "pickle", "hgb"), ("hgb.skops", "skops", "hgb"),
    ]
    out = []
    for name, kind, group in spec:
        p = d / name
        out.append(Input(name, p, kind, manifest[group]["desc"], p.stat().st_size,
                         list(manifest[group].get("skops_trusted", [])) if kind == "skops" else []))
    return out


# --------------------------------------------------------------------------------------------------
# Contenders and verdicts
# --------------------------------------------------------------------------------------------------


def verdict_safeload(report: Any) -> tuple[str, str]:
    """(safe|unsafe|error, detail) from a ScanReport."""
    bucket = {"safe": "safe", "unsafe": "unsafe"}.get(report.verdict, "error")
    detail = report.verdict
    if report.findings:
        detail += ": " + "; ".join(f"{f.rule} {','.join(f.names)}".strip() for f in report.findings[:3])
    return bucket, detail[:300]


def verdict_picklescan(result: Any) -> tuple[str, str]:
    """(safe|unsafe|error, detail) from a picklescan ScanResult (dangerous globals are its issues)."""
    dangerous = sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety.value == "dangerous"})
    suspicious = getattr(result, "suspicious_count", 0)
    detail = f"issues={result.issues_count} suspicious={suspicious} scan_err={result.scan_err}"
    if dangerous:
        detail += " dangerous=" + ",".join(dangerous[:5])
    if result.issues_count > 0:
        return "unsafe", detail
    if result.scan_err:
        return "error", detail
    return "safe", detail


def verdict_fickling(results: Any) -> tuple[str, str]:
    """(safe|unsafe, detail) from fickling's AnalysisResults: anything above LIKELY_SAFE is unsafe."""
    sev = results.severity
    detail = sev.name
    msgs = [str(r) for r in results.results if r.severity.name != "LIKELY_SAFE"]
    if msgs:
        detail += ": " + msgs[0][:200]
    return ("safe" if sev.name == "LIKELY_SAFE" else "unsafe"), detail


def verdict_skops(untrusted: Sequence[str]) -> tuple[str, str]:
    """skops.io.load's default: a file with no untrusted types loads without ``trusted=``."""
    if untrusted:
        return "unsafe", "untrusted types: " + ",".join(untrusted[:5])
    return "safe", "no untrusted types"


def _read(path: Path | str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def tool_call(tool: str, path: str) -> Any:
    """Run one scanner on ``path`` and return its raw result."""
    if tool == "safeload.scan":
        import safeload

        return safeload.scan(path)
    if tool == "picklescan":
        from picklescan.scanner import scan_file_path

        return scan_file_path(path)
    if tool == "fickling":
        from fickling.analysis import check_safety
        from fickling.fickle import Pickled

        return check_safety(Pickled.load(_read(path)))
    if tool == "skops":
        import skops.io

        return skops.io.get_untrusted_types(file=path)
    raise ValueError(tool)


JUDGES: dict[str, Callable[[Any], tuple[str, str]]] = {
    "safeload.scan": verdict_safeload,
    "picklescan": verdict_picklescan,
    "fickling": verdict_fickling,
    "skops": verdict_skops,
}
TOOLS = tuple(JUDGES)


def _is_zip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


@dataclass
class Contender:
    """One timed callable; ``tool`` names the scanner whose verdict it yields, ``core`` ignores the budget."""

    name: str
    fn: Callable[[], Any]
    tool: str | None = None
    loader: bool = False
    core: bool = True
    requires: tuple[str, str] | None = None  # (contender, verdict): skipped unless it gave that verdict


TARGET_FILES = frozenset({"forest.joblib", "vocab.joblib", "vocab.p5.pkl"})


def contenders_for(inp: Input) -> list[Contender]:
    """Baseline first, then safeload, then the peers that apply to this kind of file.

    Baseline and safeload run every round on the files that carry a target; everything else
    stops at the time budget.
    """
    import joblib

    import safeload

    p = str(inp.path)
    core = inp.key in TARGET_FILES
    out: list[Contender] = []
    if inp.kind.startswith("joblib"):
        out.append(Contender("joblib.load", lambda: joblib.load(p), loader=True, core=core))
    elif inp.kind == "pickle":
        def pickle_load() -> Any:
            with open(p, "rb") as f:
                return pickle.load(f)

        out.append(Contender("pickle.load", pickle_load, loader=True, core=core))
    else:
        import skops.io

        trusted = list(inp.skops_trusted)
        out.append(Contender("skops.io.load(trusted)", lambda: skops.io.load(p, trusted=trusted), loader=True,
                             core=False))
    out.append(Contender("safeload.load", lambda: safeload.load(p), loader=True, core=core))
    out.append(Contender("safeload.scan", lambda: safeload.scan(p), tool="safeload.scan", core=core))
    # What the CLI runs: the same scan plus the report's sha256 (hashed on another thread).
    out.append(Contender("safeload.scan(digest)", lambda: safeload.scan(p, digest=True), tool="safeload.scan",
                         core=core))
    if inp.kind != "skops":
        out.append(Contender("picklescan", lambda: tool_call("picklescan", p), tool="picklescan", core=False))
    if inp.kind == "pickle":
        import fickling
        from fickling.ml import FicklingMLUnpickler

        out.append(Contender("fickling check_safety", lambda: tool_call("fickling", p), tool="fickling", core=False))

        def fickling_load() -> Any:
            with open(p, "rb") as f:
                return fickling.load(f)

        def fickling_ml() -> Any:
            with open(p, "rb") as f:
                return FicklingMLUnpickler(f).load()

        out.append(Contender("fickling.load", fickling_load, loader=True, core=False,
                             requires=("fickling check_safety", "safe")))
        out.append(Contender("fickling ML unpickler", fickling_ml, loader=True, core=False))
    return out


# --------------------------------------------------------------------------------------------------
# Interleaved timing
# --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """Samples and outcome of one contender on one file."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rounds_run: list[int] = field(default_factory=list)
    outcome: str = ""  # "loaded", "refused: ...", "error: ..." or a scanner verdict
    verdict: str | None = None  # safe|unsafe|error for scanners
    stopped: str = ""  # why it ran fewer rounds

    @property
    def ok(self) -> bool:
        """True when the contender produced a real result (loaded, or a safe/unsafe verdict)."""
        return bool(self.wall) and (self.outcome.startswith("loaded") or self.verdict in ("safe", "unsafe"))

    def stats(self) -> dict[str, float]:
        """Median, min, max, quartiles of the wall times."""
        w = sorted(self.wall)
        if not w:
            return {}
        q = statistics.quantiles(w, n=4) if len(w) >= 2 else [w[0], w[0], w[0]]
        return {"median": statistics.median(w), "min": w[0], "max": w[-1], "q1": q[0], "q3": q[2],
                "cpu_median": statistics.median(self.cpu)}


def paired_ratio(a: Result, base: Result, attr: str = "wall") -> float | None:
    """Median over the rounds both ran of a/base (robust to load that drifts between rounds)."""
    bmap = dict(zip(base.rounds_run, getattr(base, attr), strict=True))
    ratios = [v / bmap[r] for r, v in zip(a.rounds_run, getattr(a, attr), strict=True) if bmap.get(r)]
    return statistics.median(ratios) if ratios else None


def paired_ratios(a: Result, base: Result, attr: str = "wall") -> list[float]:
    """Every per-round ratio a/base over the rounds both ran (their min and max are the run-to-run spread)."""
    bmap = dict(zip(base.rounds_run, getattr(base, attr), strict=True))
    return [v / bmap[r] for r, v in zip(a.rounds_run, getattr(a, attr), strict=True) if bmap.get(r)]


def time_interleaved(contenders: list[Contender], rounds: int, budget: float) -> list[Result]:
    """Run every contender once per round, in order, for ``rounds`` rounds.

    A non-core contender stops when one more round would take its total past ``budget`` seconds
    (it always runs at least once).  Any contender stops after it raises; its time-to-failure
    is then its only sample.
    """
    results = [Result(c.name) for c in contenders]
    by_name = {r.name: r for r in results}
    active = [True] * len(contenders)
    for rnd in range(rounds):
        for i, c in enumerate(contenders):
            if not active[i]:
                continue
            res = results[i]
            if c.requires is not None:
                other = by_name[c.requires[0]]
                if other.verdict != c.requires[1]:
                    res.outcome = f"refused (not run: {c.requires[0]} said {other.outcome[:60]})"
                    res.stopped = "skipped"
                    active[i] = False
                    continue
            gc.collect()
            sink = io.StringIO()
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                with quiet(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    value = c.fn()
                failure: BaseException | None = None
            except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
                value, failure = None, exc
            t1, c1 = time.perf_counter(), time.process_time()
            res.wall.append(t1 - t0)
            res.cpu.append(c1 - c0)
            res.rounds_run.append(rnd)
            if failure is not None:
                res.outcome = ("refused: " if c.loader else "error: ") + short(failure)
                res.verdict = "error" if c.tool else None
                res.stopped = "raised"
                active[i] = False
            elif rnd == 0:
                if c.tool:
                    res.verdict, res.outcome = JUDGES[c.tool](value)
                else:
                    res.outcome = "loaded " + type(value).__name__
            del value
            spent = sum(res.wall)
            if active[i] and not c.core and spent + spent / len(res.wall) > budget and rnd < rounds - 1:
                res.stopped = f"budget {budget:.0f}s"
                active[i] = False
    return results


# --------------------------------------------------------------------------------------------------
# Peak memory (fresh child processes)
# --------------------------------------------------------------------------------------------------

PEAK_SCRIPT = r"""
import gc, json, pickle, resource, sys
import joblib, numpy, sklearn.ensemble, sklearn.tree, safeload
loader, path = sys.argv[1], sys.argv[2]
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
gc.collect()
try:  # reset VmHWM (peak RSS of this process image) to the current RSS
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
base_maxrss, base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, status("VmRSS")
if loader == "joblib.load":
    obj = joblib.load(path)
elif loader == "pickle.load":
    with open(path, "rb") as f:
        obj = pickle.load(f)
else:
    obj = safeload.load(path)
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"hwm_kb": status("VmHWM") - base_rss if reset else None, "maxrss_kb": maxrss - base_maxrss,
                  "retained_kb": status("VmRSS") - base_rss, "type": type(obj).__name__}))
"""


def peak_memory(path: Path, baseline: str, repeats: int) -> dict[str, Any]:
    """Peak RSS growth of ``baseline`` vs safeload.load, each in a fresh child, interleaved.

    The peak is VmHWM (reset to the current RSS after the imports) minus the RSS after the imports;
    ``ru_maxrss`` growth is recorded too, but it is blind below the high-water mark that a child
    inherits from its parent at exec, so it is only a fallback.
    """
    samples: dict[str, list[dict[str, Any]]] = {baseline: [], "safeload.load": []}
    errors: list[str] = []
    for _ in range(repeats):
        for loader in samples:
            proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, loader, str(path)], capture_output=True,
                                  text=True, env=child_env(), timeout=600)
            if proc.returncode != 0:
                errors.append(f"{loader}: rc={proc.returncode} {proc.stderr.strip()[-300:]}")
                continue
            samples[loader].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"file": path.name, "baseline": baseline, "repeats": repeats, "errors": errors}
    for loader, s in samples.items():
        use_hwm = all(x["hwm_kb"] is not None for x in s)
        peaks = [(x["hwm_kb"] if use_hwm else x["maxrss_kb"]) / 1024 for x in s]  # MiB
        kept = [x["retained_kb"] / 1024 for x in s]
        out[loader] = {"peak_mb": peaks, "retained_mb": kept, "method": "VmHWM" if use_hwm else "ru_maxrss",
                       "ru_maxrss_growth_mb": [x["maxrss_kb"] / 1024 for x in s],
                       "peak_median_mb": statistics.median(peaks) if peaks else None,
                       "retained_median_mb": statistics.median(kept) if kept else None}
    b, s_ = out[baseline]["peak_median_mb"], out["safeload.load"]["peak_median_mb"]
    out["ratio"] = s_ / b if b and s_ is not None else None
    return out


# --------------------------------------------------------------------------------------------------
# CLI scan of the zoo folder
# --------------------------------------------------------------------------------------------------


def cli_scan(folder: Path, rounds: int, budget: float) -> dict[str, Any]:
    """Wall time of ``python -m safeload scan DIR --jobs N`` for N = 1, 2 (interleaved)."""
    n_files = sum(1 for _ in folder.iterdir())
    out: dict[str, Any] = {"folder": folder.name, "files": n_files, "runs": {}}
    if importlib.util.find_spec("safeload._cli") is None:
        out["skipped"] = "safeload/_cli.py does not exist yet"
        return out
    env = child_env()
    startup = []
    for _ in range(min(rounds, 3)):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import safeload"], env=env, check=False, capture_output=True)
        startup.append(time.perf_counter() - t0)
    out["python_import_safeload_s"] = statistics.median(startup)
    runs: dict[str, dict[str, Any]] = {f"--jobs {j}": {"wall": [], "rc": []} for j in (1, 2)}
    active = dict.fromkeys(runs, True)
    for _ in range(rounds):
        for label, r in runs.items():
            if not active[label]:
                continue
            cmd = [sys.executable, "-m", "safeload", "scan", str(folder), *label.split(), "--format", "json",
                   "--output", os.devnull]
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
            except subprocess.TimeoutExpired:
                r["error"], active[label] = "timeout after 300 s", False
                continue
            r["wall"].append(time.perf_counter() - t0)
            r["rc"].append(proc.returncode)
            err = proc.stderr.strip()
            if proc.returncode not in (0, 1) or "No module named" in err:
                r["error"] = f"rc={proc.returncode}: {err[-300:]}"
                active[label] = False
            elif sum(r["wall"]) > budget:
                active[label] = False
    for r in runs.values():
        if r["wall"] and "error" not in r:
            r.update(median=statistics.median(r["wall"]), min=min(r["wall"]), max=max(r["wall"]))
    if all("error" in r for r in runs.values()):
        out["skipped"] = "; ".join(r["error"] for r in runs.values())
    out["runs"] = runs
    return out


# --------------------------------------------------------------------------------------------------
# Verdicts on benign and malicious sets (scanners only; in child processes, with timeouts)
# --------------------------------------------------------------------------------------------------


def verdict_worker(tool: str) -> int:
    """Child: read paths from stdin, print one JSON verdict per line.  Never loads a file."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (8 * 1024**3, 8 * 1024**3))
    logging.disable(logging.CRITICAL)
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        t0 = time.perf_counter()
        try:
            if tool == "skops" and not _is_zip(path):
                verdict, detail = "n/a", "not a zip"
            else:
                with quiet(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    raw = tool_call(tool, path)
                verdict, detail = JUDGES[tool](raw)
        except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - errors are verdicts
            verdict, detail = "error", short(exc)
        print(json.dumps({"path": path, "verdict": verdict, "detail": detail,
                          "seconds": round(time.perf_counter() - t0, 4)}), flush=True)
    return 0


class _Worker:
    """A verdict_worker child with a per-file timeout."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--verdict-worker", tool],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=child_env())
        assert self.proc.stdout is not None
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def ask(self, path: str, timeout: float) -> dict[str, Any] | None:
        """Verdict for ``path``; None when the worker timed out or died (it is then dead)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(path.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))

    def close(self) -> None:
        """Stop this worker (only this child, by its own handle)."""
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sel.close()


def run_verdicts(paths: Sequence[str], tool: str, timeout: float) -> dict[str, dict[str, Any]]:
    """Verdict of ``tool`` on every path (timeout or crash -> error), restarting the worker as needed."""
    out: dict[str, dict[str, Any]] = {}
    worker: _Worker | None = None
    for p in paths:
        if worker is None:
            worker = _Worker(tool)
        ans = worker.ask(p, timeout)
        if ans is None:
            rc = worker.proc.poll()
            worker.proc.kill()
            worker.close()
            worker = None
            why = f"timeout after {timeout:.0f} s" if rc is None else f"scanner process died (rc={rc})"
            ans = {"path": p, "verdict": "error", "detail": why, "seconds": timeout if rc is None else None}
        out[p] = ans
    if worker is not None:
        worker.close()
    return out


def summarize(verdicts: dict[str, dict[str, Any]], malicious: bool) -> dict[str, Any]:
    """Counts, and the files each tool got wrong (safe on malicious / unsafe on benign)."""
    counts = {"safe": 0, "unsafe": 0, "error": 0, "n/a": 0}
    for v in verdicts.values():
        counts[v["verdict"] if v["verdict"] in counts else "error"] += 1
    wrong = "safe" if malicious else "unsafe"
    return {"counts": counts,
            "wrong": sorted(Path(p).name for p, v in verdicts.items() if v["verdict"] == wrong),
            "errors": sorted(f"{Path(p).name}: {v['detail']}" for p, v in verdicts.items()
                             if v["verdict"] == "error")}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def fmt_s(x: float | None) -> str:
    """Seconds with 3 significant-ish digits."""
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}" if x >= 0.01 else f"{x * 1000:.2f}ms"


def fmt_r(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


@dataclass
class Target:
    """One PASS/FAIL target."""

    label: str
    value: float | None
    limit: float

    @property
    def status(self) -> str:
        """PASS, FAIL or N/A."""
        if self.value is None:
            return "N/A"
        return "PASS" if self.value <= self.limit else "FAIL"


def render(report: dict[str, Any]) -> str:
    """The printed table."""
    m = report["machine"]
    v = m["versions"]
    cfg = report["config"]
    lines = [
        "safeload benchmarks",
        f"machine: {m['platform']} | CPU: {m['cpu']} | cores: {m['cores']} (usable {m['cores_usable']}) | "
        f"RAM {m['memory_gb']} GB | load avg at start {m['loadavg_start'][0]:.2f}, "
        f"at end {m.get('loadavg_end', [0])[0]:.2f}",
        f"versions: Python {v['python']} | numpy {v['numpy']} | scikit-learn {v['sklearn']} | joblib {v['joblib']} "
        f"| scipy {v['scipy']} | skops {v['skops']} | fickling {v['fickling']} | picklescan {v['picklescan']} "
        f"| safeload {v['safeload']} ({m['safeload_commit']}) | walker runs: {m.get('walker_runs', '?')}",
        f"rounds: {cfg['rounds']} interleaved (peers capped at ~{cfg['budget']:.0f} s per file); wall seconds: median "
        "[min-max]; ratio = median of per-round ratios to the first row (baseline); cpu = same on process CPU time",
        "",
    ]
    lines += render_shapes(report)
    if "peak_memory" not in report:  # a run without the base group
        lines.append(f"total run time {report['elapsed_seconds']:.0f} s (input build {report['build_seconds']:.0f} s)")
        return "\n".join(lines)
    hdr = f"  {'contender':<24}{'median':>9}{'min':>9}{'max':>9}{'ratio':>8}{'cpu':>8}{'n':>3}  outcome"
    for t in report["timings"]:
        lines.append(f"{t['file']}  [{t['kind']}, {t['size'] / MB:.1f} MB]  {t['model']}")
        lines.append(hdr)
        for c in t["contenders"]:
            s = c["stats"]
            out = c["outcome"] + (f" (stopped: {c['stopped']})" if c["stopped"] and c["stopped"] != "raised" else "")
            lines.append(f"  {c['name']:<24}{fmt_s(s.get('median')):>9}{fmt_s(s.get('min')):>9}"
                         f"{fmt_s(s.get('max')):>9}{fmt_r(c['ratio']):>8}{fmt_r(c['cpu_ratio']):>8}"
                         f"{len(c['wall']):>3}  {out[:90]}")
        lines.append("")
    for pm in report["peak_memory"]:
        lines.append(f"peak memory of one load, fresh process x{pm['repeats']}, {pm['file']} "
                     f"(VmHWM after load - RSS after imports; retained = RSS growth):")
        for loader in (pm["baseline"], "safeload.load"):
            d = pm[loader]
            lines.append(f"  {loader:<24} peak +{d['peak_median_mb'] or 0:.0f} MiB "
                         f"{[round(x) for x in d['peak_mb']]}  retained +{d['retained_median_mb'] or 0:.0f} MiB"
                         + ("" if d["method"] == "VmHWM" else " (ru_maxrss fallback)"))
        lines.append(f"  ratio {fmt_r(pm['ratio'])}" + (f"  errors: {pm['errors']}" if pm["errors"] else ""))
    lines.append("")
    cli = report["cli"]
    lines.append(f"CLI: python -m safeload scan {cli['folder']} ({cli['files']} files) --format json:")
    if cli.get("skipped"):
        lines.append(f"  skipped: {cli['skipped'][:300]}")
    else:
        lines.append(f"  python -c 'import safeload' alone: {fmt_s(cli.get('python_import_safeload_s'))} s")
        for label, r in cli["runs"].items():
            if "error" in r:
                lines.append(f"  {label}: error: {r['error'][:200]}")
            else:
                lines.append(f"  {label}: median {fmt_s(r.get('median'))} s [{fmt_s(r.get('min'))}-"
                             f"{fmt_s(r.get('max'))}] n={len(r['wall'])} exit codes {sorted(set(r['rc']))}")
    lines.append("")
    lines.append("verdicts (safe / unsafe / error / n/a); wrong = said safe on malicious, unsafe on benign:")
    for set_name, per_tool in report["verdicts"].items():
        for tool, s in per_tool.items():
            c = s["counts"]
            wrong = s["wrong"]
            shown = ", ".join(wrong[:12]) + (f" +{len(wrong) - 12} more" if len(wrong) > 12 else "")
            lines.append(f"  {set_name:<14}{tool:<15}{c['safe']:>4} /{c['unsafe']:>4} /{c['error']:>4} /{c['n/a']:>4}"
                         f"  wrong {len(wrong)}" + (f": {shown}" if wrong else ""))
    lines.append("")
    lines.append("targets:")
    for t in report["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.2f}x"
        lines.append(f"  [{t['status']}] {t['label']}: {value} (limit {t['limit']:.2f}x)")
    lines.append("")
    lines.append(f"total run time {report['elapsed_seconds']:.0f} s (input build {report['build_seconds']:.0f} s)")
    return "\n".join(lines)


def _ratio(timings: list[dict[str, Any]], file: str, name: str) -> float | None:
    for t in timings:
        if t["file"] == file:
            for c in t["contenders"]:
                if c["name"] == name and c["outcome"].startswith(("loaded", "safe", "unsafe")):
                    return float(c["ratio"]) if c["ratio"] is not None else None
    return None


def targets(timings: list[dict[str, Any]], pm: dict[str, Any]) -> list[Target]:
    """The issue's acceptance targets."""
    return [
        Target("safeload.load vs joblib.load, forest.joblib", _ratio(timings, "forest.joblib", "safeload.load"), 1.15),
        Target("safeload.load vs joblib.load, vocab.joblib", _ratio(timings, "vocab.joblib", "safeload.load"), 1.15),
        Target("safeload.load vs pickle.load, vocab.p5.pkl", _ratio(timings, "vocab.p5.pkl", "safeload.load"), 1.5),
        Target("safeload.scan vs joblib.load, forest.joblib", _ratio(timings, "forest.joblib", "safeload.scan"), 0.5),
        Target("safeload.scan vs pickle.load, vocab.p5.pkl", _ratio(timings, "vocab.p5.pkl", "safeload.scan"), 3.0),
        Target("peak memory safeload.load vs joblib.load, forest.joblib", pm.get("ratio"), 1.2),
    ]


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7, --quick 3)")
    ap.add_argument("--quick", action="store_true",
                    help="3 rounds, the issue-16 shapes at small sizes, no base group unless --only names it "
                         "(< 3 min once the inputs are built)")
    ap.add_argument("--only", default=None,
                    help=f"comma-separated groups to run: {', '.join(GROUPS)} (default: all; with --quick: "
                         "every group but base)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="input cache folder (default %(default)s)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild every input")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds per peer and file after which it stops (default 30, --quick 15)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-file timeout of a verdict scanner (s)")
    ap.add_argument("--memory-all", action="store_true",
                    help="also measure peak memory on forest.zlib3.joblib and forest.p5.pkl (+75 s)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    ap.add_argument("--verdict-worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build inputs, time, measure, judge, print and write the report."""
    args = parse_args(argv)
    if args.verdict_worker:
        return verdict_worker(args.verdict_worker)
    logging.disable(logging.CRITICAL)
    rounds = args.rounds or (3 if args.quick else 7)
    budget = args.budget or (15.0 if args.quick else 30.0)
    groups = GROUPS if args.only is None and not args.quick else SHAPE_GROUPS if args.only is None else tuple(
        g.strip() for g in args.only.split(",") if g.strip())
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        print(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    scale = QUICK if args.quick else FULL
    start = time.perf_counter()
    info = machine()
    if not info["walker_runs"].startswith("compiled"):
        log("WARNING: safeload._speedups is not built, so the walker uses its pure-Python run matcher and the "
            "vocabulary pickle load will miss its target; run `pip install -e .` (needs a C compiler) first")
    shape_files = shape_inputs(args.data, [g for g in SHAPE_GROUPS if g in groups], scale, args.rebuild)
    manifest = ensure_inputs(args.data, args.rebuild) if "base" in groups else {}
    build_seconds = time.perf_counter() - start
    peak: list[dict[str, Any]] = []
    if "base" in groups:
        # Fresh children first, while this process is still small (before any shape is timed).
        log("peak memory (fresh processes)")
        mem_files = [("forest.joblib", "joblib.load")]
        if args.memory_all:
            mem_files += [("forest.zlib3.joblib", "joblib.load"), ("forest.p5.pkl", "pickle.load")]
        peak = [peak_memory(args.data / f, b, 3) for f, b in mem_files]

    shapes: list[dict[str, Any]] = []
    for group, inp in shape_files:
        log(f"timing {inp.key} ({inp.size / MB:.1f} MB), {rounds} rounds")
        # --quick times scan only where it has a target (raw joblib files).
        shapes.append(dict(time_shape(inp, rounds, 2 * budget, scan=not args.quick or inp.kind == "joblib"),
                           group=group))
    sweep_nodes: dict[str, int] = {}
    if "forest-sweep" in groups:
        with contextlib.suppress(ValueError, OSError, KeyError):
            folder = args.data / f"shapes-{scale.name}"
            sweep_nodes = json.loads((folder / "inputs.json").read_text())["forest-sweep"]["nodes"]
    shape_report = {"shapes": shapes, "shape_targets": shape_targets(shapes), "sweep_nodes": sweep_nodes}
    if "base" not in groups:
        return _finish(args, info, {"rounds": rounds, "quick": args.quick, "budget": budget, "groups": list(groups),
                                    "scale": scale.name}, shape_report, build_seconds, start)
    files = inputs_from(args.data, manifest)

    pm = peak[0]

    timings: list[dict[str, Any]] = []
    bench_verdicts: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TOOLS}
    for inp in files:
        log(f"timing {inp.key} ({inp.size / MB:.1f} MB), {rounds} rounds")
        _read(inp.path)  # page cache
        cons = contenders_for(inp)
        results = time_interleaved(cons, rounds, budget)
        base = results[0]
        rows = []
        for c, r in zip(cons, results, strict=True):
            rows.append({"name": r.name, "wall": r.wall, "cpu": r.cpu, "rounds": r.rounds_run, "stats": r.stats(),
                         "ratio": paired_ratio(r, base) if r.ok and base.ok else None,
                         "cpu_ratio": paired_ratio(r, base, "cpu") if r.ok and base.ok else None,
                         "outcome": r.outcome, "verdict": r.verdict, "stopped": r.stopped, "core": c.core})
            if c.tool and r.verdict:
                bench_verdicts[c.tool][str(inp.path)] = {"verdict": r.verdict, "detail": r.outcome}
        if inp.kind == "skops":  # computed when the file was built
            verdict, detail = verdict_skops(inp.skops_trusted)
            bench_verdicts["skops"][str(inp.path)] = {"verdict": verdict, "detail": detail}
        timings.append({"file": inp.key, "kind": inp.kind, "size": inp.size, "model": inp.model, "contenders": rows})

    log("CLI scan of the zoo folder")
    zoo_dir = args.data / "zoo200"
    cli = cli_scan(zoo_dir, rounds, budget)

    log("verdicts")
    manifest_m = json.loads((MALICIOUS_DIR / "manifest.json").read_text()) if MALICIOUS_DIR.exists() else []
    mal = [str(MALICIOUS_DIR / e["file"]) for e in manifest_m if (MALICIOUS_DIR / e["file"]).exists()]
    zoo_files = sorted(str(p) for p in zoo_dir.iterdir())
    zoo_p4 = sorted(str(p) for p in (args.data / "zoo200-p4").iterdir())
    verdicts: dict[str, dict[str, Any]] = {"benign-bench": {}, "benign-zoo200": {}, "benign-zoo-p4": {},
                                           "malicious": {}}
    raw_verdicts: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        todo = [str(i.path) for i in files if str(i.path) not in bench_verdicts[tool]]
        bench = dict(bench_verdicts[tool])
        bench.update(run_verdicts(todo, tool, args.timeout))
        zoo_v = run_verdicts(zoo_files, tool, args.timeout)
        p4_v = run_verdicts(zoo_p4, tool, args.timeout) if tool != "skops" else {}
        mal_v = run_verdicts(mal, tool, args.timeout)
        verdicts["benign-bench"][tool] = summarize(bench, malicious=False)
        verdicts["benign-zoo200"][tool] = summarize(zoo_v, malicious=False)
        if p4_v:
            verdicts["benign-zoo-p4"][tool] = summarize(p4_v, malicious=False)
        verdicts["malicious"][tool] = summarize(mal_v, malicious=True)
        raw_verdicts[tool] = {Path(p).name: {k: x for k, x in v.items() if k != "path"}
                              for p, v in {**bench, **zoo_v, **p4_v, **mal_v}.items()}

    info["loadavg_end"] = list(os.getloadavg())
    tg = targets(timings, pm)
    report: dict[str, Any] = {
        "machine": info,
        "config": {"rounds": rounds, "quick": args.quick, "budget": budget, "verdict_timeout": args.timeout,
                   "groups": list(groups), "scale": scale.name},
        **shape_report,
        "inputs": {k: {kk: vv for kk, vv in v.items() if kk != "key"} for k, v in manifest.items()},
        "timings": timings,
        "peak_memory": peak,
        "cli": cli,
        "verdicts": verdicts,
        "verdict_details": raw_verdicts,
        "targets": [dict(dataclasses.asdict(t), status=t.status) for t in tg],
        "build_seconds": build_seconds,
        "elapsed_seconds": time.perf_counter() - start,
    }
    return _write(args, report, failed=any(t.status == "FAIL" for t in tg))


def _finish(args: argparse.Namespace, info: dict[str, Any], config: dict[str, Any], shape_report: dict[str, Any],
            build_seconds: float, start: float) -> int:
    """Report of a run without the base group (issue-16 shapes only)."""
    info["loadavg_end"] = list(os.getloadavg())
    report: dict[str, Any] = {"machine": info, "config": config, **shape_report, "timings": [], "targets": [],
                              "build_seconds": build_seconds, "elapsed_seconds": time.perf_counter() - start}
    return _write(args, report, failed=False)


def _write(args: argparse.Namespace, report: dict[str, Any], failed: bool) -> int:
    """Print the table, write the JSON; exit 1 under --strict when a target failed or was missed."""
    table = render(report)
    report["table"] = table
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(args.out)
    log(f"wrote {args.out}")
    missed = any(t["status"] == "missed" for t in report.get("shape_targets", []))
    return 1 if args.strict and (failed or missed) else 0


if __name__ == "__main__":
    sys.exit(main())
