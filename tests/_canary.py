"""Child-process harness for the malicious sample corpus.

Imported by ``tests/test_malicious.py`` for the helpers, and run as a script
(``python tests/_canary.py SPEC_JSON``) inside the child process that loads a
sample. Loading happens in a child so that code execution, process-wide
corruption, memory exhaustion and segfaults cannot affect the test runner.

The child prints one ``SAFELOAD_RESULT {json}`` line: the exception raised
while loading (name, MRO names, message) and the result of the sample's check
expression. A crash leaves no line and a negative return code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "malicious_samples"
MANIFEST = SAMPLES / "manifest.json"
RESULT_PREFIX = "SAFELOAD_RESULT "
#: Address-space limit for samples whose effect is memory exhaustion.
MEMORY_LIMIT = 1280 << 20
#: Seconds a child may run before it is killed.
CHILD_TIMEOUT = 60.0
#: A 'hang' sample's method must not return within this (its healthy twin takes milliseconds).
HANG_SECONDS = 5
#: Seconds to wait for effects of payloads that spawn asynchronous processes.
EFFECT_GRACE = 5.0


def load_manifest() -> list[dict[str, Any]]:
    """The sample entries written by ``malicious_samples/craft.py``."""
    entries: list[dict[str, Any]] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return entries


@dataclass
class Workspace:
    """Temporary layout a sample is loaded in.

    ``cwd`` is the loader's working directory (file writers land here, sidecar
    pickles are placed here); the sample itself sits in ``cwd/model`` so that
    ``../`` paths inside it resolve to ``cwd``. The canary lives outside ``cwd``.
    """

    root: Path
    cwd: Path
    sample: Path
    canary: Path
    tmpdir: Path

    def env(self) -> dict[str, str]:
        """Environment for a child: canary path, private TMPDIR/HOME, one BLAS thread."""
        env = dict(os.environ)
        env.update(
            SAFELOAD_CANARY=str(self.canary),
            TMPDIR=str(self.tmpdir),
            HOME=str(self.tmpdir),
            PYTHONPATH=str(REPO),
            PYTHONDONTWRITEBYTECODE="1",
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        env.pop("SAFELOAD_PWNED", None)
        return env

    def effect_happened(self, entry: dict[str, Any], wait: bool) -> bool:
        """Whether a file-based effect (canary or written file) is present.

        With ``wait`` the check polls for a few seconds, because some gadgets
        (imaplib, spawnv_passfds) leave a shell running after the child exits.
        """
        effect = entry["effect"]
        if effect["kind"] == "canary":
            target = self.canary
        elif effect["kind"] == "write":
            target = self.cwd / effect["path"]
        else:
            raise ValueError(f"{effect['kind']} is not a file effect")
        deadline = time.monotonic() + (EFFECT_GRACE if wait else 0.0)
        while True:
            if target.exists():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def prepare(entry: dict[str, Any], root: Path) -> Workspace:
    """Copy a sample (and its sidecars) into a fresh workspace under ``root``."""
    cwd = root / "work"
    model_dir = cwd / "model"
    tmpdir = root / "tmp"
    for directory in (model_dir, tmpdir):
        directory.mkdir(parents=True)
    sample = model_dir / entry["file"]
    shutil.copyfile(SAMPLES / entry["file"], sample)
    for sidecar in entry["sidecars"]:
        shutil.copyfile(SAMPLES / sidecar["src"], cwd / sidecar["dest"])
    return Workspace(root, cwd, sample, root / "canary", tmpdir)


@dataclass
class ChildResult:
    """Outcome of loading a sample in a child process."""

    returncode: int
    result: dict[str, Any] | None
    stdout: str
    stderr: str

    def describe(self) -> str:
        """Human-readable summary for assertion messages."""
        return (
            f"returncode={self.returncode} result={self.result}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


def run_child(entry: dict[str, Any], ws: Workspace, mode: str) -> ChildResult:
    """Load ``ws.sample`` in a child with the manifest's loader (``mode='fire'``)
    or with ``safeload.load`` (``mode='safeload'``)."""
    spec = {
        "mode": mode,
        "loader": entry["loader"],
        "path": str(ws.sample),
        "load_kwargs": entry["load_kwargs"],
        "after_load": entry["after_load"],
        "check": entry["effect"].get("check"),
        "memory_limit": MEMORY_LIMIT if entry["effect"]["kind"] == "memory" else None,
        "alarm": HANG_SECONDS if entry["effect"]["kind"] == "hang" else None,
    }
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), json.dumps(spec)],
            check=False,
            cwd=ws.cwd,
            env=ws.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return ChildResult(-9999, None, out, err + "\n[timeout]")
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    return ChildResult(proc.returncode, result, proc.stdout, proc.stderr)


# ---------------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------------


def _load(spec: dict[str, Any]) -> Any:
    """Load the sample the way the manifest says the standard tooling would."""
    path: str = spec["path"]
    kwargs: dict[str, Any] = spec["load_kwargs"]
    if spec["mode"] == "safeload":
        import safeload

        return safeload.load(path, **kwargs)
    loader = spec["loader"]
    if loader == "pickle":
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh)
    if loader == "pickle_stream":
        import pickle

        objs = []
        with open(path, "rb") as fh:
            while True:
                try:
                    objs.append(pickle.load(fh))
                except EOFError:
                    return objs
    if loader == "pickle_persistent":
        import pickle

        class FrameworkUnpickler(pickle.Unpickler):
            """Stands for framework loaders (torch etc.) that resolve persistent ids."""

            def persistent_load(self, pid: Any) -> Any:
                return ("persistent", pid)

        with open(path, "rb") as fh:
            return FrameworkUnpickler(fh).load()
    if loader == "pickle_buffers":
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh, buffers=[bytearray(b"caller-owned memory")])
    if loader == "joblib":
        import joblib

        return joblib.load(path, **kwargs)
    if loader in ("skops", "skops_trust_all"):
        import skops.io

        trusted = None
        if loader == "skops_trust_all":
            trusted = skops.io.get_untrusted_types(file=path)
        return skops.io.load(path, trusted=trusted)
    raise ValueError(f"unknown loader {loader!r}")


def child_main(spec: dict[str, Any]) -> None:
    """Load, run ``after_load`` and ``check``, print the result line."""
    if spec["memory_limit"]:
        import resource

        limit = int(spec["memory_limit"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result: dict[str, Any] = {"exc": None, "exc_mro": [], "message": None, "check": None}
    obj = None
    try:
        # SIGALRM's default action ends the process, also inside C code. A sample that hangs in a
        # method is timed from after the load; one that hangs the loader itself (hashing a tuple
        # DAG), from before it.
        if spec.get("alarm") and not spec["after_load"]:
            signal.alarm(int(spec["alarm"]))
        obj = _load(spec)
        if spec.get("alarm") and spec["after_load"]:
            signal.alarm(int(spec["alarm"]))
        if spec["after_load"]:
            exec(spec["after_load"], {"obj": obj})  # noqa: S102 - trusted manifest code
    except BaseException as exc:  # noqa: BLE001 - report everything, incl. SystemExit
        result["exc"] = type(exc).__name__
        result["exc_mro"] = [cls.__name__ for cls in type(exc).__mro__]
        result["message"] = str(exc)[:4000]
    if spec["check"]:
        try:
            result["check"] = bool(eval(spec["check"], {"path": spec["path"]}))
        except Exception as exc:  # noqa: BLE001 - a failing check means "not observed"
            result["check"] = False
            result["check_error"] = repr(exc)
    del obj
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
