"""Decision trees, forests, bagging, gradient boosting and HistGradientBoosting predictors."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from safeload._validators._base import (
    _VALIDATED,
    _array,
    _attr,
    _check_links,
    _depth_at_most,
    _fail,
    _first,
    _fullname,
    _int,
    _int_array,
    _is_instance_of,
    _join,
    _n_features_in,
    _tree_depth,
)


def _check_tree_built(tree: Any, path: str) -> None:
    """1 <= node_count <= capacity: what the walker's check of each BUILD cannot see is a Tree that no
    BUILD reached, which keeps its constructor's empty arrays. Cheap, so it runs on every Tree."""
    node_count = _int(tree.node_count, path, ".node_count")
    capacity = _int(tree.capacity, path, ".capacity")
    if not 1 <= node_count <= capacity:
        _fail(
            path,
            ".node_count",
            f"= {node_count} must be in [1, capacity={capacity}]; predict() starts at node 0",
        )


try:
    from safeload import _speedups
except ImportError:  # pure-Python install: the numpy path below decides alone
    _speedups = None  # type: ignore[assignment]
_tree_ok: Callable[..., bool] | None = getattr(_speedups, "tree_ok", None)

_NODE_LAYOUTS: dict[np.dtype[Any], tuple[int, int, int, int] | None] = {}
_I64: Final = np.dtype(np.int64)
_U8: Final = np.dtype(np.uint8)
_FAST_LIMIT: Final = 1 << 62


def _node_layout(dtype: np.dtype[Any]) -> tuple[int, int, int, int] | None:
    """Byte offsets of the four fields ``_speedups.tree_ok`` reads, if they have the types it reads."""
    if dtype in _NODE_LAYOUTS:
        return _NODE_LAYOUTS[dtype]
    fields: Mapping[str, tuple[Any, ...]] = dtype.fields or {}
    layout: tuple[int, int, int, int] | None = None
    wanted = (("left_child", _I64), ("right_child", _I64), ("feature", _I64), ("missing_go_to_left", _U8))
    if not dtype.hasobject and all(name in fields and fields[name][0] == want for name, want in wanted):
        left, right, feature, missing = (int(fields[name][1]) for name, _ in wanted)
        layout = (left, right, feature, missing)
    if len(_NODE_LAYOUTS) < 64:
        _NODE_LAYOUTS[dtype] = layout
    return layout


def _links_shown_safe(nodes: npt.NDArray[Any], count: int, n_features: int, max_depth: int) -> bool:
    """The compiled one-pass check of the node links, features and depth (a forest's hundreds of
    trees cost ~55 numpy calls each on the path below). False sends the tree to that path, which
    decides and names the bad node; tests/test_tree_ok.py holds the two to the same verdict."""
    if _tree_ok is None or not nodes.flags.c_contiguous or not (
        0 <= n_features < _FAST_LIMIT and 0 <= max_depth < _FAST_LIMIT
    ):
        return False
    layout = _node_layout(nodes.dtype)
    if layout is None:
        return False
    return _tree_ok(nodes, count, nodes.dtype.itemsize, *layout, n_features, max_depth)


def _extremes(values: npt.NDArray[Any]) -> tuple[Any, Any]:
    """(min, max); a forest's trees hold one-element integer arrays here, where two numpy
    reductions cost ~6 us and a list ~0.3 us."""
    if values.size <= 64 and values.dtype.kind in "iu":
        items = values.ravel().tolist()
        return min(items), max(items)
    return values.min(), int(values.max())


def _check_tree(tree: Any, path: str) -> None:
    """Node arrays of a decision tree, as read by Tree.apply/predict/decision_path."""
    _check_tree_built(tree, path)
    node_count = _int(tree.node_count, path, ".node_count")
    n_features = _int(tree.n_features, path, ".n_features")
    n_outputs = _int(tree.n_outputs, path, ".n_outputs")
    max_n_classes = _int(tree.max_n_classes, path, ".max_n_classes")
    if n_features < 1:
        _fail(path, ".n_features", f"must be >= 1, got {n_features}")
    if n_outputs < 1:
        _fail(path, ".n_outputs", f"must be >= 1, got {n_outputs}")
    n_classes = np.asarray(tree.n_classes)
    lowest, highest = _extremes(n_classes) if n_classes.shape == (n_outputs,) else (0, 0)
    if n_classes.shape != (n_outputs,) or lowest < 1 or highest != max_n_classes:
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
    raw_depth = tree.max_depth
    if type(raw_depth) is int and _links_shown_safe(nodes, node_count, n_features, raw_depth):
        return
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
        if arr.dtype.kind in "iu" and arr.ndim == 1 and int(arr.min()) >= 0 and int(arr.max()) < n_in:
            return int(arr.size)
    return None


