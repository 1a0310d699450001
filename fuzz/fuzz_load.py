"""Mutation fuzzer for ``safeload.load`` / ``loads`` / ``scan``.

Seeds are built at runtime from small fitted scikit-learn models, saved in every
format safeload reads (pickle protocols 0-5, joblib raw, joblib compressed with
zlib/gzip/bz2/xz/lzma/lz4, skops).  Each case mutates one seed (bit flips, byte
runs, truncation, splices, inflated length fields, inserted opcodes, duplicated
ranges; compressed files are mutated outside and inside the compression; skops
archives at the JSON, ``.npy`` header and member level) and checks:

* ``safeload.loads(mutant)`` returns or raises a ``SafeloadError`` subclass;
* ``safeload.scan(path)`` returns a report (never raises);
* ``scan(...).safe`` agrees with whether ``loads`` succeeded;
* nothing crashes, hangs or allocates runaway memory;
* a model that loads does not crash the process when it is used (``predict``).

Cases run in forked worker processes under ``RLIMIT_AS`` and a per-case alarm;
the parent kills a worker that stops reporting, so segfaults, hangs and
out-of-memory kills are recorded as failures with the input saved.

Usage::

    python fuzz/fuzz_load.py --seconds 900 --jobs 1 --seed 1
    python fuzz/fuzz_load.py --replay fuzz/crashes/<name>.bin
"""

from __future__ import annotations

import argparse
import bz2
import collections
import dataclasses
import faulthandler
import gzip
import hashlib
import io
import json
import lzma
import multiprocessing
import multiprocessing.connection
import os
import pickle
import pickletools
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import safeload  # noqa: E402

CRASH_DIR = REPO / "fuzz" / "crashes"
PICKLE_FORMATS = tuple(f"pickle-p{p}" for p in range(6))
COMPRESSORS = ("zlib", "gzip", "bz2", "xz", "lzma", "lz4")
FORMATS: tuple[str, ...] = PICKLE_FORMATS + ("joblib",) + tuple(f"joblib-{c}" for c in COMPRESSORS) + ("skops",)

MEMORY_CAP = 4 << 30  # RLIMIT_AS of a worker
RSS_WARN = 1 << 30  # peak-RSS growth of one case that counts as runaway memory
CASE_TIMEOUT = 10.0  # soft per-case alarm (seconds)
HARD_TIMEOUT = 40.0  # the parent kills a worker silent for this long
SLOW_CASE = 5.0  # a case slower than this is recorded (not a failure)

CODE2OP: dict[str, Any] = pickletools.code2op  # type: ignore[attr-defined]
LOADED = "loaded"
FAILURE = "FAILURE"


# ---------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """One benign artifact: ``data`` is the file, ``stream`` the pickle stream inside (if any)."""

    model: str
    fmt: str
    data: bytes
    stream: bytes | None = None
    ops: tuple[tuple[int, int, int], ...] = ()  # (offset, opcode byte, total length) in ``stream``


