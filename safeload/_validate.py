"""Structural validation of loaded models.

An allowlist decides which *types* a file may build, not whether their *state*
is sane. Several scikit-learn / SciPy types hand their state to compiled code
that indexes with it without bounds checks: a ``Tree`` whose child index points
outside its node array loads fine with plain pickle and then segfaults in
``predict()``. :func:`validate` walks the loaded object graph and checks, for
every such instance, the invariants that the compiled code silently assumes.
It raises :class:`~safeload._errors.UnsafeModelError` whose ``path`` names the
offending field, e.g. ``estimators_[3].tree_.children_left[0]``.

Design notes:

* Types are recognised by the fully-qualified names in their MRO, so this
  module never imports scikit-learn or SciPy itself, and subclasses of a
  checked type are checked too.
* The graph walk is breadth-first (shortest, most readable paths; no
  recursion), de-duplicated by ``id()`` and bounded in depth.
* Checks are vectorised with NumPy; no per-node Python loops except where a
  structure is a Python object graph anyway (Birch-like trees, LIL/DOK).
* Only what native code relies on is enforced (memory safety, no infinite
  loops). NaN thresholds and other merely *wrong* values are not rejected.
* Any unexpected error while checking an object fails closed, as an
  ``UnsafeModelError`` for that object.
"""

from __future__ import annotations

import functools
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt

from safeload._errors import SafeloadError, UnsafeModelError
from safeload._guards import rng_state_problem

__all__ = [
    "MAX_DEPTH",
    "REFUSED_TYPES",
    "VALIDATED_TYPES",
    "validate",
]

#: Deepest nesting (in attribute/item hops from the root) that is walked.
#: Real models are a few dozen levels deep; a deeper graph is refused rather
#: than left partly unchecked.
MAX_DEPTH: Final = 1000

_Check = Callable[[Any, str], None]

#: ids of objects already checked in bulk by their owner during this validate().
_VALIDATED: ContextVar[set[int] | None] = ContextVar("safeload_validated", default=None)
#: (id of a dict, keys?) -> the set of types in it, so that a 500,000-word vocabulary is
#: type-scanned once per validate() and not once by its owner's check and again by the walk.
#: The entry holds the dict itself, so its id cannot be reused by another dict meanwhile.
_CENSUS: ContextVar[dict[tuple[int, bool], tuple[object, frozenset[type]]] | None] = ContextVar(
    "safeload_census", default=None)
_IntArray = npt.NDArray[np.intp]

# sklearn's libsvm wrappers map ``_impl`` to svm_type by position.
_LIBSVM_IMPL: Final = ("c_svc", "nu_svc", "one_class", "epsilon_svr", "nu_svr")
_INT32_MAX: Final = 2**31 - 1


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _join(path: str, suffix: str) -> str:
    """Append ``.attr`` / ``[i]`` to a path; the root has an empty path."""
    if not path:
        return suffix[1:] if suffix.startswith(".") else suffix
    return path + suffix


def _fail(path: str, suffix: str, message: str) -> NoReturn:
    """Raise the structural error for ``path + suffix``."""
    where = _join(path, suffix)
    raise UnsafeModelError(f"{where or '<model>'}: {message}", path=where)


def _first(mask: npt.NDArray[np.bool_]) -> int:
    """Index of the first True in a boolean array (caller knows one exists)."""
    return int(np.flatnonzero(mask)[0])


