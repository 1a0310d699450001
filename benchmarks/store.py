"""Throughput of ``safeload scan`` on a model store (issue 15), next to picklescan.

Builds (once, cached under ``benchmarks/.data/store-<files>/``) a synthetic store of many
small fitted scikit-learn models in every common container (pickle protocols 2, 4, 5,
joblib raw, joblib zlib) plus a few large forests, then times whole commands in child
processes, interleaved round by round:

* ``safeload scan DIR --no-cache --jobs N`` for each N of ``--jobs``;
* the cached re-scan (a warm result cache in a private directory, filled before round 1);
* ``picklescan -p DIR`` (a denylist: it judges less, and fails on compressed joblib files);
* optionally (``--dask``) ``scan_one`` mapped over ``list_store`` by ``dask.bag`` on a local
  ``distributed`` cluster of processes.

Wall time and the CPU time of the child (and its children: the ``--jobs`` workers) are
measured; the report gives files/s, ms of CPU per file, MB/s per core-second, the
``--jobs`` speed-up against one process, and the run-to-run spread (min-max).

    python benchmarks/store.py                         # 10,000 small + 3 large, 3 rounds, jobs 1,2
    python benchmarks/store.py --files 2000 --rounds 5 --dask
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"
OUT = ROOT / "benchmarks" / "results" / "store.json"

_FORMATS = ("p2", "p4", "p5", "joblib", "zlib")


def _small_model(i: int) -> Any:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(i)
    X = rng.normal(size=(80, 6))
    y = (X[:, 0] + rng.normal(size=80) > 0).astype(int)
    kind = i % 8
    if kind == 0:
        return LogisticRegression().fit(X, y)
    if kind == 1:
        return DecisionTreeClassifier(max_depth=5, random_state=i).fit(X, y)
    if kind == 2:
        return StandardScaler().fit(X)
    if kind == 3:
        return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    if kind == 4:
        return KNeighborsClassifier(n_neighbors=3).fit(X, y)
    if kind == 5:
        return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=i).fit(X, y)
    if kind == 6:
        words = [" ".join(f"w{int(v)}" for v in rng.integers(0, 300, 12)) for _ in range(40)]
        return CountVectorizer().fit(words)
    return GaussianNB().fit(X, y) if i % 16 == 7 else Ridge().fit(X, y)


def _dump(model: Any, path: Path, fmt: str) -> None:
    import joblib

    if fmt.startswith("p"):
        with open(path, "wb") as fh:
            pickle.dump(model, fh, protocol=int(fmt[1:]))
    else:
        joblib.dump(model, path, compress=("zlib", 3) if fmt == "zlib" else 0)


def build_store(files: int, large: int) -> Path:
    """The store (built once per size): ``files`` small models in 100 folders, ``large`` forests."""
    top = DATA / f"store-{files}-{large}"
    marker = top / ".complete"
    if marker.exists():
        return top
    if top.exists():
        shutil.rmtree(top)
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    for i in range(files):
        fmt = _FORMATS[i % len(_FORMATS)]
        folder = top / f"d{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".pkl" if fmt.startswith("p") else ".joblib"
        _dump(_small_model(i), folder / f"m{i:05d}{suffix}", fmt)
        if i and i % 2000 == 0:
            print(f"  built {i} small models ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 8))
    y = (X[:, :3].sum(axis=1) + rng.normal(size=4000) > 0).astype(int)
    for j in range(large):
        forest = RandomForestClassifier(n_estimators=100, random_state=j, n_jobs=1).fit(X, y)
        _dump(forest, top / f"large-forest-{j}.joblib", "joblib" if j % 2 == 0 else "zlib")
    marker.write_text(json.dumps({"files": files, "large": large}))
    print(f"  store built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return top


def _store_size(top: Path) -> tuple[int, int]:
    paths = [p for p in top.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return len(paths), sum(p.stat().st_size for p in paths)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _timed(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child and its children, exit status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1, 2):  # (picklescan exits 2 on "suspicious" globals)
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return wall, cpu, proc.returncode


_DASK = r"""
import sys, time
import dask.bag as db
from distributed import Client, LocalCluster
from safeload._many import list_store, scan_one
with LocalCluster(n_workers=int(sys.argv[2]), threads_per_worker=1, processes=True) as cluster, Client(cluster):
    entries = list(list_store([sys.argv[1]]))
    t0 = time.perf_counter()
    reports = db.from_sequence(entries, npartitions=8 * int(sys.argv[2])).map(scan_one).compute()
    print(time.perf_counter() - t0, len(reports))
