"""Archives that hold model files: tar (plain, gzip, bzip2, xz) and zips that are not skops or torch files.

A tar.gz of pickles is one ``tar xzf`` away from being loaded, so every member is judged
like a file of its own (the same scan, with the member named in each finding).  Limits are
the zip ones: ``max_zip_members`` members and ``max_zip_bytes`` of member data, after the
compressed stream was inflated under ``max_decompressed_bytes`` (the joblib caps).
``safeload.load`` loads none of these archives, so a clean one is ``unsupported``.

Inspected: tar (ustar, GNU, pax, v7), tar.gz, tar.bz2, tar.xz/lzma, zip.  Not inspected:
tar.lz4 without the lz4 package, tar.zst, 7z and rar (reported ``not-a-model``/``unknown``).
"""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
import zlib
from collections.abc import Callable
from typing import Any

from safeload._containers import Buffer, Format
from safeload._policy import Policy
from safeload._report import Finding, GlobalVerdict, Location, ScanReport, Verdict

__all__ = ["MAX_DEPTH", "aggregate", "inflate_head", "is_tar", "scan_tar"]

MAX_DEPTH = 3  # archives inside archives inside archives: deeper is refused
_HEAD = 1024
_RANK = {Verdict.UNSAFE: 5, Verdict.ERROR: 4, Verdict.NOT_JUDGED: 3, Verdict.UNSUPPORTED: 2, Verdict.SAFE: 1}

Judge = Callable[[bytes, str, int], ScanReport]


def is_tar(head: bytes) -> bool:
    """A tar header block: ``ustar`` magic, or a v7 header whose checksum is right."""
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
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


def scan_tar(data: Buffer, policy: Policy, name: str, fmt_name: str, judge: Judge, depth: int) -> ScanReport:
    """Judge every regular member of the (already inflated) tar ``data``."""
    limits = policy.limits
    reports: list[tuple[str, ScanReport]] = []
    notes: list[Finding] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            count = 0
            for info in tf:
                count += 1
                if count > limits.max_zip_members:
                    return _error(name, fmt_name, "limit", f"tar archive has more than {limits.max_zip_members} "
                                  "members (limit max_zip_members)", len(data))
                if not info.isreg():
                    if info.issym() or info.islnk() or info.isdev():
                        notes.append(Finding("archive", "info", f"{info.type!r} member {info.name} not followed",
                                             (), Location(None, info.name)))
                    continue
                total += info.size
                if total > limits.max_zip_bytes:
                    return _error(name, fmt_name, "limit", f"tar members exceed {limits.max_zip_bytes} bytes "
                                  "(limit max_zip_bytes)", len(data))
                fh = tf.extractfile(info)
                if fh is None or info.size == 0:
                    continue
                member = fh.read()
                if len(member) != info.size:
                    return _error(name, fmt_name, "malformed", f"tar member {info.name} is truncated", len(data))
                reports.append((info.name, judge(member, info.name, depth + 1)))
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        return _error(name, fmt_name, "malformed", f"corrupt tar archive: {exc}", len(data))
    return aggregate(name, fmt_name, reports, notes, len(data))


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