def _fullname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _int(value: object, path: str, suffix: str) -> int:
    """Return ``value`` as int, or fail: native code stores these in C ints."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    _fail(path, suffix, f"expected an integer, got {type(value).__name__}")


def _array(value: object, path: str, suffix: str, *, ndim: int | None = None) -> npt.NDArray[Any]:
    """Return ``value`` if it is an ndarray (of ``ndim`` dims), else fail."""
    if not isinstance(value, np.ndarray):
        _fail(path, suffix, f"expected a numpy array, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        _fail(path, suffix, f"expected a {ndim}-d array, got shape {value.shape}")
    return value


def _int_array(value: object, path: str, suffix: str, *, ndim: int = 1) -> npt.NDArray[Any]:
    arr = _array(value, path, suffix, ndim=ndim)
    if arr.dtype.kind not in "iu":
        _fail(path, suffix, f"expected an integer array, got dtype {arr.dtype}")
    return arr


def _attr(obj: object, name: str) -> Any:
    """Instance attribute from ``__dict__`` only: no properties, no code runs."""
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        return d.get(name)
    return None


def _n_features_in(est: object, path: str, *, needed_for: str) -> int:
    """Fitted width of X; required where native code indexes X by feature."""
    value = _attr(est, "n_features_in_")
    if value is None:
        _fail(
            path,
            ".n_features_in_",
            f"missing, so predict() would not check the width of X before {needed_for}",
        )
    n = _int(value, path, ".n_features_in_")
    if n < 1:
        _fail(path, ".n_features_in_", f"must be >= 1, got {n}")
    return n


_MRO_NAMES: Final[dict[type, frozenset[str]]] = {}


def _mro_names(cls: type) -> frozenset[str]:
    """Fully-qualified names of ``cls`` and its bases (cached per type)."""
    names = _MRO_NAMES.get(cls)
    if names is None:
        names = frozenset(_fullname(c) for c in cls.__mro__)
        if len(_MRO_NAMES) < 4096:
            _MRO_NAMES[cls] = names
    return names


def _is_instance_of(obj: object, fullname: str) -> bool:
    return fullname in _mro_names(type(obj))


def _is_sparse(obj: object) -> bool:
    return _is_instance_of(obj, "scipy.sparse._base._spbase")


def _check_links(
    left: _IntArray,
    right: _IntArray,
    internal: _IntArray,
    path: str,
    field_suffix: Callable[[str, int], str],
) -> _IntArray:
    """Children point forward, in range, and every non-root node has one parent.

    ``child > parent`` holds for every tree scikit-learn builds and rules out
    cycles; with exactly one parent per node every node is reached once from
    the root. Returns each node's parent (the root is its own), for the depth
    checks below. A forest has a hundred of these, so the good case is a few
    whole-array reductions; a bad tree goes to ``_links_failure``, which finds
    the first bad node for the message.
    """
    n = left.size
    m = internal.size
    lc = left.take(internal)
    rc = right.take(internal)
    if m and (int((lc - internal).min()) < 1 or int((rc - internal).min()) < 1
              or max(int(lc.max()), int(rc.max())) >= n):
        _links_failure(left, right, internal, path, field_suffix)
    parent = np.full(n, -1, dtype=np.intp)
    parent[lc] = internal
    parent[rc] = internal
    # n - 1 children, all in [1, n), every one of 1..n-1 reached: each has exactly one parent.
    if 2 * m != n - 1 or (n > 1 and int(parent[1:].min()) < 0):
        _links_failure(left, right, internal, path, field_suffix)
    parent[0] = 0  # a tree rooted at 0 (the root is its own parent)
    return parent


def _tree_depth(parent: _IntArray) -> int:
    """Exact depth by pointer jumping: after k rounds anc[i] is the 2**k-th ancestor (or the root)."""
    anc = parent
    depth = np.ones(parent.size, dtype=np.intp)
    depth[0] = 0
    for _ in range(64):
        if not anc.any():
            break
        depth += depth.take(anc)
        anc = anc.take(anc)
    return int(depth.max())


def _depth_at_most(parent: _IntArray, leaves: _IntArray, bound: int) -> bool:
    """Is every leaf at most ``bound`` levels deep?  The bound-th ancestor of each leaf must be the root.

    Binary powers of the parent map: log2(bound) squarings of the whole map, and one step
    per set bit of ``bound`` applied to the leaves only; about half the work of computing
    every node's exact depth, which only a failing tree needs (for its message).
    """
    if bound <= 0:
        return parent.size == 1
    at = parent.take(leaves)  # one level up
    rest = bound - 1
    power = parent
    while rest:
        if rest & 1:
            at = power.take(at)
        rest >>= 1
        if rest:
            power = power.take(power)
    return not at.any()


def _links_failure(
    left: _IntArray,
    right: _IntArray,
    internal: _IntArray,
    path: str,
    field_suffix: Callable[[str, int], str],
) -> NoReturn:
    """Name the first node that breaks the tree shape (runs only for a bad tree)."""
    n = left.size
    m = internal.size
    children = np.concatenate([left[internal], right[internal]])
    parents = np.concatenate([internal, internal])
    bad = (children <= parents) | (children >= n)
    if bad.any():
        j = _first(bad)
        i = int(parents[j])
        _fail(
            path,
            field_suffix("left" if j < m else "right", i),
            f"= {int(children[j])} must point forward inside ({i}, {n}); "
            "native code follows it without a bounds check "
            "(out-of-range reads or an endless loop)",
        )
    counts = np.bincount(children, minlength=n)
    if counts.max(initial=0) > 1:
        node = _first(counts > 1)
        j = int(np.flatnonzero(children == node)[1])
        _fail(
            path,
            field_suffix("left" if j < m else "right", int(parents[j])),
            f"= {node}: node {node} already has a parent; a node may be reached only once",
        )
    missing = counts[1:] == 0
    node = _first(missing) + 1 if missing.any() else 0
    _fail(path, field_suffix("left", node), f"node {node} has no parent (unreachable)")


# --------------------------------------------------------------------------
# sklearn.tree._tree.Tree
# --------------------------------------------------------------------------


def _check_tree(tree: Any, path: str) -> None:
    """Node arrays of a decision tree, as read by Tree.apply/predict/decision_path."""
    node_count = _int(tree.node_count, path, ".node_count")
    capacity = _int(tree.capacity, path, ".capacity")
    if not 1 <= node_count <= capacity:
        _fail(
            path,
            ".node_count",
            f"= {node_count} must be in [1, capacity={capacity}]; predict() starts at node 0",
        )
    n_features = _int(tree.n_features, path, ".n_features")
    n_outputs = _int(tree.n_outputs, path, ".n_outputs")
    max_n_classes = _int(tree.max_n_classes, path, ".max_n_classes")
    if n_features < 1:
        _fail(path, ".n_features", f"must be >= 1, got {n_features}")
    if n_outputs < 1:
        _fail(path, ".n_outputs", f"must be >= 1, got {n_outputs}")
    n_classes = np.asarray(tree.n_classes)
    if n_classes.shape != (n_outputs,) or n_classes.min() < 1 or int(n_classes.max()) != max_n_classes:
        _fail(
            path,
            ".n_classes",
            f"{n_classes.tolist()} inconsistent with n_outputs={n_outputs}, max_n_classes={max_n_classes}",
        )
    state = tree.__getstate__()  # views of node_count rows, no copy
    nodes = _array(state["nodes"], path, ".nodes", ndim=1)
    values = _array(state["values"], path, ".value")
    if nodes.shape != (node_count,):
        _fail(path, ".nodes", f"shape {nodes.shape} != ({node_count},)")
    if values.shape != (node_count, n_outputs, max_n_classes):
        _fail(
            path,
            ".value",
            f"shape {values.shape} != {(node_count, n_outputs, max_n_classes)}",
        )
    left = np.array(nodes["left_child"], dtype=np.intp)
    right = np.array(nodes["right_child"], dtype=np.intp)
    leaf = left == -1
    mismatch = leaf != (right == -1)
    if mismatch.any():
        i = _first(mismatch)
        _fail(
            path,
            f".children_right[{i}]",
            f"= {int(right[i])} but children_left[{i}] = {int(left[i])}: a node is a leaf only if both children are -1",
        )
    internal = np.flatnonzero(~leaf)

    def suffix(side: str, i: int) -> str:
        return f".children_{side}[{i}]"

    max_depth = _int(tree.max_depth, path, ".max_depth")
    parent = _check_links(left, right, internal, path, suffix)

    feature = np.array(nodes["feature"], dtype=np.intp).take(internal)  # copy, then take: 5x a strided gather
    if feature.size and (int(feature.min()) < 0 or int(feature.max()) >= n_features):
        bad = (feature < 0) | (feature >= n_features)
        i = int(internal[_first(bad)])
        _fail(
            path,
            f".feature[{i}]",
            f"= {int(feature[_first(bad)])} outside [0, n_features={n_features}); "
            "predict() reads X[:, feature] without a bounds check",
        )
    mgl = np.array(nodes["missing_go_to_left"]).take(internal)
    if mgl.size and int(mgl.max()) > 1:
        i = int(internal[_first(mgl > 1)])
        _fail(path, f".missing_go_to_left[{i}]", "must be 0 or 1")

    if not (0 <= max_depth < node_count and _depth_at_most(parent, np.flatnonzero(leaf), max_depth)):
        depth = _tree_depth(parent)
        _fail(
            path,
            ".max_depth",
            f"= {max_depth} but the tree is {depth} deep: decision_path() "
            "sizes its output buffer from max_depth (heap overflow)",
        )


# --------------------------------------------------------------------------
# HistGradientBoosting TreePredictor
# --------------------------------------------------------------------------

_PREDICTOR_FIELDS: Final = (
    "value",
    "count",
    "feature_idx",
    "num_threshold",
    "missing_go_to_left",
    "left",
    "right",
    "gain",
    "depth",
    "is_leaf",
    "bin_threshold",
    "is_categorical",
    "bitset_idx",
)


def _predictor_nodes(pred: Any, path: str) -> npt.NDArray[Any]:
    nodes = _array(_attr(pred, "nodes"), path, ".nodes", ndim=1)
    names = nodes.dtype.names or ()
    missing = [f for f in _PREDICTOR_FIELDS if f not in names]
    if missing:
        _fail(path, ".nodes", f"record dtype lacks fields {missing}")
    return nodes


def _check_tree_predictor(pred: Any, path: str) -> None:
    """Nodes and categorical bitsets walked by _predict_from_raw/binned_data."""
    nodes = _predictor_nodes(pred, path)
    n = nodes.size
    if n < 1:
        _fail(path, ".nodes", "is empty; prediction starts by reading nodes[0]")
    leaf = np.asarray(nodes["is_leaf"]) != 0
    internal = np.flatnonzero(~leaf)
    left = np.array(nodes["left"], dtype=np.intp)
    right = np.array(nodes["right"], dtype=np.intp)

    def suffix(side: str, i: int) -> str:
        return f".nodes[{i}]['{side}']"

    _check_links(left, right, internal, path, suffix)

    feature = np.asarray(nodes["feature_idx"], dtype=np.intp)[internal]
    if feature.size and int(feature.min()) < 0:
        i = int(internal[_first(feature < 0)])
        _fail(path, f".nodes[{i}]['feature_idx']", "must be >= 0")

    bitsets = []
    for name in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        b = _array(_attr(pred, name), path, f".{name}", ndim=2)
        if b.shape[1] != 8 or b.dtype != np.uint32:
            _fail(
                path,
                f".{name}",
                f"must be uint32 of shape (n, 8), got {b.dtype} {b.shape}; bitset lookups read 8 words per row",
            )
        bitsets.append((name, b.shape[0]))
    cat = internal[np.asarray(nodes["is_categorical"])[internal] != 0]
    if cat.size:
        idx = np.asarray(nodes["bitset_idx"], dtype=np.intp)[cat]
        for name, rows in bitsets:
            bad = idx >= rows
            if bad.any():
                i = int(cat[_first(bad)])
                _fail(
                    path,
                    f".nodes[{i}]['bitset_idx']",
                    f"= {int(idx[_first(bad)])} outside {name} ({rows} rows)",
                )


def _column_count(cols: object, n_in: int) -> int | None:
    """Columns a ColumnTransformer entry selects, when knowable without data."""
    if isinstance(cols, slice):
        return len(range(n_in)[cols])
    if isinstance(cols, (list, tuple, np.ndarray)):
        arr = np.asarray(cols)
        if arr.size == 0:
            return 0
        if arr.dtype == np.bool_:
            return int(arr.sum()) if arr.shape == (n_in,) else None
        if arr.dtype.kind in "iu" and arr.ndim == 1:
            return int(arr.size)
    return None


_WIDTH_PRESERVING: Final = frozenset(
    {
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
    }
)


def _preprocessor_width(ct: object, n_in: int) -> int | None:
    """Output width of HGB's internal ColumnTransformer, or None if unknown."""
    entries = _attr(ct, "transformers_")
    if not isinstance(entries, list):
        return None
    total = 0
    for entry in entries:
        if not isinstance(entry, tuple) or len(entry) < 3:
            return None
        trans, cols = entry[1], entry[2]
        if isinstance(trans, str) and trans == "drop":
            continue
        count = _column_count(cols, n_in)
        if count is None:
            return None
        if isinstance(trans, str):
            if trans != "passthrough":
                return None
        elif _fullname(type(trans)) not in _WIDTH_PRESERVING:
            return None
        total += count
    return total


