"""The skops front end: every node type under the pickle policy, sizes from bytes, scan == load.

* A benign object using every node type skops 0.16 writes loads through safeload exactly as through
  ``skops.io.load``.
* Each way a node may misuse a name (call a NEW or VALUE entry, rebuild a VALUE, a guarded call on
  data the guard cannot see, a dict key type that is not a converter, a method or operator node)
  is refused, and ``scan`` files it under the same verdict ``load`` raises.
* Members are judged by what they inflate to and by their .npy header whatever their name.
* The zoo's pickle and skops copies name the same policy entries, up to the listed plumbing.
"""

from __future__ import annotations

import collections
import functools
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse
import skops.io as sio
import zoo
from _agree import scan_and_load

import safeload
from safeload import Limits, Policy
from safeload._report import Verdict
from safeload._skops import _NODE_RULES, audit

# -- building archives by hand ------------------------------------------------------------


def node(loader: str, module: str, cls: str, **extra: Any) -> dict[str, Any]:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **extra}


def js(value: Any) -> dict[str, Any]:
    return node("JsonNode", "builtins", type(value).__name__, content=json.dumps(value), is_json=True)


def tup(*items: dict[str, Any]) -> dict[str, Any]:
    return node("TupleNode", "builtins", "tuple", content=list(items))


def lst(*items: dict[str, Any]) -> dict[str, Any]:
    return node("ListNode", "builtins", "list", content=list(items))


def dct(key_type: str = "str", **items: dict[str, Any]) -> dict[str, Any]:
    module, _, cls = f"builtins.{key_type}".rpartition(".") if "." not in key_type else key_type.rpartition(".")
    types = lst(*[node("TypeNode", module, cls) for _ in items])
    return node("DictNode", "builtins", "dict", content=items, key_types=types)


def ctor(module: str, cls: str, *args: dict[str, Any]) -> dict[str, Any]:
    return node("ConstructorFromReduceNode", module, cls, content=tup(*args))


def npy(arr: np.ndarray[Any, Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    return zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))


def archive(root: dict[str, Any], members: dict[str, bytes] | None = None, *,
            compress: int = zipfile.ZIP_STORED, protocol: Any = 2) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # fixed timestamps: the bytes are pytest ids, and xdist workers must collect the same ones
        zf.writestr(_entry("schema.json"), json.dumps({**root, "protocol": protocol, "_skops_version": "0.16.0"}))
        for name, data in (members or {}).items():
            zf.writestr(_entry(name), data, compress_type=compress)
    return buf.getvalue()


def outcome(data: bytes, policy: Policy | None = None) -> tuple[str, str]:
    """(scan verdict, load outcome), after checking that the two agree."""
    report, loaded = scan_and_load(data, policy)
    return report.verdict, loaded


def rules(data: bytes) -> list[str]:
    return [f.rule for f in safeload.scan(io.BytesIO(data)).findings]


# -- benign: every node type ------------------------------------------------------------


def _every_node_type() -> dict[str, Any]:
    return {
        "a": [1, (2, 3), None, 1.5, "x"], "n": {1: "x", 2: "y"}, "set": {1, 2}, "fs": frozenset({"q"}),
        "s": slice(1, 5, 2), "b": b"xy", "ba": bytearray(b"z"), "dd": collections.defaultdict(list, {"k": [1]}),
        "f": np.mean, "t": np.float64, "oa": np.array([1, "x", None], dtype=object),
        "oa2": np.array([[1, "a"], [None, 2.5]], dtype=object), "sc": np.float64(1.5), "i": np.int64(-3),
        "dt": np.dtype("int32"), "ma": np.ma.MaskedArray([1, 2], [True, False]),
        "rs": np.random.RandomState(0), "gen": np.random.default_rng(0), "sp": scipy.sparse.csr_matrix(np.eye(3)),
        "csc": scipy.sparse.csc_array(np.eye(2)), "p": functools.partial(np.mean, axis=0),
        "od": collections.OrderedDict(a=1), "arr": np.arange(12.0).reshape(3, 4),
    }


