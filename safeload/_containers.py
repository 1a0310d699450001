"""Reading the input once, deciding its format by content, and opening containers.

The format never comes from a file name.  Compressed joblib files are recognised
by the same magic bytes joblib uses and inflated with a size cap, into a
writable buffer so that large arrays can be views rather than copies.
"""

from __future__ import annotations

import ast
import bz2
import contextlib
import enum
import errno
import lzma
import mmap
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safeload._errors import (
    LimitExceededError,
    MalformedModelError,
    TruncatedModelError,
    UnsafeModelError,
    UnsupportedFormatError,
    os_error,
)
from safeload._filling import Filling
from safeload._filling import available as filling_available
from safeload._policy import Limits

__all__ = ["Format", "Source", "decompress", "read_source", "sniff"]


class Format(enum.Enum):
    PICKLE = "pickle"
    ZIP = "zip"
    NPY = "npy"
    ZLIB = "zlib"
    GZIP = "gzip"
    BZ2 = "bz2"
    XZ = "xz"
    LZMA = "lzma"
    LZ4 = "lz4"
    JOBLIB_ZF = "joblib-zf"
    UNKNOWN = "unknown"


#: What reading a damaged zip can raise (``zipfile`` lets the underlying errors through).
ZIP_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError)

COMPRESSED = frozenset({Format.ZLIB, Format.GZIP, Format.BZ2, Format.XZ, Format.LZMA, Format.LZ4})
_PICKLE_FIRST = frozenset(b"(.012FIJKLMNPQRSTUVXabcdeghijlopqrstu}])GBC\x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f"
                          b"\x90\x91\x92\x93\x94\x95\x96")


@dataclass
class Source:
    """The bytes of one input, read once; ``path`` is kept only for memory mapping.

    With ``filling`` set, ``data`` is still arriving: see :mod:`safeload._filling`.
    """

    data: bytearray | bytes | mmap.mmap
    name: str
    path: str | None = None
    filling: Filling | None = None

    def close(self) -> None:
        """Stop a background read that nobody will use (after an early refusal)."""
        if self.filling is not None:
            self.filling.cancel()


Buffer = bytes | bytearray | mmap.mmap


def _writable_buffer(size: int) -> bytearray | mmap.mmap:
    """Private, writable memory for the file's bytes.

    ``bytearray(size)`` zero-fills every page before the read fills it again; an anonymous
    mapping gets its pages as the read touches them. It is private: never shared with the
    file (what was checked cannot change underneath) nor with a forked child (arrays of a
    loaded joblib model are views of it, and must behave like joblib.load's own arrays).
    """
    if size < 1 << 20:
        return bytearray(size)
    if not hasattr(mmap, "MAP_PRIVATE"):  # Windows
        return mmap.mmap(-1, size)
    # Private, not the default MAP_SHARED: shared anonymous memory is shmem, whose page faults
    # cost more and which gets no transparent huge pages. Private + MADV_HUGEPAGE (what numpy
    # asks for its arrays) reads 100 MB in ~34 ms instead of ~75 ms on the development machine.
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        with contextlib.suppress(OSError):  # a kernel without transparent huge pages
            buf.madvise(mmap.MADV_HUGEPAGE)
    return buf


#: Files this big are read on a helper thread while the walker works (see _filling).
_BACKGROUND_READ_BYTES = 4 << 20


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read_path(path: str, limits: Limits) -> Source:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    handed_over = False
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # open() succeeds on a directory on POSIX; reading it fails later
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        size = st.st_size
        if size > limits.max_zip_bytes and size > limits.max_array_bytes:
            raise LimitExceededError(f"{path}: file of {size} bytes exceeds the size limits")
        buf: Buffer = _writable_buffer(size)
        if size >= _BACKGROUND_READ_BYTES and filling_available() and _usable_cores() >= 2:
            filling = Filling(fd, buf, size, path)
            handed_over = True  # the helper thread closes fd
            return Source(buf, path, path, filling)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            got = fh.readinto(buf)
            extra = fh.read(1)
    finally:
        if not handed_over:
            os.close(fd)
    if got != size or extra:
        raise MalformedModelError(f"{path} changed size while it was being read")
    return Source(buf, path, path)


def read_source(file: Any, limits: Limits, *, bytes_path: bool = False) -> Source:
    """Read ``file`` (a path, bytes, or a binary file object) once.

    With ``bytes_path``, ``bytes`` is a file name, as ``open()`` treats it (``load``);
    otherwise it is the data.  An unreadable path raises a ``SourceReadError`` that
    keeps the OS error's class (``FileNotFoundError``...), errno and file name.
    """
    if bytes_path and isinstance(file, bytes):
        file = os.fsdecode(file)
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        try:
            return _read_path(path, limits)
        except OSError as exc:
            raise os_error(exc, path) from None
    if isinstance(file, (bytes, bytearray, memoryview)):
        return Source(bytes(file), "<bytes>")
    read: Callable[..., Any] | None = getattr(file, "read", None)
    if read is None:
        raise TypeError(f"expected a path or a binary file object, got {type(file).__name__}")
    try:
        data = read()
    except OSError as exc:
        raise UnsupportedFormatError(f"cannot read from file object: {exc}") from None
    if isinstance(data, str):
        raise UnsupportedFormatError("the file object must be opened in binary mode")
    name = str(getattr(file, "name", "<file object>"))
    return Source(bytearray(data) if not isinstance(data, bytearray) else data, name)