"""


def _contenders(top: Path, jobs: Sequence[int], cache_dir: Path, dask: bool) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (command, extra environment)."""
    py = sys.executable
    scan = [py, "-m", "safeload", "scan", str(top), "--format", "json", "--output", os.devnull]
    out: dict[str, tuple[list[str], dict[str, str]]] = {f"safeload --jobs {n} --no-cache": ([*scan, "--jobs", str(n), "--no-cache"], {}) for n in jobs}
    out["safeload cached re-scan (--jobs 1)"] = ([*scan, "--jobs", "1"], {"SAFELOAD_CACHE_DIR": str(cache_dir)})
    picklescan = shutil.which("picklescan")
    if picklescan:
        out["picklescan -p"] = ([picklescan, "-p", str(top)], {})
    if dask:
        for n in jobs:
            out[f"dask LocalCluster {n} workers (map only)"] = ([py, "-c", _DASK, str(top), str(n)], {})
    return out


def _run(name: str, cmd: list[str], env: dict[str, str]) -> tuple[float, float | None, int]:
    if not name.startswith("dask"):
        return _timed(cmd, env)
    # the cluster's start-up is not the scan's cost: the child times the map itself (its CPU is
    # spread over worker processes this process does not wait for, so none is reported)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(proc.stdout.split()[0]), None, 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000, help="small models in the store (default %(default)s)")
    ap.add_argument("--large", type=int, default=3, help="100-tree forests added (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    ap.add_argument("--jobs", default="1,2", help="--jobs values to time (default %(default)s)")
    ap.add_argument("--dask", action="store_true", help="also time dask.bag on a distributed.LocalCluster")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON results (default %(default)s)")
    args = ap.parse_args(argv)
    jobs = [int(j) for j in args.jobs.split(",")]
    top = build_store(args.files, args.large)
    n_files, n_bytes = _store_size(top)
    env = _env()
    samples: dict[str, list[tuple[float, float | None, int]]] = {}
    with tempfile.TemporaryDirectory() as cache:
        contenders = _contenders(top, jobs, Path(cache), args.dask)
        cmd, extra = contenders["safeload cached re-scan (--jobs 1)"]
        _timed(cmd, {**env, **extra})  # fills the cache
        for r in range(args.rounds):
            for name, (cmd, extra) in contenders.items():
                samples.setdefault(name, []).append(_run(name, cmd, {**env, **extra}))
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)
    rows = []
    base = statistics.median(w for w, _, _ in samples[f"safeload --jobs {jobs[0]} --no-cache"])
    for name, runs in samples.items():
        walls = [w for w, _, _ in runs]
        cpus = [c for _, c, _ in runs if c is not None]
        wall, cpu = statistics.median(walls), (statistics.median(cpus) if cpus else None)
        rows.append({
            "command": name, "wall_s": wall, "wall_min": min(walls), "wall_max": max(walls), "cpu_s": cpu,
            "files_per_s": n_files / wall, "cpu_ms_per_file": 1e3 * cpu / n_files if cpu else None,
            "mb_per_core_s": n_bytes / 1e6 / cpu if cpu else None, "speedup_vs_first": base / wall,
            "exit": sorted({e for _, _, e in runs}),
        })
    print(f"store: {n_files} files, {n_bytes / 1e6:.1f} MB ({top}); {args.rounds} rounds; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"| command | wall s (min-max) | files/s | CPU ms/file | MB/s per core | speed-up vs --jobs {jobs[0]} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        mbps = f"{row['mb_per_core_s']:.1f}" if row["mb_per_core_s"] else "-"
        cpu_ms = f"{row['cpu_ms_per_file']:.2f}" if row["cpu_ms_per_file"] else "-"
        print(f"| {row['command']} | {row['wall_s']:.2f} ({row['wall_min']:.2f}-{row['wall_max']:.2f}) | "
              f"{row['files_per_s']:.0f} | {cpu_ms} | {mbps} | {row['speedup_vs_first']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "store": {"path": str(top), "files": n_files, "bytes": n_bytes, "small": args.files, "large": args.large},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
        "rounds": args.rounds, "rows": rows, "samples": samples,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
