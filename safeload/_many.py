"""``safeload.scan_many``: the store scan of ``safeload scan`` as a Python iterator.

Takes local files and directories and fsspec URLs (``s3://``, ``gs://``, ``https://``...),
discovers model files the way the command line does (by content, model-like names, excludes,
``.gitignore``), judges them with ``--jobs`` worker processes and the result cache, and yields
one ``ScanReport`` per file with ``failed`` decided as the command line decides its exit status.
To spread a store over a cluster, map ``safeload.scan`` (or ``scan_many`` on slices of a
listing) with the cluster's own scheduler; every call is independent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

from safeload._policy import Policy
from safeload._report import ScanReport

__all__ = ["list_store", "scan_many", "scan_one"]


def scan_many(paths_or_urls: Iterable[str | os.PathLike[str]], *, allow: Iterable[str] | Mapping[str, str] = (),
              policy: Policy | None = None, explain: bool = False, jobs: int = 1, cache: bool | str = False,
              exclude: Iterable[str] = (), gitignore: bool = True, not_judged: str = "fail") -> Iterator[ScanReport]:
    """Yield a report for every model file under ``paths_or_urls``, in a stable order.

    ``cache``: ``True`` for the user cache directory, a directory path, or ``False`` (default, no
    cache).  ``not_judged``: ``"fail"`` or ``"pass"``, as ``--not-judged``.  Raises
    ``SafeloadError`` for a path that does not exist or a remote store that cannot be listed.
    """
    from safeload._cache import ResultCache
    from safeload._cli import CliError, _finalize, discover, expectation, is_url, scan_all
    from safeload._errors import SafeloadError
    from safeload._ignore import Ignore
    from safeload._load import effective_policy
    from safeload._remote import scan_urls

    if not_judged not in ("fail", "pass"):
        raise ValueError("not_judged must be 'fail' or 'pass'")
    pol = effective_policy(policy, allow)
    ignore = Ignore(tuple(exclude), gitignore)
    result_cache = ResultCache(cache if isinstance(cache, str) else None) if cache else None
    ok = not_judged == "pass"
    for item in paths_or_urls:
        target = os.fspath(item)
        if is_url(target):
            for report, expected in scan_urls([target], pol, explain=explain, jobs=jobs):
                yield _finalize(report, expected, ok)
            continue
        try:
            files = discover([target], pol, ignore)
        except CliError as exc:
            raise SafeloadError(str(exc)) from None
        named = os.path.isfile(target)
        for path, report in zip(files, scan_all(files, pol, jobs=jobs, explain=explain, cache=result_cache),
                                strict=True):
            yield _finalize(report, expectation(path, named), ok)


def list_store(paths_or_urls: Iterable[str | os.PathLike[str]], *, allow: Iterable[str] | Mapping[str, str] = (),
               policy: Policy | None = None, exclude: Iterable[str] = (), gitignore: bool = True) -> list[str]:
    """The files ``scan_many`` would judge (paths and URLs), without judging them.

    For a cluster: map ``scan_one`` over this listing with the cluster's scheduler (Dask, Ray...);
    its arguments and its result pickle, and every call is independent.
    """
    from safeload._cli import CliError, discover, is_url
    from safeload._errors import SafeloadError
    from safeload._ignore import Ignore
    from safeload._load import effective_policy
    from safeload._remote import _wanted, list_url

    pol = effective_policy(policy, allow)
    ignore = Ignore(tuple(exclude), gitignore)
    out: list[str] = []
    for item in paths_or_urls:
        target = os.fspath(item)
        if is_url(target):
            files = list_url(target)
            named = len(files) == 1 and files[0][0] == target
            out.extend(url for url, size in files if named or _wanted(url, size, pol))
            continue
        try:
            out.extend(discover([target], pol, ignore))
        except CliError as exc:
            raise SafeloadError(str(exc)) from None
    return out


def scan_one(path_or_url: str, *, allow: Iterable[str] | Mapping[str, str] = (), policy: Policy | None = None,
             explain: bool = False, named: bool = False, not_judged: str = "fail") -> ScanReport:
    """Judge one file or URL of a ``list_store`` listing, with ``failed`` decided as ``scan_many`` decides it.

    ``named``: the file was named explicitly (a model is expected there even if its name says otherwise).
    """
    from safeload._cli import _finalize, expectation, is_url, scan_file
    from safeload._load import effective_policy
    from safeload._remote import RemoteError, _judge, list_url

    pol = effective_policy(policy, allow)
    if is_url(path_or_url):
        files = list_url(path_or_url)
        if len(files) != 1 or files[0][0] != path_or_url:
            raise RemoteError(f"{path_or_url} is a prefix, not a file: list it with list_store first")
        report = _judge(path_or_url, files[0][1], pol, explain)
    else:
        report = scan_file(path_or_url, pol, explain)
    return _finalize(report, expectation(path_or_url, named), not_judged == "pass")