def sniff(data: Buffer) -> Format:
    head = bytes(data[:8])
    if not head:
        raise TruncatedModelError("empty input")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return Format.ZIP
    if head.startswith(b"\x93NUMPY"):
        return Format.NPY
    if head.startswith(b"ZF"):
        return Format.JOBLIB_ZF
    if head.startswith(b"\x1f\x8b"):
        return Format.GZIP
    if head.startswith(b"BZh"):
        return Format.BZ2
    if head.startswith(b"\xfd7zXZ\x00"):
        return Format.XZ
    if head.startswith(b"\x5d\x00\x00"):
        return Format.LZMA
    if head.startswith(b"\x04\x22\x4d\x18"):
        return Format.LZ4
    if head[0] == 0x78 and len(head) > 1 and (head[0] * 256 + head[1]) % 31 == 0:
        return Format.ZLIB
    if head[0] == 0x80 and len(head) > 1 and head[1] <= 5:
        return Format.PICKLE
    if head[0] in _PICKLE_FIRST:
        return Format.PICKLE
    return Format.UNKNOWN


def npy_header(head: Buffer) -> tuple[dict[str, Any], int]:
    """A .npy file's header dict and the offset where its data starts.

    Raises ValueError (or SyntaxError from the literal) when the header is malformed or truncated.
    """
    if bytes(head[:6]) != b"\x93NUMPY" or len(head) < 10:
        raise ValueError("not a .npy header")
    width = 2 if head[6] == 1 else 4
    length = int.from_bytes(head[8:8 + width], "little")
    end = 8 + width + length
    if end > len(head):
        raise ValueError("truncated .npy header")
    header = ast.literal_eval(bytes(head[8 + width:end]).decode("latin1"))
    if not isinstance(header, dict):
        raise ValueError(".npy header is not a dict")
    return header, end


def _cap(limits: Limits, compressed: int) -> int:
    if limits.max_inflate_ratio is None:
        return limits.max_decompressed_bytes
    return min(limits.max_decompressed_bytes, max(256 << 20, limits.max_inflate_ratio * compressed))


def decompress(fmt: Format, data: Buffer, limits: Limits) -> bytearray:
    """Inflate a whole compressed joblib payload, refusing bombs and trailing data."""
    cap = _cap(limits, len(data))
    out = bytearray()
    chunk = 1 << 24
    pending: Any = memoryview(data)
    try:
        while True:  # one iteration per concatenated stream (the stdlib readers joblib uses accept several)
            d = _decompressor(fmt)
            while True:
                if fmt in (Format.ZLIB, Format.GZIP):
                    piece = d.decompress(pending, chunk)
                    pending = d.unconsumed_tail
                else:
                    piece = d.decompress(pending, max_length=chunk)
                    pending = b""
                out += piece
                if len(out) > cap:
                    raise LimitExceededError(
                        f"{fmt.value} stream inflates beyond {cap} bytes (limit max_decompressed_bytes); "
                        "raise the limit if you trust this file")
                if d.eof or (not piece and not pending and getattr(d, "needs_input", True)):
                    break
            if not d.eof:
                raise TruncatedModelError(f"truncated {fmt.value} stream")
            unused = bytes(getattr(d, "unused_data", b"") or b"")
            if not unused:
                break
            if fmt is Format.ZLIB:
                raise UnsafeModelError(
                    f"{len(unused)} bytes follow the {fmt.value} stream (a second stream or appended data)",
                    rule="trailing-data")
            pending = unused
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, RuntimeError) as exc:
        raise MalformedModelError(f"corrupt {fmt.value} stream: {exc}") from None
    except MemoryError:
        raise LimitExceededError(f"out of memory while inflating the {fmt.value} stream") from None
    return out


def _decompressor(fmt: Format) -> Any:
    if fmt is Format.LZ4:
        try:
            import lz4.frame
        except ImportError:
            raise UnsupportedFormatError("lz4-compressed file: the lz4 package (a safeload dependency) is missing; "
                                         "pip install lz4") from None
        return lz4.frame.LZ4FrameDecompressor()
    if fmt in (Format.ZLIB, Format.GZIP):
        return zlib.decompressobj(wbits=15 if fmt is Format.ZLIB else 31)
    if fmt is Format.BZ2:
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ if fmt is Format.XZ else lzma.FORMAT_ALONE)