def _fit_models() -> dict[str, Any]:
    """Small fitted models covering trees, forests, HGB (categorical), KD-trees, SVC and text."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.RandomState(0)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    xc = x.copy()
    xc[:, 0] = rng.randint(0, 4, size=40)
    docs = ["the cat sat", "the dog ran", "a cat and a dog", "models are files", "files are data"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "logreg": LogisticRegression().fit(x, y),
            "tree": DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, y),
            "forest": RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y),
            "hgb": HistGradientBoostingClassifier(max_iter=3, categorical_features=[0], random_state=0).fit(xc, y),
            "knn": KNeighborsClassifier(algorithm="kd_tree", n_neighbors=3).fit(x, y),
            "svc": make_pipeline(StandardScaler(), SVC()).fit(x, y),
            "vectorizer": CountVectorizer().fit(docs),
            # 300 words: long vocabulary runs for the walker's run matcher, with 0x94 bytes in the
            # text ("\u0514" is d4 94 in UTF-8) and in the integers (column 148).
            "vocabulary": CountVectorizer().fit(
                [" ".join(f"w{i}{'ԕԔ'[i % 2] * (i % 3)}" for i in range(k, 300, 7)) for k in range(7)]),
            # object arrays (categories_): numpy fills them from a list in the state
            "onehot": OneHotEncoder(handle_unknown="ignore").fit(
                np.array([["a", 1], ["b", 2], ["c", 1], ["a", 3]], dtype=object)),
        }


def _probe(model: str) -> Any:
    """Input for ``predict``/``transform`` of a (mutated) model."""
    if model in ("vectorizer", "vocabulary"):
        return ["the cat ran", "zebra"]
    if model == "onehot":
        return np.array([["a", 1], ["z", 3]], dtype=object)
    return np.random.RandomState(1).normal(size=(6, 4))


def _dump(obj: Any, fmt: str, tmp: Path) -> bytes:
    if fmt.startswith("pickle-p"):
        return pickle.dumps(obj, protocol=int(fmt[-1]))
    if fmt == "skops":
        import skops.io as sio

        return bytes(sio.dumps(obj))
    import joblib

    target = tmp / "seed.bin"
    compress: Any = 0 if fmt == "joblib" else (fmt.split("-", 1)[1], 3)
    joblib.dump(obj, target, compress=compress)
    return target.read_bytes()


def decompress(fmt: str, data: bytes) -> bytes:
    """Inflate a joblib-compressed file (used on benign seeds only)."""
    method = fmt.split("-", 1)[1]
    if method == "zlib":
        return zlib.decompress(data)
    if method == "gzip":
        return gzip.decompress(data)
    if method == "bz2":
        return bz2.decompress(data)
    if method in ("xz", "lzma"):
        return lzma.decompress(data)
    import lz4.frame

    return bytes(lz4.frame.decompress(data))


def recompress(fmt: str, data: bytes) -> bytes:
    """Compress ``data`` the way joblib does for ``fmt``."""
    method = fmt.split("-", 1)[1]
    if method == "zlib":
        return zlib.compress(data, 3)
    if method == "gzip":
        return gzip.compress(data, 3, mtime=0)
    if method == "bz2":
        return bz2.compress(data, 3)
    if method == "xz":
        return lzma.compress(data, lzma.FORMAT_XZ, preset=3)
    if method == "lzma":
        return lzma.compress(data, lzma.FORMAT_ALONE, preset=3)
    import lz4.frame

    return bytes(lz4.frame.compress(data, compression_level=3))


def _array_skips(stream: bytes) -> dict[int, int]:
    """Positions right after a joblib array BUILD -> end of the raw array bytes (from the benign seed)."""
    try:
        from safeload._walker import walk

        trace = walk(stream, safeload.Policy.default(), joblib=True)
    except Exception:  # noqa: BLE001 - optional: without it the op list stops at the first array
        return {}
    return {span.build_offset + 1: span.data_offset + span.nbytes for span in trace.arrays if span.nested is None}


def opcode_table(stream: bytes, skips: dict[int, int] | None = None) -> tuple[tuple[int, int, int], ...]:
    """Every opcode of a benign stream as (offset, opcode byte, length), skipping joblib array data."""
    skips = skips or {}
    out: list[tuple[int, int, int]] = []
    f = io.BytesIO(stream)
    pos = 0
    n = len(stream)
    while pos < n:
        if pos in skips:
            pos = skips[pos]
            continue
        op = CODE2OP.get(chr(stream[pos]))
        if op is None:
            break
        f.seek(pos + 1)
        try:
            if op.arg is not None:
                op.arg.reader(f)
        except Exception:  # noqa: BLE001 - stop at anything genops would choke on
            break
        end = f.tell()
        out.append((pos, stream[pos], end - pos))
        pos = end
    return tuple(out)


def build_seeds(models: Sequence[str] | None = None, formats: Sequence[str] = FORMATS) -> list[Seed]:
    """Fit the models and save each in each format (a few seconds)."""
    fitted = _fit_models()
    seeds: list[Seed] = []
    with tempfile.TemporaryDirectory(prefix="safeload-fuzz-seed-") as tmp:
        for name, obj in fitted.items():
            if models is not None and name not in models:
                continue
            for fmt in formats:
                data = _dump(obj, fmt, Path(tmp))
                stream: bytes | None
                if fmt == "skops":
                    stream = None
                elif fmt.startswith("joblib-"):
                    stream = decompress(fmt, data)
                else:
                    stream = data
                ops = opcode_table(stream, _array_skips(stream)) if stream is not None else ()
                seeds.append(Seed(name, fmt, data, stream, ops))
    return seeds


# ---------------------------------------------------------------------------
# mutators
# ---------------------------------------------------------------------------

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)

GLOBAL_NAMES = (
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("__builtin__", "eval"),
    ("subprocess", "Popen"), ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"),
    ("sklearn.tree._tree", "Tree"), ("joblib.numpy_pickle", "NumpyArrayWrapper"), ("builtins", "set"),
    ("__builtin__", "set"), ("builtins", "object"), ("sklearn.svm._classes", "SVC"), ("collections", "OrderedDict"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("_codecs", "encode"), ("scipy.sparse._csr", "csr_matrix"),
    ("joblib.numpy_pickle_compat", "NDArrayWrapper"), ("builtins", "__import__"), ("x" * 300, "y"), ("", ""),
    ("numpy", "core.multiarray._reconstruct"), ("builtins", "dict.fromkeys"), ("\u00e9", "\udcff"),
)

SKOPS_TYPES = (
    ("builtins", "eval"), ("os", "system"), ("builtins", "dict"), ("builtins", "list"), ("numpy", "ndarray"),
    ("numpy", "dtype"), ("sklearn.tree._classes", "DecisionTreeClassifier"), ("sklearn.tree._tree", "Tree"),
    ("sklearn.svm._classes", "SVC"), ("numpy.random", "RandomState"), ("builtins", "getattr"),
    ("operator", "attrgetter"), ("functools", "partial"), ("scipy.sparse", "csr_matrix"), ("", ""), ("x", "y.z"),
)


def _skops_loaders() -> tuple[str, ...]:
    try:
        from skops.io._persist import NODE_TYPE_MAPPING

        return tuple(sorted({k[0] for k in NODE_TYPE_MAPPING})) + ("NoSuchNode", "")
    except Exception:  # noqa: BLE001
        return ("ObjectNode", "ReduceNode", "FunctionNode", "NdArrayNode", "DictNode", "TypeNode", "JsonNode")


SKOPS_LOADERS = _skops_loaders()


def _le(value: int, width: int) -> bytes:
    return (value % (1 << (8 * width))).to_bytes(width, "little")


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def mut_bitflip(rng: random.Random, buf: bytearray) -> str:
    for _ in range(rng.randint(1, 8)):
        if buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return "bitflip"


def mut_byterun(rng: random.Random, buf: bytearray) -> str:
    if not buf:
        return "byterun-empty"
    start = rng.randrange(len(buf))
    ln = min(rng.choice((1, 2, 4, 8, rng.randint(1, 64))), len(buf) - start)
    kind = rng.choice(("random", "zero", "ff"))
    fill = _rand_bytes(rng, ln) if kind == "random" else bytes([0 if kind == "zero" else 0xFF]) * ln
    if rng.random() < 0.2:
        buf[start:start] = fill  # insert instead of overwrite
        return f"byterun-insert-{kind}"
    buf[start:start + ln] = fill
    return f"byterun-{kind}"


def mut_truncate(rng: random.Random, buf: bytearray) -> str:
    if len(buf) > 1:
        cut = rng.choice((rng.randrange(1, len(buf)), len(buf) - rng.randint(1, min(16, len(buf) - 1))))
        del buf[cut:]
    return "truncate"


def mut_duplicate(rng: random.Random, buf: bytearray, bounds: Sequence[int] = ()) -> str:
    if len(buf) < 2:
        return "duplicate-empty"
    if len(bounds) > 2 and rng.random() < 0.7:
        a, b = sorted(rng.sample(list(bounds), 2))
        b = min(b, a + 4096)
        at = rng.choice(list(bounds))
    else:
        a = rng.randrange(len(buf))
        b = min(len(buf), a + rng.randint(1, 256))
        at = rng.randrange(len(buf) + 1)
    buf[at:at] = buf[a:b]
    return "duplicate"


def mut_splice(rng: random.Random, buf: bytearray, other: bytes) -> str:
    if not buf or not other:
        return "splice-empty"
    a = rng.randrange(len(buf))
    b = rng.randrange(len(other))
    buf[a:] = other[b:]
    return "splice"


def generic_mutation(rng: random.Random, buf: bytearray, others: Callable[[], bytes],
                     bounds: Sequence[int] = ()) -> str:
    """One byte-level mutation chosen at random."""
    pick = rng.random()
    if pick < 0.3:
        return mut_bitflip(rng, buf)
    if pick < 0.55:
        return mut_byterun(rng, buf)
    if pick < 0.7:
        return mut_truncate(rng, buf)
    if pick < 0.85:
        return mut_duplicate(rng, buf, bounds)
    return mut_splice(rng, buf, others())


# Opcodes whose argument is (or starts with) a binary length / index / integer field: name -> field width.
def _field_width(opcode: int) -> int:
    op = CODE2OP.get(chr(opcode))
    if op is None or op.arg is None:
        return 0
    n = op.arg.n
    return {-2: 1, -3: 4, -4: 4, -5: 8}.get(n, n if n > 0 else 0)


def mut_length(rng: random.Random, buf: bytearray, ops: Sequence[tuple[int, int, int]]) -> str:
    """Set a binary length/index field (BINUNICODE, BINBYTES, FRAME, LONG_BINPUT, BININT...) to an odd value."""
    cands = [o for o in ops if _field_width(o[1]) > 0 and o[0] + o[2] <= len(buf)]
    if not cands:
        return mut_bitflip(rng, buf)
    # Favour the length-prefixed and frame opcodes.
    heavy = [o for o in cands if o[1] in b"\x95\x58\x42\x54\x8d\x8e\x96\x8c\x43\x55\x8a\x8b\x72\x6a"]
    off, opcode, total = rng.choice(heavy if heavy and rng.random() < 0.8 else cands)
    width = _field_width(opcode)
    old = int.from_bytes(buf[off + 1:off + 1 + width], "little")
    value = rng.choice(INTERESTING + (len(buf), len(buf) - off, len(buf) - off - width - 1, old + 1, old - 1,
                                      old * 2, old + rng.randint(1, 4096), rng.getrandbits(8 * width)))
    buf[off + 1:off + 1 + width] = _le(value, width)
    return f"length-{CODE2OP[chr(opcode)].name}"


_TEXT_OPS = b"IFLSVgpPci"
TEXT_VALUES = (b"99999999999999999999999999", b"-1", b"1e400", b"nan", b"0x7fffffff", b"'", b"''", b"'\\x", b"",
               b"9" * 5000, b"os", b"system", b"'\\udcff'", b"\xff\xfe", b"01", b"00", b"1_000")


def mut_text(rng: random.Random, buf: bytearray, ops: Sequence[tuple[int, int, int]]) -> str:
    """Replace the argument line of a text opcode (protocol 0/1: INT, LONG, STRING, GET, PUT, GLOBAL...)."""
    cands = [o for o in ops if o[1] in _TEXT_OPS and o[0] + o[2] <= len(buf)]
    if not cands:
        return mut_length(rng, buf, ops)
    off, opcode, total = rng.choice(cands)
    end = buf.find(b"\n", off + 1)
    if end < 0:
        return "text-none"
    buf[off + 1:end] = rng.choice(TEXT_VALUES)
    return f"text-{chr(opcode)}"


DTYPE_CODES = ("i8", "<i8", ">i8", "f8", "<f8", ">f8", "u1", "b1", "?", "O", "O8", "V0", "V8", "V64", "S0", "S8",
               "U0", "U8", "a", "c16", "e", "g", "G", "m8", "M8", "m8[ns]", "M8[D]", "M8[as]", "m8[xx]", "M8[1000Y]",
               "i0", "f3", "x", "")
_DTYPE_TEXT = re.compile(rb"^[<>|=]?[a-zA-Z?][0-9]{0,3}(\[[a-zA-Z0-9]{1,4}\])?$")
# (elsize, alignment, flags) of a dtype state, binary and text protocols
_DTYPE_TAIL = re.compile(rb"J(....)J(....)K(.)t|I(-?[0-9]+)\nI(-?[0-9]+)\nI([0-9]+)\nt", re.DOTALL)


# Numbers a model's state never holds but an attacker can write: past int64 and past CPython's
# 4,300-digit int/str limit (a stray ValueError wherever a message formats one), signed edges,
# non-finite and subnormal floats.
EXTREME_INTS = (1 << 15000, -(1 << 15000), 1 << 64, (1 << 63) - 1, -(1 << 63), 1 << 31, -(1 << 31), -1, 0,
                1 << 62)
EXTREME_FLOATS = (float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324, -0.0, 1e19)
_INT_OPS = frozenset(b"JKM\x8a\x8bIL")
_FLOAT_OPS = frozenset(b"GF")


def encode_number(value: int | float, text: bool) -> bytes:
    """``value`` as one opcode: binary (LONG4, BINFLOAT) or protocol-0 text (INT/LONG, FLOAT)."""
    if isinstance(value, float):
        if text:
            return b"F" + repr(value).encode() + b"\n"
        return b"G" + struct.pack(">d", value)
    if text:
        return b"L" + _digits(value) + b"L\n"
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True) if value else b""
    return b"\x8b" + len(raw).to_bytes(4, "little") + raw


def _digits(value: int) -> bytes:
    """Decimal digits of any int, also past the 4,300 that ``str()`` refuses by default."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(value).encode()
    finally:
        sys.set_int_max_str_digits(old)