def _check_hist_gradient_boosting(est: Any, path: str) -> None:
    """Predictor feature indices vs the X width and the known-category bitsets."""
    predictors = _attr(est, "_predictors")
    if predictors is None:
        return
    n_features = _n_features_in(est, path, needed_for="indexing X by feature_idx")
    if not isinstance(predictors, list):
        _fail(path, "._predictors", "must be a list of lists of TreePredictor")
    bin_mapper = _attr(est, "_bin_mapper")
    is_cat = _array(
        _attr(bin_mapper, "is_categorical_"),
        path,
        "._bin_mapper.is_categorical_",
        ndim=1,
    )
    if is_cat.size != n_features:
        _fail(
            path,
            "._bin_mapper.is_categorical_",
            f"has {is_cat.size} entries for {n_features} features; "
            "f_idx_map[feature_idx] is read without a bounds check",
        )
    preprocessor = _attr(est, "_preprocessor")
    if preprocessor is not None:
        width = _preprocessor_width(preprocessor, n_features)
        if width is not None and width != n_features:
            _fail(
                path,
                "._preprocessor.transformers_",
                f"outputs {width} columns, predictors expect {n_features}",
            )
    is_cat_b = is_cat != 0
    preds: list[tuple[Any, str]] = []
    for i, row in enumerate(predictors):
        if not isinstance(row, list):
            _fail(path, f"._predictors[{i}]", "must be a list of TreePredictor")
        preds.extend((pred, _join(path, f"._predictors[{i}][{k}]")) for k, pred in enumerate(row))
    if not _predictors_ok(preds, n_features, is_cat_b):
        # Slow path, only for a model that is being refused: exact location.
        for pred, ppath in preds:
            _check_tree_predictor(pred, ppath)
            _check_predictor_features(pred, ppath, n_features, is_cat_b)
    done = _VALIDATED.get()
    if done is not None:
        done.update(id(pred) for pred, _ in preds)


def _predictors_ok(preds: list[tuple[Any, str]], n_features: int, is_cat: npt.NDArray[np.bool_]) -> bool:
    """All predictor checks at once over the concatenated nodes (fast path).

    One vectorised pass instead of a few dozen NumPy calls per predictor:
    HistGradientBoosting models hold hundreds of small trees.
    """
    arrays: list[npt.NDArray[Any]] = []
    rows: list[int] = []
    for pred, _ in preds:
        nodes = _attr(pred, "nodes")
        if not isinstance(nodes, np.ndarray) or nodes.ndim != 1 or not nodes.size:
            return False
        n_rows = []
        for name in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
            b = _attr(pred, name)
            if not isinstance(b, np.ndarray) or b.ndim != 2 or b.shape[1] != 8 or b.dtype != np.uint32:
                return False
            n_rows.append(b.shape[0])
        arrays.append(nodes)
        rows.append(min(n_rows))
    if not arrays:
        return True
    dtype = arrays[0].dtype
    if not set(_PREDICTOR_FIELDS) <= set(dtype.names or ()):
        return False
    if any(a.dtype is not dtype and a.dtype != dtype for a in arrays):
        return False
    # Concatenating record arrays promotes field by field (slow); raw bytes do not.
    raw = f"V{dtype.itemsize}"
    nodes = np.concatenate([a.view(raw) for a in arrays]).view(dtype)
    sizes = np.fromiter((a.size for a in arrays), dtype=np.intp, count=len(arrays))
    starts = np.cumsum(sizes) - sizes
    offset = np.repeat(starts, sizes)
    size = np.repeat(sizes, sizes)
    internal = np.flatnonzero(nodes["is_leaf"] == 0)
    local = internal - offset[internal]
    n_int = size[internal]
    children = []
    for side in ("left", "right"):
        c = nodes[side][internal].astype(np.intp)
        if ((c <= local) | (c >= n_int)).any():
            return False
        children.append(c + offset[internal])
    linked = np.concatenate(children)
    has_parent = np.zeros(nodes.size, dtype=np.bool_)
    has_parent[linked] = True
    has_parent[starts] = True
    if linked.size != nodes.size - len(arrays) or not has_parent.all():
        return False
    feat = nodes["feature_idx"][internal].astype(np.intp)
    if ((feat < 0) | (feat >= n_features)).any():
        return False
    cat = nodes["is_categorical"][internal] != 0
    if (cat & ~is_cat[feat]).any():
        return False
    row_limit = np.repeat(np.asarray(rows, dtype=np.intp), sizes)[internal]
    return not (cat & (nodes["bitset_idx"][internal].astype(np.intp) >= row_limit)).any()


def _check_predictor_features(pred: Any, ppath: str, n_features: int, is_cat_b: npt.NDArray[np.bool_]) -> None:
    nodes = _predictor_nodes(pred, ppath)
    internal = np.flatnonzero(np.asarray(nodes["is_leaf"]) == 0)
    feat = np.asarray(nodes["feature_idx"], dtype=np.intp)[internal]
    bad = (feat < 0) | (feat >= n_features)
    if bad.any():
        j = int(internal[_first(bad)])
        _fail(
            ppath,
            f".nodes[{j}]['feature_idx']",
            f"= {int(feat[_first(bad)])} outside [0, n_features_in_="
            f"{n_features}); predict() reads X[:, feature_idx] unchecked",
        )
    cat = np.asarray(nodes["is_categorical"])[internal] != 0
    wrong = cat & ~is_cat_b[feat]
    if wrong.any():
        j = int(internal[_first(wrong)])
        _fail(
            ppath,
            f".nodes[{j}]['is_categorical']",
            f"split on feature {int(feat[_first(wrong)])} which the bin "
            "mapper does not mark categorical: its known-category "
            "bitset row does not exist",
        )


def _check_tree_predictor_once(pred: Any, path: str) -> None:
    """Rule entry: skip predictors their estimator already checked in bulk."""
    done = _VALIDATED.get()
    if done is None or id(pred) not in done:
        _check_tree_predictor(pred, path)


# --------------------------------------------------------------------------
# KDTree / BallTree (sklearn.neighbors._binary_tree)
# --------------------------------------------------------------------------


def _check_distance_metric_state(metric: Any, path: str, n_features: int | None) -> None:
    """Parameter arrays that DistanceMetric.rdist indexes up to n_features."""
    base = ""
    for cls in type(metric).__mro__:
        if cls.__module__ == "sklearn.metrics._dist_metrics":
            base = cls.__name__.removesuffix("32").removesuffix("64")
            break
    state = metric.__getstate__()
    if not isinstance(state, tuple) or len(state) < 3:
        _fail(path, "", "unexpected DistanceMetric state")
    vec = np.asarray(state[1])
    mat = np.asarray(state[2])
    if base == "MahalanobisDistance":
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            _fail(path, ".VI", f"must be a square matrix, got shape {mat.shape}")
        if n_features is not None and mat.shape[0] != n_features:
            _fail(
                path,
                ".VI",
                f"is {mat.shape[0]}x{mat.shape[0]} for {n_features} features; "
                "rdist() writes n_features values into a buffer of that size",
            )
    elif base in ("SEuclideanDistance", "MinkowskiDistance"):
        if vec.ndim != 1:
            _fail(path, ".vec", f"must be 1-d, got shape {vec.shape}")
        allowed = {n_features} if base == "SEuclideanDistance" else {0, n_features}
        if n_features is not None and vec.size not in allowed:
            _fail(
                path,
                ".vec",
                f"has {vec.size} weights for {n_features} features; rdist() reads one per feature",
            )
    elif base == "HaversineDistance" and n_features not in (None, 2):
        _fail(path, "", f"haversine needs 2 features, data has {n_features}")


def _check_distance_metric(metric: Any, path: str) -> None:
    """Standalone DistanceMetric: internal shape consistency only."""
    _check_distance_metric_state(metric, path, None)