def _width_preserving(trans: object, count: int) -> bool:
    """Transformers whose output has exactly as many columns as their input (HGB's own)."""
    name = _fullname(type(trans))
    if name == "sklearn.preprocessing._encoders.OrdinalEncoder":
        cats = _attr(trans, "categories_")
        return isinstance(cats, list) and len(cats) == count
    if name == "sklearn.preprocessing._function_transformer.FunctionTransformer":
        func = _attr(trans, "func")
        if func is None:
            return True
        if isinstance(func, np.ufunc):
            return func.nin == 1 and func.nout == 1  # elementwise: same shape out
        # HGB's numerical preprocessor: functools.partial(check_array, ...) keeps the width.
        inner = getattr(func, "func", None) if isinstance(func, functools.partial) else None
        return inner is not None and f"{getattr(inner, '__module__', '')}.{getattr(inner, '__qualname__', '')}" == (
            "sklearn.utils.validation.check_array"
        )
    return False


def _preprocessor_width(ct: object, n_in: int, path: str) -> int:
    """Output width of HGB's internal ColumnTransformer; refuses what cannot be established."""
    where = "._preprocessor.transformers_"
    entries = _attr(ct, "transformers_")
    if not isinstance(entries, list):
        _fail(path, where, "missing: the preprocessed width cannot be established")
    ct_in = _attr(ct, "n_features_in_")
    if ct_in is not None and _int(ct_in, path, "._preprocessor.n_features_in_") != n_in:
        _fail(path, "._preprocessor.n_features_in_", f"= {ct_in} but the model has n_features_in_ = {n_in}")
    # every entry's shape first: the width checks below read transformers scan's twin may not know
    for i, entry in enumerate(entries):
        if not isinstance(entry, tuple) or len(entry) < 3:
            _fail(path, f"{where}[{i}]", "must be a (name, transformer, columns) tuple")
    total = 0
    for i, entry in enumerate(entries):
        trans, cols = entry[1], entry[2]
        if isinstance(trans, str) and trans == "drop":
            continue
        count = _column_count(cols, n_in)
        if count is None:
            _fail(path, f"{where}[{i}]", f"selects columns that cannot be counted for {n_in} input features")
        if not (isinstance(trans, str) and trans == "passthrough") and not _width_preserving(trans, count):
            _fail(
                path,
                f"{where}[{i}]",
                f"{_fullname(type(trans))}: its output width cannot be established",
            )
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
    # Last: scan's static twin cannot always establish the preprocessor (a FunctionTransformer's
    # func is a global), and the predictors above are then already checked in bulk.
    preprocessor = _attr(est, "_preprocessor")
    if preprocessor is not None:
        width = _preprocessor_width(preprocessor, n_features, path)
        if width != n_features:
            _fail(
                path,
                "._preprocessor.transformers_",
                f"outputs {width} columns, predictors expect {n_features}",
            )


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
        c = nodes[side][internal].astype(np.intp, copy=False)
        if ((c <= local) | (c >= n_int)).any():
            return False
        children.append(c + offset[internal])
    linked = np.concatenate(children)
    has_parent = np.zeros(nodes.size, dtype=np.bool_)
    has_parent[linked] = True
    has_parent[starts] = True
    if linked.size != nodes.size - len(arrays) or not has_parent.all():
        return False
    feat = nodes["feature_idx"][internal].astype(np.intp, copy=False)
    if ((feat < 0) | (feat >= n_features)).any():
        return False
    cat = nodes["is_categorical"][internal] != 0
    if (cat & ~is_cat[feat]).any():
        return False
    row_limit = np.repeat(np.asarray(rows, dtype=np.intp), sizes)[internal]
    return not (cat & (nodes["bitset_idx"][internal].astype(np.intp, copy=False) >= row_limit)).any()


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
    _check_gb_init(est, path, k)