def number_sites(buf: bytes | bytearray, ops: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The numeric opcodes of ``ops`` still inside ``buf``."""
    return [o for o in ops if o[1] in _INT_OPS | _FLOAT_OPS and o[0] + o[2] <= len(buf)]


def mut_number(rng: random.Random, buf: bytearray, ops: Sequence[tuple[int, int, int]]) -> str:
    """Replace a number with an extreme one of either kind (an int where a float was, and back)."""
    cands = number_sites(buf, ops)
    if not cands:
        return mut_length(rng, buf, ops)
    off, opcode, total = rng.choice(cands)
    value = rng.choice(EXTREME_INTS + EXTREME_FLOATS)
    text = opcode in b"ILF" or buf[:1] != b"\x80"
    buf[off:off + total] = encode_number(value, text)
    return f"number-{chr(opcode) if 32 < opcode < 127 else hex(opcode)}"


def _reencode(opcode: int, raw: bytes) -> bytes:
    if opcode == 0x8C:
        return b"\x8c" + bytes([len(raw)]) + raw
    if opcode == 0x55:
        return b"U" + bytes([len(raw)]) + raw
    if opcode in (0x58, 0x54):
        return bytes([opcode]) + _le(len(raw), 4) + raw
    return b"V" + raw + b"\n"


def mut_dtype(rng: random.Random, buf: bytearray, ops: Sequence[tuple[int, int, int]]) -> str:
    """Change a numpy dtype type string, or the (elsize, alignment, flags) of a dtype state."""
    tails = list(_DTYPE_TAIL.finditer(buf))
    if tails and rng.random() < 0.5:
        m = rng.choice(tails)
        values = [rng.choice((-1, 0, 1, 2, 3, 4, 8, 16, 0x3F, 0xFF, 1 << 20, 0x7FFFFFFF)) for _ in range(3)]
        keep = rng.randrange(3)
        if m.group(1) is not None:
            old = [int.from_bytes(m.group(1), "little", signed=True), int.from_bytes(m.group(2), "little", signed=True),
                   m.group(3)[0]]
            values[keep] = old[keep]
            new = b"J" + _le(values[0], 4) + b"J" + _le(values[1], 4) + b"K" + _le(values[2], 1) + b"t"
        else:
            old = [int(m.group(4)), int(m.group(5)), int(m.group(6))]
            values[keep] = old[keep]
            new = b"I%d\nI%d\nI%d\nt" % tuple(values)
        buf[m.start():m.end()] = new
        return "dtype-state"
    cands = []
    for off, opcode, total in ops:
        if opcode in (0x8C, 0x55) and off + total <= len(buf):
            raw = bytes(buf[off + 2:off + total])
        elif opcode in (0x58, 0x54) and off + total <= len(buf):
            raw = bytes(buf[off + 5:off + total])
        elif opcode == 0x56 and off + total <= len(buf):
            raw = bytes(buf[off + 1:off + total - 1])
        else:
            continue
        if _DTYPE_TEXT.match(raw) and raw not in (b"C", b"F", b"b"):
            cands.append((off, opcode, total))
    if not cands:
        return mut_length(rng, buf, ops)
    off, opcode, total = rng.choice(cands)
    buf[off:off + total] = _reencode(opcode, rng.choice(DTYPE_CODES).encode())
    return "dtype-code"


def _sbu(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")[:255]
    return b"\x8c" + bytes([len(raw)]) + raw


def _random_args(rng: random.Random, opcode: int) -> bytes:
    """Well-formed-ish (random valued) arguments for ``opcode``."""
    op = CODE2OP.get(chr(opcode))
    if op is None or op.arg is None:
        return b""
    n = op.arg.n
    if n > 0:
        return _rand_bytes(rng, n)
    if n == -1:
        return rng.choice(TEXT_VALUES + (b"os\nsystem", b"1", b"'a'")) + b"\n"
    width = {-2: 1, -3: 4, -4: 4, -5: 8}[n]
    payload = _rand_bytes(rng, rng.randint(0, 12))
    length = len(payload) if rng.random() < 0.8 else rng.choice(INTERESTING)
    return _le(length, width) + payload


def opcode_payload(rng: random.Random) -> tuple[str, bytes]:
    """An opcode sequence to insert: a random opcode, or a targeted dangerous construct."""
    kind = rng.choice(("random", "random", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "EXT", "PERSID",
                       "NEXT_BUFFER", "INST", "OBJ", "NEWOBJ", "MEMO", "FRAME"))
    mod, name = rng.choice(GLOBAL_NAMES)
    glob = b"c" + mod.encode("utf-8", "surrogatepass") + b"\n" + name.encode("utf-8", "surrogatepass") + b"\n"
    sglob = _sbu(mod) + _sbu(name) + b"\x93"
    if kind == "random":
        opcode = rng.choice([ord(c) for c in CODE2OP] + [rng.randrange(256)])
        return f"op-{opcode:#04x}", bytes([opcode]) + _random_args(rng, opcode)
    if kind == "GLOBAL":
        return "GLOBAL", glob + rng.choice((b"", b")R", b"}b", b"N\x85R", b"\x94"))
    if kind == "STACK_GLOBAL":
        return "STACK_GLOBAL", rng.choice((b"\x93", sglob, sglob + b")R", sglob + b")\x81", b"K\x01K\x02\x93"))
    if kind == "REDUCE":
        return "REDUCE", rng.choice((b"R", b")R", glob + b")R", sglob + b"N\x85R", b"\x8c\x05hello\x85R"))
    if kind == "BUILD":
        return "BUILD", rng.choice((b"b", b"}b", b"N\x86b", glob + b"}b", sglob + b"(\x8c\x01aK\x01db"))
    if kind == "EXT":
        return "EXT", rng.choice((b"\x82\x01", b"\x82\xff", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00",
                                  b"\x84\xff\xff\xff\x7f"))
    if kind == "PERSID":
        return "PERSID", rng.choice((b"Pfoo\n", b"P0\n", b"\x8c\x03fooQ", b"Q", b"NQ"))
    if kind == "NEXT_BUFFER":
        return "NEXT_BUFFER", rng.choice((b"\x97", b"\x98", b"\x97\x98"))
    if kind == "INST":
        return "INST", b"(i" + mod.encode("utf-8", "surrogatepass") + b"\n" + name.encode("utf-8", "surrogatepass") \
            + b"\n"
    if kind == "OBJ":
        return "OBJ", b"(" + glob + b"o"
    if kind == "NEWOBJ":
        return "NEWOBJ", rng.choice((glob + b")\x81", glob + b")}\x92", b")\x81", sglob + b"N\x85\x81"))
    if kind == "MEMO":
        return "MEMO", rng.choice((b"\x94", b"h\xff", b"j\xff\xff\xff\x7f", b"r\xff\xff\xff\x7f", b"q\x00",
                                   b"g999999\n", b"p-1\n"))
    return "FRAME", b"\x95" + _le(rng.choice(INTERESTING + (rng.randint(0, 64),)), 8)


def mut_insert_opcode(rng: random.Random, buf: bytearray, ops: Sequence[tuple[int, int, int]]) -> str:
    kind, payload = opcode_payload(rng)
    bounds = [o[0] for o in ops if o[0] <= len(buf)]
    at = rng.choice(bounds) if bounds and rng.random() < 0.85 else rng.randrange(len(buf) + 1)
    if rng.random() < 0.2 and ops:
        off, _, total = rng.choice(ops)  # replace an opcode instead of inserting before it
        if off + total <= len(buf):
            buf[off:off + total] = payload
            return f"replace-{kind}"
    buf[at:at] = payload
    return f"insert-{kind}"


def mutate_stream(rng: random.Random, stream: bytes, ops: Sequence[tuple[int, int, int]],
                  others: Callable[[], bytes]) -> tuple[bytes, list[str]]:
    """Mutate a pickle / joblib stream: one structure-aware mutation, then maybe byte-level ones."""
    buf = bytearray(stream)
    bounds = [o[0] for o in ops]
    applied: list[str] = []
    first = rng.random()
    if first < 0.25:
        applied.append(mut_length(rng, buf, ops))
    elif first < 0.33:
        applied.append(mut_dtype(rng, buf, ops))
    elif first < 0.37:
        applied.append(mut_text(rng, buf, ops))
    elif first < 0.42:
        applied.append(mut_number(rng, buf, ops))
    elif first < 0.7:
        applied.append(mut_insert_opcode(rng, buf, ops))
    else:
        applied.append(generic_mutation(rng, buf, others, bounds))
    while rng.random() < 0.3:
        applied.append(generic_mutation(rng, buf, others, bounds) if rng.random() < 0.6
                       else mut_insert_opcode(rng, buf, ops))
    return bytes(buf), applied


# -- skops ---------------------------------------------------------------------


def _read_zip(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _write_zip(members: Sequence[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names are a mutation
            for name, payload in members:
                zf.writestr(name, payload)
    return out.getvalue()


def _dict_nodes(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            yield cur
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def mut_schema(rng: random.Random, schema: Any, files: Sequence[str]) -> str:
    """A JSON-level change to a skops schema (in place)."""
    nodes = list(_dict_nodes(schema))
    typed = [n for n in nodes if "__class__" in n] or nodes
    node = rng.choice(typed)
    pick = rng.random()
    if pick < 0.3:
        mod, cls = rng.choice(SKOPS_TYPES)
        if rng.random() < 0.6:
            node["__module__"], node["__class__"] = mod, cls
        elif rng.random() < 0.5:
            node["__module__"] = mod
        else:
            node["__class__"] = cls
        return "skops-type"
    if pick < 0.45:
        node["__loader__"] = rng.choice(SKOPS_LOADERS)
        return "skops-loader"
    if pick < 0.6:
        key = rng.choice(list(node)) if node else "content"
        node[key] = rng.choice((None, 0, -1, 2**63, 1e308, "", "x" * 1000, [], {}, [1, 2], {"a": 1}, True,
                                rng.choice(list(files) or ["missing.npy"])))
        return "skops-value"
    if pick < 0.7 and node:
        del node[rng.choice(list(node))]
        return "skops-delete"
    if pick < 0.8 and files:
        node["file"] = rng.choice(list(files) + ["missing.npy", "../schema.json", "schema.json"])
        node.setdefault("__loader__", "NdArrayNode")
        return "skops-file"
    if pick < 0.9:
        shapes = [n for n in nodes if "shape" in n]
        if shapes:
            target = rng.choice(shapes)
            target["shape"] = rng.choice(("[1000000000, 1000000000]", "[-1]", "[]", "[0]", "x", [2**62, 4], None))
            return "skops-shape"
        node["__id__"] = rng.choice((0, 1, -1, 2**40, "x"))
        return "skops-id"
    node["content"] = f"{DEEP_MARK}{rng.choice((50, 900, 3000, 100_000))}"  # expanded by ``dump_schema``
    return "skops-deep"


DEEP_MARK = "\x00safeload-fuzz-deep:"
_DEEP_OPEN = '{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": ['


def dump_schema(schema: Any) -> bytes:
    """``json.dumps``, expanding deep-nesting markers textually (``json`` itself would recurse)."""
    text = json.dumps(schema)
    mark = json.dumps(DEEP_MARK)[:-1]
    while mark in text:
        start = text.index(mark)
        end = text.index('"', start + len(mark))
        depth = int(text[start + len(mark):end])
        text = text[:start] + _DEEP_OPEN * depth + "1" + "]}" * depth + text[end + 1:]
    return text.encode()


def npy_header(rng: random.Random, payload: bytes) -> bytes:
    """Rewrite a ``.npy`` member's header (descr, shape, order, length field)."""
    try:
        fh = io.BytesIO(payload)
        major, minor = np.lib.format.read_magic(fh)
        header = np.lib.format._read_array_header(fh, (major, minor), max_header_size=1 << 20)  # type: ignore[attr-defined]
        body = payload[fh.tell():]
        shape, fortran, dtype = header
        descr: Any = np.lib.format.dtype_to_descr(dtype)
    except Exception:  # noqa: BLE001 - already mutated or not an npy member
        return payload
    pick = rng.random()
    if pick < 0.35:
        shape = rng.choice(((10**9, 10**9), (2**62,), (-1,), (), (0,), shape + (1,), (shape[0] + 1,) if shape else (1,),
                            tuple(d * 2 for d in shape)))
    elif pick < 0.6:
        descr = rng.choice(("|O", "<f8", ">i8", "|V0", "<U100000", "|b1", [("a", "<f8"), ("b", "|O")], "<c16", "M8",
                            "|S0", "x"))
    elif pick < 0.7:
        fortran = not fortran
    text = "{" + f"'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, " + "}"
    if pick >= 0.9:
        text = rng.choice(("(" * 200 + ")" * 200, "{'descr': '<f8'}", "{}", "__import__('os')", "{'descr':" + "[" * 500))
    raw = text.encode("latin1")
    raw += b" " * ((64 - (10 + len(raw) + 1) % 64) % 64) + b"\n"
    hlen = len(raw) if rng.random() < 0.9 else rng.choice((0, 0xFFFF, len(raw) + 7))
    return b"\x93NUMPY\x01\x00" + _le(hlen, 2) + raw + body


def mutate_skops(rng: random.Random, data: bytes, others: Callable[[], bytes]) -> tuple[bytes, list[str]]:
    """Mutate a skops archive at the JSON, npy-header, member-byte or zip-byte level."""
    members = _read_zip(data)
    names = [info.filename for info, _ in members]
    files = [n for n in names if n != "schema.json"]
    pick = rng.random()
    applied: list[str] = []
    if pick < 0.45:
        idx = names.index("schema.json")
        schema = json.loads(members[idx][1])
        applied.append(mut_schema(rng, schema, files))
        while rng.random() < 0.3:
            applied.append(mut_schema(rng, schema, files))
        blob = dump_schema(schema)
        out = [(n, blob if n == "schema.json" else p) for (i, p), n in zip(members, names, strict=True)]
    elif pick < 0.65 and files:
        target = rng.choice([n for n in files if n.endswith(".npy")] or files)
        out = [(n, npy_header(rng, p) if n == target else p) for (i, p), n in zip(members, names, strict=True)]
        applied.append("npy-header")
    elif pick < 0.85:
        target = rng.choice(names)
        out = []
        for (_, payload), name in zip(members, names, strict=True):
            if name == target:
                buf = bytearray(payload)
                applied.append("member-" + generic_mutation(rng, buf, others))
                payload = bytes(buf)
            out.append((name, payload))
        if rng.random() < 0.1:
            out.append((rng.choice(names), rng.choice(out)[1]))
            applied.append("member-dup")
    else:
        buf = bytearray(data)
        applied.append("zip-" + generic_mutation(rng, buf, others))
        return bytes(buf), applied
    comp = zipfile.ZIP_DEFLATED if rng.random() < 0.2 else zipfile.ZIP_STORED
    return _write_zip(out, comp), applied


def mutate(rng: random.Random, seed: Seed, seeds: Sequence[Seed]) -> tuple[bytes, list[str]]:
    """One mutant of ``seed`` and the names of the mutations applied."""

    def other_file() -> bytes:
        same = [s for s in seeds if s.fmt == seed.fmt]
        return rng.choice(same if same and rng.random() < 0.7 else list(seeds)).data

    def other_stream() -> bytes:
        pool = [s for s in seeds if s.stream is not None]
        pick = rng.choice(pool)
        return pick.stream or b""

    if seed.fmt == "skops":
        return mutate_skops(rng, seed.data, other_file)
    if seed.fmt.startswith("joblib-"):
        if rng.random() < 0.35:
            buf = bytearray(seed.data)
            applied = ["compressed-" + generic_mutation(rng, buf, other_file)]
            return bytes(buf), applied
        assert seed.stream is not None
        inner, applied = mutate_stream(rng, seed.stream, seed.ops, other_stream)
        return recompress(seed.fmt, inner), ["inner-" + a for a in applied]
    assert seed.stream is not None
    return mutate_stream(rng, seed.stream, seed.ops, other_stream)


# ---------------------------------------------------------------------------
# running one case
# ---------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised by the per-case alarm; a BaseException so safeload's ``except Exception`` cannot swallow it."""


@dataclass
class CaseResult:
    """What one mutant did."""

    load: str  # LOADED, a SafeloadError subclass name, or "FAILURE:<Exc>"
    scan: str  # verdict or "FAILURE:<Exc>"
    failures: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail); kind is the dedupe key
    notes: list[tuple[str, str]] = field(default_factory=list)  # disagreements judged inherent, slow cases
    seconds: float = 0.0