def _make_binary_tree_check(bounds_rows: int) -> _Check:
    def check(tree: Any, path: str) -> None:
        """idx_array / node_data / node_bounds as walked by query() & co."""
        state = tree.__getstate__()
        if not isinstance(state, tuple) or len(state) != 13:
            _fail(path, "", "unexpected BinaryTree state")
        data = np.asarray(state[0])
        if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
            _fail(path, ".data", f"must be a non-empty 2-d array, got {data.shape}")
        n_samples, n_features = data.shape
        idx = np.asarray(state[1])
        if idx.shape != (n_samples,) or idx.dtype.kind not in "iu":
            _fail(
                path,
                ".idx_array",
                f"must be {n_samples} integers, got {idx.dtype} {idx.shape}",
            )
        bad = (idx < 0) | (idx >= n_samples)
        if bad.any():
            i = _first(bad)
            _fail(
                path,
                f".idx_array[{i}]",
                f"= {int(idx[i])} outside [0, {n_samples}); queries read data[idx_array[i]] unchecked",
            )
        counts = np.bincount(idx.astype(np.intp), minlength=n_samples)
        if counts.max() > 1:
            dup = _first(counts > 1)
            i = int(np.flatnonzero(idx == dup)[1])
            _fail(path, f".idx_array[{i}]", "is not a permutation of the samples")
        leaf_size = _int(state[4], path, ".leaf_size")
        if leaf_size < 1:
            _fail(
                path,
                ".leaf_size",
                f"= {leaf_size}; breadth-first queries divide by it (SIGFPE)",
            )
        n_levels = _int(state[5], path, ".n_levels")
        n_nodes = _int(state[6], path, ".n_nodes")
        expected = int(np.log2(max(1.0, (n_samples - 1) / leaf_size)) + 1)
        if n_levels != expected or n_nodes != 2**n_levels - 1:
            _fail(
                path,
                ".n_nodes",
                f"n_levels={n_levels}, n_nodes={n_nodes} inconsistent with "
                f"{n_samples} samples and leaf_size={leaf_size}",
            )
        nd = np.asarray(state[2])
        names = nd.dtype.names or ()
        if nd.shape != (n_nodes,) or not {"idx_start", "idx_end", "is_leaf"} <= set(names):
            _fail(path, ".node_data", f"must hold {n_nodes} node records")
        start = np.asarray(nd["idx_start"], dtype=np.intp)
        end = np.asarray(nd["idx_end"], dtype=np.intp)
        is_leaf = np.asarray(nd["is_leaf"]) != 0
        if start[0] != 0 or end[0] != n_samples:
            _fail(path, ".node_data[0]", f"root must span [0, {n_samples})")
        frontier = np.zeros(1, dtype=np.intp)
        while frontier.size:
            s, e = start[frontier], end[frontier]
            bad = (s < 0) | (s > e) | (e > n_samples)
            if bad.any():
                i = int(frontier[_first(bad)])
                _fail(
                    path,
                    f".node_data[{i}]",
                    f"idx range [{int(start[i])}, {int(end[i])}) outside "
                    f"[0, {n_samples}]; leaves iterate idx_array over it",
                )
            inner = frontier[~is_leaf[frontier]]
            deep = 2 * inner + 2 >= n_nodes
            if deep.any():
                i = int(inner[_first(deep)])
                _fail(
                    path,
                    f".node_data[{i}]['is_leaf']",
                    f"node {i} has no children in a {n_nodes}-node tree but is not marked as a leaf",
                )
            lo, hi = 2 * inner + 1, 2 * inner + 2
            for child, ok in (
                (lo, (start[lo] == start[inner]) & (end[lo] == start[hi])),
                (hi, end[hi] == end[inner]),
            ):
                if not ok.all():
                    c = int(child[_first(~ok)])
                    _fail(
                        path,
                        f".node_data[{c}]",
                        f"idx range [{int(start[c])}, {int(end[c])}) does not tile its parent's range",
                    )
            frontier = np.concatenate([lo, hi])
        bounds = np.asarray(state[3])
        if bounds.shape != (bounds_rows, n_nodes, n_features):
            _fail(
                path,
                ".node_bounds",
                f"shape {bounds.shape} != {(bounds_rows, n_nodes, n_features)}",
            )
        weight = state[12]
        if weight is not None and np.shape(weight) != (n_samples,):
            _fail(
                path,
                ".sample_weight",
                f"shape {np.shape(weight)} != ({n_samples},)",
            )
        _check_distance_metric_state(state[11], _join(path, ".dist_metric"), n_features)

    return check


# --------------------------------------------------------------------------
# scipy.sparse
# --------------------------------------------------------------------------


def _sparse_format(sp: Any) -> str | None:
    """'csr', 'coo', ...: a read-only property constant on SciPy's classes."""
    fmt = getattr(sp, "format", None)
    return fmt if isinstance(fmt, str) else None


def _sparse_shape(sp: Any, path: str) -> tuple[int, ...]:
    shape = _attr(sp, "_shape")
    if not isinstance(shape, tuple) or not 1 <= len(shape) <= 2:
        _fail(path, "._shape", f"invalid sparse shape {shape!r}")
    dims = tuple(_int(d, path, "._shape") for d in shape)
    if min(dims) < 0:
        _fail(path, "._shape", f"negative dimension in {dims}")
    return dims


def _check_compressed(sp: Any, path: str, fmt: str, dims: tuple[int, ...]) -> None:
    m, n = (1, dims[0]) if len(dims) == 1 else dims
    major, minor = (m, n) if fmt == "csr" else (n, m)
    data = _array(_attr(sp, "data"), path, ".data")
    if fmt == "bsr":
        if data.ndim != 3:
            _fail(path, ".data", f"bsr data must be 3-d, got {data.shape}")
        r, c = data.shape[1:]
        if r < 1 or c < 1 or m % r or n % c:
            _fail(path, ".data", f"block size {(r, c)} does not tile shape {dims}")
        major, minor = m // r, n // c
    elif data.ndim != 1:
        _fail(path, ".data", f"must be 1-d, got shape {data.shape}")
    indptr = _int_array(_attr(sp, "indptr"), path, ".indptr")
    indices = _int_array(_attr(sp, "indices"), path, ".indices")
    if indptr.size != major + 1:
        _fail(path, ".indptr", f"has {indptr.size} entries, expected {major + 1}")
    if indptr[0] != 0:
        _fail(path, ".indptr[0]", "must be 0")
    step = np.diff(indptr.astype(np.int64))
    if step.size and step.min() < 0:
        _fail(path, f".indptr[{_first(step < 0) + 1}]", "indptr must not decrease")
    nnz = int(indptr[-1])
    if nnz > indices.size or indices.size != data.shape[0]:
        _fail(
            path,
            ".indptr",
            f"claims {nnz} entries; indices has {indices.size}, data {data.shape[0]}",
        )
    used = indices[:nnz]
    bad = (used < 0) | (used >= minor)
    if bad.any():
        i = _first(bad)
        _fail(path, f".indices[{i}]", f"= {int(used[i])} outside [0, {minor})")
    flags = (
        ("_has_canonical_format", True),
        ("_has_sorted_indices", False),
    )
    for flag, strict in flags:
        if _attr(sp, flag) is True and nnz > 1:
            d = np.diff(used.astype(np.int64))
            same_row = np.ones(nnz - 1, dtype=np.bool_)
            cut = indptr[1:-1].astype(np.intp) - 1
            same_row[cut[(cut >= 0) & (cut < nnz - 1)]] = False
            bad = same_row & ((d <= 0) if strict else (d < 0))
            if bad.any():
                _fail(path, f".indices[{_first(bad) + 1}]", f"contradicts {flag}")


