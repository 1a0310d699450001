"""Archives that hold model files: tar (plain, gzip, bzip2, xz) and zips that are not skops or torch files.

A tar.gz of pickles is one ``tar xzf`` away from being loaded, so every member is judged
like a file of its own (the same scan, with the member named in each finding).  Limits are
the zip ones: ``max_zip_members`` members and ``max_zip_bytes`` of member data; a compressed
tar is inflated as its members are read, one held at a time, to what a compressed joblib file may
inflate to (``_containers.inflate_cap``).  ``tarfile`` only sees headers vetted by ``_tar`` (CVE-2024-6232, chained
extended headers), and the archive is never copied (see ``scan_tar``).
``safeload.load`` loads none of these archives, so a clean one is ``unsupported``.

Inspected: tar (ustar, GNU, pax, v7), tar.gz, tar.bz2, tar.xz/lzma, zip.  Not inspected:
tar.lz4 without the lz4 package, tar.zst, 7z and rar (reported ``not-a-model``/``unknown``).
"""

from __future__ import annotations

import bz2
import lzma
import tarfile
import zlib
from collections.abc import Callable
from typing import Any, cast

from safeload._containers import Buffer, Format, ViewReader, inflate_cap, sniff
from safeload._errors import (
    SafeloadError,
    TruncatedModelError,
)
from safeload._nocode import might_recognise
from safeload._policy import Policy
from safeload._report import Finding, GlobalVerdict, Location, ScanReport, Verdict, failed_report
from safeload._tar import Budget, InflateReader, VettedTarFile
from safeload._torch import is_legacy

__all__ = ["MAX_DEPTH", "aggregate", "inflate_head", "is_tar", "scan_tar"]

MAX_DEPTH = 3  # archives inside archives inside archives: deeper is refused
_HEAD = 1024
_CAP_HINT = (": a compressed tar inflates to at most max(256 MiB, max_inflate_ratio x its size) and "
             "max_decompressed_bytes (limits; max_inflate_ratio = false lifts the first)")
_RANK = {Verdict.UNSAFE: 5, Verdict.ERROR: 4, Verdict.NOT_JUDGED: 3, Verdict.UNSUPPORTED: 2, Verdict.SAFE: 1}

#: Judges one member (its bytes, name, nesting depth).  It is given ``bytes``, a ``bytearray`` or,
#: for a member that is itself a tar, a ``memoryview`` slice of the archive (typed ``bytes`` until
#: ``_scan``'s judge says ``Buffer | memoryview``).
Judge = Callable[[bytes, str, int], ScanReport]


#: Every byte ``int(field, 8)`` may accept in some position: octal digits, its whitespace, a sign,
#: an ``0o`` prefix, digit separators (and NUL, read as a space below).
_OCTAL_FIELD = b"01234567_+-oO \t\n\v\f\r\x1c\x1d\x1e\x1f\x00"


def is_tar(head: bytes) -> bool:
    """A tar header block: ``ustar`` magic, or a v7 header whose checksum is right."""
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    if head[148:156].translate(None, _OCTAL_FIELD):
        return False  # (a byte int(..., 8) never accepts: most pickles, decided without raising)
    try:
        stored = int(head[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    block = bytearray(head[:512])
    block[148:156] = b" " * 8
    return stored == sum(block) and head[0] not in (0, 0x20)


def inflate_head(fmt: Format, data: Buffer) -> bytes:
    """The first bytes of a compressed stream (empty when they cannot be had cheaply)."""
    d: Any
    try:
        if fmt in (Format.ZLIB, Format.GZIP):
            d = zlib.decompressobj(wbits=15 if fmt is Format.ZLIB else 31)
            return bytes(d.decompress(bytes(data[:64 * 1024]), _HEAD))
        if fmt is Format.BZ2:
            d = bz2.BZ2Decompressor()
        elif fmt in (Format.XZ, Format.LZMA):
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ if fmt is Format.XZ else lzma.FORMAT_ALONE)
        else:
            return b""
        return bytes(d.decompress(bytes(data[:64 * 1024]), max_length=_HEAD))
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError):
        return b""


def scan_tar(data: Buffer | memoryview, policy: Policy, name: str, fmt_name: str, judge: Judge, depth: int,
             compressed: Format | None = None, budget: Budget | None = None) -> ScanReport:
    """Judge every regular member of the tar ``data``; ``compressed``: ``data`` is that compressed
    stream, inflated here as the members are read (under ``_containers.inflate_cap``, counted against
    ``budget``), never whole.

    The buffer is not copied: ``tarfile`` reads the headers through a ``ViewReader``, and a
    member that is itself a tar is handed to ``judge`` as a slice of it.  Other members are
    copied once (the pickle walker needs ``bytes`` methods a ``memoryview`` lacks).
    """
    size = len(data)
    reader: ViewReader | InflateReader | None = None
    try:
        if compressed is None:
            reader = ViewReader(data)
        else:
            # As far as a compressed joblib file: members are held one at a time, so memory is the largest
            # member's; a tighter cap (the file's size + 32 MiB, tried) refused real tarballs that compress 3x.
            reader = InflateReader(compressed, data, inflate_cap(policy.limits, size), _CAP_HINT, budget)
        return _scan_members(reader, policy, name, fmt_name, judge, depth, size)
    except SafeloadError as exc:
        return failed_report(name, fmt_name, exc, size)
    except RecursionError:  # (the vetting refuses long chains of extended headers before tarfile recurses)
        return _error(name, fmt_name, "limit", "tar headers nest too deeply", size)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        return _error(name, fmt_name, "malformed", f"corrupt tar archive: {exc}", size)
    finally:
        if reader is not None:
            reader.close()