def _same(a: Any, b: Any) -> None:
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.random.RandomState):
        _same(a.get_state(legacy=False), b.get_state(legacy=False))
    elif isinstance(a, np.random.Generator):
        _same(a.bit_generator.state, b.bit_generator.state)
    elif scipy.sparse.issparse(a):
        assert (a != b).nnz == 0
    elif isinstance(a, np.ma.MaskedArray):
        assert np.array_equal(a.data, b.data) and np.array_equal(a.mask, b.mask)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tolist() == b.tolist()
    elif isinstance(a, functools.partial):
        assert a.func is b.func and a.args == b.args and a.keywords == b.keywords
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
        if isinstance(a, collections.defaultdict):
            assert a.default_factory is b.default_factory
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert a == b or a is b


def test_every_node_type_loads_as_skops_does() -> None:
    data = sio.dumps(_every_node_type())
    reference = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    got = safeload.loads(data)
    _same(got, reference)
    assert safeload.scan(io.BytesIO(data)).safe
    loaders = set(audit(data, Policy.default()).loaders)
    assert {"SetNode", "SliceNode", "BytesNode", "BytearrayNode", "DefaultDictNode", "PartialNode",
            "MaskedArrayNode", "DTypeNode", "RandomStateNode", "RandomGeneratorNode", "SparseMatrixNode",
            "FunctionNode", "TypeNode", "NdArrayNode", "DictNode", "TupleNode", "ListNode", "JsonNode"} <= loaders
    assert loaders <= set(_NODE_RULES) | {"TreeNode", "LossNode"}


def test_audit_records_kinds_of_use() -> None:
    uses = set(audit(sio.dumps(_every_node_type()), Policy.default()).uses)
    assert ("builtins.set", "call") in uses and ("functools.partial", "call") in uses
    assert ("numpy.mean", "value") in uses and ("numpy.ndarray", "value") in uses
    assert ("scipy.sparse._csr.csr_matrix", "new") in uses
    assert ("numpy.random.mtrand.RandomState", "call") in uses


# -- misuse of names ----------------------------------------------------------------------


@pytest.mark.parametrize(("root", "verdict", "rule"), [
    # a VALUE entry rebuilt or called
    (node("ObjectNode", "numpy", "mean"), Verdict.UNSAFE, "new-value"),
    (ctor("numpy", "mean", js(1)), Verdict.UNSAFE, "call-not-callable"),
    # a NEW entry called: directly, as a "namedtuple", as a list/set class
    (ctor("sklearn.linear_model._logistic", "LogisticRegression", js(1)), Verdict.UNSAFE, "call-not-callable"),
    (node("TupleNode", "scipy.sparse._csr", "csr_matrix", content=[js(10), js(10)]), Verdict.UNSAFE,
     "call-not-callable"),
    (node("ListNode", "sklearn.pipeline", "Pipeline", content=[js(1)]), Verdict.UNSAFE, "call-not-callable"),
    # a guarded entry rebuilt with __new__ (its guard would be skipped)
    (node("ObjectNode", "builtins", "bytearray"), Verdict.UNSAFE, "new-value"),
    # a guarded call whose argument is not plain data
    (ctor("builtins", "set", node("ObjectNode", "sklearn.linear_model._logistic", "LogisticRegression")),
     Verdict.UNSAFE, "guard"),
    # a partial of a guarded callable, of a built object
    (node("PartialNode", "functools", "partial", content={
        "func": node("TypeNode", "builtins", "bytearray"), "args": tup(js(10**9)), "kwds": dct(),
        "namespace": js(None)}), Verdict.UNSAFE, "guard"),
    (node("PartialNode", "functools", "partial", content={
        "func": node("ObjectNode", "sklearn.pipeline", "Pipeline"), "args": tup(), "kwds": dct(),
        "namespace": js(None)}), Verdict.UNSAFE, "guard"),
    # dict key types are called on the key: only fixed converters
    (dct("numpy.mean", x=js(1)), Verdict.UNSAFE, "skops-state"),
    (dct("builtins.eval", x=js(1)), Verdict.UNSAFE, "skops-untrusted"),
    # method and operator nodes name what they call
    (node("MethodNode", "sklearn.pipeline", "Pipeline", content={
        "func": "predict", "obj": node("ObjectNode", "sklearn.pipeline", "Pipeline")}), Verdict.UNSAFE,
     "skops-untrusted"),
    (node("OperatorFuncNode", "operator", "methodcaller", attrs=tup(js("system"))), Verdict.UNSAFE,
     "skops-untrusted"),
    # a generator with a bit generator skops does not know, a SeedSequence pool
    (node("RandomGeneratorNode", "numpy.random._generator", "Generator", content={
        "bit_generator": dct(bit_generator=js("seed")), "seed_seq": dct()}), Verdict.UNSAFE, "skops-state"),
])
def test_misuse_refused_by_scan_and_load(root: dict[str, Any], verdict: str, rule: str) -> None:
    data = archive(root)
    assert outcome(data) == (verdict, "UnsafeModelError")
    assert rule in rules(data)