def _sig(exc: BaseException) -> str:
    """Exception type plus the innermost frame inside the repo/site-packages: a dedupe key."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
    return f"{type(exc).__name__}@{where}"


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]


def _is_memory(exc: BaseException) -> bool:
    text = str(exc)
    return "MemoryError" in text or "out of memory" in text


def _alarm(_signum: int, _frame: Any) -> None:
    raise CaseTimeout()


def run_case(data: bytes, path: str, model: str, *, load_path: bool = False, exercise: bool = True,
             timeout: float = CASE_TIMEOUT) -> CaseResult:
    """Scan ``path`` (holding ``data``), ``loads(data)``, and use the model; record violations."""
    result = CaseResult("", "")
    t0 = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    old = signal.signal(signal.SIGALRM, _alarm)
    obj: Any = None
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        report: Any = None
        try:
            report = safeload.scan(path)
            result.scan = report.verdict
        except CaseTimeout:
            raise
        except BaseException as exc:  # noqa: BLE001 - scan must never raise at all
            result.scan = f"{FAILURE}:{type(exc).__name__}"
            result.failures.append((f"scan-raised-{_sig(exc)}", _describe(exc)))
        load_exc: BaseException | None = None
        try:
            obj = safeload.loads(data)
            result.load = LOADED
        except CaseTimeout:
            raise
        except safeload.SafeloadError as exc:
            load_exc = exc
            result.load = type(exc).__name__
            if _is_memory(exc):
                # Clean refusal, but worth a look: e.g. an LZMA header asking liblzma for a 4 GiB
                # dictionary fails under RLIMIT_AS.  Real blow-ups show up as RSS growth below.
                result.notes.append(("memory-error-in-load", _describe(exc)))
        except BaseException as exc:  # noqa: BLE001 - the property under test
            load_exc = exc
            result.load = f"{FAILURE}:{type(exc).__name__}"
            result.failures.append((f"load-raised-{_sig(exc)}", _describe(exc)))
        if report is not None:
            _check_agreement(result, report, load_exc)
        if load_path:
            _check_load_path(result, path, load_exc)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if obj is not None and exercise:
            _exercise(obj, model, timeout)
    except CaseTimeout:
        result.failures.append(("timeout", f"case exceeded {timeout} s (load={result.load!r} scan={result.scan!r})"))
        if not result.load:
            result.load = f"{FAILURE}:timeout"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    result.seconds = time.perf_counter() - t0
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - rss0
    if grown > RSS_WARN:
        result.failures.append(("runaway-memory", f"peak RSS grew by {grown >> 20} MiB"))
    if result.seconds > SLOW_CASE:
        result.notes.append(("slow", f"{result.seconds:.1f} s"))
    return result


def _check_agreement(result: CaseResult, report: Any, load_exc: BaseException | None) -> None:
    """``scan(...).safe`` must be True exactly when ``loads`` succeeded."""
    safe = bool(report.safe)
    if safe == (load_exc is None):
        return
    if report.verdict == "no-code" and (load_exc is None or isinstance(load_exc, safeload.UnsupportedFormatError)):
        # nothing in it can run code (numeric .npy/.npz, safetensors...): load returns the numeric
        # arrays or says it does not open that format; both agree with the verdict
        return
    findings = "; ".join(f"{f.rule}: {f.message}" for f in report.findings)[:2000]
    if load_exc is None:
        result.failures.append((f"disagree-scan-{report.verdict}-load-ok",
                                f"scan verdict {report.verdict} ({findings}) but loads() succeeded"))
        return
    detail = f"scan said safe but loads() raised:\n{_describe(load_exc)}"
    structural = isinstance(load_exc, safeload.UnsafeModelError) and getattr(load_exc, "path", None) is not None
    built = isinstance(load_exc, (safeload.MalformedModelError, safeload.LimitExceededError)) \
        and ("cannot build the model" in str(load_exc) or "skops could not load" in str(load_exc))
    if structural or built:
        # Post-walk failures: the constructor or the structural validation refused the built
        # object; a static scan cannot see those.  Recorded, not a failure.
        kind = "validate" if structural else "build"
        result.notes.append((f"disagree-scan-safe-load-{kind}", detail))
        return
    result.failures.append((f"disagree-scan-safe-load-{type(load_exc).__name__}:{_msg_key(load_exc)}", detail))


def _msg_key(exc: BaseException) -> str:
    """A short, number-free digest of an exception message: separates root causes sharing a type."""
    text = "".join("#" if c.isdigit() else c for c in str(exc).split(":", 1)[-1].strip())
    return text[:48]


def _check_load_path(result: CaseResult, path: str, load_exc: BaseException | None) -> None:
    """``load(path)`` (bytearray buffer, maybe memory-mapped) must behave like ``loads(bytes)``."""
    for mmap_mode in (None, "r"):
        try:
            safeload.load(path, mmap_mode=mmap_mode)
            got = LOADED
        except CaseTimeout:
            raise
        except safeload.SafeloadError as exc:
            got = type(exc).__name__
        except BaseException as exc:  # noqa: BLE001
            result.failures.append((f"load-path-raised-{_sig(exc)}", _describe(exc)))
            continue
        want = LOADED if load_exc is None else result.load
        if (got == LOADED) != (want == LOADED):
            result.failures.append((f"disagree-load-path-{mmap_mode}",
                                    f"loads() -> {want} but load(path, mmap_mode={mmap_mode!r}) -> {got}"))


def _exercise(obj: Any, model: str, timeout: float) -> None:
    """Use a loaded model the way an application would; exceptions are fine, crashes are not."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        probe = _probe(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for method in ("predict", "predict_proba", "transform", "kneighbors"):
                fn = getattr(obj, method, None)
                if callable(fn):
                    try:
                        fn(probe)
                    except CaseTimeout:
                        raise
                    except Exception:  # noqa: BLE001, S110 - a mutated model may refuse the probe
                        pass
    except CaseTimeout:
        pass  # slow predictions on a mutated model are not loader failures
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# ---------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker runs: cases ``start, start+1, ...`` for ``formats`` until ``stop`` or ``deadline``."""

    seed: int
    worker: int
    formats: tuple[str, ...]
    start: int
    stop: int | None
    deadline: float | None
    scratch: str
    memory_cap: int = MEMORY_CAP
    exercise: bool = True


