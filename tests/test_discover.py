"""Directory discovery (``safeload scan DIR``) against a reference built on ``os.walk``.

The scanner lists trees with ``os.scandir`` (no system call per file for "is it a link, a
directory?"); the reference below is the plain ``os.walk`` + ``islink`` + ``stat`` walk it
replaced, and the property compares them on generated trees with nested directories, links
to files and directories inside and outside the tree, dangling links, VCS directories,
``.gitignore`` files and ``--exclude`` globs, over one or several roots.
"""

from __future__ import annotations

import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeload._cli import _VCS_DIRS, _artifact_or_unknown, _within, discover, model_named
from safeload._ignore import Ignore
from safeload._policy import Policy

_PICKLE = pickle.dumps({"a": [1, 2]}, protocol=4)


def _reference(paths: list[str], ignore: Ignore) -> list[str]:
    """What discovery lists: os.walk top-down, sorted, links judged with lstat, each tree its own .gitignores."""
    policy = Policy.default()
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for top in paths:
        for path, st_ in _reference_walk(top, policy, Ignore(ignore.excludes, ignore.gitignore)):
            if (st_.st_dev, st_.st_ino) not in seen:
                seen.add((st_.st_dev, st_.st_ino))
                out.append(path)
    return out


def _reference_walk(top: str, policy: Policy, ignore: Ignore) -> Iterator[tuple[str, os.stat_result]]:
    real_top = os.path.realpath(top)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        rel = os.path.relpath(dirpath, top)
        rel_dir = "" if rel == "." else rel.replace(os.sep, "/")
        ignore.load_dir(top, rel_dir)

        def under(name: str) -> str:
            return f"{rel_dir}/{name}" if rel_dir else name  # noqa: B023 - used in this iteration only

        dirnames[:] = sorted(d for d in dirnames if d not in _VCS_DIRS and not os.path.islink(os.path.join(dirpath, d))
                             and not ignore.ignored(under(d), True))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if ignore.ignored(under(name), False):
                continue
            if os.path.islink(path) and not _within(os.path.realpath(path), real_top):
                continue
            try:
                st_ = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st_.st_mode):
                continue
            if model_named(path) or (st_.st_size > 0 and _artifact_or_unknown(path, policy)):
                yield path, st_


_NAMES = st.sampled_from(["a.pkl", "b.joblib", "c.txt", "d", "e.npy", "m.skops", "x.bin", "z.pkl"])
_DIRS = st.sampled_from(["s1", "s2", ".git", "build", "deep"])
_KINDS = st.sampled_from(["pickle", "text", "empty", "link-in", "link-out", "dangling", "dir-link"])
_IGNORES = st.lists(st.sampled_from(["*.txt", "a.pkl", "build/", "!a.pkl", "s1/z.pkl", "*.joblib", "deep"]),
                    max_size=3)


@st.composite
def _trees(draw: st.DrawFn) -> list[tuple[str, str, list[str]]]:
    """(relative file path, kind, .gitignore lines of its directory) triples."""
    entries = []
    for _ in range(draw(st.integers(1, 14))):
        depth = draw(st.lists(_DIRS, max_size=2))
        entries.append(("/".join([*depth, draw(_NAMES)]), draw(_KINDS), draw(_IGNORES)))
    return entries


def _build(root: Path, outside: Path, entries: list[tuple[str, str, list[str]]], roots: int) -> list[str]:
    outside.mkdir(exist_ok=True)
    (outside / "o.pkl").write_bytes(_PICKLE)
    tops = [root / f"r{i}" for i in range(roots)]
    for top in tops:
        top.mkdir(parents=True)
    for n, (rel, kind, ignores) in enumerate(entries):
        top = tops[n % roots]
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if ignores and not (path.parent / ".gitignore").exists():
            (path.parent / ".gitignore").write_text("\n".join(ignores) + "\n")
        if path.exists() or path.is_symlink():
            continue
        if kind == "pickle":
            path.write_bytes(_PICKLE)
        elif kind == "text":
            path.write_text("hello\n")
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "link-in":
            (top / "target.pkl").write_bytes(_PICKLE)
            path.symlink_to(top / "target.pkl")
        elif kind == "link-out":
            path.symlink_to(outside / "o.pkl")
        elif kind == "dangling":
            path.symlink_to(top / "nowhere")
        else:
            path.symlink_to(outside, target_is_directory=True)
    return [str(t) for t in tops]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=_trees(), roots=st.integers(1, 3), excludes=st.lists(st.sampled_from(["*.bin", "s2", "d"]), max_size=2),
       gitignore=st.booleans())
def test_discovery_lists_what_the_os_walk_reference_lists(tmp_path_factory: pytest.TempPathFactory,
                                                          entries: list[tuple[str, str, list[str]]], roots: int,
                                                          excludes: list[str], gitignore: bool) -> None:
    base = tmp_path_factory.mktemp("tree")
    tops = _build(base / "store", base / "outside", entries, roots)
    ignore = Ignore(tuple(excludes), gitignore)
    assert discover(tops, None, ignore) == _reference(tops, ignore)


def test_each_tree_reads_its_own_gitignore(tmp_path: Path) -> None:
    """Two roots: the second's .gitignore is read, and the first's rules do not leak into it
    (rules are keyed by the path under a root; one shared set ignored b/x.pkl by a/'s rule)."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for name in ("x.pkl", "y.pkl"):
            (tmp_path / d / name).write_bytes(_PICKLE)
    (tmp_path / "a" / ".gitignore").write_text("x.pkl\n")
    (tmp_path / "b" / ".gitignore").write_text("y.pkl\n")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert discover([a, b], None, Ignore()) == [f"{a}/y.pkl", f"{b}/x.pkl"]
    assert discover([b, a], None, Ignore()) == [f"{b}/x.pkl", f"{a}/y.pkl"]


def test_an_unreadable_subdirectory_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload._cli import CliError

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.pkl").write_bytes(_PICKLE)
    if os.geteuid() == 0:  # root reads any directory: make the listing fail another way
        real = os.scandir

        def failing(path: object) -> object:
            if str(path).endswith("sub"):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "scandir", failing)
    else:
        (tmp_path / "sub").chmod(0)
    try:
        with pytest.raises(CliError, match="cannot read directory .*sub: Permission denied"):
            discover([str(tmp_path)])
    finally:
        (tmp_path / "sub").chmod(0o755)