def test_refused_name_is_named() -> None:
    data = archive(ctor("os", "system", js("true")))
    with pytest.raises(safeload.UnsafeModelError) as exc:
        safeload.loads(data)
    assert exc.value.names == ("os.system",)


def test_allowing_a_name_lets_its_call_through() -> None:
    data = archive(ctor("collections", "Counter", lst(js("a"), js("a"))))
    assert safeload.loads(data) == collections.Counter(a=2)
    assert outcome(data) == (Verdict.SAFE, "ok")


# -- structure and sizes ---------------------------------------------------------------------


@pytest.mark.parametrize(("data", "error"), [
    # a node inside itself (memo ids)
    (archive({**lst(node("ListNode", "builtins", "list", content=[{"__id__": 7}], __id__=8)), "__id__": 7}),
     "MalformedModelError"),
    (archive(node("NoSuchNode", "builtins", "list")), "MalformedModelError"),
    # what skops would only find while building: a JsonNode that is not JSON, a .npy version numpy refuses
    (archive(lst(node("JsonNode", "builtins", "str", content="{not json"))), "MalformedModelError"),
    (archive(node("NdArrayNode", "numpy", "ndarray", type="numpy", file="v.npy"),
             {"v.npy": npy(np.zeros(2)).replace(b"NUMPY\x01\x00", b"NUMPY\x01\x82", 1)}), "MalformedModelError"),
    (archive(node("CachedNode", "builtins", "list", __id__=99)), "MalformedModelError"),
    (archive(js(1), protocol=99), "MalformedModelError"),
    (archive(js(1), protocol=True), "MalformedModelError"),
    (archive(functools.reduce(lambda inner, _: lst(inner), range(150), js(0))), "LimitExceededError"),
    # one member read by two nodes
    (archive(lst(*[node("NdArrayNode", "numpy", "ndarray", type="numpy", file="a.npy")] * 2),
             {"a.npy": npy(np.zeros(3))}), "LimitExceededError"),
    # a header claiming more than the member holds, whatever the member is called
    (archive(node("NdArrayNode", "numpy", "ndarray", type="numpy", file="weights.bin"),
             {"weights.bin": npy(np.zeros(4))[:-8]}), "LimitExceededError"),
    (archive(node("NdArrayNode", "numpy", "ndarray", type="numpy", file="w.npy"),
             {"w.npy": npy(np.zeros(4)) + b"\0" * 8}), "MalformedModelError"),
    (archive(node("NdArrayNode", "numpy", "ndarray", type="numpy", file="w.npy"),
             {"w.npy": npy(np.zeros(4)).replace(b"'descr': '<f8'", b"'descr': '|O8'")}), "MalformedModelError"),
    (archive(node("NdArrayNode", "numpy", "ndarray", type="numpy", file="gone.npy")), "MalformedModelError"),
    # an object array whose rows are one shared list: more cells than the schema has entries
    (archive(node("NdArrayNode", "numpy", "ndarray", type="json", shape=tup(js(1000), js(1000)),
                  content=[{**lst(*[js(0)] * 1000), "__id__": 5}] + [{"__id__": 5}] * 999)),
     "LimitExceededError"),
    (archive(node("NdArrayNode", "numpy", "ndarray", type="json", shape=tup(js(2), js(2)),
                  content=[lst(js(1), js(2)), lst(js(3))])), "MalformedModelError"),
    # a one-dimensional object array declaring more cells than it lists (np.empty would allocate them)
    (archive(node("NdArrayNode", "numpy", "ndarray", type="json", shape=tup(js(10**9)), content=[js(1)])),
     "LimitExceededError"),
    (archive(node("NdArrayNode", "numpy", "ndarray", type="json", shape=tup(js(3)), content=[js(1)])),
     "MalformedModelError"),
    # a sparse member whose format is not one load_npz builds, and one declared as another class
    (archive(node("SparseMatrixNode", "scipy.sparse._lil", "lil_matrix", type="scipy", file="m.npz"),
             {"m.npz": npy(np.zeros(1))}), "MalformedModelError"),
])
def test_structure_refused_by_scan_and_load(data: bytes, error: str) -> None:
    assert outcome(data) == (Verdict.ERROR, error)


