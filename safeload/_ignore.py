"""``--exclude`` globs and ``.gitignore`` files for directory scans.

Only what a store scan needs of gitignore semantics: one pattern per line, ``#`` comments,
``!`` negation (last match wins), a trailing ``/`` for directories only, a ``/`` inside the
pattern anchors it to the ``.gitignore``'s directory, ``*``/``?``/``[...]`` within a path
component and ``**`` across components.  Files named on the command line are never ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

__all__ = ["Ignore", "compile_pattern"]


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    base: str  # directory of the .gitignore (relative to the scan root, "" for the root), or "" for --exclude


def compile_pattern(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A gitignore pattern as a regex over '/'-separated paths relative to its base, and whether it is anchored."""
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


@dataclass
class Ignore:
    """Decides whether a path under a scan root is left out."""

    excludes: tuple[str, ...] = ()
    gitignore: bool = True
    _rules: dict[str, list[_Rule]] = field(default_factory=dict)

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
            regex, _ = compile_pattern(line)
            rules.append(_Rule(regex, negate, line.endswith("/"), rel_dir))
        self._rules[rel_dir] = rules

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        """``rel_path``: '/'-separated, relative to the scan root."""
        for glob in self.excludes:
            regex, _ = compile_pattern(glob)
            if regex.match(rel_path) or (not is_dir and regex.match(rel_path.rsplit("/", 1)[-1])):
                return True
        if not self.gitignore:
            return False
        verdict = False
        parts = rel_path.split("/")
        bases = [""] + ["/".join(parts[:i]) for i in range(1, len(parts))]
        for base in bases:  # outer .gitignore first; deeper files and later lines override
            for rule in self._rules.get(base, ()):
                if rule.dir_only and not is_dir:
                    continue
                sub = rel_path[len(base) + 1:] if base else rel_path
                if rule.regex.match(sub):
                    verdict = not rule.negate
        return verdict
