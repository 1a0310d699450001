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

__all__ = ["scan_many"]


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
