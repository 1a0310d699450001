"""``--exclude`` globs and ``.gitignore`` files for directory scans.

Only what a store scan needs of gitignore semantics: one pattern per line, ``#`` comments,
``!`` negation (last match wins), a trailing ``/`` for directories only, a ``/`` inside the
pattern anchors it to the ``.gitignore``'s directory, ``*``/``?``/``[...]`` within a path
component and ``**`` across components.  Files named on the command line are never ignored.

A ``.gitignore`` comes from the scanned repository, so its patterns are the attacker's: they
are never handed to a backtracking regex engine with more than one unbounded repetition (a
pattern like ``*a*a*a*a*a*a*b`` backtracks O(n**k) on a name of n ``a``).  A pattern is
matched by simulating its automaton over the path, one bit per state (O(pattern x path) at
worst, each step a few integer operations, its transitions cached); only patterns with at most
one repetition, where backtracking is linear, use a regex (the common ``*.pkl`` / ``build/``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Glob", "Ignore", "compile_pattern"]

# Token kinds.  Consuming one character: _LIT, _ONE (any but '/'), _CLASS.  Repetitions (each
# may match the empty string): _STAR ``[^/]*``, _DSTAR ``.*``, _GROUP ``(?:.*/)?`` (nothing, or
# anything ending in '/': what ``**/`` stands for).
_LIT, _ONE, _CLASS, _STAR, _DSTAR, _GROUP = range(6)
_REPEATS = frozenset({_STAR, _DSTAR, _GROUP})
#: Patterns longer than this (a path's longest, PATH_MAX) always use the automaton.
_MAX_REGEX = 4096

@dataclass(frozen=True)
class _Class:
    """A ``[...]`` set: its members match any character, ``/`` included, as the regex did."""

    negate: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]  # reversed ranges match nothing (git's wildmatch)

    def __contains__(self, c: str) -> bool:
        found = c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)
        return found != self.negate

    def regex(self) -> str:
        members = "".join(re.escape(c) for c in sorted(self.chars))
        members += "".join(f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in self.ranges if lo <= hi)
        if not members:
            return "." if self.negate else "(?!)"
        return f"[{'^' if self.negate else ''}{members}]"


class _Token(NamedTuple):
    kind: int
    text: str = ""  # of a _LIT: one or more characters, matched as they are
    klass: _Class | None = None  # of a _CLASS


#: A run of characters that stand for themselves (the tokenizer takes it in one step: a
#: .gitignore line may be megabytes long).
_PLAIN = re.compile(r"[^*?\[\\]+")


def _parse_class(body: str) -> _Class:
    """``body`` between the brackets: a leading ``!`` or ``^`` negates; ``a-z`` is a range; a ``-``
    first or last is itself; backslashes are plain characters (as the regex translation had them)."""
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    j = 0
    while j < len(body):
        c = body[j]
        j += 1
        if j + 1 < len(body) and body[j] == "-":
            ranges.append((c, body[j + 1]))
            j += 2
        else:
            chars.add(c)
    return _Class(negate, frozenset(chars), tuple(ranges))


def _tokens(pattern: str, anchored: bool) -> list[_Token]:
    """The pattern (already stripped of its anchoring slashes) as tokens, repetitions merged."""
    out: list[_Token] = [] if anchored else [_Token(_GROUP)]  # unanchored: at any depth
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append(_Token(_GROUP))
            i += 3
            continue
        if pattern.startswith("/**", i) and i + 3 == n:
            out += [_Token(_LIT, "/"), _Token(_DSTAR)]
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(_Token(_DSTAR))
            i += 2
            continue
        plain = _PLAIN.match(pattern, i)
        if plain is not None:
            end = plain.end()
            if end + 2 == n and pattern.startswith("/**", end - 1):
                end -= 1  # the '/' of a trailing '/**'
            if end > i:
                out.append(_Token(_LIT, pattern[i:end]))
                i = end
                continue
        if c == "*":
            out.append(_Token(_STAR))
        elif c == "?":
            out.append(_Token(_ONE))
        elif c == "[":
            start = i + 1
            if pattern[start:start + 1] in ("!", "^"):
                start += 1
            if pattern[start:start + 1] == "]":  # a ']' first in the set is a member (git)
                start += 1
            end = pattern.find("]", start)
            if end < 0:
                out.append(_Token(_LIT, c))
            else:
                out.append(_Token(_CLASS, klass=_parse_class(pattern[i + 1:end])))
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(_Token(_LIT, pattern[i]))
        else:
            out.append(_Token(_LIT, c))
        i += 1
    return _merge_repeats(out)


def _merge_repeats(tokens: list[_Token]) -> list[_Token]:
    """Each run of adjacent repetitions as the fewest that match the same strings.

    ``.*`` absorbs any run it is in; ``(?:.*/)?[^/]*`` is ``.*`` too (split at the last '/');
    what is left is ``[^/]*`` then ``(?:.*/)?`` at most, so the automaton never chains more than
    two empty moves, and ``**/**/**/x`` costs what ``**/x`` costs.
    """
    out: list[_Token] = []
    run: list[int] = []

    def flush() -> None:
        if not run:
            return
        kinds = set(run)
        after_group = run[run.index(_GROUP) + 1:] if _GROUP in kinds else []
        if _DSTAR in kinds or _STAR in after_group:
            out.append(_Token(_DSTAR))
        else:
            out.extend(_Token(k) for k in (_STAR, _GROUP) if k in kinds)
        run.clear()

    for tok in tokens:
        if tok.kind in _REPEATS:
            run.append(tok.kind)
        else:
            flush()
            out.append(tok)
    flush()
    return out


def _mask(bits: list[int], width: int) -> int:
    """An int with ``bits`` set, built in one pass (OR-ing bit by bit is quadratic in the width)."""
    buf = bytearray((width + 8) // 8)
    for b in bits:
        buf[b >> 3] |= 1 << (b & 7)
    return int.from_bytes(buf, "little")


class Glob:
    """One compiled pattern; ``match(path)`` says whether it matches the whole of ``path``."""

    def __init__(self, tokens: list[_Token], length: int) -> None:
        """``length``: of the pattern text; a long one is not compiled to a regex (``re.compile``
        takes seconds per megabyte), the automaton is built only if a path is long enough."""
        self._fullmatch: Callable[[str], re.Match[str] | None] | None = None
        if sum(t.kind in _REPEATS for t in tokens) <= 1 and length <= _MAX_REGEX:  # no backtracking
            self._fullmatch = re.compile("".join(_regex_of(t) for t in tokens), re.DOTALL).fullmatch
            return
        self._tokens = tokens
        self._built = False
        # A path shorter than the characters the pattern consumes never matches: a pattern far
        # longer than any path costs nothing, and a state set is at most ~5 bits per character
        # of the path (repetitions come at most two in a row: _merge_repeats).
        self._min_len = sum(len(t.text) if t.kind == _LIT else t.kind not in _REPEATS for t in tokens)
        # Each run of literal characters must occur in a matching path (first or last in it when
        # the pattern starts or ends with one): most paths fail these checks at C speed.
        runs = [""]
        for tok in tokens:
            if tok.kind == _LIT:
                runs[-1] += tok.text
            else:
                runs.append("")
        self._prefix, self._suffix = runs[0], runs[-1]
        self._needs = tuple(r for r in runs[1:-1] if r)

    def _build(self) -> None:
        """The automaton: one bit per state.  A token's bit is "about to match it"; a _GROUP has a
        second bit ("inside its .*, a '/' still to come"); the bit after the last token accepts."""
        lits: dict[str, list[int]] = {}
        classes: list[tuple[int, _Class]] = []
        kinds: dict[int, list[int]] = {_ONE: [], _STAR: [], _DSTAR: [], _GROUP: []}
        bit = 0
        for tok in self._tokens:
            if tok.kind == _LIT:
                for c in tok.text:
                    lits.setdefault(c, []).append(bit)
                    bit += 1
                continue
            if tok.kind == _CLASS:
                assert tok.klass is not None
                classes.append((bit, tok.klass))
            else:
                kinds[tok.kind].append(bit)
            bit += 2 if tok.kind == _GROUP else 1
        width = bit + 1
        self._lit_bits, self._classes, self._width = lits, classes, width
        self._one = _mask(kinds[_ONE], width)
        self._star = _mask(kinds[_STAR], width)
        dstar = _mask(kinds[_DSTAR], width)
        self._entry = _mask(kinds[_GROUP], width)
        self._inner = self._entry << 1
        self._empty1 = self._star | dstar  # empty moves to the next bit
        self._loop_any = dstar | self._inner
        self._accept = 1 << bit
        self._start = self._close(1)
        self._cost = width // 8 + 100  # bytes a cached state costs, roughly
        self._built = True

    def _close(self, states: int) -> int:
        """``states`` and every state reachable from them by empty moves."""
        e1, entry = self._empty1, self._entry
        while True:
            # Adding a run of e1 bits to its lowest set member carries through the run: the
            # xor sets every bit from that member to the one past the run.
            grown = states | ((e1 + (states & e1)) ^ e1)
            grown |= (grown & entry) << 2  # skip a (?:.*/)? whole
            if grown == states:
                return states
            states = grown

    def _consumers(self, c: str) -> int:
        """The bits of the tokens that consume ``c`` (a _GROUP's entry consumes anything)."""
        key = (self, c)
        mask = _CACHE.get(key)
        if mask is None:
            bits = list(self._lit_bits.get(c, ()))
            bits += [b for b, klass in self._classes if c in klass]
            mask = _mask(bits, self._width) | self._entry
            _cache(key, mask, self._cost)
        return mask

    def _step(self, states: int, c: str) -> int:
        shift1 = self._consumers(c)
        if c == "/":
            nxt = ((states & (shift1 | self._inner)) << 1) | ((states & self._entry) << 2)
            nxt |= states & self._loop_any
        else:
            nxt = ((states & (shift1 | self._one)) << 1) | (states & (self._loop_any | self._star))
        return self._close(nxt) if nxt else 0

    def match(self, path: str) -> bool:
        if self._fullmatch is not None:
            return self._fullmatch(path) is not None
        if len(path) < self._min_len or not path.startswith(self._prefix) or not path.endswith(self._suffix) \
                or len(path) < len(self._prefix) + len(self._suffix):
            return False
        for run in self._needs:
            if run not in path:
                return False
        if not self._built:
            self._build()
        states = self._start
        for c in path:
            key = (self, states, c)
            nxt = _CACHE.get(key)
            if nxt is None:
                nxt = self._step(states, c)
                _cache(key, nxt, self._cost)
            if not nxt:
                return False
            states = nxt
        return bool(states & self._accept)


#: Automaton steps and per-character masks of every pattern, keyed by the pattern object: one
#: bounded store (a repository's .gitignore files may hold thousands of patterns), emptied when
#: what it holds reaches _CACHE_BYTES.
_CACHE: dict[tuple[object, ...], int] = {}
_CACHE_BYTES = 16 << 20
_cached_bytes = 0


def _cache(key: tuple[object, ...], value: int, cost: int) -> None:
    global _cached_bytes
    if _cached_bytes + cost > _CACHE_BYTES:
        _CACHE.clear()
        _cached_bytes = 0
    _CACHE[key] = value
    _cached_bytes += cost


def _regex_of(tok: _Token) -> str:
    if tok.kind == _LIT:
        return re.escape(tok.text)
    if tok.kind == _ONE:
        return "[^/]"
    if tok.kind == _CLASS:
        assert tok.klass is not None
        return tok.klass.regex()
    return {_STAR: "[^/]*", _DSTAR: ".*", _GROUP: "(?:.*/)?"}[tok.kind]


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> tuple[Glob, bool]:
    """A gitignore pattern as a matcher of '/'-separated paths relative to its base, and whether
    it is anchored (cached: ``--exclude`` globs are asked about every path)."""
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.strip("/") if anchored else pattern.rstrip("/")
    return Glob(_tokens(pattern, anchored), len(pattern)), anchored


@dataclass(frozen=True)
class _Rule:
    glob: Glob
    negate: bool
    dir_only: bool
    base: str  # directory of the .gitignore (relative to the scan root, "" for the root), or "" for --exclude


@dataclass
class Ignore:
    """Decides whether a path under a scan root is left out."""

    excludes: tuple[str, ...] = ()
    gitignore: bool = True
    _rules: dict[str, list[_Rule]] = field(default_factory=dict)
    _any_rules: bool = False  # has any .gitignore read so far had a rule?

    def for_tree(self) -> Ignore:
        """The same excludes with no ``.gitignore`` read yet: each scanned tree reads its own
        (rules are keyed by the path under the tree's root, so two trees must not share them)."""
        return Ignore(self.excludes, self.gitignore)

    def load_dir(self, root: str, rel_dir: str) -> None:
        """Read ``rel_dir/.gitignore`` (``rel_dir`` relative to ``root``) if gitignore files are honoured."""
        if not self.gitignore or rel_dir in self._rules:
            return
        rules: list[_Rule] = []
        path = os.path.join(root, rel_dir, ".gitignore")
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            line = line.rstrip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            if line.startswith("\\"):
                line = line[1:]
            glob, _ = compile_pattern(line)
            rules.append(_Rule(glob, negate, line.endswith("/"), rel_dir))
        self._rules[rel_dir] = rules
        self._any_rules = self._any_rules or bool(rules)

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        """``rel_path``: '/'-separated, relative to the scan root."""
        for pattern in self.excludes:
            glob, _ = compile_pattern(pattern)
            if glob.match(rel_path) or (not is_dir and glob.match(rel_path.rsplit("/", 1)[-1])):
                return True
        if not self._any_rules:  # (no .gitignore with a rule read: most stores, 10,000 files each)
            return False
        verdict = False
        parts = rel_path.split("/")
        bases = [""] + ["/".join(parts[:i]) for i in range(1, len(parts))]
        for base in bases:  # outer .gitignore first; deeper files and later lines override
            for rule in self._rules.get(base, ()):
                if rule.dir_only and not is_dir:
                    continue
                sub = rel_path[len(base) + 1:] if base else rel_path
                if rule.glob.match(sub):
                    verdict = not rule.negate
        return verdict
