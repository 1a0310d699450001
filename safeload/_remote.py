"""Remote stores through fsspec (optional extra ``safeload[remote]``): ``s3://``, ``gs://``, ``https://``, ``hf://``...

A prefix is listed recursively; each file is picked the way a local directory scan picks it
(named like a model, or its first 64 KiB look like one -- a ranged read), then read once into
memory and judged by the same ``scan_bytes`` as a local file.  Large zips are the exception:
a PyTorch checkpoint, TorchScript or Keras archive is judged from its central directory and its
pickles alone, read by ranged requests (``_judge_ranged``), when the store can say whether the
object changed meanwhile (an ETag, version or generation).  Credentials and endpoints come
from the usual places of each backend (for S3: the AWS environment variables and files,
including ``AWS_ENDPOINT_URL`` for S3-compatible servers); safeload passes none of its own.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from safeload._containers import PositionedReader
from safeload._errors import SafeloadError
from safeload._policy import Policy
from safeload._report import Finding, ScanReport, Verdict

__all__ = ["RemoteError", "list_url", "scan_urls"]

_HEAD = 64 * 1024
_RANGED_MIN = 8 * 1024 * 1024  # below this one GET costs less than the three or four ranged ones
_BLOCK = 64 * 1024
# What a store says about an object's version: a ranged judgement needs one of these to notice a swap
# (a modification time alone does not: two writes within its resolution look the same).
_VERSION_KEYS = ("ETag", "etag", "VersionId", "version_id", "generation", "md5Hash", "crc32c", "blob_id")
_ALSO_COMPARED = ("LastModified", "mtime", "last_modified", "size")


class RemoteError(SafeloadError):
    """A remote store could not be listed or read (missing extra, bad URL, no access)."""


def _fs(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise RemoteError(f"{url}: remote stores need fsspec and its backend: pip install 'safeload[remote]'") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise RemoteError(f"{url}: {exc}") from None
    return fs, path


def list_url(url: str) -> list[tuple[str, int]]:
    """(url, size) of every file under ``url`` (or ``url`` itself when it is a file), sorted."""
    fs, path = _fs(url)
    try:
        if fs.isdir(path):
            found = fs.find(path, detail=True)
            protocol = url.split("://", 1)[0]
            return sorted((f"{protocol}://{name}" if "://" not in name else name, int(info.get("size") or 0))
                          for name, info in found.items() if info.get("type", "file") == "file")
        info = fs.info(path)
    except FileNotFoundError:
        raise RemoteError(f"no such remote file or prefix: {url}") from None
    except (OSError, ValueError, PermissionError) as exc:
        raise RemoteError(f"cannot list {url}: {exc}") from None
    return [(url, int(info.get("size") or 0))]


def _read(url: str, start: int | None = None, end: int | None = None) -> bytes:
    fs, path = _fs(url)
    data = fs.cat_file(path, start=start, end=end)
    return bytes(data)


def _wanted(url: str, size: int, policy: Policy) -> bool:
    """Pick a remote file like a local directory scan does: by model name, else by its first bytes."""
    from safeload._archive import inflate_head, is_tar
    from safeload._cli import _plausible, model_named
    from safeload._containers import COMPRESSED, Format, sniff
    from safeload._nocode import recognise

    if model_named(url):
        return True
    if size == 0:
        return False
    head = _read(url, 0, min(size, _HEAD))
    found = recognise(head) if size <= _HEAD else None
    if found is not None:
        return found.verdict != Verdict.NOT_A_MODEL
    if is_tar(head):
        return True
    try:
        fmt = sniff(head)
    except SafeloadError:
        return False
    if fmt is Format.UNKNOWN:
        return False
    if fmt in COMPRESSED and is_tar(inflate_head(fmt, head)):
        return True  # a compressed tar: its members decide
    return fmt is Format.ZIP or _plausible(fmt, head, size, policy)


def _judge(url: str, size: int, policy: Policy, explain: bool) -> ScanReport:
    from safeload._scan import scan_bytes

    limits = policy.limits
    if size > limits.max_zip_bytes and size > limits.max_array_bytes:
        return ScanReport(url, "unknown", Verdict.ERROR,
                          (Finding("limit", "medium", f"file of {size} bytes exceeds the size limits"),), (), size)
    try:
        if size >= _RANGED_MIN:
            ranged = _judge_ranged(url, size, policy)
            if ranged is not None:
                return ranged
        data = _read(url)
    except (OSError, ValueError) as exc:
        return ScanReport(url, "unknown", Verdict.ERROR, (Finding("malformed", "medium", f"cannot read: {exc}"),),
                          (), size)
    return scan_bytes(data, policy, url, explain=explain, digest=True)


class _Ranged(PositionedReader):
    """A remote object as a seekable file whose every read is one ranged request, counted."""

    def __init__(self, fs: Any, path: str, size: int) -> None:
        super().__init__()
        self._fs, self._path, self._size, self._pos = fs, path, size, 0
        self.bytes_read = 0
        self.requests = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"seek before the start of {self._path}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        chunk = self._fs.cat_file(self._path, start=self._pos, end=self._pos + n)
        if len(chunk) != n:
            raise OSError(f"{self._path}: asked for {n} bytes at {self._pos}, got {len(chunk)} (changed?)")
        memoryview(buffer)[:n] = chunk
        self._pos += n
        self.bytes_read += n
        self.requests += 1
        return n


def _version(fs: Any, path: str) -> dict[str, str]:
    """The object's version as the store reports it now (no listing cache)."""
    fs.invalidate_cache(path)
    info = fs.info(path)
    return {k: str(info[k]) for k in (*_VERSION_KEYS, *_ALSO_COMPARED) if info.get(k) is not None}


