"""``.gitignore`` / ``--exclude`` matching: the semantics of the regex translation it replaced, at
linear cost on the attacker's patterns (a scanned repository brings its own ``.gitignore``).

The regex translation is kept below as the reference: on short random patterns and paths, where
its backtracking is cheap, the automaton must agree with it exactly.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import safeload
from safeload._ignore import Ignore, compile_pattern

PKG_ROOT = Path(safeload.__file__).resolve().parents[1]  # the package under test, for the CLI's process


def reference_pattern(pattern: str) -> tuple[re.Pattern[str], bool]:
    """safeload's ``compile_pattern`` before the automaton (a backtracking regex), verbatim."""
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.strip("/") if anchored else pattern.rstrip("/")
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{''.join(out)}$"), anchored


def reference_match(pattern: str, path: str) -> bool | None:
    """What the regex translation said, or ``None`` where it had no answer: it raised ``re.error``
    (a reversed range ``[z-a]``) or put a set's closing ``]`` first (``[]``, ``[!]``, ``[^]``: the
    regex then read the rest of the pattern as set members), which the automaton reads as git does."""
    if any(s in pattern for s in ("[]", "[!]", "[^]")):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and the like
            regex, _ = reference_pattern(pattern)
    except re.error:
        return None
    return regex.match(path) is not None


CASES: list[tuple[str, str, bool]] = [
    ("*.pkl", "a/b.pkl", True), ("*.pkl", "b.pkl", True), ("*.pkl", "b.pkl/c", False),
    ("e.pkl", "keep/e.pkl", True), ("e.pkl", "keep/xe.pkl", False),
    ("build/", "build", True), ("build/", "x/build", True), ("/build", "x/build", False), ("/build", "build", True),
    ("scratch/**", "scratch/c.pkl", True), ("scratch/**", "scratch", False), ("scratch/**", "x/scratch/c", False),
    ("**/x", "x", True), ("**/x", "a/b/x", True), ("**/x", "a/bx", False),
    ("a/**/b", "a/b", True), ("a/**/b", "a/x/y/b", True), ("a/**/b", "ab", False), ("a/**/b", "a/xb", False),
    ("a*b", "axyb", True), ("a*b", "ax/yb", False), ("a**b", "ax/yb", True),
    ("a?c", "abc", True), ("a?c", "a/c", False), ("a?c", "ac", False),
    ("[ab]x", "bx", True), ("[ab]x", "cx", False), ("[!ab]x", "cx", True), ("[!ab]x", "ax", False),
    ("[^ab]x", "cx", True), ("[a-c]x", "bx", True), ("[a-c]x", "dx", False), ("[a-]x", "-x", True),
    ("c[!a]b", "c/b", True),  # a negated set matched '/' in the regex, and still does
    ("\\*x", "*x", True), ("\\*x", "ax", False), ("\\[a]", "[a]", True), ("[a", "[a", True), ("a\\", "a\\", True),
    ("*a*a*a*b", "xaaayab", True), ("*a*a*a*b", "xaaay", False), ("foo*bar*baz", "d/fooXbarYbaz", True),
    ("*.tmp.*", "d/a.tmp.pkl", True), ("*.tmp.*", "d/a.tmp", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), CASES)
def test_patterns(pattern: str, path: str, expected: bool) -> None:
    glob, _ = compile_pattern(pattern)
    assert glob.match(path) is expected
    assert reference_match(pattern, path) is expected


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("[]a]", "]", True), ("[]a]", "a", True), ("[!]a]", "b", True), ("[!]a]", "]", False),  # ']' first: a member
    ("[z-a]x", "zx", False), ("[!z-a]x", "zx", True),  # a reversed range matches nothing (git)
    ("*.pkl", "x.pkl\n", False), ("a**b", "a\nb", True),  # a newline is a character like any other
])
def test_patterns_the_regex_got_wrong(pattern: str, path: str, expected: bool) -> None:
    """Sets the regex could not compile or misread, and names with a newline (``$`` matched before one)."""
    glob, _ = compile_pattern(pattern)
    assert glob.match(path) is expected


_PATTERN = st.text(st.sampled_from("ab/*?[]!^-\\."), max_size=9)
_PATH = st.text(st.sampled_from("ab/.-]![\\^*"), max_size=10)


