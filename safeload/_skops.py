"""skops archives: audit the schema against the policy, then let skops build it.

skops constructs objects only from its own node types, so it is the safe path
out of pickle.  safeload adds three things: the archive is bounded before skops
reads it (``get_untrusted_types`` would read every array into memory), every
type named anywhere in ``schema.json`` must be in *safeload's* policy (not just
in skops' defaults), and only those exact names are passed as ``trusted``.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeload._containers import Buffer, npy_header
from safeload._errors import LimitExceededError, MalformedModelError, UnsafeModelError
from safeload._policy import Policy, refusal_message

__all__ = ["SkopsAudit", "audit", "load_skops"]

_MAX_SCHEMA_BYTES = 256 * 1024 * 1024
# Plain data types that skops' own JSON / container nodes carry.
_PRIMITIVES = frozenset(
    f"builtins.{t}" for t in ("dict", "list", "tuple", "str", "int", "float", "bool", "NoneType", "set",
                              "frozenset", "bytes", "bytearray", "complex", "slice")
)


@dataclass(frozen=True)
class SkopsAudit:
    types: tuple[str, ...]
    refused: tuple[str, ...]
    loaders: tuple[str, ...]


def _open(data: Buffer, policy: Policy) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise MalformedModelError(f"corrupt zip archive: {exc}") from None
    limits = policy.limits
    if len(infos) > limits.max_zip_members:
        raise LimitExceededError(f"archive has {len(infos)} members (limit max_zip_members={limits.max_zip_members})")
    total = sum(i.file_size for i in infos)
    if total > limits.max_zip_bytes:
        raise LimitExceededError(f"archive declares {total} uncompressed bytes (limit max_zip_bytes)")
    return zf


def _walk(root: Any, files: list[str], shared: set[tuple[Any, str]]) -> Iterator[tuple[str, str]]:
    """Every (type name, loader) in the schema, iteratively (a recursive generator costs O(depth) per node)."""
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > 2000:
            raise LimitExceededError("skops schema nested too deeply")
        if isinstance(node, dict):
            mod, cls = node.get("__module__"), node.get("__class__")
            if isinstance(mod, str) and isinstance(cls, str):
                yield f"{mod}.{cls}", str(node.get("__loader__", ""))
            if isinstance(node.get("file"), str):
                # skops memoises nodes by a truthy __id__: one array shared by two attributes is read once.
                node_id = node.get("__id__")
                memo = bool(node_id) and isinstance(node_id, (int, str))
                if not (memo and (node_id, node["file"]) in shared):
                    files.append(node["file"])
                    if memo:
                        shared.add((node_id, node["file"]))
            stack.extend((value, depth + 1) for value in node.values() if isinstance(value, (dict, list)))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node if isinstance(value, (dict, list)))


_NODE_FIELDS = ("left_child", "right_child", "feature", "threshold", "impurity", "n_node_samples",
                "weighted_n_node_samples", "missing_go_to_left")


def _check_states(schema: Any, zf: zipfile.ZipFile) -> None:
    """States that compiled __setstate__ methods index without checks, checked before skops builds them."""
    from safeload._walker import STATE_LENGTHS

    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
            continue
        if not isinstance(node, dict):
            continue
        name = f"{node.get('__module__')}.{node.get('__class__')}"
        content = node.get("content")
        if name in STATE_LENGTHS:
            items = content.get("content") if isinstance(content, dict) else None
            if not isinstance(items, list) or len(items) != STATE_LENGTHS[name]:
                raise UnsafeModelError(f"skops {name} state must be a {STATE_LENGTHS[name]}-tuple", rule="skops-state")
        if name == "sklearn.tree._tree.Tree":
            fields = content.get("content") if isinstance(content, dict) else None
            if not isinstance(fields, dict):
                raise UnsafeModelError("skops Tree state is not a dict", rule="skops-state")
            for key, ndim, names in (("nodes", 1, _NODE_FIELDS), ("values", 3, None)):
                member = fields.get(key)
                header = _npy_header(zf, member.get("file")) if isinstance(member, dict) else None
                if header is None or len(header[1]) != ndim or (names and _field_names(header[0]) != names) \
                        or (not names and header[0] != np.dtype("<f8")):
                    raise UnsafeModelError(f"skops Tree {key} array has the wrong dtype or shape", rule="skops-state")
        stack.extend(v for v in node.values() if isinstance(v, (dict, list)))


def _field_names(dt: np.dtype[Any]) -> tuple[str, ...]:
    """Field names without the void padding fields .npy headers spell out (e.g. ('', '|V7'))."""
    fields: dict[str, Any] = dict(dt.fields or {})
    return tuple(n for n in (dt.names or ()) if not (fields[n][0].kind == "V" and fields[n][0].names is None))


def _npy_header(zf: zipfile.ZipFile, name: object) -> tuple[np.dtype[Any], tuple[int, ...]] | None:
    if not isinstance(name, str):
        return None
    try:
        with zf.open(name) as fh:
            header, _ = npy_header(fh.read(65536 + 12))
        return np.dtype(header["descr"]), tuple(header["shape"])
    except Exception:  # noqa: BLE001 - unreadable means refused by the caller
        return None


def _check_members(zf: zipfile.ZipFile, files: list[str]) -> None:
    """skops reads a member once per node that names it: refuse repeats and arrays larger than their member."""
    seen: set[str] = set()
    for name in files:
        if name in seen:
            raise LimitExceededError(f"skops member {name} is referenced more than once (memory amplification)")
        seen.add(name)
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise MalformedModelError(f"skops schema names a missing member {name}") from None
        if name.endswith(".npy"):
            try:
                with zf.open(info) as fh:
                    head = fh.read(65536 + 12)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error) as exc:
                raise MalformedModelError(f"unreadable member {name}: {exc}") from None
            nbytes = _npy_nbytes(head)
            if nbytes is None:
                raise MalformedModelError(f"invalid .npy header in member {name}")
            if nbytes > info.file_size:
                raise LimitExceededError(
                    f"member {name} declares an array of {nbytes} bytes but holds {info.file_size}")


def _npy_nbytes(head: bytes) -> int | None:
    try:
        header, _ = npy_header(head)
        dtype = np.dtype(header["descr"])
        count = 1
        for d in header["shape"]:
            if not isinstance(d, int) or d < 0:
                return None
            count *= d
        return int(count * dtype.itemsize)
    except (ValueError, SyntaxError, KeyError, TypeError, IndexError, MemoryError, RecursionError):
        return None


def _skops_untrusted(data: Buffer) -> list[str]:
    import skops.io as sio

    try:
        return list(sio.get_untrusted_types(data=bytes(data)))
    except Exception as exc:  # noqa: BLE001 - skops raises anything on hostile schemas
        raise MalformedModelError(f"skops cannot read the schema: {type(exc).__name__}: {exc}") from None


def audit(data: Buffer, policy: Policy) -> SkopsAudit:
    """Judge a skops archive without constructing anything."""
    zf = _open(data, policy)
    try:
        info = zf.getinfo("schema.json")
    except KeyError:
        raise MalformedModelError("zip archive has no schema.json: not a skops file") from None
    if info.file_size > _MAX_SCHEMA_BYTES:
        raise LimitExceededError("schema.json is too large")
    try:
        schema = json.loads(zf.read(info))
    except (ValueError, zipfile.BadZipFile, OSError, RecursionError, EOFError, NotImplementedError,
            zlib.error) as exc:
        raise MalformedModelError(f"unreadable schema.json: {exc}") from None
    names = [i.filename for i in zf.infolist()]
    if len(set(names)) != len(names):
        raise UnsafeModelError("zip archive has two members with the same name (readers disagree on which is read)",
                               rule="skops-state")
    files: list[str] = []
    pairs = list(_walk(schema, files, set()))
    _check_members(zf, files)
    _check_states(schema, zf)
    # A node's loader may construct a type other than the one it declares (a TreeNode declared as a
    # dict still builds a Tree), so also ask skops which types it would construct. Only names in
    # safeload's policy are ever passed back as trusted.
    types = sorted({name for name, _ in pairs} | set(_skops_untrusted(data)))
    refused = [t for t in types if t not in _PRIMITIVES and not policy.allows(t)]
    return SkopsAudit(tuple(types), tuple(refused), tuple(sorted({loader for _, loader in pairs})))


def load_skops(data: Buffer, policy: Policy, source: str | None = None,
               result: SkopsAudit | None = None) -> Any:
    """Build a skops archive; ``result`` is the audit already done on these same bytes, if any."""
    if result is None:
        result = audit(data, policy)
    if result.refused:
        raise UnsafeModelError(refusal_message(result.refused, source), names=result.refused, source=source)
    import skops.io as sio

    # Every type in the schema was vetted above (allow-listed or plain data), so all are passed.
    trusted = list(result.types)
    try:
        return sio.load(io.BytesIO(bytes(data)), trusted=trusted)
    except Exception as exc:  # noqa: BLE001 - skops raises many types; none may escape as-is
        if type(exc).__name__ == "UntrustedTypesFoundException":
            raise UnsafeModelError(f"skops refused types: {exc}", rule="skops-untrusted") from None
        raise MalformedModelError(f"skops could not load the archive: {type(exc).__name__}: {exc}") from None
