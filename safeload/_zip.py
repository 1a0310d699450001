"""Zip archives opened without trusting them: every path that reads a zip goes through here.

``zipfile`` builds a ``ZipInfo`` per directory entry before anyone can count them, lets entries
overlap (one stored member listed 10,000 times, each nesting level multiplying the work), and
inflates bzip2/LZMA members with no bound on the output of one ``read(n)``.  So:

* ``Archive`` finds the end record and walks the central directory itself, refusing more than
  ``max_zip_members`` entries before ``zipfile`` parses any of them, and refuses entries that
  overlap each other or the directory;
* a member is read through ``Archive.open``: its local header checked as ``ZipFile.open`` checks
  it, its raw bytes inflated here in bounded steps: never more than its declared size (what
  ``zipfile`` would return), refused up front when that size exceeds ``max(256 MiB,
  max_inflate_ratio x compressed)`` (the joblib cap, ``_containers.inflate_cap``) or what is left of the
  ``Budget`` that the whole judgement (every nesting level) shares;
* a buffer is handed to ``zipfile`` through ``_containers.ViewReader``, which copies only the bytes read
  (``io.BytesIO`` copies a whole ``mmap`` or ``memoryview``).
"""

from __future__ import annotations

import bz2
import lzma
import mmap
import struct
import zipfile
import zlib
from types import TracebackType
from typing import Any, Protocol

from safeload._containers import ZIP_ERRORS, Buffer, ViewReader, inflate_cap
from safeload._errors import LimitExceededError, MalformedModelError
from safeload._policy import Limits

__all__ = ["ZIP_ERRORS", "Archive", "Budget", "Member", "is_dir"]

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes, just before the end record
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # 56 bytes, just before the locator
_CENTRAL = 46  # fixed part of a central directory entry
_LOCAL = 30  # fixed part of a local file header
_COMMENT_WINDOW = (1 << 16) + _EOCD.size  # where zipfile looks for the end record
_DIR_BLOCK = 1 << 16  # central directory bytes read at a time
_IN_CHUNK = 1 << 16  # compressed bytes handed to a decompressor at a time
_OUT_CHUNK = 1 << 20  # inflated bytes asked of a decompressor at a time
_ENCRYPTED, _PATCHED, _STRONG, _UTF8 = 1 << 0, 1 << 5, 1 << 6, 1 << 11  # general purpose flag bits