@settings(max_examples=2000, deadline=None)
@given(_PATTERN, st.lists(_PATH, min_size=1, max_size=8))
def test_agrees_with_the_regex_translation(pattern: str, paths: list[str]) -> None:
    glob, anchored = compile_pattern(pattern)
    assert anchored == ("/" in pattern.rstrip("/"))
    for path in paths:
        expected = reference_match(pattern, path)
        if expected is not None:
            assert glob.match(path) is expected, (pattern, path)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["*", "**", "**/", "/", "a", "?", "[!b]"]), max_size=10),
       st.lists(st.text(st.sampled_from("ab/"), max_size=24), min_size=1, max_size=4))
def test_agrees_on_many_repetitions(parts: list[str], paths: list[str]) -> None:
    """Patterns made of repetitions, where the automaton merges runs of them, still agree."""
    pattern = "".join(parts)
    glob, _ = compile_pattern(pattern)
    for path in paths:
        expected = reference_match(pattern, path)
        if expected is not None:
            assert glob.match(path) is expected, (pattern, path)


@pytest.mark.parametrize(("pattern", "path"), [
    ("*a" * 8 + "*b", "a" * 200 + ".pkl"),  # the regex: O(n**8), over 100 s
    ("*a" * 8 + "*b", "a" * 200 + "/b"),  # (past the literal checks: the automaton runs)
    ("*a" * 40 + "*b", "a" * 4000 + "c/b"),
    ("**/**/**/x", "a/" * 2000),  # 22 s
    ("**/**/**/x", "a/" * 2000 + "xa"),
    ("**/" * 300 + "x", "a/" * 2000 + "xa"),
    ("*/" * 300 + "x", "a/" * 2000 + "x"),
    ("[!/]*" * 20 + "b", "a" * 4000 + "/b"),
    ("?*" * 50 + "b", "a" * 4000 + "/b"),
])
def test_adversarial_patterns_cost_pattern_times_path(pattern: str, path: str) -> None:
    glob, _ = compile_pattern(pattern)
    start = time.perf_counter()
    glob.match(path)
    glob.match(path + "/" + path)
    assert time.perf_counter() - start < 1.0


def test_compiled_patterns_are_reused() -> None:
    assert compile_pattern("*a*b*c")[0] is compile_pattern("*a*b*c")[0]


def test_ignore_rules(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".gitignore").write_text("*.tmp\n!keep.tmp\nbuild/\n/top.pkl\n\\!bang\n# comment\n")
    (tmp_path / "sub" / ".gitignore").write_text("local/**\n")
    ignore = Ignore(("*.log",))
    ignore.load_dir(str(tmp_path), "")
    ignore.load_dir(str(tmp_path), "sub")
    assert ignore.ignored("a.tmp", False) and ignore.ignored("sub/a.tmp", False)
    assert not ignore.ignored("keep.tmp", False) and not ignore.ignored("sub/keep.tmp", False)
    assert ignore.ignored("build", True) and not ignore.ignored("build", False)
    assert ignore.ignored("top.pkl", False) and not ignore.ignored("sub/top.pkl", False)
    assert ignore.ignored("!bang", False)
    assert ignore.ignored("sub/local/x.pkl", False) and not ignore.ignored("local/x.pkl", False)
    assert ignore.ignored("sub/deep/x.log", False)  # --exclude: the path or the file name
    assert not ignore.ignored("x.pkl", False)


def test_scan_of_a_repository_with_a_backtracking_gitignore(tmp_path: Path) -> None:
    """The CLI scans a directory whose .gitignore holds ``*a*a*a*a*a*a*a*a*b`` next to a file named
    with 200 ``a``: the regex translation took over 100 s (O(n**8)); the automaton, milliseconds."""
    # (and sets the regex could not compile: re.error escaped from the scan)
    (tmp_path / ".gitignore").write_text("*a" * 8 + "*b\n" + "**/**/**/**/x\n[z-a]\n[]\n")
    (tmp_path / ("a" * 200 + ".pkl")).write_bytes(pickle.dumps([1, 2]))
    deep = tmp_path / "/".join(["a"] * 60)
    deep.mkdir(parents=True)
    (deep / "m.pkl").write_bytes(pickle.dumps([1]))
    env = {**os.environ, "PYTHONPATH": str(PKG_ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "safeload", "scan", "--no-cache", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "a" * 200 + ".pkl" in proc.stdout and "m.pkl" in proc.stdout
    assert time.perf_counter() - start < 20