def test_sparse_member_declared_as_another_class() -> None:
    buf = io.BytesIO()
    scipy.sparse.save_npz(buf, scipy.sparse.csr_matrix(np.eye(2)))
    data = archive(node("SparseMatrixNode", "scipy.sparse._csc", "csc_matrix", type="scipy", file="m.npz"),
                   {"m.npz": buf.getvalue()})
    assert outcome(data) == (Verdict.UNSAFE, "UnsafeModelError")


def test_members_capped_by_what_they_inflate_to() -> None:
    data = archive(node("BytesNode", "builtins", "bytes", file="blob.bin"), {"blob.bin": bytes(1 << 16)},
                   compress=zipfile.ZIP_DEFLATED)
    small = Policy.default().extended((), limits=Limits(max_decompressed_bytes=1 << 12))
    assert outcome(data, small) == (Verdict.ERROR, "LimitExceededError")
    assert outcome(data) == (Verdict.SAFE, "ok")


def test_member_size_comes_from_its_bytes() -> None:
    """Headers claim a 1 MB member whose deflate stream holds 300 bytes: both read the 300 bytes."""
    data = bytearray(archive(node("BytesNode", "builtins", "bytes", file="blob.bin"),
                             {"blob.bin": b"abc" * 100}, compress=zipfile.ZIP_DEFLATED))
    central = data.rindex(b"PK\x01\x02")
    size_at = central + 24
    struct.pack_into("<I", data, size_at, 10**6)
    local = data.index(b"PK\x03\x04", data.index(b"blob.bin") - 40)
    struct.pack_into("<I", data, local + 22, 10**6)
    assert outcome(bytes(data)) == (Verdict.SAFE, "ok")
    assert safeload.loads(bytes(data)) == b"abc" * 100


def test_rng_position_checked_statically() -> None:
    key = node("NdArrayNode", "numpy", "ndarray", type="numpy", file="k.npy")
    state = dct(bit_generator=js("MT19937"), state=dct(key=key, pos=js(700)), has_gauss=js(0), gauss=js(0.0))
    data = archive(node("RandomStateNode", "numpy.random.mtrand", "RandomState", content=state),
                   {"k.npy": npy(np.arange(624, dtype=np.uint32))})
    assert outcome(data) == (Verdict.UNSAFE, "UnsafeModelError")


# -- the zoo: both front ends make the same policy decisions -------------------------------------

