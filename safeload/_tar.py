"""Tar archives read without trusting them: what ``_archive`` (and the CLI) hand to ``tarfile``.

* ``_containers.ViewReader`` hands ``tarfile`` a buffer without copying it (``io.BytesIO`` copies a
  ``bytearray``, ``mmap`` or ``memoryview`` whole): ``tarfile`` reads only the headers, and a
  member is a slice of the buffer.
* ``InflateReader`` inflates a compressed tar as ``tarfile`` reads it, under a cap: the inflated
  tar is never held whole, only the member being judged is.
* ``VettedTarFile`` refuses, before ``tarfile`` parses them, the extended headers that make it
  slow or crash: CPython before 3.11.10 / 3.12.6 parses pax headers with regular expressions that
  backtrack quadratically (CVE-2024-6232: a 40 KB header takes seconds), and recurses once per
  chained pax or GNU long-name header (a few thousand raise ``RecursionError``).  Real archives
  have a few short extended headers per member, so the bounds below refuse none of them.

Each check is made on the very header ``tarfile`` is about to process (a ``TarInfo`` subclass,
through the ``_proc_member`` hook ``tarfile`` documents for subclasses), not by a walk of our own
that could disagree with ``tarfile`` on where headers are (pax ``size`` records, base-256 sizes).
Refusals are ``LimitExceededError`` / ``MalformedModelError``.
"""

from __future__ import annotations

import io
import lzma
import tarfile
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

from safeload._containers import _STREAM_BYTES, _STREAMS_BASE, Buffer, Format, PositionedReader, _decompressor
from safeload._errors import (
    LimitExceededError,
    MalformedModelError,
    SafeloadError,
    TruncatedModelError,
    UnsafeModelError,
)

__all__ = ["MAX_EXTENDED_CHAIN", "MAX_EXTENDED_HEADER", "MAX_EXTENDED_TOTAL", "MAX_PAX_DIGITS", "MAX_PAX_GLOBALS",
           "MAX_PAX_RECORDS", "InflateReader", "VettedTarFile"]

#: Payload of one pax or GNU long-name header.  Real ones hold a path (at most PATH_MAX, 4 KiB)
#: and a few times; this also bounds the work of one header to a few milliseconds.
MAX_EXTENDED_HEADER = 64 << 10
#: Extended headers in a row before one member.  A real member has at most four (a global and an
#: extended pax header, a GNU long name and long link); tarfile recurses once per header.
MAX_EXTENDED_CHAIN = 32
#: Extended-header payload in a whole archive, and pax records in it.  tarfile parses each record
#: in Python (~8 us with its bookkeeping) and scans digits in each byte: these keep the worst archive
#: within half a second.  GNU tar --format=pax writes 2-3 records (~100 bytes) per member: 10,000
#: members (``max_zip_members``) stay well below both.
MAX_EXTENDED_TOTAL = 2 << 20
MAX_PAX_RECORDS = 1 << 16
#: Longest run of digits in a pax header.  The vulnerable regular expressions cost the square of
#: each run; real values are numbers of at most 20 digits (sizes, times, ids).
MAX_PAX_DIGITS = 24
#: Records in global (``g``) pax headers, in all: tarfile copies and applies every one of them to
#: every later member.  git archive writes one (the commit id).
MAX_PAX_GLOBALS = 16

_BLOCK = tarfile.BLOCKSIZE
_EXTENDED = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                       tarfile.GNUTYPE_LONGLINK})
_PAX = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE})
_DIGIT_MARKS = bytes(1 if 0x30 <= i <= 0x39 else 0 for i in range(256))  # translate(): digits -> 1, others -> 0
_IN_CHUNK = 1 << 16  # compressed bytes handed to a decompressor at a time
_OUT_CHUNK = 1 << 20  # inflated bytes asked of a decompressor at a time
_STREAM_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, RuntimeError)


class Budget(Protocol):
    """What a whole judgement may still inflate (``_zip.Budget``), counted by ``InflateReader``."""

    def inflate(self, n: int, what: str) -> None: ...


