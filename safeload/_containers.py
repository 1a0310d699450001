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
import io
import lzma
import mmap
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from safeload._zip import Budget

__all__ = ["Format", "Source", "ViewReader", "decompress", "read_source", "sniff"]


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


#: What reading a damaged zip can raise: ``zipfile`` lets the underlying errors through (a bad
#: deflate stream is a ``zlib.error``, bzip2 an ``OSError``, an encrypted member a ``RuntimeError``,
#: an unknown version or method a ``NotImplementedError``, a short structure a ``struct.error``).
ZIP_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                                           RuntimeError, zlib.error, lzma.LZMAError, struct.error)

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
        got = _read_into(fd, buf, size)
        extra = os.read(fd, 1)
    finally:
        if not handed_over:
            os.close(fd)
    if got != size or extra:
        raise MalformedModelError(f"{path} changed size while it was being read")
    return Source(buf, path, path)


def _read_into(fd: int, buf: Buffer, size: int) -> int:
    """Fill ``buf`` from ``fd``; the bytes read (fewer at an early end of file). ``readv``, not a
    file object: a store scan opens 10,000 small files, and a buffered reader costs more than
    reading one of them."""
    if not hasattr(os, "readv"):  # Windows
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.readinto(buf)
    view = memoryview(buf)
    got = 0
    try:
        while got < size:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                break
            got += n
    finally:
        view.release()
    return got


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


#: numpy.load's ``max_header_size``: the longest header (in characters, once decoded) it parses.
#: ``ast.literal_eval`` builds ~500 bytes of syntax tree per byte of header, so a header as long
#: as the file (a 4-byte length allows 4 GiB) would cost hundreds of times the file in memory.
#: numpy lifts the limit only under ``allow_pickle=True``, i.e. for a file it is told to trust.
NPY_MAX_HEADER = 10000


def npy_length(head: Buffer) -> tuple[int, int]:
    """The width of a .npy header's length field (2 bytes in format 1.0, 4 after) and the length it
    holds, from the file's first 8 + width bytes (fewer: the bytes that are there)."""
    width = 2 if head[6] == 1 else 4
    return width, int.from_bytes(head[8:8 + width], "little")


def npy_header(head: Buffer) -> tuple[dict[str, Any], int]:
    """A .npy file's header dict and the offset where its data starts.

    Raises ValueError (or SyntaxError from the literal) when the header is malformed, truncated,
    or longer than numpy.load reads (``NPY_MAX_HEADER``, checked before the header is parsed).
    """
    if bytes(head[:6]) != b"\x93NUMPY" or len(head) < 10:
        raise ValueError("not a .npy header")
    width, length = npy_length(head)
    encoding = "utf8" if head[6] == 3 else "latin1"  # as numpy decodes format 3.0 / 1.0 and 2.0
    # numpy counts decoded characters: a UTF-8 character is at most 4 bytes.
    if length > NPY_MAX_HEADER * (4 if encoding == "utf8" else 1):
        raise ValueError(f".npy header of {length} bytes is longer than numpy.load reads "
                         f"({NPY_MAX_HEADER} characters, its max_header_size)")
    end = 8 + width + length
    if end > len(head):
        raise ValueError("truncated .npy header")
    text = bytes(head[8 + width:end]).decode(encoding)
    if len(text) > NPY_MAX_HEADER:
        raise ValueError(f".npy header of {len(text)} characters is longer than numpy.load reads "
                         f"({NPY_MAX_HEADER}, its max_header_size)")
    header = ast.literal_eval(text)
    if not isinstance(header, dict):
        raise ValueError(".npy header is not a dict")
    return header, end


def inflate_cap(limits: Limits, compressed: int) -> int:
    """How far ``compressed`` bytes may inflate: a compressed joblib stream, a zip member, a
    compressed tar, a skops archive, and the ``Budget`` a whole judgement shares."""
    if limits.max_inflate_ratio is None:
        return limits.max_decompressed_bytes
    return min(limits.max_decompressed_bytes, max(256 << 20, limits.max_inflate_ratio * compressed))


#: Compressed input goes to a decompressor in slices, never as the rest of the file: what it has not
#: consumed when a stream ends (``unused_data``) or when an output chunk fills (``unconsumed_tail``,
#: bz2's and lzma's own buffer) is a copy of the rest of one slice.  A stream's first slice is
#: _IN_FIRST bytes, each next one twice the last up to _IN_MAX: a file of 160,000 tiny
#: concatenated streams copies a few hundred bytes per stream (it copied the whole remaining
#: file per stream: 3 MB took 10 s), and a large stream costs one call per MiB.
_IN_FIRST = 256
_IN_MAX = 1 << 20
_OUT_CHUNK = 1 << 24
#: Concatenated streams read in one payload: _STREAMS_BASE, plus one per _STREAM_BYTES of input.
#: Each stream costs a new decompressor (1-5 us in C, a few more in this loop), work no byte of
#: the file pays for: 800,000 empty 14-byte bz2 streams (10.7 MB) took 3.4 s, read in 0.02 s.
#: joblib writes one stream; pbzip2 writes one per 100-900 kB of data, far fewer than this.
_STREAMS_BASE = 4096
_STREAM_BYTES = 4096


