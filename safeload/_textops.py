"""Protocol 0/1 text arguments, parsed exactly as CPython's C unpickler parses them.

INT, LONG, FLOAT, GET and PUT carry their argument as a line of text. ``pickle.load``
(the C unpickler, ``Modules/_pickle.c``) reads it with C library functions, which
differ from Python's ``int()``/``float()``: ``strtol`` reads ``I010`` as octal 8,
``PyOS_string_to_double`` refuses ``F1_0`` and raises OverflowError on ``F1e999``,
and every C parser stops at a NUL byte. The walker judges with these functions and
the joblib engine (a pure-Python unpickler) builds with them, so both see exactly
the value plain ``pickle.load`` would; ``tests/test_textops.py`` holds them to the C
unpickler on generated texts. Each function takes the line without its newline and
raises ``ValueError`` (or ``OverflowError``) where the C unpickler raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Decoding", "parse_float", "parse_get", "parse_int", "parse_long", "parse_put"]

_C_SPACE = b" \t\n\v\f\r"
_SSIZE_MAX = (1 << 63) - 1
_LONG_MAX = (1 << 63) - 1
_LONG_MIN = -(1 << 63)
_HEX = b"0123456789abcdefABCDEF"


@dataclass(frozen=True)
class Decoding:
    """``pickle.load``'s ``fix_imports`` / ``encoding`` / ``errors``: how protocol 0-2 streams are read."""

    encoding: str = "ASCII"
    errors: str = "strict"
    fix_imports: bool = True

    def string(self, raw: bytes) -> str | bytes:
        """A Python 2 ``str`` (STRING / BINSTRING / SHORT_BINSTRING), as the unpickler decodes it."""
        if self.encoding == "bytes":
            return raw
        return raw.decode(self.encoding, self.errors)


def _cstr(line: bytes) -> bytes:
    """What a C function sees: the line plus its newline, up to the first NUL."""
    return (line + b"\n").split(b"\0", 1)[0]


def _pylong(text: bytes, base: int) -> int:
    """``PyLong_FromString(text, NULL, base)`` on a C string (no NUL inside)."""
    if any(b >= 0x80 for b in text):  # never a digit or a space to the C parser
        raise ValueError("invalid literal")
    return int(text.decode("ascii"), base)


def _strtol(s: bytes) -> tuple[int, int, bool]:
    """glibc ``strtol(s, &end, 0)``: (value, end index, overflowed)."""
    p = 0
    n = len(s)
    while p < n and s[p] in _C_SPACE:
        p += 1
    negative = False
    if p < n and s[p] in b"+-":
        negative = s[p] == 0x2D
        p += 1
    if p + 2 < n and s[p] == 0x30 and s[p + 1] in b"xX" and s[p + 2] in _HEX:
        base, p = 16, p + 2
    elif p < n and s[p] == 0x30:
        base = 8
    else:
        base = 10
    start = p
    value = 0
    while p < n:
        c = s[p]
        digit = c - 0x30 if 0x30 <= c <= 0x39 else (c - 0x57 if 0x61 <= c <= 0x7A else (
            c - 0x37 if 0x41 <= c <= 0x5A else 99))
        if digit >= base:
            break
        value = value * base + digit
        p += 1
    if p == start:
        return 0, 0, False  # no conversion: end points at the start of the string
    if negative:
        value = -value
    return value, p, not _LONG_MIN <= value <= _LONG_MAX


def parse_int(line: bytes) -> tuple[int, bool]:
    """INT: ``strtol`` base 0, falling back to ``PyLong_FromString``; (value, is it a bool?): two-character
    lines holding 0 or 1 are bools. (A separate flag, not a bool value: the mypyc-compiled walker would
    turn a bool returned as ``int`` into a plain int.)"""
    if not line:
        raise ValueError("pickle data was truncated")
    s = _cstr(line)
    value, end, overflow = _strtol(s)
    if overflow or (end < len(s) and s[end] != 0x0A):
        try:
            return _pylong(s, 0), False
        except ValueError:
            raise ValueError("could not convert string to int") from None
    return value, len(line) == 2 and value in (0, 1)  # the C unpickler's ``len == 3`` counts the newline


def parse_long(line: bytes) -> int:
    """LONG: an optional trailing 'L' is cut, then ``PyLong_FromString`` base 0."""
    if not line:
        raise ValueError("pickle data was truncated")
    if line[-1:] == b"L":
        line = line[:-1] + b"\0"
    return _pylong(_cstr(line), 0)


_FLOAT = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:infinity|inf|nan))")


def parse_float(line: bytes) -> float:
    """FLOAT: ``PyOS_string_to_double`` (no spaces, no underscores; overflow is an OverflowError),
    followed by the newline or a NUL."""
    if not line:
        raise ValueError("pickle data was truncated")
    s = _cstr(line)
    m = _FLOAT.match(s)
    if m is None:
        raise ValueError("could not convert string to float")
    end = m.end()
    if end < len(s) and s[end] != 0x0A:
        raise ValueError("could not convert string to float")
    text = m.group()
    value = float(text)
    if value in (float("inf"), float("-inf")) and b"n" not in text.lower():
        raise OverflowError("float overflow")
    return value


def _memo_index(line: bytes) -> int:
    if not line:
        raise ValueError("pickle data was truncated")
    idx = _pylong(_cstr(line), 10)
    if not -_SSIZE_MAX - 1 <= idx <= _SSIZE_MAX:
        raise OverflowError("memo index does not fit in a Py_ssize_t")
    return idx


def parse_get(line: bytes) -> int:
    """GET: ``PyLong_FromString`` base 10 then ``Py_ssize_t`` (a negative index is never found)."""
    return _memo_index(line)


def parse_put(line: bytes) -> int:
    """PUT: as GET, and a negative index is a ValueError."""
    idx = _memo_index(line)
    if idx < 0:
        raise ValueError("negative PUT argument")
    return idx