_DUMMY_STRATEGIES: Final = frozenset({"most_frequent", "prior", "stratified", "uniform", "constant"})


def _type_name(obj: object) -> str:
    return _fullname(type(obj))


def _regressor_width(init: object, path: str) -> int:
    """Columns of ``init.predict(X)`` (1 for a 1-d result), for regressors whose width is known."""
    if _is_instance_of(init, "sklearn.dummy.DummyRegressor"):
        n_out = _int(_attr(init, "n_outputs_"), path, ".init_.n_outputs_")
        constant = _array(_attr(init, "constant_"), path, ".init_.constant_")
        if constant.size != n_out:
            _fail(path, ".init_.constant_", f"{constant.size} values for n_outputs_ = {n_out}")
        return n_out
    if _is_instance_of(init, "sklearn.linear_model._base.LinearModel"):
        coef = _array(_attr(init, "coef_"), path, ".init_.coef_")
        if coef.ndim == 1:
            return 1
        if coef.ndim == 2:
            return int(coef.shape[0])
        _fail(path, ".init_.coef_", f"must be 1-d or 2-d, got shape {coef.shape}")
    if _is_instance_of(init, "sklearn.tree._classes.BaseDecisionTree"):
        return _int(_attr(init, "n_outputs_"), path, ".init_.n_outputs_")
    _fail(path, ".init_", f"{_type_name(init)}: its predict width cannot be established")


def _check_gb_init(est: Any, path: str, k: int) -> None:
    """The init estimator's raw predictions are the array ``predict_stages`` writes ``k`` columns of.

    Its output width is recomputed from its own state, which is only possible for
    the estimators gradient boosting builds itself (``'zero'``, ``DummyClassifier``,
    ``DummyRegressor``) and, for regression, linear models and decision trees; any
    other ``init_`` cannot be shown to produce ``k`` columns and is refused (fail closed).
    """
    init = _attr(est, "init_")
    if isinstance(init, str) and init == "zero":
        return  # np.zeros((n, n_trees_per_iteration_))
    loss = _attr(est, "_loss")
    multiclass = getattr(type(loss), "is_multiclass", None)
    if "is_multiclass" in (getattr(loss, "__dict__", None) or {}):
        multiclass = _attr(loss, "is_multiclass")
    if _is_instance_of(est, "sklearn.ensemble._gb.GradientBoostingClassifier"):
        if not _is_instance_of(init, "sklearn.dummy.DummyClassifier"):
            _fail(path, ".init_", f"{_type_name(init)}: its predict_proba width cannot be established")
        if _attr(init, "n_outputs_") != 1:
            _fail(path, ".init_.n_outputs_", "must be 1")
        if _attr(init, "_strategy") not in _DUMMY_STRATEGIES:
            _fail(path, ".init_._strategy", "unknown strategy: its output width cannot be established")
        n_classes = _int(_attr(init, "n_classes_"), path, ".init_.n_classes_")
        prior = _array(_attr(init, "class_prior_"), path, ".init_.class_prior_", ndim=1)
        classes = _array(_attr(init, "classes_"), path, ".init_.classes_", ndim=1)
        if prior.size != n_classes or classes.size != n_classes:
            _fail(
                path,
                ".init_.class_prior_",
                f"{prior.size} priors and {classes.size} classes for n_classes_ = {n_classes}",
            )
        if multiclass is not True and n_classes < 2:
            _fail(path, ".init_.n_classes_", "binary boosting reads predict_proba(X)[:, 1]")
        width = n_classes if multiclass is True else 1  # binary: proba[:, 1]
    else:
        width = _regressor_width(init, path)
        if width >= 1:
            return  # predict_stages writes column 0 only (k == 1 for regression)
    if width != k:
        _fail(
            path,
            ".init_",
            f"produces {width} raw-prediction columns, the estimator grid has {k}; "
            "predict_stages writes every column unchecked",
        )