def decompress(fmt: Format, data: Buffer, limits: Limits, budget: Budget | None = None) -> bytearray:
    """Inflate a whole compressed joblib payload, refusing bombs and trailing data.

    Concatenated bz2, xz, lzma and lz4 streams are read as one, as the readers joblib uses
    (``bz2.BZ2File``, ``lzma.LZMAFile``, ``lz4.frame.LZ4FrameFile``) read them.  Anything after a
    zlib or gzip stream is refused: joblib's own ``BinaryZlibFile`` never gets past it (it feeds
    ``unused_data`` back to the finished decompressor, which appends it to ``unused_data``
    again: the buffer doubles until memory runs out), so such a file is not one joblib loads.
    Work is linear in input + output (see ``_IN_FIRST``).

    ``budget``: what a scan may still inflate in all (a stream inside an archive shares it with
    the archive's other members, see ``_zip.Budget``); what inflates is counted against it.
    """
    cap = inflate_cap(limits, len(data))
    shared = budget is not None and budget.bytes_left < cap
    if budget is not None and shared:
        cap = budget.bytes_left
    out = bytearray()
    zlib_like = fmt in (Format.ZLIB, Format.GZIP)
    view = memoryview(data)
    total = len(view)
    start = 0  # where the current stream starts in ``data``
    tail: bytes | memoryview = b""  # handed to zlib, not consumed yet (its unconsumed_tail)
    max_streams = _STREAMS_BASE + total // _STREAM_BYTES
    streams = 0
    try:
        while True:  # one iteration per concatenated stream
            streams += 1
            if streams > max_streams:
                raise LimitExceededError(
                    f"more than {max_streams} concatenated {fmt.value} streams in {total} bytes (safeload reads "
                    f"{_STREAMS_BASE} plus one per {_STREAM_BYTES} bytes of input; joblib writes a single stream)")
            d = _decompressor(fmt)
            fed = start  # ``data[start:fed]`` has been handed to ``d``
            step = _IN_FIRST
            tail = b""
            starved = False  # the last call gave nothing: only more input helps
            while not d.eof:
                if (not tail if zlib_like else starved or getattr(d, "needs_input", True)):
                    if fed >= total:
                        raise TruncatedModelError(f"truncated {fmt.value} stream")
                    tail = view[fed:fed + step]
                    fed += len(tail)
                    step = min(2 * step, _IN_MAX)
                if zlib_like:
                    piece = d.decompress(tail, _OUT_CHUNK)
                    tail = d.unconsumed_tail
                else:
                    piece = d.decompress(tail, max_length=_OUT_CHUNK)
                    tail = b""
                starved = not piece
                out += piece
                if len(out) > cap:
                    where = " (what is left of the whole scan's, counting every nesting level)" if shared else ""
                    raise LimitExceededError(
                        f"{fmt.value} stream inflates beyond {cap} bytes{where} (limit max_decompressed_bytes); "
                        "raise the limit if you trust this file")
            start = fed - len(getattr(d, "unused_data", b"") or b"") - len(tail)
            if start >= total:
                break
            if zlib_like:
                raise UnsafeModelError(
                    f"{total - start} bytes follow the {fmt.value} stream (a second stream or appended data, "
                    "which joblib's reader never gets past: it grows a buffer until memory runs out)",
                    rule="trailing-data")
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, RuntimeError) as exc:
        raise MalformedModelError(f"corrupt {fmt.value} stream: {exc}") from None
    except MemoryError:
        raise LimitExceededError(f"out of memory while inflating the {fmt.value} stream") from None
    finally:
        del tail
        view.release()
    if budget is not None:
        budget.inflate(len(out), f"{fmt.value} stream")
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


class PositionedReader(io.RawIOBase):
    """A readable, seekable raw file whose position is ``_pos``: what ``zipfile`` and ``tarfile`` ask
    of the readers safeload hands them (a buffer's view, an inflating tar stream, ranged reads)."""

    _pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos


class ViewReader(PositionedReader):
    """A read-only, seekable file over a buffer that copies only the bytes read, for ``zipfile`` and
    ``tarfile`` (``io.BytesIO`` copies a whole ``mmap`` or ``memoryview``); ``member`` is a slice of
    the buffer, not a copy. Seeking behaves as on ``io.BytesIO``, which both were given before: a
    negative absolute position is a ``ValueError``, a relative one before the start stops at 0."""

    def __init__(self, data: Buffer | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if whence == io.SEEK_SET:
            if offset < 0:
                raise ValueError(f"negative seek value {offset}")
            self._pos = offset
        elif whence in (io.SEEK_CUR, io.SEEK_END):
            self._pos = max(0, (self._pos if whence == io.SEEK_CUR else len(self._view)) + offset)
        else:
            raise ValueError(f"invalid whence ({whence})")
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        n = max(0, min(len(out), len(self._view) - self._pos))
        out[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1, /) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytes(self._view[self._pos:end]) if end > self._pos else b""
        self._pos += len(out)
        return out

    def member(self, offset: int, size: int) -> memoryview:
        """The ``size`` bytes at ``offset``, as a view (``TruncatedModelError`` when the buffer ends first)."""
        if offset + size > len(self._view):
            raise TruncatedModelError(f"{offset + size - len(self._view)} bytes missing")
        return self._view[offset:offset + size]

    def close(self) -> None:
        """Release the view (an ``mmap`` under it can be closed once its member slices are gone too)."""
        if not self.closed:
            self._view.release()
        super().close()