def _check_sparse(sp: Any, path: str) -> None:
    """Index arrays that SciPy's C++ sparsetools trust (check_format, no copy)."""
    fmt = _sparse_format(sp)
    dims = _sparse_shape(sp, path)
    if fmt in ("csr", "csc", "bsr"):
        if fmt != "csr" and len(dims) != 2:
            _fail(path, "._shape", f"{fmt} must be 2-d")
        _check_compressed(sp, path, fmt, dims)
    elif fmt == "coo":
        data = _array(_attr(sp, "data"), path, ".data", ndim=1)
        coords = _attr(sp, "coords")
        if coords is None:
            coords = (_attr(sp, "row"), _attr(sp, "col"))
        if not isinstance(coords, tuple) or len(coords) != len(dims):
            _fail(path, ".coords", f"needs one index array per dimension of {dims}")
        for axis, (c, size) in enumerate(zip(coords, dims, strict=True)):
            arr = _int_array(c, path, f".coords[{axis}]")
            if arr.size != data.size:
                _fail(path, f".coords[{axis}]", "length differs from data")
            bad = (arr < 0) | (arr >= size)
            if bad.any():
                i = _first(bad)
                _fail(path, f".coords[{axis}][{i}]", f"outside [0, {size})")
    elif fmt == "dia":
        data = _array(_attr(sp, "data"), path, ".data", ndim=2)
        offsets = _int_array(_attr(sp, "offsets"), path, ".offsets")
        if offsets.size != data.shape[0]:
            _fail(path, ".offsets", "needs one offset per row of data")
    elif fmt == "lil":
        _check_lil(sp, path, dims)
    elif fmt == "dok":
        _check_dok(sp, path, dims)
    else:
        _fail(path, "", f"unknown sparse format {fmt!r}")


def _check_lil(sp: Any, path: str, dims: tuple[int, ...]) -> None:
    rows = _array(_attr(sp, "rows"), path, ".rows")
    data = _array(_attr(sp, "data"), path, ".data")
    m, n = (1, dims[0]) if len(dims) == 1 else dims
    if rows.shape != (m,) or data.shape != (m,):
        _fail(path, ".rows", f"must hold {m} row lists")
    for i in range(m):
        r, d = rows[i], data[i]
        if not isinstance(r, list) or not isinstance(d, list) or len(r) != len(d):
            _fail(path, f".rows[{i}]", "row index and data lists differ")
        if r:
            arr = np.asarray(r)
            if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n:
                _fail(path, f".rows[{i}]", f"column indices outside [0, {n})")


def _check_dok(sp: Any, path: str, dims: tuple[int, ...]) -> None:
    entries = _attr(sp, "_dict")
    if entries is None and isinstance(sp, dict):
        entries = sp
    if not isinstance(entries, dict):
        _fail(path, "._dict", "missing entry mapping")
    for key in entries:
        k = key if isinstance(key, tuple) else (key,)
        if len(k) != len(dims) or not all(
            isinstance(v, (int, np.integer)) and 0 <= v < s for v, s in zip(k, dims, strict=True)
        ):
            _fail(path, f"._dict[{key!r}]", f"key outside shape {dims}")


# --------------------------------------------------------------------------
# scipy.interpolate.BSpline (SplineTransformer.bsplines_)
# --------------------------------------------------------------------------


def _check_bspline(spl: Any, path: str) -> None:
    """Knots/coefficients as read by the C++ evaluate_spline (BSpline.__init__ checks)."""
    t_name = "_t" if _attr(spl, "_t") is not None else "t"
    c_name = "_c" if _attr(spl, "_c") is not None else "c"
    t = _array(_attr(spl, t_name), path, f".{t_name}", ndim=1)
    c = _array(_attr(spl, c_name), path, f".{c_name}")
    k = _int(_attr(spl, "k"), path, ".k")
    if t.dtype != np.float64:
        _fail(path, f".{t_name}", f"knots must be float64, got {t.dtype}")
    if c.dtype.kind not in "fc" or c.ndim < 1:
        _fail(path, f".{c_name}", f"coefficients must be a float array, got {c.dtype}")
    n = t.size - k - 1
    if k < 0 or n < k + 1:
        _fail(path, ".k", f"degree {k} needs at least {2 * k + 2} knots, has {t.size}")
    if not np.all(t[1:] >= t[:-1]):
        _fail(path, f".{t_name}", "knots must be non-decreasing (and not NaN)")
    if c.shape[0] < n:
        _fail(
            path,
            f".{c_name}",
            f"{c.shape[0]} coefficients for {n} basis functions; evaluation reads past the array",
        )
    axis = _int(_attr(spl, "axis") or 0, path, ".axis")
    if not 0 <= axis < c.ndim:
        _fail(path, ".axis", f"= {axis} outside the coefficient dims")


# --------------------------------------------------------------------------
# estimator-level checks: widths that native code takes on trust
# --------------------------------------------------------------------------


def _tree_of(est: object) -> Any:
    tree = _attr(est, "tree_")
    if tree is not None and _is_instance_of(tree, "sklearn.tree._tree.Tree"):
        return tree
    return None


def _check_tree_width(est: object, path: str, width: int) -> None:
    tree = _tree_of(est)
    if tree is not None and _int(tree.n_features, path, ".tree_.n_features") != width:
        _fail(
            path,
            ".tree_.n_features",
            f"= {int(tree.n_features)} but X will have {width} columns",
        )


def _check_decision_tree(est: Any, path: str) -> None:
    """DecisionTree*: tree width must equal the validated width of X."""
    if _attr(est, "tree_") is None:
        return
    if _tree_of(est) is None:
        _fail(path, ".tree_", "must be a sklearn.tree._tree.Tree")
    _check_tree_width(est, path, _n_features_in(est, path, needed_for="tree traversal"))


def _estimators(est: object, path: str) -> list[Any]:
    ests = _attr(est, "estimators_")
    if ests is None:
        return []
    if not isinstance(ests, list):
        _fail(path, ".estimators_", "must be a list")
    return ests


def _check_forest(est: Any, path: str) -> None:
    """Forests call tree.predict(check_input=False): widths must agree."""
    ests = _estimators(est, path)
    if not ests:
        return
    width = _n_features_in(est, path, needed_for="tree traversal")
    for i, sub in enumerate(ests):
        _check_tree_width(sub, _join(path, f".estimators_[{i}]"), width)


def _check_bagging(est: Any, path: str) -> None:
    """Bagging/IsolationForest feed X[:, features] to trees unchecked."""
    ests = _estimators(est, path)
    if not ests:
        return
    width = _n_features_in(est, path, needed_for="tree traversal")
    feats = _attr(est, "estimators_features_")
    if not isinstance(feats, list) or len(feats) != len(ests):
        _fail(path, ".estimators_features_", "must list features for each estimator")
    for i, (sub, f) in enumerate(zip(ests, feats, strict=True)):
        fa = _int_array(f, path, f".estimators_features_[{i}]")
        if fa.size and (fa.min() < 0 or fa.max() >= width):
            _fail(path, f".estimators_features_[{i}]", f"outside [0, {width})")
        _check_tree_width(sub, _join(path, f".estimators_[{i}]"), fa.size)


def _check_gradient_boosting(est: Any, path: str) -> None:
    """GradientBoosting: predict_stages writes out[:, k] for every column k."""
    ests = _attr(est, "estimators_")
    if ests is None:
        return
    arr = _array(ests, path, ".estimators_", ndim=2)
    width = _n_features_in(est, path, needed_for="tree traversal")
    k = _int(_attr(est, "n_trees_per_iteration_"), path, ".n_trees_per_iteration_")
    if arr.shape[1] != k or arr.shape[0] < 1:
        _fail(
            path,
            ".estimators_",
            f"shape {arr.shape} but n_trees_per_iteration_ = {k}; "
            "predict_stages writes one output column per estimator column",
        )
    first = arr[0, 0]
    if _int(_attr(first, "n_features_in_"), path, ".estimators_[0, 0]") != width:
        _fail(path, ".estimators_[0, 0].n_features_in_", f"!= {width}")
    for (i, j), sub in np.ndenumerate(arr):
        spath = _join(path, f".estimators_[{i}, {j}]")
        if _tree_of(sub) is None:
            _fail(spath, ".tree_", "must be a sklearn.tree._tree.Tree")
        _check_tree_width(sub, spath, width)
    init = _attr(est, "init_")
    if k > 1 and not (isinstance(init, str) and init == "zero"):
        classes = _attr(init, "classes_")
        is_multi = getattr(_attr(est, "_loss"), "is_multiclass", False)
        if classes is None or len(classes) < k or is_multi is not True:
            _fail(
                path,
                ".init_",
                f"cannot be shown to produce {k} raw-prediction columns",
            )


