"""``safeload`` command line: ``scan`` files and directories, show the ``policy``.

Exit codes (stable, scripts rely on them):

* 0 -- every scanned artifact is safe (explicitly named files that are not models are fine);
* 1 -- at least one file is unsafe, malformed/over a limit, or an unsupported container,
  i.e. anything ``safeload.load`` would refuse;
* 2 -- usage or I/O error, reported as one line on stderr (never a traceback).

Only this module prints; the formats in ``safeload._format`` return strings.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

from safeload._cache import ResultCache, file_sha256, policy_fingerprint
from safeload._errors import SafeloadError
from safeload._format import FORMATS, Piecewise, Renderer, display_path, get_piecewise, get_renderer, is_failure
from safeload._gcscope import StorePace
from safeload._ignore import Ignore
from safeload._policy import Limits, Policy
from safeload._report import Finding, ScanReport, Verdict, with_outcome

if TYPE_CHECKING:
    from concurrent.futures import Future
    from pathlib import Path

    from safeload._baseline import Baseline
    from safeload._walker import Issue

__all__ = ["main"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

_PROG = "safeload"
# Directories that hold version-control metadata, never model files a program loads.
# Git objects are zlib streams, so a content check alone would pick every one of them.
_VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr"})
_HEAD_BYTES = 64 * 1024
_PROGRESS_MIN_FILES = 20


class CliError(Exception):
    """A usage or I/O problem: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and lets ``main`` return instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from safeload import __version__

    parser = _Parser(prog=_PROG, description="Load and scan scikit-learn model files without running their code.")
    parser.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    scan = sub.add_parser(
        "scan", help="scan model files and directories", description=(
            "Judge pickle, joblib and skops files the way safeload.load would, without executing anything. "
            "Directories are searched recursively; files are picked by content, never by extension. "
            "Exit status: 0 all safe, 1 something load would refuse, 2 usage or I/O error."))
    scan.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to scan")
    scan.add_argument("--format", "-f", choices=FORMATS, default="text", help="output format (default: text)")
    scan.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    scan.add_argument("--allow", action="append", default=[], metavar="NAME",
                      help="also allow this exact global name (module.Name); repeatable")
    scan.add_argument("--allow-unsafe", action="store_true",
                      help="accept --allow names that let a file run code (os.system, eval...); never needed "
                           "for a model file")
    scan.add_argument("--jobs", "-j", type=_jobs, default=1, metavar="N",
                      help="scan N files in parallel (0 = one per CPU; default 1)")
    scan.add_argument("--explain", action="store_true",
                      help="show fickling's decompiled code, the globals and informational notes")
    scan.add_argument("--config", metavar="FILE", help="read the policy from this configuration file")
    scan.add_argument("--root", metavar="DIR", default=None,
                      help="show paths relative to DIR (SARIF %%SRCROOT%%; default: current directory)")
    scan.add_argument("--allow-empty", action="store_true",
                      help="exit 0 when no model file was found (default: exit 1, 'nothing scanned')")
    scan.add_argument("--not-judged", choices=("fail", "pass"), default="fail",
                      help="exit status for formats safeload recognises but does not judge (Keras/HDF5, "
                           "TorchScript): fail (default) or pass")
    scan.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                      help="leave out paths matching GLOB in directory scans (gitignore syntax); repeatable")
    scan.add_argument("--no-gitignore", action="store_true", help="do not honour .gitignore files in directories")
    scan.add_argument("--baseline", metavar="FILE",
                      help="JSON file of accepted findings with reasons: those become notes, only new ones fail")
    scan.add_argument("--write-baseline", metavar="FILE",
                      help="write the current findings to FILE as a baseline (fill in each reason before use)")
    scan.add_argument("--no-cache", action="store_true",
                      help="judge every file again instead of reusing results cached by content hash "
                           "($SAFELOAD_CACHE_DIR, default ~/.cache/safeload)")
    scan.set_defaults(func=_cmd_scan)

    policy = sub.add_parser("policy", help="print the allowlist",
                            description="Print the allowlist: every allowed name, how it may be used and why.")
    policy.add_argument("--json", action="store_true", help="print JSON instead of a table")
    policy.add_argument("--config", metavar="FILE", help="show the policy of this configuration file")
    policy.set_defaults(func=_cmd_policy)

    try:  # `convert` lives in its own module; the CLI works without it
        convert = importlib.import_module("safeload._cmd_convert")
    except ImportError:
        pass
    else:
        convert.register(sub)
    return parser