def _scan_members(reader: ViewReader | InflateReader, policy: Policy, name: str, fmt_name: str, judge: Judge,
                  depth: int, size: int) -> ScanReport:
    limits = policy.limits
    reports: list[tuple[str, ScanReport]] = []
    notes: list[Finding] = []
    total = 0
    with VettedTarFile(fileobj=reader, mode="r") as tf:
        for count, info in enumerate(tf, 1):
            if count > limits.max_zip_members:
                return _error(name, fmt_name, "limit", f"tar archive has more than {limits.max_zip_members} "
                              "members (limit max_zip_members)", size)
            if not info.isreg():
                if info.issym() or info.islnk() or info.isdev():
                    notes.append(Finding("archive", "info", f"{info.type!r} member {info.name} not followed",
                                         (), Location(None, info.name)))
                continue
            total += info.size
            if total > limits.max_zip_bytes:
                return _error(name, fmt_name, "limit", f"tar members exceed {limits.max_zip_bytes} bytes "
                              "(limit max_zip_bytes)", size)
            if info.size == 0:
                continue
            try:
                member = reader.member(info.offset_data, info.size)
            except TruncatedModelError:
                return _error(name, fmt_name, "malformed", f"tar member {info.name} is truncated", size)
            reports.append((info.name, judge(_handed_over(member), info.name, depth + 1)))
            del member  # judged: not held while the next one is read
        if isinstance(reader, InflateReader):
            reader.finish()  # a truncated stream, or data after it, as decompress reports them
    return aggregate(name, fmt_name, reports, notes, size)


def _handed_over(member: memoryview | bytearray) -> bytes:
    """What ``judge`` gets: a slice of the archive when the member is a tar (judged by ``scan_tar``
    again, which takes a view), else a buffer of its own."""
    if isinstance(member, bytearray):
        return cast(bytes, member)  # inflated: already its own (judge takes any buffer)
    if _judged_as_tar(bytes(member[:_HEAD])):
        return cast(bytes, member)
    return bytes(member)


def _judged_as_tar(head: bytes) -> bool:
    """Would ``_scan.scan`` judge a file starting with ``head`` as a tar (no other format claims it)?"""
    if not is_tar(head) or might_recognise(head[:64]) or is_legacy(head):
        return False
    try:
        return sniff(head) in (Format.UNKNOWN, Format.PICKLE)
    except SafeloadError:
        return False


def _error(name: str, fmt_name: str, rule: str, message: str, size: int) -> ScanReport:
    return ScanReport(name, fmt_name, Verdict.ERROR, (Finding(rule, "medium", message),), (), size)


def aggregate(name: str, fmt_name: str, members: list[tuple[str, ScanReport]], notes: list[Finding],
              size: int) -> ScanReport:
    """One report for an archive: the members' findings (each naming its member) and the worst verdict.

    Members that are not models or carry no code do not count; a clean archive is ``unsupported``
    (``load`` does not open archives), never ``safe``.
    """
    findings: list[Finding] = []
    globs: list[GlobalVerdict] = []
    worst = Verdict.UNSUPPORTED
    judged = 0
    for member, report in members:
        if report.verdict in (Verdict.NOT_A_MODEL, Verdict.NO_CODE):
            continue
        judged += 1
        for f in report.findings:
            inner = f.location.member
            where = f"{member}/{inner}" if inner else member
            findings.append(Finding(f.rule, f.severity, f.message, f.names, Location(f.location.offset, where),
                                    f.decompiled))
        globs.extend(GlobalVerdict(g.name, g.allowed, g.kind, g.offsets,
                                   f"{member}/{g.member}" if g.member else member) for g in report.globals)
        if _RANK.get(report.verdict, 0) > _RANK[worst]:
            worst = report.verdict
    if not judged:
        findings.append(Finding("not-a-model", "info", f"{fmt_name} archive without model files"))
        worst = Verdict.NOT_A_MODEL
    elif worst == Verdict.UNSUPPORTED:
        findings.append(Finding("unsupported", "info", f"{fmt_name} archive: its {judged} model member(s) look "
                                "clean, but safeload.load does not load archives; extract the members and load them"))
    return ScanReport(name, fmt_name, worst, tuple(findings + notes), tuple(globs), size)
