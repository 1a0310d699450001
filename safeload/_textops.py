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

__all__ = ["Decoding", "long_text", "parse_float", "parse_get", "parse_int", "parse_long", "parse_put"]

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

    def string(self, raw: bytes | memoryview) -> str | bytes:
        """A Python 2 ``str`` (STRING / BINSTRING / SHORT_BINSTRING), as the unpickler decodes it;
        ``raw`` may be a view of the file (decoded without a copy of its own)."""
        if self.encoding == "bytes":
            return bytes(raw)
        return str(raw, self.encoding, self.errors)


def _cstr(line: bytes) -> bytes:
    """What a C function sees: the line up to its first NUL (else up to its newline, which every
    parser here stops at as it stops at the end). No copy unless a NUL cuts it: a line may be as
    long as the file, and scan's memory is held to twice the file's."""
    nul = line.find(b"\0")
    return line if nul < 0 else line[:nul]


def _pylong(text: bytes, base: int) -> int:
    """``PyLong_FromString(text, NULL, base)`` on a C string (no NUL inside)."""
    if not text.isascii():  # a byte >= 0x80 is never a digit or a space to the C parser
        raise ValueError("invalid literal")
    return int(text, base)  # (on the bytes themselves: PyLong_FromString on their buffer, no copy)


#: The digits ``strtol`` takes in each base, as one C-speed match.
_DIGITS = {8: re.compile(rb"[0-7]*"), 10: re.compile(rb"[0-9]*"), 16: re.compile(rb"[0-9a-fA-F]*")}
_SPACES = re.compile(rb"[ \t\n\v\f\r]*")  # the C locale's isspace
_ZEROS = re.compile(rb"0*")
#: No ``long`` has more significant digits than this in base 8, 10 or 16 (2**63 is 22 octal digits).
_LONG_DIGITS = 22


def _strtol(s: bytes) -> tuple[int, int, bool]:
    """glibc ``strtol(s, &end, 0)``: (value, end index, overflowed); the value is 0 when it overflowed.

    The digits are found by one regular-expression match and only the significant ones are
    converted: accumulating them one by one was quadratic in the line's length (a 1 MB ``INT`` line
    took ``scan`` 80 s where plain pickle refuses it in 4 ms)."""
    n = len(s)
    p = _SPACES.match(s).end()  # type: ignore[union-attr]  # (matches the empty string at worst)
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
    match = _DIGITS[base].match(s, p)
    end = match.end() if match is not None else p
    if end == p:
        return 0, 0, False  # no conversion: end points at the start of the string
    first = _ZEROS.match(s, p, end).end()  # type: ignore[union-attr]
    if end - first > _LONG_DIGITS:
        return 0, end, True
    value = int(s[first:end], base) if first < end else 0
    if negative:
        value = -value
    if not _LONG_MIN <= value <= _LONG_MAX:
        return 0, end, True
    return value, end, False


def parse_int(line: bytes, length: int = -1) -> tuple[int, bool]:
    """INT: ``strtol`` base 0, falling back to ``PyLong_FromString``; (value, is it a bool?): two-character
    lines holding 0 or 1 are bools. (A separate flag, not a bool value: the mypyc-compiled walker would
    turn a bool returned as ``int`` into a plain int.) ``length``: ``line`` is already cut at its first
    NUL (the walker copies only that much) and the whole line was ``length`` bytes."""
    if length < 0:
        length = len(line)
    if not length:
        raise ValueError("pickle data was truncated")
    s = _cstr(line)
    value, end, overflow = _strtol(s)
    if overflow or end < len(s):  # (the C text's next byte is then neither the newline nor the NUL)
        try:
            return _pylong(s, 0), False
        except ValueError:
            raise ValueError("could not convert string to int") from None
    return value, length == 2 and value in (0, 1)  # the C unpickler's ``len == 3`` counts the newline


def parse_long(line: bytes) -> int:
    """LONG: an optional trailing 'L' is cut, then ``PyLong_FromString`` base 0."""
    if not line:
        raise ValueError("pickle data was truncated")
    return long_text(line[:-1] if line.endswith(b"L") else line)


def long_text(text: bytes) -> int:
    """LONG's C string: its line less a trailing 'L' (the C unpickler writes a NUL over it), up to
    the first NUL. The walker cuts it as it copies the line; ``parse_long`` cuts a line."""
    return _pylong(_cstr(text), 0)


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
    if m.end() < len(s):  # (the C text's next byte is then neither the newline nor the NUL)
        raise ValueError("could not convert string to float")
    value = float(s)  # all of it matched: no copy of a long line
    if value in (float("inf"), float("-inf")) and s.find(b"n") < 0 and s.find(b"N") < 0:
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