def _check_neighbors(est: Any, path: str) -> None:
    """kNN & co: _fit_X width is trusted by the pairwise-distance kernels."""
    fit_x = _attr(est, "_fit_X")
    if fit_x is None:
        return
    width = _n_features_in(est, path, needed_for="distance computations")
    shape = getattr(fit_x, "shape", None) if _is_sparse(fit_x) else None
    if shape is None:
        shape = _array(fit_x, path, "._fit_X", ndim=2).shape
    if len(shape) != 2 or shape[1] != width:
        _fail(
            path,
            "._fit_X",
            f"shape {shape} but X will have {width} columns; brute-force distances read rows with X's width",
        )
    tree = _attr(est, "_tree")
    if tree is not None and any(
        _is_instance_of(tree, f"sklearn.neighbors.{m}.BinaryTree{b}")
        for m in ("_kd_tree", "_ball_tree")
        for b in ("32", "64")
    ):
        data_shape = np.asarray(tree.data).shape
        if data_shape != tuple(shape):
            _fail(path, "._tree.data", f"shape {data_shape} != _fit_X {tuple(shape)}")
    for name in ("effective_metric_", "metric"):
        metric = _attr(est, name)
        if metric is not None and _is_instance_of(metric, "sklearn.metrics._dist_metrics.DistanceMetric"):
            _check_distance_metric_state(metric, _join(path, f".{name}"), width)


def _check_kernel_density(est: Any, path: str) -> None:
    tree = _attr(est, "tree_")
    if tree is None:
        return
    width = _n_features_in(est, path, needed_for="tree queries")
    data_shape = np.asarray(tree.data).shape
    if len(data_shape) != 2 or data_shape[1] != width:
        _fail(path, ".tree_.data", f"shape {data_shape} for {width} features")


def _check_libsvm(est: Any, path: str) -> None:
    """SVC/SVR/OneClassSVM: libsvm sizes its model from these arrays unchecked."""
    support = _attr(est, "support_")
    if support is None:
        return
    impl = getattr(type(est), "_impl", None)  # a class constant
    if impl not in _LIBSVM_IMPL:
        _fail(path, "._impl", f"unknown libsvm implementation {impl!r}")
    svm_type = _LIBSVM_IMPL.index(impl)
    support = _int_array(support, path, ".support_")
    n_sv = support.size
    n_support = _int_array(_attr(est, "_n_support"), path, "._n_support")
    n_class = n_support.size
    if svm_type < 2:
        if n_class < 2 or n_support.min() < 0 or int(n_support.sum()) != n_sv:
            _fail(
                path,
                "._n_support",
                f"{n_support.tolist()} must be >= 0 per class and sum to {n_sv} support vectors",
            )
        classes = _attr(est, "classes_")
        if classes is not None and len(classes) != n_class:
            _fail(path, "._n_support", f"has {n_class} entries for {len(classes)} classes")
    elif n_class != 2:
        _fail(path, "._n_support", f"must have 2 entries for {impl}, has {n_class}")
    n_pairs = n_class * (n_class - 1) // 2
    intercept = _array(_attr(est, "_intercept_"), path, "._intercept_", ndim=1)
    if intercept.size != n_pairs:
        _fail(path, "._intercept_", f"has {intercept.size} entries, expected {n_pairs}")
    for name in ("_probA", "_probB"):
        prob = _array(_attr(est, name), path, f".{name}", ndim=1)
        if prob.size not in (0, n_pairs):
            _fail(path, f".{name}", f"has {prob.size} entries, expected 0 or {n_pairs}")
    sv = _attr(est, "support_vectors_")
    dual = _attr(est, "_dual_coef_")
    if _attr(est, "_sparse") is True:
        if not _is_sparse(sv) or _sparse_format(sv) != "csr":
            _fail(path, ".support_vectors_", "must be a CSR matrix")
        _check_sparse(sv, _join(path, ".support_vectors_"))
        if _sparse_shape(sv, path)[0] != n_sv:
            _fail(path, ".support_vectors_", f"must have {n_sv} rows")
        dual_data = _array(_attr(dual, "data"), path, "._dual_coef_.data", ndim=1)
        if dual_data.size != (n_class - 1) * n_sv:
            _fail(
                path,
                "._dual_coef_.data",
                f"has {dual_data.size} values, expected {(n_class - 1) * n_sv}",
            )
        return
    dual = _array(dual, path, "._dual_coef_", ndim=2)
    if dual.shape != (n_class - 1, n_sv):
        _fail(path, "._dual_coef_", f"shape {dual.shape} != {(n_class - 1, n_sv)}")
    kernel = _attr(est, "kernel")
    if callable(kernel) or kernel == "precomputed":
        shape_fit = _attr(est, "shape_fit_")
        if not isinstance(shape_fit, tuple) or not shape_fit:
            _fail(path, ".shape_fit_", "missing for a precomputed kernel")
        n_train = _int(shape_fit[0], path, ".shape_fit_[0]")
        bad = (support < 0) | (support >= n_train)
        if bad.any():
            i = _first(bad)
            _fail(
                path,
                f".support_[{i}]",
                f"= {int(support[i])} outside [0, {n_train}); libsvm reads "
                "that column of the precomputed kernel unchecked",
            )
        return
    sv = _array(sv, path, ".support_vectors_", ndim=2)
    width = _n_features_in(est, path, needed_for="kernel evaluation")
    if sv.shape != (n_sv, width):
        _fail(path, ".support_vectors_", f"shape {sv.shape} != {(n_sv, width)}")


def _check_kmeans(est: Any, path: str) -> None:
    """KMeans & co: BLAS/Cython read centers with X's row stride."""
    centers = _attr(est, "cluster_centers_")
    if centers is None:
        return
    width = _n_features_in(est, path, needed_for="center distances")
    arr = _array(centers, path, ".cluster_centers_", ndim=2)
    if arr.shape[1] != width:
        _fail(path, ".cluster_centers_", f"shape {arr.shape} for {width} features")


def _check_bisecting_kmeans(est: Any, path: str) -> None:
    """BisectingKMeans predicts with every hierarchy node's center."""
    root = _attr(est, "_bisecting_tree")
    if root is None:
        return
    width = _n_features_in(est, path, needed_for="center distances")
    stack: list[tuple[Any, str]] = [(root, "._bisecting_tree")]
    seen: set[int] = set()
    while stack:
        node, suffix = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        center = np.asarray(_attr(node, "center"))
        if center.shape != (width,):
            _fail(path, f"{suffix}.center", f"shape {center.shape} != ({width},)")
        stack.append((_attr(node, "left"), f"{suffix}.left"))
        stack.append((_attr(node, "right"), f"{suffix}.right"))


def _check_birch(est: Any, path: str) -> None:
    """Birch.predict passes cached center norms to the Cython ArgKmin kernel."""
    centers = _attr(est, "subcluster_centers_")
    if centers is None:
        return
    width = _n_features_in(est, path, needed_for="center distances")
    arr = _array(centers, path, ".subcluster_centers_", ndim=2)
    if arr.shape[1] != width:
        _fail(path, ".subcluster_centers_", f"shape {arr.shape} for {width} features")
    norms = _attr(est, "_subcluster_norms")
    if norms is not None and np.shape(norms) != (arr.shape[0],):
        _fail(
            path,
            "._subcluster_norms",
            f"shape {np.shape(norms)} for {arr.shape[0]} centers; read per center unchecked",
        )


def _check_sgd(est: Any, path: str) -> None:
    """SGD*: partial_fit hands coef_ to Cython with X's feature indices."""
    coef = _attr(est, "coef_")
    if coef is None:
        return
    width = _n_features_in(est, path, needed_for="partial_fit")
    shape = getattr(coef, "shape", None)
    if not isinstance(shape, tuple) or not shape or shape[-1] != width:
        _fail(path, ".coef_", f"shape {shape} for {width} features")
    for name in ("_standard_coef", "_average_coef"):
        other = _attr(est, name)
        if isinstance(other, np.ndarray) and other.shape != shape:
            _fail(path, f".{name}", f"shape {other.shape} != coef_ {shape}")