def _jobs(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 (one per CPU) or more")
    return n or (os.cpu_count() or 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``safeload`` console script and of ``python -m safeload``."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        func: Callable[[argparse.Namespace], int] = args.func
        return int(func(args))
    except CliError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help / --version, or a subcommand that exits
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `safeload policy | head`
        _silence_stdout()
        return EXIT_OK


def _error(message: str) -> None:
    print(f"{_PROG}: error: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# --------------------------------------------------------------------------- policy


def _policy(config: str | None, allow: Sequence[str] = (), allow_unsafe: bool = False) -> Policy:
    """The policy ``scan``/``load`` would use, plus ``--config`` and ``--allow`` (validated here)."""
    from safeload._load import effective_policy

    base: Policy | None = None
    if config is not None:
        if not os.path.isfile(config):
            raise CliError(f"configuration file not found: {config}")
        loader = getattr(importlib.import_module("safeload._config"), "load_config", None)
        if loader is None:
            print(f"{_PROG}: warning: --config is not supported by this version; ignoring {config}",
                  file=sys.stderr)
        else:
            try:
                base = loader(config)
            except (SafeloadError, OSError, ValueError, TypeError, KeyError) as exc:
                raise CliError(f"invalid configuration {config}: {exc}") from None
    try:
        pol = effective_policy(base, [])
    except SafeloadError as exc:  # e.g. a broken [tool.safeload] table found from the working directory
        raise CliError(f"configuration: {exc}") from None
    if not allow:
        return pol
    try:
        return pol.extended(list(allow), allow_unsafe=True) if allow_unsafe else pol.extended(list(allow))
    except (SafeloadError, ValueError, TypeError) as exc:
        raise CliError(f"--allow: {exc}") from None


def _cmd_policy(args: argparse.Namespace) -> int:
    import json

    pol = _policy(args.config)
    entries = sorted(pol.entries.values(), key=lambda e: e.name)
    if args.json:
        doc = {
            "version": 1,
            "entries": [{"name": e.name, "kind": e.kind.value, "guard": e.guard, "why": e.why, "user": e.user}
                        for e in entries],
            "limits": dataclasses.asdict(pol.limits),
        }
        _write(sys.stdout, json.dumps(doc, indent=2) + "\n")
        return EXIT_OK
    width = max((len(e.name) for e in entries), default=4)
    lines = [f"{'NAME'.ljust(width)}  KIND   GUARD            WHY"]
    for e in entries:
        lines.append(f"{e.name.ljust(width)}  {e.kind.value:<5}  {(e.guard or '-'):<15}  {e.why}")
    lines.append("")
    lines.append(f"{len(entries)} names. Kinds: new = may only be rebuilt without __init__; call = may be called "
                 "with pickle-chosen arguments (after its guard, if any); value = referenced, never called.")
    _write(sys.stdout, "\n".join(lines) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- discovery


# Names a model file goes by. A file named like this is scanned even when its content looks like
# nothing (an empty file, a Git LFS pointer, an image): then it fails the audit, because a loader
# expects a model there and a CI checkout without `git lfs pull` must not pass.
MODEL_NAME = re.compile(
    r"(?i)(\.(pkl|pickle|pck|pcl|joblib|jbl|skops|sav|pt|pth|ckpt|npy|npz|safetensors|onnx|gguf|h5|hdf5|keras)"
    r"(\.(gz|bz2|xz|lzma|lz4|z))?|^pytorch_model[^/]*\.bin)$")


def model_named(path: str) -> bool:
    return MODEL_NAME.search(os.path.basename(path)) is not None


def discover(paths: Sequence[str], policy: Policy | None = None, ignore: Ignore | None = None) -> list[str]:
    """Files to scan, in a stable order: named files always, directories searched by content.

    Raises ``CliError`` for a missing path or an unreadable file or directory.
    """
    pol = policy or Policy.default()
    out: list[str] = []
    seen: set[tuple[int, int]] = set()  # (device, inode): one file reached twice (links) is judged once
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise CliError(f"no such file or directory: {path}") from None
        except OSError as exc:
            raise CliError(f"cannot access {path}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(st.st_mode):
            for found, found_st in _walk(path, pol, ignore or Ignore()):
                if (found_st.st_dev, found_st.st_ino) not in seen:
                    seen.add((found_st.st_dev, found_st.st_ino))
                    out.append(found)
        elif stat.S_ISREG(st.st_mode):
            _read_head(path)  # an unreadable named file is an I/O error, not a verdict
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                out.append(path)
        else:
            raise CliError(f"not a regular file or directory: {path}")
    return out


def _walk(top: str, policy: Policy, ignore: Ignore) -> Iterator[tuple[str, os.stat_result]]:
    """Files under ``top``: each directory's files in name order, then its subdirectories, depth first.

    Listed with ``os.scandir``: its entries say whether a name is a directory or a link without a
    system call each (``os.walk`` plus ``islink`` and ``stat`` cost two per file: ~5 µs of a
    store's ~14 µs a file).  Links to directories are not followed; links to files only within the tree.
    """
    real_top = os.path.realpath(top)
    ignore = ignore.for_tree()
    pending = [(top, "")]
    while pending:
        dirpath, rel_dir = pending.pop()
        ignore.load_dir(top, rel_dir)
        try:
            with os.scandir(dirpath) as listing:
                entries = list(listing)
        except OSError as exc:
            raise CliError(f"cannot read directory {exc.filename or dirpath}: {exc.strerror or exc}") from None
        files: list[os.DirEntry[str]] = []
        subdirs: list[str] = []
        for entry in entries:
            if _entry_is(entry.is_dir):
                if (entry.name not in _VCS_DIRS and not _entry_is(entry.is_symlink)
                        and not ignore.ignored(_join(rel_dir, entry.name), True)):
                    subdirs.append(entry.name)
            else:
                files.append(entry)
        files.sort(key=_entry_name)
        for entry in files:
            name = entry.name
            if ignore.ignored(_join(rel_dir, name), False):
                continue
            path = entry.path
            if _entry_is(entry.is_symlink) and not _within(os.path.realpath(path), real_top):
                continue  # never follow a link out of the tree
            try:
                st = entry.stat()
            except OSError:
                continue  # dangling link
            if not stat.S_ISREG(st.st_mode):
                continue
            if model_named(path) or (st.st_size > 0 and _artifact_or_unknown(path, policy)):
                yield path, st
        pending.extend((os.path.join(dirpath, name), _join(rel_dir, name)) for name in sorted(subdirs, reverse=True))


def _entry_is(test: Callable[[], bool]) -> bool:
    """A directory entry's type test; one that cannot be answered (the entry vanished) is "no", as os.walk has it."""
    try:
        return test()
    except OSError:
        return False


def _entry_name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _artifact_or_unknown(path: str, policy: Policy) -> bool:
    """``_is_artifact``, but a file the quick check cannot handle is scanned (the scan reports why), never a crash."""
    try:
        return _is_artifact(path, policy)
    except CliError:
        raise
    except Exception:  # noqa: BLE001 - discovery must not fail on hostile content
        return True


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def _read_head(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def _is_artifact(path: str, policy: Policy) -> bool:
    """Could ``path`` be a model file some loader would unpickle?  Decided by content only, cheaply.

    ``is_candidate`` rejects files without any supported magic; the checks below also reject
    files that merely *start* like one (text that begins with a pickle opcode, gzipped CSV, a
    zip of documents, a numeric ``.npy``): loading those runs nothing, so a directory scan
    skips them instead of failing on them.  Named files are always scanned regardless.
    """
    from safeload._archive import inflate_head, is_tar
    from safeload._containers import Format, sniff
    from safeload._nocode import recognise
    from safeload._scan import is_candidate

    head = _read_head(path)
    if not head:
        return False
    found = recognise(head) if len(head) < _HEAD_BYTES else None
    if found is not None and found.verdict != "not-a-model":
        return True
    if found is None and head.startswith((b"GGUF", b"\x89HDF\r\n\x1a\n")):
        return True  # a model format recognised by its header (safetensors, ONNX, GGUF, HDF5)
    if head[8:9] == b"{" and _safetensors_head(head):
        return True
    if is_tar(head):
        return _plausible_tar(path, policy)
    if not is_candidate(path):
        return False
    try:
        fmt = sniff(head)
    except SafeloadError:
        return False
    if fmt in COMPRESSED_FORMATS() and is_tar(inflate_head(fmt, head)):
        return _plausible_tar(path, policy)
    if fmt is Format.ZIP:
        return _plausible_zip(path, policy)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _plausible(fmt, head, size, policy)


def COMPRESSED_FORMATS() -> frozenset[Any]:  # noqa: N802 - a constant, imported lazily
    from safeload._containers import COMPRESSED

    return COMPRESSED


def _safetensors_head(head: bytes) -> bool:
    """The start of a safetensors file too big for the head to hold its whole header."""
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= 100_000_000 and head[9:10] == b'"'


def _plausible_tar(path: str, policy: Policy) -> bool:
    """A tar (possibly compressed) is a model artifact when one of its members is."""
    import tarfile

    from safeload._containers import Format, sniff
    from safeload._tar import VettedTarFile

    try:
        with VettedTarFile.open(path, mode="r:*") as tf:  # extended headers vetted as scan vets them
            for count, info in enumerate(tf):
                if count > policy.limits.max_zip_members:
                    return True  # let the scan report the limit
                if not info.isreg() or info.size == 0:
                    continue
                if model_named(info.name):
                    return True
                fh = tf.extractfile(info)
                if fh is None:
                    continue
                head = fh.read(_HEAD_BYTES)
                try:
                    fmt = sniff(head)
                except SafeloadError:
                    continue
                if fmt is Format.ZIP or _plausible(fmt, head, info.size, policy):
                    return True
    except (tarfile.TarError, EOFError, ValueError, OSError, SafeloadError, RecursionError):
        return True  # damaged or refused: let the scan report it
    return False


def _plausible(fmt: Any, head: bytes, size: int | None, policy: Policy, bound: int | None = None) -> bool:
    """``head``: the first bytes of a stream sniffed as ``fmt``, of ``size`` bytes (``None``: unknown,
    but at most ``bound`` when that is known)."""
    from safeload._containers import COMPRESSED, Format, sniff

    if fmt is Format.PICKLE:
        return head[0] == 0x80 or _plausible_text_pickle(head, size, bound, policy)
    if fmt is Format.NPY:
        return _npy_has_objects(head)
    if fmt in COMPRESSED:
        inflated = _inflate_head(fmt, head)
        if inflated is None:
            return False  # not a valid stream of that kind: every loader fails at once
        inner, complete = inflated
        if not inner:
            return True  # cannot tell from the head
        try:
            inner_fmt = sniff(inner)
        except SafeloadError:
            return False
        # Deflate cannot expand more than 1032:1, which bounds the size of gzip/zlib content.
        inner_bound = size * _DEFLATE_MAX_RATIO if size is not None and fmt in (Format.ZLIB, Format.GZIP) else None
        return inner_fmt is Format.PICKLE and _plausible(
            inner_fmt, inner, len(inner) if complete else None, policy, inner_bound)
    return True


def _importable(dotted: str) -> bool:
    return bool(dotted) and all(part.isidentifier() for part in dotted.split("."))


_DEFLATE_MAX_RATIO = 1100
_MAX_REWALKS = 200
# Length-prefixed opcodes: opcode -> size of the little-endian length that follows it.
_LENGTH_PREFIX = {ord("T"): 4, ord("B"): 4, ord("X"): 4, ord("U"): 1, ord("C"): 1, 0x8A: 1, 0x8B: 4, 0x8C: 1,
                  0x8D: 8, 0x8E: 8, 0x96: 8, 0x95: 8}


def _plausible_text_pickle(head: bytes, size: int | None, bound: int | None, policy: Policy) -> bool:
    """A protocol 0/1 pickle starts with printable opcodes, and so does text (README, CSV, .py).

    Keep the stream unless the unpickler would provably stop before it imports or calls
    anything: then loading it is harmless and it is not a model.  The decision is the opcode
    walker's that ``load`` uses (exact pickle semantics), with two refinements for text:

    * a persistent id ("Please read...": PERSID) is replaced by a plain value and the walk goes
      on, so text that only *starts* like a PERSID is judged by what follows it;
    * a first "pickle" that ends early ("GIT v1.5 Release Notes" is a float, then STOP) is
      followed by the walk of the remaining bytes, like a stacked pickle.

    When the head ends before the stream is decided, the file is kept.
    """
    from safeload._walker import MALFORMED, UNSAFE, walk

    data = bytearray(head)
    start = 0
    for _ in range(_MAX_REWALKS):
        trace = walk(bytes(data), policy, start=start)
        stops = [i for i in trace.issues if i.severity == MALFORMED or i.rule == "persid"]
        if stops and stops[0].rule == "persid":
            if _neutralize_persid(data, stops[0].offset):
                continue
            return stops[0].offset != 0  # BINPERSID first pops an empty stack; later, assume an id
        if not stops and not any(i.rule == "trailing-data" for i in trace.issues):
            return True  # a valid stream so far: keep
        if stops and _cut_by_head(head, stops[0], size, bound):
            return True  # the rest of the file decides
        # The walker stops at the first fatal issue: everything it recorded comes before the stop.
        if any(_importable(g.raw_module) and _importable(g.raw_qualname) for g in trace.all_globals()):
            return True
        if any(i.severity == UNSAFE and i.rule not in ("trailing-data", "persid") and all(map(_importable, i.names))
               for i in trace.issues):
            return True
        if stops or trace.end < 0 or trace.end >= len(data):
            return False
        start = trace.end  # a first stream that does nothing, then more bytes: judge those
        if data[start] == 0x80:
            return True
    return True


def _neutralize_persid(data: bytearray, offset: int) -> bool:
    """Overwrite a PERSID ('P' id newline) with opcodes of the same length that push one value.

    That is what a loader's ``persistent_load`` does, so the walk can go on with exact offsets.
    """
    if data[offset] != ord("P"):
        return False
    end = data.find(b"\n", offset)
    if end < 0:
        return False
    length = end + 1 - offset
    # 'K\x00' (push 0) or 'N' (push None), padded with 'N0' pairs (push None, pop it).
    patch = b"K\x00" + b"N0" * ((length - 2) // 2) if length % 2 == 0 else b"N" + b"N0" * ((length - 1) // 2)
    data[offset:end + 1] = patch
    return True


def _cut_by_head(head: bytes, stop: Issue, size: int | None, bound: int | None) -> bool:
    """Could ``stop`` be an artefact of reading only ``head`` rather than the whole stream?"""
    if stop.rule not in ("truncated", "frame-truncated"):
        return False
    if size is not None and size <= len(head):
        return False  # the head is the whole stream
    offset = stop.offset
    if offset >= len(head):
        return True
    width = _LENGTH_PREFIX.get(head[offset])
    if width is not None:
        if offset + 1 + width > len(head):
            return True
        claimed_end = offset + 1 + width + int.from_bytes(head[offset + 1:offset + 1 + width], "little")
        limit = size if size is not None else bound
        return limit is None or claimed_end <= limit  # past the end of the whole stream: really truncated
    return b"\n" not in head[offset:]  # a line opcode whose line the head cuts off


def _npy_has_objects(head: bytes) -> bool:
    """Only object arrays hold pickles; numeric ``.npy`` files load without unpickling anything."""
    from safeload._containers import npy_header

    try:
        header, _ = npy_header(head)
        return "O" in str(header["descr"])
    except (IndexError, ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        return True  # malformed header: let the scan report it


def _inflate_head(fmt: Any, head: bytes) -> tuple[bytes, bool] | None:
    """Up to ``_HEAD_BYTES`` of the decompressed stream and whether it ended, or None if it is not valid."""
    import bz2
    import lzma
    import zlib

    from safeload._containers import Format

    d: Any
    try:
        if fmt in (Format.ZLIB, Format.GZIP):
            d = zlib.decompressobj(wbits=15 if fmt is Format.ZLIB else 31)
            return d.decompress(head, _HEAD_BYTES), d.eof
        if fmt is Format.BZ2:
            d = bz2.BZ2Decompressor()
        elif fmt in (Format.XZ, Format.LZMA):
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ if fmt is Format.XZ else lzma.FORMAT_ALONE)
        elif fmt is Format.LZ4:
            try:
                import lz4.frame
            except ImportError:
                return b"", False
            d = lz4.frame.LZ4FrameDecompressor()
        else:
            return b"", False
        return d.decompress(head, max_length=_HEAD_BYTES), bool(d.eof)
    except (zlib.error, OSError, EOFError, ValueError, RuntimeError, lzma.LZMAError):
        return None


def _plausible_zip(path: str, policy: Policy) -> bool:
    """A zip is a model when it is a skops file or holds a pickle or an object ``.npy`` member."""
    from safeload._containers import Format, sniff
    from safeload._zip import Archive, is_dir

    try:
        with open(path, "rb") as fh, Archive(fh, policy.limits) as archive:
            if "schema.json" in archive.names:
                return True
            for info in archive.infos:
                if is_dir(info) or info.file_size == 0:
                    continue
                with archive.open(info) as member:
                    head = bytes(member.read(_HEAD_BYTES))
                try:
                    fmt = sniff(head)
                except SafeloadError:
                    continue
                if fmt in (Format.PICKLE, Format.NPY) and _plausible(fmt, head, info.file_size, policy):
                    return True
    except (SafeloadError, OSError):
        # Damaged, unusual or past a limit (more than max_zip_members entries, a member that inflates
        # too far): the file was readable (its head was read), so let the scan report what is wrong with it.
        return True
    return False


# --------------------------------------------------------------------------- scanning

_WORKER_POLICIES: Sequence[Policy] = ()
_WORKER_EXPLAIN = False
_WORKER_CACHE: ResultCache | None = None
_WORKER_FINGERPRINTS: Sequence[str] = ()
_WORKER_PACE: StorePace | None = None
_BIG_FILE = 64 << 20


def _init_worker(policies: Sequence[Policy], explain: bool, cache: ResultCache | None,
                 fingerprints: Sequence[str]) -> None:
    global _WORKER_POLICIES, _WORKER_EXPLAIN, _WORKER_CACHE, _WORKER_FINGERPRINTS, _WORKER_PACE
    _WORKER_POLICIES, _WORKER_EXPLAIN, _WORKER_CACHE, _WORKER_FINGERPRINTS = policies, explain, cache, fingerprints
    _WORKER_PACE = StorePace().__enter__()  # a pool worker only scans, and ends with the pool


def _scan_chunk(items: Sequence[tuple[str, int]]) -> list[tuple[ScanReport, bool]]:
    """``items``: (path, index of its policy)."""
    out = []
    for p, k in items:
        out.append(_scan_one(p, _WORKER_POLICIES[k], _WORKER_EXPLAIN, _WORKER_CACHE, _WORKER_FINGERPRINTS[k]))
        if _WORKER_PACE is not None:
            _WORKER_PACE.judged(out[-1][0].size)
    return out


def _scan_one(path: str, policy: Policy, explain: bool, cache: ResultCache | None,
              fingerprint: str) -> tuple[ScanReport, bool]:
    """The report of ``path`` and whether it came from the cache (same bytes, same policy, same version)."""
    if cache is not None:
        try:
            digest = file_sha256(path)
        except OSError:
            digest = ""
        hit = cache.get(path, digest, fingerprint) if digest else None
        if hit is not None:
            return hit, True
    return scan_file(path, policy, explain), False


def scan_file(path: str, policy: Policy, explain: bool) -> ScanReport:
    """``scan`` one file; a crash of the scanner becomes an ``error`` report, never a traceback."""
    from safeload._scan import scan

    try:
        return scan(path, policy=policy, explain=explain, digest=True)
    except Exception as exc:  # noqa: BLE001 - one bad file must not abort a directory scan
        return _crash_report(path, f"{type(exc).__name__}: {exc}")


def _crash_report(path: str, what: str) -> ScanReport:
    size = 0
    try:
        size = os.path.getsize(path)
    except OSError:
        pass
    return ScanReport(path, "unknown", Verdict.ERROR,
                      (Finding("internal-error", "medium", f"safeload failed on this file: {what}"),), (), size)


class _Progress:
    """Progress on stderr, only for interactive runs: a bar over many files, a ticker on a big one."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.tty = _isatty(stream)
        self.enabled = total >= _PROGRESS_MIN_FILES and self.tty
        self._lock = threading.Lock()

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            width = 30
            filled = width * self.done // self.total
            with self._lock:
                self.stream.write(f"\rscanning [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
                self.stream.flush()

    def big_file(self, path: str) -> _Ticker | None:
        """A ticker for one big file (only on a terminal): the name, its size and the time spent."""
        if not self.tty:
            return None
        try:
            size = os.path.getsize(path)
        except OSError:
            return None
        return _Ticker(self, path, size) if size >= _BIG_FILE else None

    def close(self) -> None:
        if self.enabled or self.tty:
            with self._lock:
                self.stream.write("\r" + " " * 79 + "\r")
                self.stream.flush()


class _Ticker:
    def __init__(self, progress: _Progress, path: str, size: int) -> None:
        self.progress = progress
        self.label = f"{os.path.basename(path)[:40]} ({size / 2**20:.0f} MiB)"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="safeload-progress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(0.5):
            with self.progress._lock:
                self.progress.stream.write(f"\rscanning {self.label} {time.monotonic() - start:.1f} s")
                self.progress.stream.flush()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclasses.dataclass
class ScanStats:
    """What a scan cost: files, of which served from the cache, and seconds."""

    files: int = 0
    cached: int = 0
    seconds: float = 0.0


def scan_all(files: Sequence[str], policy: Policy | Sequence[Policy], *, jobs: int = 1, explain: bool = False,
             cache: ResultCache | None = None, stats: ScanStats | None = None,
             each: Callable[[int, ScanReport], object] | None = None) -> list[ScanReport]:
    """Scan ``files`` (in a process pool when ``jobs > 1``); reports come back in the order of ``files``.

    ``policy``: one for all files, or one per file (each file under the configuration found from it).
    ``each(i, report)`` is called once per file, in this process, as soon as its report is in (in
    any order): the CLI finishes and renders reports there, while the pool is still judging.
    """
    started = time.perf_counter()
    per_file = [policy] * len(files) if isinstance(policy, Policy) else list(policy)
    policies: list[Policy] = []
    which: list[int] = []
    for pol in per_file:
        k = next((i for i, known in enumerate(policies) if known is pol), -1)
        if k < 0:
            policies.append(pol)
            k = len(policies) - 1
        which.append(k)
    fingerprints = [policy_fingerprint(p, explain) if cache is not None else "" for p in policies]
    progress = _Progress(len(files), sys.stderr)
    results: list[tuple[ScanReport, bool] | None] = [None] * len(files)
    with StorePace() as pace:  # full collections by bytes judged (_gcscope)
        try:
            if jobs > 1 and len(files) > 1:
                _scan_parallel(files, which, policies, explain, jobs, results, progress, cache, fingerprints, each)
            for i, path in enumerate(files):  # serial scans, and whatever a pool could not start on
                if results[i] is None:
                    ticker = progress.big_file(path)
                    try:
                        result = _scan_one(path, policies[which[i]], explain, cache, fingerprints[which[i]])
                    finally:
                        if ticker is not None:
                            ticker.close()
                    results[i] = result
                    if each is not None:
                        each(i, result[0])
                    progress.step()
                    pace.judged(result[0].size)
        finally:
            progress.close()
    reports = [r[0] if r is not None else _crash_report(files[i], "not scanned") for i, r in enumerate(results)]
    if cache is not None:
        for k, fingerprint in enumerate(fingerprints):
            cache.put_many((r[0] for i, r in enumerate(results) if r is not None and not r[1] and which[i] == k),
                           fingerprint)
        cache.close()
    if stats is not None:
        stats.files += len(files)
        stats.cached += sum(1 for r in results if r is not None and r[1])
        stats.seconds += time.perf_counter() - started
    return reports


def _preload(files: Sequence[str]) -> None:
    """Import in this process what the workers will need, so that every forked worker shares it.

    Workers that import skops and scikit-learn themselves spend ~3 s each before judging the
    first skops file; imported once here, before the fork, they cost that once.
    """
    from safeload._zip import Archive

    importlib.import_module("safeload._scan")
    static_model = importlib.import_module("safeload._static_model")  # the twin: validators, class data
    static_model.versions_match()  # (reads package metadata once, here, not once per worker)
    for path in files:
        if _PICKLE_NAME.search(path):
            continue  # named like a pickle: not a skops archive, no need to open it here
        try:
            with open(path, "rb") as fh:
                if fh.read(4) != b"PK\x03\x04":
                    continue
            with open(path, "rb") as fh, Archive(fh, Limits()) as archive:  # (its directory counted first)
                if "schema.json" in archive.names:
                    importlib.import_module("skops.io")
                    return
        except (OSError, SafeloadError, ImportError):
            continue


_PICKLE_NAME = re.compile(r"(?i)\.(pkl|pickle|joblib|jbl|sav)(\.(gz|bz2|xz|lzma|lz4|z))?$")


def _fork_context() -> Any:
    import multiprocessing

    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform: workers import what they need themselves
        return None


def _scan_parallel(files: Sequence[str], which: Sequence[int], policies: Sequence[Policy], explain: bool, jobs: int,
                   results: list[tuple[ScanReport, bool] | None], progress: _Progress,
                   cache: ResultCache | None, fingerprints: Sequence[str],
                   each: Callable[[int, ScanReport], object] | None) -> None:
    from concurrent.futures import ProcessPoolExecutor, as_completed  # imported here: --help stays fast
    from concurrent.futures.process import BrokenProcessPool

    _preload(files)
    workers = min(jobs, len(files))
    # Small batches keep both workers busy to the end; one task per file would cost an IPC round trip each.
    size = max(1, min(32, len(files) // (workers * 8)))
    chunks = [list(range(i, min(i + size, len(files)))) for i in range(0, len(files), size)]
    try:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_fork_context(), initializer=_init_worker,
                                   initargs=(policies, explain, cache, fingerprints))
        futures: dict[Future[list[tuple[ScanReport, bool]]], list[int]] = {
            pool.submit(_scan_chunk, [(files[i], which[i]) for i in chunk]): chunk for chunk in chunks}
    except (OSError, NotImplementedError, ImportError):  # no process support here (sandbox, no /dev/shm)
        return
    try:
        for fut in as_completed(futures):
            chunk = futures[fut]
            try:
                for i, result in zip(chunk, fut.result(), strict=True):
                    results[i] = result
            except BrokenProcessPool:
                for i in chunk:
                    results[i] = (_crash_report(files[i], "the worker process died (out of memory or crashed)"),
                                  False)
            if each is not None:  # (this process's share of the work, done while the workers judge)
                for i in chunk:
                    each(i, results[i][0])  # type: ignore[index]
            progress.step(len(chunk))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fails(report: ScanReport, expected: str, not_judged_ok: bool) -> bool:
    """Does ``report`` fail the audit?  ``expected``: why a model was expected ("" when it was not)."""
    if report.verdict == Verdict.NOT_JUDGED:
        return not not_judged_ok
    if report.verdict == Verdict.NOT_A_MODEL:
        return bool(expected)
    return is_failure(report)


def _finalize(report: ScanReport, expected: str, not_judged_ok: bool) -> ScanReport:
    failed = _fails(report, expected, not_judged_ok)
    if report.verdict == Verdict.NOT_A_MODEL and failed:
        note = Finding("not-loadable", "medium", f"{expected}, but it is not a model file any loader can load")
        return dataclasses.replace(report, findings=(note, *report.findings), failed=True)
    return with_outcome(report, report.sha256, failed)


@dataclasses.dataclass(frozen=True)
class _Finish:
    """What the CLI does to each report once it is in: the audit outcome (``--not-judged``,
    files that had to be models), the baseline, and its piece of the output when the format
    renders report by report -- during a ``--jobs`` scan, while the workers judge the rest."""

    root: str
    explain: bool
    not_judged_ok: bool
    baseline: Baseline | None
    piecewise: Piecewise | None

    def __call__(self, report: ScanReport, expected: str) -> tuple[ScanReport, str]:
        report = _finalize(report, expected, self.not_judged_ok)
        if self.baseline is not None:
            from safeload._baseline import apply

            report = apply(report, display_path(report.path, self.root), self.baseline, bool(report.failed))
        piece = self.piecewise.piece(report, self.root, self.explain) if self.piecewise is not None else ""
        return report, piece

    def slots(self, n: int) -> _Finished:
        return _Finished(self, [None] * n, [""] * n)


@dataclasses.dataclass
class _Finished:
    """Finished reports in the order of the files, filled in any order."""

    finish: _Finish
    done: list[ScanReport | None]
    pieces: list[str]

    def put(self, i: int, report: ScanReport, expected: str) -> None:
        self.done[i], self.pieces[i] = self.finish(report, expected)

    def append(self, report: ScanReport, expected: str) -> None:
        self.done.append(None)
        self.pieces.append("")
        self.put(len(self.done) - 1, report, expected)

    @property
    def reports(self) -> list[ScanReport]:
        if any(r is None for r in self.done):
            raise RuntimeError("a file's report never came back")  # (scan_all calls `each` for every file)
        return self.done  # type: ignore[return-value]

    def render(self, render: Renderer) -> str:
        """The output: joined from the pieces when the format has them, else rendered whole."""
        reports = self.reports
        if self.finish.piecewise is not None:
            return self.finish.piecewise.join(reports, self.pieces)
        return render(reports, self.finish.root, explain=self.finish.explain)


def expectation(path: str, named: bool) -> str:
    """Why ``path`` must be a loadable model ("" if it need not be)."""
    if named:
        return "named on the command line"
    return "named like a model file" if model_named(path) else ""


def _cmd_scan(args: argparse.Namespace) -> int:
    with StorePace() as pace:  # listing, judging and reporting a store: no full collections (_gcscope)
        return _scan_command(args, pace)


def _scan_command(args: argparse.Namespace, pace: StorePace) -> int:
    policy = _policy(args.config, args.allow, args.allow_unsafe)
    root = args.root if args.root is not None else os.getcwd()
    if not os.path.isdir(root):
        raise CliError(f"--root is not a directory: {root}")
    baseline = None
    if args.baseline is not None:
        from safeload._baseline import BaselineError, load_baseline

        try:
            baseline = load_baseline(args.baseline)
        except BaselineError as exc:
            raise CliError(str(exc)) from None
    ignore = Ignore(tuple(args.exclude), not args.no_gitignore)
    local = [p for p in args.paths if not is_url(p)]
    remote = [p for p in args.paths if is_url(p)]
    files = discover(local, policy, ignore)
    named = {os.path.realpath(p) for p in local if os.path.isfile(p)}
    cache = None if args.no_cache else ResultCache()
    per_file = _policies_near(files, args) if args.config is None else policy
    # (realpath only when files were named: a directory of 10,000 files should not pay for it)
    expected = [expectation(p, bool(named) and os.path.realpath(p) in named) for p in files]
    finish = _Finish(root, args.explain, args.not_judged == "pass", baseline, get_piecewise(args.format))
    finished = finish.slots(len(files))
    scan_all(files, per_file, jobs=args.jobs, explain=args.explain, cache=cache,
             each=lambda i, report: finished.put(i, report, expected[i]))
    if remote:
        from safeload._remote import scan_urls

        try:
            for report, why in scan_urls(remote, policy, explain=args.explain, jobs=args.jobs):
                finished.append(report, why)
                pace.judged(report.size)
        except SafeloadError as exc:
            raise CliError(str(exc)) from None
    reports = finished.reports
    if args.write_baseline is not None:
        from safeload._baseline import write_baseline

        try:
            count = write_baseline(args.write_baseline, [(display_path(r.path, root), r) for r in reports])
        except OSError as exc:
            raise CliError(f"cannot write {args.write_baseline}: {exc.strerror or exc}") from None
        print(f"{_PROG}: wrote {count} finding(s) to {args.write_baseline}; give each a reason before using it "
              "with --baseline", file=sys.stderr)
    output = finished.render(get_renderer(args.format))
    code = EXIT_REFUSED if any(r.failed for r in reports) else EXIT_OK
    if not reports and not args.allow_empty:
        print(f"{_PROG}: nothing scanned: no model files found in {' '.join(args.paths)} "
              "(pass --allow-empty if that is expected)", file=sys.stderr)
        code = EXIT_REFUSED
    if args.output is not None:
        try:
            with open(args.output, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as fh:
                fh.write(output)
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        try:
            _write(sys.stdout, output)
        except BrokenPipeError:  # `safeload scan . | head`: the verdict still decides the exit status
            _silence_stdout()
    return code


def _policies_near(files: Sequence[str], args: argparse.Namespace) -> list[Policy]:
    """Each file's policy: the configuration found from the file's directory upward (as ruff and mypy
    find theirs), else from the working directory, plus ``--allow``; one policy per configuration file."""
    from safeload._config import config_path

    by_config: dict[str, Policy] = {}
    # files of one directory share its configuration (keyed by the name's directory as given: one
    # abspath per directory rather than per file)
    by_directory: dict[str, Path | None] = {}
    out: list[Policy] = []
    for path in files:
        directory = os.path.dirname(path)
        try:
            if directory not in by_directory:
                by_directory[directory] = config_path(path)
        except (OSError, ValueError) as exc:
            raise CliError(f"configuration for {path}: {exc}") from None
        found = by_directory[directory]
        key = str(found) if found is not None else ""
        if key not in by_config:
            by_config[key] = _policy(key or None, args.allow, args.allow_unsafe) if key else _policy(
                None, args.allow, args.allow_unsafe)
        out.append(by_config[key])
    return out


def is_url(path: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) is not None


def _write(stream: IO[str], text: str) -> None:
    """Write ``text`` even if the terminal encoding cannot show every character of a file name."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()