def case_rng(seed: int, worker: int, index: int) -> random.Random:
    """The generator of one case: a case is reproducible from (seed, worker, index)."""
    return random.Random(f"safeload-fuzz:{seed}:{worker}:{index}")


def make_case(spec_seed: int, worker: int, index: int, formats: Sequence[str],
              seeds: Sequence[Seed]) -> tuple[Seed, bytes, list[str]]:
    """The seed and mutant of case ``index`` (formats taken round-robin)."""
    rng = case_rng(spec_seed, worker, index)
    fmt = formats[index % len(formats)]
    seed = rng.choice([s for s in seeds if s.fmt == fmt])
    data, applied = mutate(rng, seed, seeds)
    return seed, data, applied


def _limit_self(memory_cap: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_cap:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = memory_cap if hard == resource.RLIM_INFINITY else min(memory_cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def worker_main(spec: WorkerSpec, seeds: Sequence[Seed], conn: multiprocessing.connection.Connection) -> None:
    """Child process: run cases, announcing each one before it runs so a crash can be attributed."""
    _limit_self(spec.memory_cap)
    warnings.simplefilter("ignore")
    scratch = Path(spec.scratch)
    log = open(scratch / f"log-{spec.worker}.txt", "ab", buffering=0)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)  # fickling and friends print warnings; keep the terminal readable
    os.dup2(log.fileno(), 2)
    faulthandler.enable(log)
    cur = scratch / f"cur-{spec.worker}.bin"
    index = spec.start
    while (spec.stop is None or index < spec.stop) and (spec.deadline is None or time.time() < spec.deadline):
        try:
            seed, data, applied = make_case(spec.seed, spec.worker, index, spec.formats, seeds)
        except Exception as exc:  # noqa: BLE001 - a harness bug: report and skip the case
            conn.send(("harness-error", index, _describe(exc)))
            index += 1
            continue
        cur.write_bytes(data)
        conn.send(("start", index, seed.fmt, seed.model, applied))
        res = run_case(data, str(cur), seed.model, load_path=index % 5 == 0, exercise=spec.exercise)
        conn.send(("done", index, data if res.failures or res.notes else None, res))
        if any(kind in ("timeout", "runaway-memory") for kind, _ in res.failures):
            break  # a fresh process resets the peak RSS and any state a timeout interrupted
        index += 1
    conn.send(("exit", index + 1, None))
    conn.close()


@dataclass
class Stats:
    """Counts of cases per format and outcomes; failing inputs as saved."""

    cases: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    scan: dict[str, collections.Counter[str]] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    notes: collections.Counter[str] = field(default_factory=collections.Counter)
    mutations: collections.Counter[str] = field(default_factory=collections.Counter)
    harness_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.cases.values())