def _check_index_map(mapping: object, path: str, suffix: str) -> None:
    """Feature-name -> column maps become CSR column indices unchecked."""
    if not isinstance(mapping, dict):
        _fail(path, suffix, "must be a dict")
    n = len(mapping)
    if n and _dict_types(mapping, keys=False) <= _INDEX_TYPES:
        fast = np.fromiter(mapping.values(), dtype=np.int64, count=n)
        if fast.min() >= 0 and fast.max() < n and np.bincount(fast, minlength=n).max() <= 1:
            return  # a permutation of range(n): the common case, checked without a Python loop
    names = list(mapping)
    cols = np.empty(n, dtype=np.int64)
    for i, value in enumerate(mapping.values()):
        if not isinstance(value, (int, np.integer)) or not 0 <= value < n:
            _fail(
                path,
                f"{suffix}[{_short(names[i])}]",
                f"= {_short(value)} is not a column index in [0, {n}); "
                "transform() builds sparse columns from it unchecked",
            )
        cols[i] = value
    if n and np.bincount(cols, minlength=n).max() > 1:
        dup = _first(np.bincount(cols, minlength=n) > 1)
        i = int(np.flatnonzero(cols == dup)[1])
        _fail(path, f"{suffix}[{_short(names[i])}]", f"column {dup} used twice")


def _check_random_state(rng: Any, path: str) -> None:
    """RandomState / Generator / BitGenerator (their state getters only copy fixed-size buffers)."""
    if hasattr(rng, "get_state"):  # RandomState, the legacy wrapper around a bit generator
        state = rng.get_state(legacy=False)
    elif hasattr(rng, "bit_generator"):  # Generator
        state = rng.bit_generator.state
    else:  # a BitGenerator
        state = rng.state
    problem = rng_state_problem(state)
    if problem is not None:
        _fail(path, "", problem)


def _check_vocabulary(est: Any, path: str) -> None:
    vocab = _attr(est, "vocabulary_")
    if vocab is not None:
        _check_index_map(vocab, path, ".vocabulary_")


def _check_n_features_param(est: Any, path: str) -> None:
    """Hashers take ``hash % n_features`` in C: 0 is SIGFPE, <0 is out of range."""
    n = _int(_attr(est, "n_features"), path, ".n_features")
    if not 1 <= n <= _INT32_MAX:
        _fail(path, ".n_features", f"= {n} outside [1, 2**31 - 1]")


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    type_name: str
    check: _Check
    summary: str


_RULES: Final[tuple[_Rule, ...]] = (
    _Rule(
        "sklearn.tree._tree.Tree",
        _check_tree,
        "1 <= node_count <= capacity; children both -1 (leaf) or both in "
        "(node, node_count) - forward only, at most one parent (acyclic); "
        "split feature in [0, n_features); missing_go_to_left in {0,1}; "
        "value shape (node_count, n_outputs, max_n_classes); n_classes; "
        "real depth <= max_depth < node_count",
    ),
    _Rule(
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        _check_tree_predictor_once,
        "nodes record dtype; non-empty; left/right forward, in range, at most "
        "one parent; feature_idx >= 0; bitset arrays uint32 (n, 8); "
        "categorical bitset_idx < rows of both bitset arrays",
    ),
    _Rule(
        "sklearn.neighbors._kd_tree.BinaryTree64",
        _make_binary_tree_check(2),
        "KDTree: idx_array a permutation of range(n_samples); leaf_size >= 1; "
        "n_levels/n_nodes match leaf_size; reachable node_data ranges inside "
        "[0, n_samples] and partitioned by children; internal nodes have "
        "children; node_bounds (2, n_nodes, n_features); sample_weight length; "
        "dist_metric parameters sized for n_features",
    ),
    _Rule(
        "sklearn.neighbors._kd_tree.BinaryTree32",
        _make_binary_tree_check(2),
        "as KDTree (float32 variant)",
    ),
    _Rule(
        "sklearn.neighbors._ball_tree.BinaryTree64",
        _make_binary_tree_check(1),
        "BallTree: as KDTree, node_bounds (1, n_nodes, n_features)",
    ),
    _Rule(
        "sklearn.neighbors._ball_tree.BinaryTree32",
        _make_binary_tree_check(1),
        "as BallTree (float32 variant)",
    ),
    _Rule(
        "sklearn.metrics._dist_metrics.DistanceMetric",
        _check_distance_metric,
        "Mahalanobis VI square; SEuclidean/Minkowski weights 1-d (sized against n_features where the owner is known)",
    ),
    _Rule(
        "scipy.sparse._base._spbase",
        _check_sparse,
        "csr/csc/bsr: indptr length, starts at 0, non-decreasing, <= nnz; "
        "indices in range; sortedness flags true; coo coords in range; "
        "dia offsets; lil rows; dok keys",
    ),
    _Rule(
        "scipy.interpolate._bsplines.BSpline",
        _check_bspline,
        "knots float64, non-decreasing, >= 2k+2; enough coefficients; axis",
    ),
    _Rule(
        "sklearn.tree._classes.BaseDecisionTree",
        _check_decision_tree,
        "tree_ is a Tree with n_features == n_features_in_",
    ),
    _Rule(
        "sklearn.ensemble._forest.BaseForest",
        _check_forest,
        "every tree's n_features == forest n_features_in_ (predict skips per-tree input checks)",
    ),
    _Rule(
        "sklearn.ensemble._bagging.BaseBagging",
        _check_bagging,
        "estimators_features_ in range; tree width == len(features) (IsolationForest, Bagging*)",
    ),
    _Rule(
        "sklearn.ensemble._gb.BaseGradientBoosting",
        _check_gradient_boosting,
        "estimators_ 2-d of Trees, columns == n_trees_per_iteration_, tree "
        "widths == n_features_in_; init_ yields that many columns",
    ),
    _Rule(
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.BaseHistGradientBoosting",
        _check_hist_gradient_boosting,
        "split feature_idx < n_features_in_ == len(_bin_mapper.is_categorical_); "
        "categorical splits only on categorical features; preprocessor width",
    ),
    _Rule(
        "sklearn.neighbors._base.NeighborsBase",
        _check_neighbors,
        "_fit_X width == n_features_in_; _tree.data matches _fit_X; DistanceMetric objects sized for n_features",
    ),
    _Rule(
        "sklearn.neighbors._kde.KernelDensity",
        _check_kernel_density,
        "tree_.data width == n_features_in_",
    ),
    _Rule(
        "sklearn.svm._base.BaseLibSVM",
        _check_libsvm,
        "_n_support sums to len(support_); _intercept_ / _probA / _probB sized "
        "n_class*(n_class-1)/2; _dual_coef_ (n_class-1, n_SV); support_vectors_ "
        "(n_SV, n_features_in_) or valid CSR; precomputed support_ < n_train",
    ),
    _Rule(
        "sklearn.cluster._kmeans._BaseKMeans",
        _check_kmeans,
        "cluster_centers_ width == n_features_in_",
    ),
    _Rule(
        "sklearn.cluster._bisect_k_means.BisectingKMeans",
        _check_bisecting_kmeans,
        "every _bisecting_tree node center has n_features_in_ entries",
    ),
    _Rule(
        "sklearn.cluster._birch.Birch",
        _check_birch,
        "subcluster_centers_ width == n_features_in_; _subcluster_norms one per center",
    ),
    _Rule(
        "sklearn.linear_model._stochastic_gradient.BaseSGD",
        _check_sgd,
        "coef_ (and averaged copies) width == n_features_in_ (partial_fit)",
    ),
    _Rule(
        "sklearn.feature_extraction.text.CountVectorizer",
        _check_vocabulary,
        "vocabulary_ values a permutation of range(len(vocabulary_))",
    ),
    _Rule(
        "sklearn.feature_extraction._dict_vectorizer.DictVectorizer",
        _check_vocabulary,
        "vocabulary_ values a permutation of range(len(vocabulary_))",
    ),
    _Rule(
        "numpy.random.bit_generator.BitGenerator",
        _check_random_state,
        "MT19937 pos in [0, 624]; Philox buffer_pos in [0, 4]",
    ),
    _Rule(
        "numpy.random.mtrand.RandomState",
        _check_random_state,
        "its bit generator's state (MT19937 pos, Philox buffer_pos) in range",
    ),
    _Rule(
        "numpy.random._generator.Generator",
        _check_random_state,
        "its bit generator's state (MT19937 pos, Philox buffer_pos) in range",
    ),
    _Rule(
        "sklearn.feature_extraction.text.HashingVectorizer",
        _check_n_features_param,
        "n_features in [1, 2**31 - 1]",
    ),
    _Rule(
        "sklearn.feature_extraction._hash.FeatureHasher",
        _check_n_features_param,
        "n_features in [1, 2**31 - 1]",
    ),
)