class _Readable(Protocol):
    """What ``zipfile`` reads from (a file, a ranged remote object, a ``ViewReader``)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def read(self, n: int = -1, /) -> bytes: ...
    def tell(self) -> int: ...
    def seekable(self) -> bool: ...


class Budget:
    """What one judgement may still open and inflate, shared by every archive nested in it.

    Limits that hold per archive do not bound nesting: a zip of 10,000 deflated zips of 10,000
    members each is 10^8 members in a few MB.  So the directory entries of every zip (and the
    tar members judged) count against one ``max_zip_members``, and the bytes inflated anywhere
    (zip members, compressed joblib streams, a tar.gz) against one ``max(256 MiB,
    max_inflate_ratio x file size)`` (the cap ``decompress`` puts on a single stream this big).
    Stored bytes are not counted: without overlapping entries, nesting cannot repeat them.
    """

    def __init__(self, limits: Limits, size: int) -> None:
        self.max_entries = limits.max_zip_members
        self.max_bytes = inflate_cap(limits, size)
        self.entries = 0
        self.inflated = 0

    @property
    def bytes_left(self) -> int:
        return max(0, self.max_bytes - self.inflated)

    def take_entries(self, n: int, what: str) -> None:
        """Count ``n`` more entries (``what``: the archive, for the message)."""
        self.entries += n
        if self.entries > self.max_entries:
            raise LimitExceededError(
                f"{what}: archives hold more than {self.max_entries} members in all, counting every nesting "
                "level (limit max_zip_members)")

    def require(self, n: int, what: str) -> None:
        """Refuse up front a member that declares more than is left."""
        if n > self.bytes_left:
            raise LimitExceededError(
                f"{what}: inflating {n} more bytes would exceed {self.max_bytes} in all, counting every nesting "
                "level (limits max_decompressed_bytes / max_inflate_ratio); raise the limit if you trust this file")

    def inflate(self, n: int, what: str) -> None:
        """Count ``n`` more inflated bytes."""
        self.inflated += n
        if self.inflated > self.max_bytes:
            raise LimitExceededError(
                f"{what}: inflating beyond {self.max_bytes} bytes in all, counting every nesting level (limits "
                "max_decompressed_bytes / max_inflate_ratio); raise the limit if you trust this file")


def is_dir(info: zipfile.ZipInfo) -> bool:
    """``ZipInfo.is_dir`` without its ``IndexError`` on an empty name."""
    return info.filename.endswith("/")


def _end_record(fh: _Readable) -> tuple[int, int, int]:
    """(file size, central directory start, its size), found as ``zipfile._EndRecData`` finds them."""
    fh.seek(0, 2)
    filesize = fh.tell()
    if filesize < _EOCD.size:
        raise MalformedModelError("not a zip file: too short for an end of central directory record")
    fh.seek(filesize - _EOCD.size)
    tail = fh.read(_EOCD.size)
    if tail[:4] == b"PK\x05\x06" and tail[-2:] == b"\0\0":
        location, record = filesize - _EOCD.size, tail
    else:  # a comment follows the record: zipfile takes the last signature in the window
        start = max(filesize - _COMMENT_WINDOW, 0)
        fh.seek(start)
        window = fh.read(filesize - start)
        found = window.rfind(b"PK\x05\x06")
        if found < 0 or len(window) - found < _EOCD.size:
            raise MalformedModelError("not a zip file: no end of central directory record")
        location, record = start + found, window[found:found + _EOCD.size]
    size_cd = _EOCD.unpack(record)[5]
    extra = 0
    if location >= _EOCD64_LOCATOR.size:
        fh.seek(location - _EOCD64_LOCATOR.size)
        locator = fh.read(_EOCD64_LOCATOR.size)
        if len(locator) == _EOCD64_LOCATOR.size and locator[:4] == b"PK\x06\x07":
            _, disk, _, disks = _EOCD64_LOCATOR.unpack(locator)
            if disk != 0 or disks > 1:
                raise MalformedModelError("zip archives that span several disks are not supported")
            at = location - _EOCD64_LOCATOR.size - _EOCD64.size
            if at >= 0:
                fh.seek(at)
                record64 = fh.read(_EOCD64.size)
                if len(record64) == _EOCD64.size and record64[:4] == b"PK\x06\x06":
                    size_cd = _EOCD64.unpack(record64)[8]
                    extra = _EOCD64_LOCATOR.size + _EOCD64.size
    start_dir = location - size_cd - extra  # where zipfile reads the directory (offsets are relative to it)
    if start_dir < 0:
        raise MalformedModelError("bad offset for the zip central directory")
    return filesize, start_dir, size_cd


def _count_entries(fh: _Readable, start: int, size: int, available: int, most: int, what: str) -> int:
    """The number of entries ``zipfile`` will build from this directory, walked without building them;
    ``LimitExceededError`` as soon as there are more than ``most``."""
    count = total = 0
    block, block_at = b"", 0
    available = min(size, available)  # zipfile reads ``size`` bytes, or what the file has
    while total < size:
        if total + _CENTRAL > available:
            raise MalformedModelError("truncated zip central directory")
        if not block_at <= total <= block_at + len(block) - _CENTRAL:
            fh.seek(start + total)
            block, block_at = fh.read(min(max(_DIR_BLOCK, _CENTRAL), available - total)), total
            if len(block) < _CENTRAL:
                raise MalformedModelError("truncated zip central directory")
        at = total - block_at
        if block[at:at + 4] != b"PK\x01\x02":
            raise MalformedModelError("bad magic number in the zip central directory")
        name, extra, comment = struct.unpack_from("<3H", block, at + 28)
        total += _CENTRAL + name + extra + comment
        count += 1
        if count > most:
            raise LimitExceededError(f"{what} has more than {most} members (limit max_zip_members)")
    return count


class Archive:
    """A zip whose directory was counted and checked before ``zipfile`` parsed it; opened once per
    judgement and handed along.  ``source``: the bytes, or a seekable binary file (a ranged remote
    object).  Raises ``MalformedModelError`` / ``LimitExceededError``, never a ``zipfile`` error.
    """

    def __init__(self, source: Buffer | memoryview | _Readable, limits: Limits, budget: Budget | None = None,
                 what: str = "zip archive") -> None:
        self.limits = limits
        self.budget = budget
        self.what = what
        self._own: ViewReader | None = None
        #: A member read found its local header overlapping the next entry (only over a file object:
        #: over a buffer, opening the archive refused it).
        self.overlapped = False
        fh: _Readable
        if isinstance(source, (bytes, bytearray, mmap.mmap, memoryview)):
            self._own = ViewReader(source)
            fh = self._own
        else:
            fh = source
        self._fh = fh
        try:
            filesize, self.start_dir, size_cd = _end_record(fh)
            count = _count_entries(fh, self.start_dir, size_cd, filesize - self.start_dir, limits.max_zip_members,
                                   what)
            if budget is not None:
                budget.take_entries(count, what)
            self.zf = zipfile.ZipFile(fh)
            self.infos = self.zf.infolist()
            self._ends = self._layout()
        except ZIP_ERRORS as exc:
            self.close()
            raise MalformedModelError(f"corrupt zip: {exc}") from None
        except BaseException:
            self.close()
            raise
        self.names = frozenset(i.filename for i in self.infos)

    def _layout(self) -> dict[int, int]:
        """Where each entry must end (the next entry's start, or the directory's), refusing entries that
        overlap: by the directory's sizes, and, over a buffer, by each local header's own lengths too.
        (Over a file object, a ranged remote one, reading every local header would cost a request per
        entry: there each member's local header is checked when it is read, see ``data_start``.)"""
        ordered = sorted(self.infos, key=lambda i: i.header_offset)
        ends: dict[int, int] = {}
        for k, here in enumerate(ordered):
            after = ordered[k + 1] if k + 1 < len(ordered) else None
            limit = self.start_dir if after is None else after.header_offset
            size = _LOCAL + here.compress_size
            if self._own is not None and here.header_offset >= 0:
                size = self._local_size(here) + here.compress_size
            if here.header_offset < 0 or here.header_offset + size > limit:
                other = "the central directory" if after is None else f"entry {after.filename!r}"
                raise MalformedModelError(f"zip entry {here.filename!r} overlaps {other} (overlapping entries: "
                                          "a zip bomb construction, refused)")
            ends[here.header_offset] = limit
        return ends

    def _local_size(self, info: zipfile.ZipInfo) -> int:
        """The local header's length with its name and extra field (its fixed part alone when it is not
        one: opening the member says what is wrong with it)."""
        self._fh.seek(info.header_offset)
        local = self._fh.read(_LOCAL)
        if len(local) != _LOCAL or local[:4] != b"PK\x03\x04":
            return _LOCAL
        return _LOCAL + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None

    def declared(self) -> int:
        """The sum of the members' declared sizes."""
        return sum(i.file_size for i in self.infos)

    def open(self, info: zipfile.ZipInfo) -> Member:
        """A capped reader of ``info`` (a ``ZipInfo`` of this archive, or of another opening of the same bytes)."""
        return Member(self, info)

    def read(self, info: zipfile.ZipInfo) -> bytearray:
        """The whole member, under the caps (see ``Member``)."""
        return self.open(info).read()

    def data_start(self, info: zipfile.ZipInfo) -> int:
        """Where the member's compressed bytes start, after the checks ``ZipFile.open`` makes on its local
        header (read here: ``ZipFile.open`` costs more than judging a small pickle) and the overlap check
        with the local header's own lengths."""
        fh = self._fh
        fh.seek(info.header_offset)
        local = fh.read(_LOCAL)
        if len(local) != _LOCAL:
            raise zipfile.BadZipFile("Truncated file header")
        if local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("Bad magic number for file header")
        flags = int.from_bytes(local[6:8], "little")
        name_size = int.from_bytes(local[26:28], "little")
        extra_size = int.from_bytes(local[28:30], "little")
        name = fh.read(name_size)
        if info.flag_bits & (_PATCHED | _STRONG):
            raise NotImplementedError("compressed patched data or strong encryption")
        if name.decode("utf-8" if flags & _UTF8 else "cp437") != info.orig_filename:
            raise zipfile.BadZipFile(f"File name in directory {info.orig_filename!r} and header {name!r} differ.")
        if info.flag_bits & _ENCRYPTED:
            raise RuntimeError(f"{info.orig_filename!r} is encrypted (no password is given)")
        start = info.header_offset + _LOCAL + name_size + extra_size
        if start + info.compress_size > self._ends.get(info.header_offset, start + info.compress_size):
            self.overlapped = True
            raise MalformedModelError(f"zip member {info.filename!r} overlaps the next entry (overlapping "
                                      "entries: a zip bomb construction, refused)")
        return start

    def raw(self, at: int, n: int) -> bytes:
        """``n`` compressed bytes at ``at`` (``zipfile``'s ``_SharedFile`` seeks before every read too)."""
        self._fh.seek(at)
        return self._fh.read(n)


class Member:
    """One member, inflated as it is read: at most its declared size (what ``zipfile`` returns; a
    stream that ends short is returned short, as torch reads it), refused (``LimitExceededError``)
    when that size exceeds ``max(256 MiB, max_inflate_ratio x compressed size)`` or what is left of
    the shared ``Budget``.  Every failure is a ``SafeloadError`` naming the member.
    """

    def __init__(self, archive: Archive, info: zipfile.ZipInfo) -> None:
        self.name = info.filename
        self.size = info.file_size
        self._method = info.compress_type
        self._budget = archive.budget
        self._what = f"zip member {info.filename!r}"
        self._left = info.file_size
        self._pending = b""
        self._raw_done = False
        self._dec: Any = None
        if self._method != zipfile.ZIP_STORED:
            cap = inflate_cap(archive.limits, max(info.compress_size, 1))
            if info.file_size > cap:
                raise LimitExceededError(
                    f"{self._what} inflates to {info.file_size} bytes from {info.compress_size}, beyond {cap} "
                    "(limits max_decompressed_bytes / max_inflate_ratio); raise the limit if you trust this file")
            if self._budget is not None:
                self._budget.require(info.file_size, self._what)
        self._archive = archive
        self._compress_left = info.compress_size
        try:
            self._at = archive.data_start(info)
            if self._method == zipfile.ZIP_DEFLATED:
                self._dec = zlib.decompressobj(-15)
            elif self._method == zipfile.ZIP_BZIP2:
                self._dec = bz2.BZ2Decompressor()
            elif self._method == zipfile.ZIP_LZMA:
                self._dec = self._lzma()
            elif self._method != zipfile.ZIP_STORED:
                raise NotImplementedError(f"compression method {self._method}")
        except ZIP_ERRORS as exc:
            raise MalformedModelError(f"unreadable {self._what}: {exc}") from None

    def _lzma(self) -> Any:
        """A raw LZMA1 decompressor from the zip LZMA header (version, properties size, properties)."""
        head = self._raw_read(4)
        if len(head) < 4:
            raise EOFError("truncated LZMA header")
        props = self._raw_read(struct.unpack_from("<H", head, 2)[0])
        if len(props) != 5 or props[0] >= 9 * 5 * 5:
            raise lzma.LZMAError("invalid LZMA properties")
        lc, rest = props[0] % 9, props[0] // 9
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
            "id": lzma.FILTER_LZMA1, "lc": lc, "lp": rest % 5, "pb": rest // 5,
            "dict_size": int.from_bytes(props[1:5], "little")}])

    def read(self, n: int = -1, *, into: bytearray | None = None) -> bytearray:
        """Up to ``n`` more bytes (all that is left when ``n < 0``); fewer only at the end.  ``into``:
        appended there (and returned) rather than to a new buffer: no second copy of a big member."""
        out = bytearray() if into is None else into
        want = self._left if n < 0 else min(n, self._left)
        got = 0
        try:
            while got < want:
                piece = self._inflate(min(want - got, _OUT_CHUNK))
                if not piece:
                    break
                out += piece
                got += len(piece)
        except ZIP_ERRORS as exc:
            raise MalformedModelError(f"unreadable {self._what}: {exc}") from None
        except MemoryError:
            raise LimitExceededError(f"out of memory while reading {self._what}") from None
        return out

    def _raw_read(self, n: int) -> bytes:
        piece = self._archive.raw(self._at, min(n, self._compress_left))
        self._at += len(piece)
        self._compress_left -= len(piece)
        return piece

    def _inflate(self, want: int) -> bytes:
        if self._method == zipfile.ZIP_STORED:
            piece = self._raw_read(want)
        else:
            piece = b""
            while not piece and not self._dec.eof:
                zlib_like = self._method == zipfile.ZIP_DEFLATED
                if not self._pending and not self._raw_done and (zlib_like or self._dec.needs_input):
                    self._pending = self._raw_read(_IN_CHUNK)
                    self._raw_done = not self._pending
                if zlib_like:
                    piece = self._dec.decompress(self._pending, want)
                    self._pending = self._dec.unconsumed_tail
                    if not piece and self._raw_done and not self._pending:
                        break  # a stream cut short: what it held is the member (zipfile without CRC)
                else:
                    if self._raw_done and self._dec.needs_input:
                        break
                    piece = self._dec.decompress(self._pending, max_length=want)
                    self._pending = b""
            if self._budget is not None and piece:
                self._budget.inflate(len(piece), self._what)
        piece = piece[:self._left]
        self._left -= len(piece)
        return piece

    def close(self) -> None:
        """Nothing to release (the archive holds the file); here for ``with``."""

    def __enter__(self) -> Member:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