def _judge_ranged(url: str, size: int, policy: Policy) -> ScanReport | None:
    """A large zip judged by ranged reads of its directory and pickles, or ``None``: read it whole.

    Only where a whole read would reach the same zip judgement (the head says zip, nothing claims it
    by content) and only where the store versions its objects: the version is taken before and after
    the reads, and an object that changed in between gets no verdict.
    """
    from safeload._containers import Format, sniff
    from safeload._scan import judge_zip_directory

    fs, path = _fs(url)
    before = _version(fs, path)
    if not any(k in before for k in _VERSION_KEYS) or int(before.get("size", -1)) != size:
        return None  # no version to pin the reads to, or it changed since the listing: one whole read
    raw = _Ranged(fs, path, size)
    fh = io.BufferedReader(raw, buffer_size=_BLOCK)
    try:
        head = fh.peek(16)[:16]
    except OSError:
        return None  # the server does not answer ranges as asked: one whole read
    if sniff(head) is not Format.ZIP or head[8:9] == b"{":
        return None  # not a zip to scan_bytes, or one recognise() may claim as safetensors: the local path decides
    report = judge_zip_directory(fh, policy, url, size)
    if report is None:
        return None
    if _version(fs, path) != before:
        return ScanReport(url, report.format, Verdict.ERROR, (Finding(
            "malformed", "medium", "the object changed while it was read; scan it again"),), (), size)
    note = Finding("ranged-read", "info", f"judged from {raw.bytes_read} of {size} bytes in {raw.requests} "
                   "ranged reads (the zip directory and its pickles); no sha256 of the whole object")
    return dataclasses.replace(report, findings=report.findings + (note,))


def scan_urls(urls: Sequence[str], policy: Policy, *, explain: bool = False,
              jobs: int = 1) -> Iterator[tuple[ScanReport, str]]:
    """Reports for every model file under ``urls``, with why a model was expected there ("" if not)."""
    from safeload._cli import expectation

    for url in urls:
        files = list_url(url)
        named = len(files) == 1 and files[0][0] == url
        with ThreadPoolExecutor(max_workers=max(4, jobs)) as pool:  # I/O bound: threads
            keep = [True] * len(files) if named else list(pool.map(lambda f: _wanted(f[0], f[1], policy), files))
            picked = [f for f, wanted in zip(files, keep, strict=True) if wanted]
            reports = pool.map(lambda f: _judge(f[0], f[1], policy, explain), picked)
            for (file_url, _), report in zip(picked, reports, strict=True):
                yield report, expectation(file_url, named)