class Recorder:
    """Collects results and saves failing inputs (a few per distinct failure kind)."""

    def __init__(self, stats: Stats, save_dir: Path | None, per_kind: int = 3,
                 note_dir: Path | None = None) -> None:
        self.stats = stats
        self.save_dir = save_dir
        self.note_dir = note_dir
        self.per_kind = per_kind
        self.saved: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def record(self, fmt: str, model: str, applied: Sequence[str], index: int, worker: int, seed: int,
               res: CaseResult, data: bytes | None) -> None:
        with self.lock:
            self._record(fmt, model, applied, index, worker, seed, res, data)

    def _record(self, fmt: str, model: str, applied: Sequence[str], index: int, worker: int, seed: int,
                res: CaseResult, data: bytes | None) -> None:
        st = self.stats
        st.cases[fmt] += 1
        st.outcomes[fmt][res.load or "?"] += 1
        st.scan[fmt][res.scan or "?"] += 1
        for m in applied:
            st.mutations[m.split("-")[0]] += 1
        meta = {"format": fmt, "model": model, "mutations": list(applied), "seed": seed, "worker": worker,
                "index": index, "load": res.load, "scan": res.scan}
        for kind, detail in res.failures:
            st.failure_kinds[kind] += 1
            entry = dict(meta, kind=kind, detail=detail)
            entry["file"] = self._save(self.save_dir, kind, data, entry)
            st.failures.append(entry)
        for kind, detail in res.notes:
            st.notes[kind] += 1
            self._save(self.note_dir, kind, data, dict(meta, kind=kind, detail=detail))

    def _save(self, where: Path | None, kind: str, data: bytes | None, entry: dict[str, Any]) -> str | None:
        if where is None or data is None or self.saved[kind] >= self.per_kind:
            return None
        self.saved[kind] += 1
        where.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in kind)[:80]
        name = f"{slug}-{hashlib.sha256(data).hexdigest()[:10]}"
        (where / f"{name}.bin").write_bytes(data)
        (where / f"{name}.txt").write_text(json.dumps(entry, indent=2, default=str) + "\n", encoding="utf-8")
        return str(where / f"{name}.bin")