def _blocks(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


class InflateReader(PositionedReader):
    """The inflated bytes of a compressed tar, produced as ``tarfile`` reads them, never held whole.

    The stream is inflated as ``_containers.decompress`` inflates it (concatenated streams,
    trailing data after a zlib stream refused), a megabyte at a time; at most ``cap`` bytes in all
    (``LimitExceededError``, its message ending with ``hint``), each counted against ``budget``.
    Seeks go forward (skipping a member inflates it and drops it), or back into the last two
    chunks (``tarfile`` steps back one byte before each header).
    """

    def __init__(self, fmt: Format, data: Buffer | memoryview, cap: int, hint: str = "",
                 budget: Budget | None = None) -> None:
        super().__init__()
        self._fmt = fmt
        self._hint = hint
        self._src = memoryview(data).cast("B")
        self._fed = 0  # compressed bytes handed to the decompressor
        self._cap = cap
        self._budget = budget
        self._d: Any = _decompressor(fmt)
        self._streams = 1
        # as ``decompress``: each concatenated stream costs a decompressor (800,000 empty bz2
        # streams after a tar took 2.1 s)
        self._max_streams = _STREAMS_BASE + len(self._src) // _STREAM_BYTES
        self._pending: bytes | memoryview = b""
        self._chunk: bytes = b""  # inflated bytes [self._at, self._at + len(self._chunk))
        self._at = 0
        self._prev: bytes = b""  # the chunk before, for short steps back
        self._pos = 0
        self._done = False

    @property
    def inflated(self) -> int:
        """Bytes inflated so far."""
        return self._at + len(self._chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise OSError("an inflating tar reader can only seek from the start or the current position")
        if offset < self._at - len(self._prev):
            raise OSError(f"cannot seek back to {offset}: the inflated stream is at {self.inflated}")
        self._pos = offset
        return offset

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(out):
            start = self._pos - self._at
            if start < 0:  # in the chunk before (seek checked that it is)
                source, start = self._prev, len(self._prev) + start
            elif start < len(self._chunk):
                source = self._chunk
            elif self._done or not self._advance():
                break
            else:
                continue
            n = min(len(out) - filled, len(source) - start)
            out[filled:filled + n] = source[start:start + n]
            filled += n
            self._pos += n
        return filled

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            raise OSError("an inflating tar reader reads in bounded pieces only")
        buf = bytearray(size)
        return bytes(buf[:self.readinto(buf)])

    def member(self, offset: int, size: int) -> bytearray:
        """The ``size`` bytes at ``offset`` (forward of what was read), refused before they are inflated
        when they would take the stream beyond the cap."""
        if offset + size > self._cap:
            raise self._limit(offset + size)
        self.seek(offset)
        buf = bytearray(size)
        got = self.readinto(buf)
        if got < size:
            raise TruncatedModelError(f"{size - got} bytes missing")
        return buf

    def finish(self) -> None:
        """Inflate (and drop) the rest, so that a truncated stream or trailing data is reported as
        ``decompress`` reports it for a tar inflated whole."""
        while self._advance():
            pass

    def close(self) -> None:
        if not self.closed:
            self._src.release()
            self._chunk = self._prev = b""
        super().close()

    def _limit(self, size: int) -> LimitExceededError:
        return LimitExceededError(f"{self._fmt.value} stream inflates beyond {self._cap} bytes (to at least {size})"
                                  f"{self._hint}")

    def _advance(self) -> bool:
        """The next inflated chunk in ``self._chunk`` (``False`` at the end of the last stream)."""
        try:
            piece = self._inflate()
        except SafeloadError:
            raise  # (TruncatedModelError is an EOFError too)
        except _STREAM_ERRORS as exc:
            raise MalformedModelError(f"corrupt {self._fmt.value} stream: {exc}") from None
        except MemoryError:
            raise LimitExceededError(f"out of memory while inflating the {self._fmt.value} stream") from None
        if not piece:
            self._done = True
            return False
        self._prev, self._at, self._chunk = self._chunk, self.inflated, piece
        if self.inflated > self._cap:
            raise self._limit(self.inflated)
        if self._budget is not None:
            self._budget.inflate(len(piece), f"{self._fmt.value} stream")
        return True

    def _inflate(self) -> bytes:
        """What the decompressor gives next, feeding it as it asks; ``b""`` only at the very end."""
        zlib_like = self._fmt in (Format.ZLIB, Format.GZIP)
        while True:
            d = self._d
            if d.eof:
                unused = bytes(d.unused_data or b"")  # (at most one fed piece: the rest is not copied)
                after = len(unused) + len(self._src) - self._fed
                if not after:
                    return b""
                if self._fmt is Format.ZLIB:
                    raise UnsafeModelError(f"{after} bytes follow the {self._fmt.value} stream (a second "
                                           "stream or appended data)", rule="trailing-data")
                self._streams += 1
                if self._streams > self._max_streams:
                    raise LimitExceededError(
                        f"more than {self._max_streams} concatenated {self._fmt.value} streams in {len(self._src)} "
                        f"bytes (safeload reads {_STREAMS_BASE} plus one per {_STREAM_BYTES} bytes of input)")
                self._d, self._pending = _decompressor(self._fmt), unused  # the next concatenated stream
                continue
            hungry = zlib_like or d.needs_input
            if not self._pending and hungry and self._fed < len(self._src):
                self._pending = self._src[self._fed:self._fed + _IN_CHUNK]
                self._fed += len(self._pending)
            if zlib_like:
                piece = d.decompress(self._pending, _OUT_CHUNK)
                self._pending = d.unconsumed_tail
            else:
                piece = d.decompress(self._pending, max_length=_OUT_CHUNK)
                self._pending = b""
            if piece:
                return bytes(piece)
            if not d.eof and not self._pending and self._fed >= len(self._src) and (zlib_like or d.needs_input):
                raise TruncatedModelError(f"truncated {self._fmt.value} stream")


@dataclass
class _Vetting:
    """What one archive has spent on extended headers so far."""

    chain: int = 0
    total: int = 0
    records: int = 0
    globals: int = 0


class VettedTarInfo(tarfile.TarInfo):
    """Refuses sparse members and oversized, malformed or too many extended headers (see the module)."""

    __slots__ = ()

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        vetting = archive.vetting if isinstance(archive, VettedTarFile) else _Vetting()
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise LimitExceededError(f"tar member {self.name!r} is a GNU sparse file, which safeload does not "
                                     "read: extract the archive and scan the file itself")
        if self.type not in _EXTENDED:
            vetting.chain = 0
            return super()._proc_member(archive)  # type: ignore[misc,no-any-return]
        what = f"tar extended header ({self.type.decode('latin-1')!r}) at offset {self.offset}"
        vetting.chain += 1
        vetting.total += self.size
        if self.size > MAX_EXTENDED_HEADER:
            raise LimitExceededError(f"{what} holds {self.size} bytes, more than {MAX_EXTENDED_HEADER}: refused "
                                     "(real ones hold a path and a few numbers)")
        if vetting.chain > MAX_EXTENDED_CHAIN:
            raise LimitExceededError(f"{what}: more than {MAX_EXTENDED_CHAIN} extended headers in a row, refused "
                                     "(a member has at most four)")
        if vetting.total > MAX_EXTENDED_TOTAL:
            raise LimitExceededError(f"{what}: the archive's extended headers hold more than {MAX_EXTENDED_TOTAL} "
                                     "bytes in all, refused")
        fileobj = archive.fileobj
        payload = fileobj.read(_blocks(self.size))
        if len(payload) < self.size:
            raise MalformedModelError(f"{what} is truncated")
        if self.type in _PAX:
            records = _vet_pax(payload[:self.size], what)
            vetting.records += records
            if self.type == tarfile.XGLTYPE:
                vetting.globals += records
            if vetting.records > MAX_PAX_RECORDS or vetting.globals > MAX_PAX_GLOBALS:
                raise LimitExceededError(f"{what}: the archive's pax headers hold more than {MAX_PAX_RECORDS} "
                                         f"records in all, or its global ones more than {MAX_PAX_GLOBALS}: refused")
        archive.fileobj = _Replay(payload, fileobj)  # tarfile reads the payload again, from here
        try:
            return super()._proc_member(archive)  # type: ignore[misc,no-any-return]
        finally:
            archive.fileobj = fileobj


class VettedTarFile(tarfile.TarFile):
    """A ``TarFile`` (read mode) whose extended headers are vetted before ``tarfile`` parses them."""

    tarinfo = VettedTarInfo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.vetting = _Vetting()  # before TarFile.__init__, which reads the first member
        super().__init__(*args, **kwargs)


def _vet_pax(data: bytes, what: str) -> int:
    """Check that a pax payload is records ``"%d %s=%s\\n"`` that exactly tile it (then tarfile's record
    loop matches each record once), without sparse-file keywords or long runs of digits (what its
    regular expressions backtrack on); the number of records."""
    if b"\x01" * (MAX_PAX_DIGITS + 1) in data.translate(_DIGIT_MARKS):
        raise LimitExceededError(f"{what} holds a run of more than {MAX_PAX_DIGITS} digits, refused (CPython "
                                 "before 3.11.10 parses it in quadratic time: CVE-2024-6232)")
    pos = records = 0
    end = len(data)
    while pos < end:
        if data[pos] == 0 and not data[pos:].strip(b"\0"):
            break  # NUL padding after the records
        space = data.find(b" ", pos, min(end, pos + 21))
        length = int(data[pos:space]) if space > pos and data[pos:space].isdigit() else 0
        stop = pos + length
        equals = data.find(b"=", space + 1, stop - 1) if length else -1
        if length < 5 or stop > end or data[stop - 1] != 0x0A or equals <= space + 1:
            raise MalformedModelError(f"{what}: malformed pax record at byte {pos}")
        if data.startswith(b"GNU.sparse.", space + 1):
            raise LimitExceededError(f"{what}: GNU sparse member, which safeload does not read: extract the "
                                     "archive and scan the file itself")
        records += 1
        pos = stop
    return records


class _Replay:
    """A file that first returns ``prefix`` (bytes already read from ``inner``), then reads ``inner``."""

    def __init__(self, prefix: bytes, inner: Any) -> None:
        self._prefix = prefix
        self._inner = inner

    def read(self, size: int = -1, /) -> bytes:
        if not self._prefix:
            return bytes(self._inner.read(size))
        if size is None or size < 0 or size >= len(self._prefix):
            head, self._prefix = self._prefix, b""
            rest = size - len(head) if size is not None and size >= 0 else -1
            return head + (bytes(self._inner.read(rest)) if rest else b"")
        head, self._prefix = self._prefix[:size], self._prefix[size:]
        return head

    def tell(self) -> int:
        return int(self._inner.tell()) - len(self._prefix)

    def seek(self, pos: int, whence: int = io.SEEK_SET, /) -> int:
        if whence == io.SEEK_CUR:
            pos, whence = pos + self.tell(), io.SEEK_SET
        self._prefix = b""
        return int(self._inner.seek(pos, whence))

    def write(self, data: bytes, /) -> int:
        raise OSError("read only")

    def close(self) -> None:
        """The inner file belongs to the ``TarFile``."""