#: Compiled helper types that never belong in a fitted model and whose state
#: is raw buffers used without checks (fit-time machinery). Refused outright.
REFUSED_TYPES: Final[tuple[str, ...]] = (
    "sklearn.metrics._pairwise_distances_reduction.",
    "sklearn.tree._criterion.",
    "sklearn.tree._splitter.",
    "sklearn.tree._partitioner.",
    "sklearn.tree._tree.TreeBuilder",
    "sklearn.tree._tree.DepthFirstTreeBuilder",
    "sklearn.tree._tree.BestFirstTreeBuilder",
    "sklearn.tree._tree._CCPPruneController",
    "sklearn.ensemble._hist_gradient_boosting.splitting.",
    "sklearn.ensemble._hist_gradient_boosting.histogram.",
    "sklearn.cluster._hierarchical_fast.",
    "sklearn.cluster._hdbscan._tree.",
    "sklearn.neighbors._quad_tree.",
    "sklearn.utils._fast_dict.",
    "sklearn.utils._vector_sentinel.",
    "sklearn.utils._weight_vector.",
    "sklearn.utils._seq_dataset.",
)

#: (type, what is checked) for every type with structural checks; for docs.
VALIDATED_TYPES: Final[tuple[tuple[str, str], ...]] = tuple((r.type_name, r.summary) for r in _RULES)

_RULES_BY_NAME: Final[dict[str, tuple[_Check, ...]]] = {}
for _r in _RULES:
    _RULES_BY_NAME[_r.type_name] = (*_RULES_BY_NAME.get(_r.type_name, ()), _r.check)
del _r


def _refuse(obj: object, path: str) -> None:
    _fail(
        path,
        "",
        f"{_fullname(type(obj))} is fit-time machinery whose buffers native "
        "code trusts; it has no place in a saved model",
    )


_CHECK_CACHE: Final[dict[type, tuple[_Check, ...]]] = {}


def _checks_for(cls: type) -> tuple[_Check, ...]:
    """Checks for a type, by the fully-qualified names along its MRO (cached)."""
    cached = _CHECK_CACHE.get(cls)
    if cached is not None:
        return cached
    result = _compute_checks(cls)
    if len(_CHECK_CACHE) < 4096:
        _CHECK_CACHE[cls] = result
    return result


def _compute_checks(cls: type) -> tuple[_Check, ...]:
    found: list[_Check] = []
    for base in cls.__mro__:
        name = _fullname(base)
        if name.startswith(REFUSED_TYPES):
            return (_refuse,)
        for check in _RULES_BY_NAME.get(name, ()):
            if check not in found:
                found.append(check)
    return tuple(found)


# --------------------------------------------------------------------------
# graph walk
# --------------------------------------------------------------------------

_LEAF_TYPES: Final = (
    str,
    bytes,
    bytearray,
    int,
    float,
    complex,
    type(None),
    np.generic,
    np.dtype,
    type,
    range,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.CodeType,
)


_INDEX_TYPES: Final = frozenset({int, np.int64, np.intp})


def _all_leaves(items: Iterable[object]) -> bool:
    """True when every item is a leaf; the type scan runs in C (map/set), not per item in Python."""
    return _leaf_types(frozenset(map(type, items)))


def _leaf_types(types: frozenset[type]) -> bool:
    return all(issubclass(t, _LEAF_TYPES) for t in types)


def _dict_types(d: dict[Any, Any], *, keys: bool) -> frozenset[type]:
    """Types of a dict's keys or values, computed once per validate() (see _CENSUS)."""
    cache = _CENSUS.get()
    entry = cache.get((id(d), keys)) if cache is not None else None
    if entry is not None and entry[0] is d:
        return entry[1]
    types = frozenset(map(type, d if keys else d.values()))
    if cache is not None:
        cache[(id(d), keys)] = (d, types)
    return types


def _short(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _children(obj: object) -> Iterator[tuple[str, object]]:
    """(path suffix, child) pairs of a container or instance."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            if obj.ndim == 1:
                for i, item in enumerate(obj):
                    yield f"[{i}]", item
            else:
                for idx, item in np.ndenumerate(obj):
                    yield f"[{', '.join(map(str, idx))}]", item
        elif obj.dtype.hasobject and obj.dtype.names:
            for name in obj.dtype.names:
                if obj.dtype[name].hasobject:
                    for i, item in enumerate(obj[name].ravel()):
                        yield f"[{i}][{name!r}]", item
        return
    if isinstance(obj, dict):
        if _leaf_types(_dict_types(obj, keys=False)) and _leaf_types(_dict_types(obj, keys=True)):
            # e.g. a 500,000-word vocabulary
            return
        for i, (key, value) in enumerate(list(obj.items())):
            if not isinstance(key, _LEAF_TYPES):
                yield f"<key {i}>", key
            yield f"[{_short(key)}]", value
    elif isinstance(obj, (list, tuple, deque)):
        if _all_leaves(obj):
            return
        for i, item in enumerate(list(obj)):
            yield f"[{i}]", item
    elif isinstance(obj, (set, frozenset)):
        for i, item in enumerate(list(obj)):
            yield f"<item {i}>", item
    elif isinstance(obj, functools.partial):
        yield ".func", obj.func
        for i, item in enumerate(obj.args):
            yield f".args[{i}]", item
        for key, value in obj.keywords.items():
            yield f".keywords[{key!r}]", value
        return
    elif isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
        return
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        for name, value in list(d.items()):
            yield f".{name}", value
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{name}"  # private-name mangling
            try:
                value = object.__getattribute__(obj, name)
            except AttributeError:
                continue
            yield f".{name}", value


def _render(index: int, parents: Sequence[int], keys: Sequence[str]) -> str:
    parts: list[str] = []
    while index >= 0:
        parts.append(keys[index])
        index = parents[index]
    return _join("", "".join(reversed(parts)))


def validate(obj: object, *, max_depth: int = MAX_DEPTH, prechecked: frozenset[str] = frozenset()) -> None:
    """Check every natively-indexed structure reachable from ``obj``.

    Raises :class:`UnsafeModelError` (with ``.path``) on the first violation,
    including when the graph is nested deeper than ``max_depth``.
    """
    token = _VALIDATED.set(set())
    census = _CENSUS.set({})
    try:
        _walk(obj, max_depth, prechecked)
    finally:
        _CENSUS.reset(census)
        _VALIDATED.reset(token)


def _walk(obj: object, max_depth: int, prechecked: frozenset[str] = frozenset()) -> None:
    seen: set[int] = set()
    parents: list[int] = []
    keys: list[str] = []
    queue: deque[tuple[object, int, str, int]] = deque([(obj, -1, "", 0)])
    while queue:
        item, parent, key, depth = queue.popleft()
        if id(item) in seen:
            continue
        seen.add(id(item))
        index = len(parents)
        parents.append(parent)
        keys.append(key)
        checks = _checks_for(type(item))
        if checks and prechecked and _fullname(type(item)) in prechecked:
            checks = ()  # its state was validated from the stream's bytes before it was built
        if checks:
            path = _render(index, parents, keys)
            for check in checks:
                try:
                    check(item, path)
                except SafeloadError:
                    raise
                except Exception as exc:  # fail closed on malformed state
                    raise UnsafeModelError(
                        f"{path or '<model>'}: cannot validate {_fullname(type(item))} ({type(exc).__name__}: {exc})",
                        path=path,
                    ) from exc
        if isinstance(item, np.ndarray) and not item.dtype.hasobject:
            continue
        try:
            children = list(_children(item))
        except Exception as exc:  # a container that cannot be listed cannot be checked
            path = _render(index, parents, keys)
            raise UnsafeModelError(
                f"{path or '<model>'}: cannot walk {_fullname(type(item))} ({type(exc).__name__}: {exc})",
                path=path,
            ) from exc
        for suffix, child in children:
            if isinstance(child, _LEAF_TYPES) or id(child) in seen:
                continue
            if depth >= max_depth:
                path = _render(index, parents, keys)
                _fail(path, suffix, f"object graph nested deeper than {max_depth}")
            queue.append((child, index, suffix, depth + 1))