def run_worker(spec: WorkerSpec, seeds: Sequence[Seed], recorder: Recorder,
               hard_timeout: float = HARD_TIMEOUT) -> None:
    """Run ``spec`` in forked children, restarting after crashes, hangs and memory kills."""
    ctx = multiprocessing.get_context("fork")
    index = spec.start
    cur = Path(spec.scratch) / f"cur-{spec.worker}.bin"
    while (spec.stop is None or index < spec.stop) and (spec.deadline is None or time.time() < spec.deadline):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=worker_main, args=(_replace(spec, start=index), seeds, child), daemon=True)
        proc.start()
        child.close()
        pending: tuple[int, str, str, list[str]] | None = None
        while True:
            if not parent.poll(hard_timeout):
                proc.kill()
                proc.join()
                _lost(recorder, spec, pending, cur, "hang", f"no progress for {hard_timeout} s; worker killed")
                index = pending[0] + 1 if pending else index + 1
                break
            try:
                msg = parent.recv()
            except (EOFError, OSError):
                proc.join()
                code = proc.exitcode
                why = f"signal {-code} ({signal.Signals(-code).name})" if code and code < 0 else f"exit code {code}"
                _lost(recorder, spec, pending, cur, f"crash-{why.split()[-1].strip('()')}",
                      f"worker died: {why}")
                index = pending[0] + 1 if pending else index + 1
                break
            tag, idx, payload = msg[0], msg[1], msg[-1]
            if tag == "start":
                pending = (idx, msg[2], msg[3], msg[4])
            elif tag == "done":
                assert pending is not None
                recorder.record(pending[1], pending[2], pending[3], idx, spec.worker, spec.seed, payload, msg[2])
                pending = None
                index = idx + 1
            elif tag == "harness-error":
                recorder.stats.harness_errors.append(payload)
                index = idx + 1
            elif tag == "exit":
                proc.join()
                break
        parent.close()


def _replace(spec: WorkerSpec, **changes: Any) -> WorkerSpec:
    return dataclasses.replace(spec, **changes)


