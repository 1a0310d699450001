"""skops archives that plain ``skops.io.load(trusted=get_untrusted_types(...))`` lets allocate or crash.

Each one passes skops' own review (every type it names is listed by ``get_untrusted_types`` and
then trusted, as a user who trusts skops' audit would), and each exercises a way a node may use a
name that the pickle policy forbids or bounds: a NEW-only class called with arguments, a guarded
builtin called with a size, a VALUE called, a lazy range materialised, a member that inflates far
beyond its compressed size, a SeedSequence pool size, and a random state position out of range.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import Any

import craft
from craft import MEMORY, Sample, skops_archive, skops_json, skops_node, skops_tuple

CRASH: dict[str, Any] = {"kind": "crash"}


def _ctor(module: str, cls: str, *args: dict[str, Any]) -> dict[str, Any]:
    return skops_node("ConstructorFromReduceNode", module, cls, content=skops_tuple(*args))


def _range(stop: int) -> dict[str, Any]:
    return _ctor("builtins", "range", skops_json(0), skops_json(stop))


def _deflated_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes and its CRC-32, built in 1 MiB steps."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts: list[bytes] = []
    crc = 0
    left = size
    while left:
        piece = chunk[:min(left, len(chunk))]
        parts.append(comp.compress(piece))
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    parts.append(comp.flush())
    return b"".join(parts), crc


def _zip_with_deflated(schema_zip: bytes, name: str, size: int) -> bytes:
    """``schema_zip`` (a stored one-member zip) plus a deflated member of ``size`` zeros, written by hand
    so that the zeros never exist in memory at once."""
    deflated, crc = _deflated_zeros(size)
    eocd = schema_zip.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<II", schema_zip[eocd + 12:eocd + 20])
    local_part, central = schema_zip[:cd_offset], schema_zip[cd_offset:cd_offset + cd_size]
    raw = name.encode()
    offset = len(local_part)
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(deflated), size, len(raw), 0) + raw
    entry = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", (3 << 8) | 20, 20, 0, 8, 0, 0x21, crc, len(deflated), size,
                        len(raw), 0, 0, 0, 0, 0o600 << 16, offset) + raw
    body = local_part + local + deflated
    central += entry
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 2, 2, len(central), len(body), 0)
    return body + central + end


def samples() -> list[Sample]:
    """§5 (skops): one sample per way a node may misuse an allowed name."""
    out: list[Sample] = []

    def add(file: str, technique: str, desc: str, data: bytes, error: str, glob: str | None,
            effect: dict[str, Any] = MEMORY, after_load: str | None = None) -> None:
        out.append(Sample(file, technique, "5", desc, data, "skops", effect, error=error, global_=glob,
                          loader="skops_trust_all", after_load=after_load))

    add("s5_skops_ctor_csr_matrix_shape.skops", "skops-constructor-new-only-class",
        "ConstructorFromReduceNode calling scipy.sparse.csr_matrix((10**9, 10**9)): a class the policy only "
        "rebuilds with __new__ is called with a shape, and scipy allocates a 4 GB index array.",
        skops_archive(_ctor("scipy.sparse._csr", "csr_matrix", skops_tuple(skops_json(10**9), skops_json(10**9)))),
        "UnsafeModelError", "scipy.sparse._csr.csr_matrix")
    add("s5_skops_ctor_bytearray_size.skops", "skops-constructor-bytearray-size",
        "ConstructorFromReduceNode calling builtins.bytearray(2 * 10**9): an allowed builtin given a size "
        "instead of data (its guard refuses integer sizes).",
        skops_archive(_ctor("builtins", "bytearray", skops_json(2 * 10**9))),
        "UnsafeModelError", "builtins.bytearray")
    add("s5_skops_ctor_list_range.skops", "skops-constructor-list-range",
        "ConstructorFromReduceNode calling builtins.list(range(10**8)): a name allowed only as a value is "
        "called, materialising a lazy range into ~4 GB.",
        skops_archive(_ctor("builtins", "list", _range(10**8))),
        "UnsafeModelError", "builtins.list")
    add("s5_skops_ctor_set_range.skops", "skops-constructor-set-range",
        "ConstructorFromReduceNode calling builtins.set(range(10**8)): an allowed CALL entry whose guard "
        "bounds the elements taken from a range (checked statically by scan).",
        skops_archive(_ctor("builtins", "set", _range(10**8))),
        "LimitExceededError", None)
    schema = craft.make_zip([("schema.json", _schema_text(skops_node("BytesNode", "builtins", "bytes",
                                                                      file="blob.bin")), zipfile.ZIP_STORED)])
    add("s5_skops_member_deflate_bomb.skops", "skops-member-deflate-bomb",
        "BytesNode whose ~0.7 MB deflated member inflates ~1000x to 700 MB of zeros: skops reads it whole "
        "(twice over while joining), safeload counts the bytes as they inflate.",
        _zip_with_deflated(schema, "blob.bin", 700 << 20),
        "LimitExceededError", None)
    gen = _generator(pool_size=10**9)
    add("s5_skops_seedsequence_pool_size.skops", "skops-seedsequence-pool-size",
        "RandomGeneratorNode whose SeedSequence state asks for pool_size=10**9: skops trusts numpy Generators "
        "by default and SeedSequence allocates a 4 GB pool.",
        skops_archive(gen), "LimitExceededError", None)
    add("s5_skops_randomstate_pos.skops", "skops-randomstate-pos",
        "RandomStateNode (trusted by skops by default) whose MT19937 pos is 10**6: numpy indexes its key "
        "array with it unchecked on the first draw and the process dies.",
        skops_archive(*_random_state(10**6)), "UnsafeModelError", None, effect=CRASH,
        after_load="obj.random_sample(10)")
    ints = [1 + k * ((1 << 61) - 1) for k in range(_COLLIDING)]
    content = {str(k): skops_json(0) for k in ints}
    key_types = skops_node("ListNode", "builtins", "list",
                           content=[skops_node("TypeNode", "builtins", "int") for _ in ints])
    schema = _schema_text(skops_node("DictNode", "builtins", "dict", content=content, key_types=key_types))
    add("s5_skops_dict_colliding_int_keys.skops", "skops-dict-colliding-keys",
        f"DictNode of {_COLLIDING:,} int keys equal modulo 2**61-1: skops converts each JSON key with int and "
        "inserts it, comparing it with every earlier key of the one hash they share (hash flooding).",
        craft.make_zip([("schema.json", schema, zipfile.ZIP_DEFLATED)]), "LimitExceededError", None,
        effect=craft.HANG)
    return out


#: Keys of one hash in the skops dict sample: 50,000**2/2 comparisons, ~20 s in skops' own loader
#: (30,000 took 7.3 s on a machine of session 24: too close to the tests' 5 s that tell a hang).
_COLLIDING = 50_000


def _schema_text(root: dict[str, Any]) -> bytes:
    import json

    return json.dumps({**root, "protocol": 2, "_skops_version": "0.16.0"}, indent=2, sort_keys=True).encode()


def _dict(**items: dict[str, Any]) -> dict[str, Any]:
    types = skops_node("ListNode", "builtins", "list",
                       content=[skops_node("TypeNode", "builtins", "str") for _ in items])
    return skops_node("DictNode", "builtins", "dict", content=items, key_types=types)


def _npy(descr: str, values: bytes, shape: tuple[int, ...]) -> bytes:
    return craft.npy_header(descr, shape) + values


def _random_state(pos: int) -> tuple[dict[str, Any], list[tuple[str, bytes, int]]]:
    key = skops_node("NdArrayNode", "numpy", "ndarray", type="numpy", file="key.npy")
    state = _dict(bit_generator=skops_json("MT19937"), state=_dict(key=key, pos=skops_json(pos)),
                  has_gauss=skops_json(0), gauss=skops_json(0.0))
    root = skops_node("RandomStateNode", "numpy.random.mtrand", "RandomState", content=state)
    return root, [("key.npy", _npy("<u4", struct.pack("<624I", *range(1, 625)), (624,)), zipfile.ZIP_STORED)]


def _generator(pool_size: int) -> dict[str, Any]:
    bit_state = _dict(bit_generator=skops_json("PCG64"),
                      state=_dict(state=skops_json(1), inc=skops_json(1)),
                      has_uint32=skops_json(0), uinteger=skops_json(0))
    seed = _dict(entropy=skops_json(1), spawn_key=skops_tuple(), pool_size=skops_json(pool_size),
                 n_children_spawned=skops_json(0))
    return skops_node("RandomGeneratorNode", "numpy.random._generator", "Generator",
                      content={"bit_generator": bit_state, "seed_seq": seed})
