"""Remote stores through fsspec (optional extra ``safeload[remote]``): ``s3://``, ``gs://``, ``https://``, ``hf://``...

A prefix is listed recursively; each file is picked the way a local directory scan picks it
(named like a model, or its first 64 KiB look like one -- a ranged read), then read once into
memory and judged by the same ``scan_bytes`` as a local file.  Credentials and endpoints come
from the usual places of each backend (for S3: the AWS environment variables and files,
including ``AWS_ENDPOINT_URL`` for S3-compatible servers); safeload passes none of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from safeload._errors import SafeloadError
from safeload._policy import Policy
from safeload._report import Finding, ScanReport, Verdict

__all__ = ["RemoteError", "list_url", "scan_urls"]

_HEAD = 64 * 1024


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
        data = _read(url)
    except (OSError, ValueError) as exc:
        return ScanReport(url, "unknown", Verdict.ERROR, (Finding("malformed", "medium", f"cannot read: {exc}"),),
                          (), size)
    report = scan_bytes(data, policy, url, explain=explain)
    import dataclasses

    return dataclasses.replace(report, sha256=hashlib.sha256(data).hexdigest())


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