def _lost(recorder: Recorder, spec: WorkerSpec, pending: tuple[int, str, str, list[str]] | None, cur: Path,
          kind: str, detail: str) -> None:
    """A worker died or hung: attribute it to the case it announced last."""
    if pending is None:
        recorder.stats.harness_errors.append(f"worker lost outside a case: {detail}")
        return
    idx, fmt, model, applied = pending
    data = cur.read_bytes() if cur.exists() else None
    log = cur.parent / f"log-{spec.worker}.txt"
    if log.exists():
        text = log.read_bytes()[-200_000:].decode("utf-8", "replace")
        start = text.rfind("Fatal Python error")
        tail = text[start:] if start >= 0 else text[-3000:]
        tail = tail.split("\nExtension modules:")[0]
        detail += "\n--- worker log (faulthandler) ---\n" + tail[-6000:]
        frame = re.search(r'most recent call first\):\n\s+File "([^"]+)", line (\d+)', tail)
        if frame:
            kind += f"@{Path(frame.group(1)).name}:{frame.group(2)}"
    res = CaseResult(f"{FAILURE}:{kind}", "?", failures=[(kind, detail)])
    recorder.record(fmt, model, applied, idx, spec.worker, spec.seed, res, data)


def run_campaign(seeds: Sequence[Seed], *, seed: int, jobs: int, seconds: float | None = None,
                 cases: int | None = None, formats: Sequence[str] = FORMATS, save_dir: Path | None = CRASH_DIR,
                 note_dir: Path | None = None, exercise: bool = True, memory_cap: int = MEMORY_CAP,
                 progress: Callable[[Stats], None] | None = None) -> Stats:
    """Run ``jobs`` supervised workers (threads in this process, each driving forked children)."""
    stats = Stats()
    recorder = Recorder(stats, save_dir, note_dir=note_dir)
    t0 = time.time()
    deadline = t0 + seconds if seconds is not None else None
    scratch = tempfile.mkdtemp(prefix="safeload-fuzz-")
    try:
        threads = []
        for w in range(jobs):
            stop = None if cases is None else (cases + jobs - 1 - w) // jobs
            spec = WorkerSpec(seed, w, tuple(formats), 0, stop, deadline, scratch, memory_cap, exercise)
            th = threading.Thread(target=run_worker, args=(spec, seeds, recorder), daemon=True)
            th.start()
            threads.append(th)
        while any(th.is_alive() for th in threads):
            for th in threads:
                th.join(timeout=10)
            if progress is not None:
                with recorder.lock:
                    stats.seconds = time.time() - t0
                    progress(stats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stats.seconds = time.time() - t0
    return stats


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def summary(stats: Stats) -> str:
    """A plain-text table of cases per format, outcomes and failures."""
    lines = [f"{stats.total} cases in {stats.seconds:.0f} s ({stats.total / max(stats.seconds, 1e-9):.1f} cases/s)"]
    kinds = sorted({k for c in stats.outcomes.values() for k in c})
    lines.append(f"{'format':<14}{'cases':>7} " + " ".join(f"{k[:18]:>18}" for k in kinds))
    for fmt in sorted(stats.cases, key=lambda f: FORMATS.index(f) if f in FORMATS else 99):
        row = stats.outcomes[fmt]
        lines.append(f"{fmt:<14}{stats.cases[fmt]:>7} " + " ".join(f"{row.get(k, 0):>18}" for k in kinds))
    total: collections.Counter[str] = collections.Counter()
    for c in stats.outcomes.values():
        total.update(c)
    lines.append("outcomes: " + ", ".join(f"{k}={v}" for k, v in total.most_common()))
    scan_total: collections.Counter[str] = collections.Counter()
    for c in stats.scan.values():
        scan_total.update(c)
    lines.append("scan verdicts: " + ", ".join(f"{k}={v}" for k, v in scan_total.most_common()))
    lines.append("mutations: " + ", ".join(f"{k}={v}" for k, v in stats.mutations.most_common()))
    lines.append("notes (not failures): " + (", ".join(f"{k}={v}" for k, v in stats.notes.most_common()) or "none"))
    lines.append(f"FAILURES: {len(stats.failures)}")
    for kind, count in stats.failure_kinds.most_common():
        example = next(f for f in stats.failures if f["kind"] == kind)
        lines.append(f"  {count:>6} x {kind}  e.g. {example.get('file') or '(not saved)'} "
                     f"[{example['format']} {example['model']} {'+'.join(example['mutations'])}]")
    if stats.harness_errors:
        lines.append(f"harness errors: {len(stats.harness_errors)}; first: {stats.harness_errors[0][-500:]}")
    return "\n".join(lines)


def replay(path: Path) -> int:
    """Run one saved input in this process and print what happened (for reproducers)."""
    data = path.read_bytes()
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as fh:
        fh.write(data)
    try:
        try:
            report = safeload.scan(fh.name)
            print(f"scan: {report.verdict} format={report.format}")
            for f in report.findings:
                print(f"  {f.severity} {f.rule}: {f.message[:300]}")
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        try:
            obj = safeload.loads(data)
            print(f"loads: returned {type(obj).__module__}.{type(obj).__qualname__}")
        except safeload.SafeloadError as exc:
            print(f"loads: {type(exc).__name__}: {str(exc)[:500]}")
        except BaseException:  # noqa: BLE001
            print("loads: NON-SafeloadError")
            traceback.print_exc()
            return 1
    finally:
        os.unlink(fh.name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="campaign length (wall clock)")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases instead")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (cases are reproducible from it)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of: " + ", ".join(FORMATS))
    parser.add_argument("--crash-dir", type=Path, default=CRASH_DIR)
    parser.add_argument("--notes-dir", type=Path, default=None,
                        help="also save inputs of recorded non-failures (inherent scan/load disagreements, slow cases)")
    parser.add_argument("--no-exercise", action="store_true", help="do not call predict/transform on loaded mutants")
    parser.add_argument("--memory-cap", type=int, default=MEMORY_CAP >> 20, help="RLIMIT_AS per worker, MiB")
    parser.add_argument("--json", type=Path, default=None, help="write the statistics as JSON here")
    parser.add_argument("--replay", type=Path, default=None, help="run one saved input in-process and exit")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.replay)
    formats = tuple(f for f in args.formats.split(",") if f)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats: {sorted(unknown)}")
    t0 = time.time()
    seeds = build_seeds(formats=formats)
    print(f"built {len(seeds)} seeds in {time.time() - t0:.1f} s", flush=True)
    last = [time.time()]

    def progress(stats: Stats) -> None:
        if time.time() - last[0] >= 60:
            last[0] = time.time()
            print(f"[{stats.seconds:6.0f} s] {stats.total} cases, {len(stats.failures)} failures", flush=True)

    stats = run_campaign(seeds, seed=args.seed, jobs=args.jobs, seconds=None if args.cases else args.seconds,
                         cases=args.cases, formats=formats, save_dir=args.crash_dir, note_dir=args.notes_dir,
                         exercise=not args.no_exercise, memory_cap=args.memory_cap << 20, progress=progress)
    print(summary(stats))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "seconds": stats.seconds, "cases": dict(stats.cases),
            "outcomes": {k: dict(v) for k, v in stats.outcomes.items()},
            "scan": {k: dict(v) for k, v in stats.scan.items()},
            "failure_kinds": dict(stats.failure_kinds), "notes": dict(stats.notes),
            "failures": stats.failures,
        }, indent=2, default=str), encoding="utf-8")
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
