"""A result cache for store scans: re-scanning unchanged files costs reading and hashing, not judging.

Key: the file's SHA-256, a fingerprint of the policy (every entry's name, kind and guard, and
the limits), the safeload version, a hash of safeload's own source files and whether
``--explain`` was asked.  A changed file, a changed policy or a changed safeload (a new release,
or rules changed under the same version string) is judged again; a cached report is only ever
reused for the very bytes it was made from.  Stored in SQLite under the user cache directory
(``$SAFELOAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/safeload``, else ``~/.cache/safeload``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload._policy import Policy
from safeload._report import Finding, GlobalVerdict, Location, ScanReport

if TYPE_CHECKING:
    import sqlite3

__all__ = ["ResultCache", "default_cache_dir", "file_sha256", "policy_fingerprint"]

_SCHEMA = 1
_CHUNK = 1 << 20


def default_cache_dir() -> str:
    explicit = os.environ.get("SAFELOAD_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "safeload")


@functools.cache
def _code_fingerprint() -> str:
    """The judging code itself: an upgrade that kept the version string (a development install)
    once kept serving the old rules' verdicts from the cache."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".c")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def policy_fingerprint(policy: Policy, explain: bool) -> str:
    from safeload import __version__

    doc = {
        "schema": _SCHEMA,
        "version": __version__,
        "code": _code_fingerprint(),
        "explain": explain,
        "entries": sorted((e.name, e.kind.value, e.guard or "") for e in policy.entries.values()),
        "limits": dataclasses.asdict(policy.limits),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _to_json(report: ScanReport) -> str:
    doc = dataclasses.asdict(report)
    doc.pop("path")
    doc.pop("failed")
    return json.dumps(doc)


def _from_json(path: str, text: str) -> ScanReport:
    doc: dict[str, Any] = json.loads(text)
    findings = tuple(Finding(f["rule"], f["severity"], f["message"], tuple(f["names"]), Location(**f["location"]),
                             f["decompiled"]) for f in doc["findings"])
    globs = tuple(GlobalVerdict(g["name"], g["allowed"], g["kind"], tuple(g["offsets"]), g["member"])
                  for g in doc["globals"])
    return ScanReport(path, doc["format"], doc["verdict"], findings, globs, doc["size"], doc["sha256"])


class ResultCache:
    """SQLite-backed; readers in worker processes, one writer (the parent) at the end of a scan."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or default_cache_dir()
        self.path = os.path.join(self.directory, "results.sqlite")
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        import sqlite3

        if self._conn is None:
            os.makedirs(self.directory, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS results (sha256 TEXT, policy TEXT, report TEXT, "
                         "PRIMARY KEY (sha256, policy))")
            self._conn = conn
        return self._conn

    def get(self, path: str, sha256: str, fingerprint: str) -> ScanReport | None:
        import sqlite3

        try:
            row = self._connect().execute("SELECT report FROM results WHERE sha256 = ? AND policy = ?",
                                          (sha256, fingerprint)).fetchone()
        except sqlite3.Error:
            return None  # a broken cache only costs time
        if row is None:
            return None
        try:
            return _from_json(path, row[0])
        except (ValueError, KeyError, TypeError):
            return None

    def put_many(self, reports: Iterable[ScanReport], fingerprint: str) -> None:
        import sqlite3

        rows = [(r.sha256, fingerprint, _to_json(r)) for r in reports if r.sha256]
        if not rows:
            return
        try:
            conn = self._connect()
            with conn:
                conn.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", rows)
        except sqlite3.Error:
            pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict[str, Any]:  # a connection does not cross fork/pickle
        return {"directory": self.directory, "path": self.path, "_conn": None}