#: Names only one front end needs, and why. skops stores plain data as JSON nodes and types, numpy
#: scalars by their type and arrays in .npy members; pickle reaches the same values through numpy's
#: reconstruction helpers and the random/Cython unpickle helpers.
SKOPS_ONLY = {
    "builtins.dict", "builtins.list", "builtins.str", "builtins.tuple", "builtins.int",  # containers, key types
    "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",  # random nodes call the class
}
PICKLE_ONLY = {
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar", "numpy._core.numeric._frombuffer",
    "numpy.dtype", "numpy.ma.core._mareconstruct", "numpy.random._mt19937.MT19937",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss", "sklearn.metrics._dist_metrics.newObj",
    "sklearn.neighbors._kd_tree.newObj",
}
#: Either may name these where the other does not: ``numpy.ndarray`` (pickle only for arrays built by
#: _reconstruct, skops for every array), ``numpy.dtype`` (pickle for every array, skops only for a dtype
#: attribute), numpy scalar types (skops names a scalar's type, pickle builds scalars from a dtype; both
#: name a type given as a parameter such as ``dtype=np.float64``).
EITHER = {"numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.int64", "numpy.uint64"}


def test_zoo_pickle_and_skops_decisions_agree(zoo_store: zoo.Zoo) -> None:
    from safeload._walker import walk

    policy = Policy.default()
    checked = 0
    for name, fmt in zoo.cases():
        if fmt != "skops":
            continue
        result = audit(zoo_store.path(name, "skops").read_bytes(), policy)
        trace = walk(zoo_store.path(name, "pickle-p5").read_bytes(), policy, joblib=False)
        assert not result.refused
        skops_names = {n for n, _ in result.uses} - SKOPS_ONLY - EITHER
        pickle_names = {g.name for g in trace.all_globals()} - PICKLE_ONLY - EITHER
        assert skops_names == pickle_names, (name, skops_names ^ pickle_names)
        for used, how in result.uses:
            kind = policy.kind(used)
            assert kind is not None
            assert how != "call" or kind.value == "call", (name, used)
            assert how != "new" or kind.value in ("new", "call"), (name, used)
        checked += 1
    assert checked >= 200


def test_zoo_skops_scan_equals_load(zoo_store: zoo.Zoo) -> None:
    """Every zoo skops file: scan says safe and load builds it (outputs are checked in test_benign)."""
    for name in ("x_random_state_object_forest", "HistGradientBoostingClassifier", "x_grid_search_pipeline",
                 "x_sparse_csr_KNeighborsClassifier", "GradientBoostingClassifier"):
        path = Path(zoo_store.path(name, "skops"))
        assert outcome(path.read_bytes()) == (Verdict.SAFE, "ok")


def test_scan_imports_nothing_the_file_names() -> None:
    """scan judges an allowed class without importing its module (nor skops); load then imports it."""
    import subprocess
    import sys

    code = (
        "import io, sys, safeload\n"
        "data = sys.stdin.buffer.read()\n"
        "module = 'sklearn.neural_network._multilayer_perceptron'\n"
        "report = safeload.scan(io.BytesIO(data))\n"
        "print(report.verdict, module in sys.modules, 'skops.io' in sys.modules)\n"
        "safeload.loads(data)\n"
        "print(module in sys.modules)\n"
    )
    data = archive(node("ObjectNode", "sklearn.neural_network._multilayer_perceptron", "MLPClassifier"))
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True).stdout.decode()
    assert out.split() == ["safe", "False", "False", "True"], out


def test_sparse_inner_archive_capped_like_the_outer_one() -> None:
    """A sparse matrix's .npz is itself a zip: its members are capped by what they inflate to."""
    buf = io.BytesIO()
    scipy.sparse.save_npz(buf, scipy.sparse.csr_matrix(np.ones((1, 1 << 14))), compressed=True)
    data = archive(node("SparseMatrixNode", "scipy.sparse._csr", "csr_matrix", type="scipy", file="m.npz"),
                   {"m.npz": buf.getvalue()})
    assert outcome(data) == (Verdict.SAFE, "ok")
    small = Policy.default().extended((), limits=Limits(max_decompressed_bytes=1 << 13))
    assert outcome(data, small) == (Verdict.ERROR, "LimitExceededError")
