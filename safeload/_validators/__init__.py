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

import array
import ctypes
import functools
import types
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "REFUSED_TYPES",
    "VALIDATED_TYPES",
    "validate",
]

from safeload._errors import SafeloadError, UnsafeModelError
from safeload._validators._base import (
    _CENSUS,
    _LEAF_TYPES,
    _VALIDATED,
    _all_leaves,
    _Check,
    _dict_types,
    _fail,
    _fullname,
    _is_leaf_type,
    _join,
    _leaf_types,
    _short,
)
from safeload._validators.cluster import (
    _check_birch,
    _check_bisecting_kmeans,
    _check_feature_agglomeration,
    _check_hdbscan,
    _check_kmeans,
    _check_n_threads,
)
from safeload._validators.encoders import _check_multilabel_binarizer, _check_one_hot_encoder
from safeload._validators.ensemble import _check_voting_classifier
from safeload._validators.linear import _check_sgd
from safeload._validators.neighbors import (
    _check_distance_metric,
    _check_kernel_density,
    _check_neighbor_label_rule,
    _check_neighbor_params,
    _check_neighbors,
    _make_binary_tree_check,
)
from safeload._validators.preprocessing import _check_polynomial_features
from safeload._validators.projection import _check_additive_chi2, _check_random_projection
from safeload._validators.random import _check_random_state
from safeload._validators.shadow import _check_shadowing, class_level_names
from safeload._validators.sparse import _check_bspline, _check_sparse
from safeload._validators.svm import _check_libsvm
from safeload._validators.text import _check_n_features_param, _check_vocabulary
from safeload._validators.trees import (
    _check_bagging,
    _check_decision_tree,
    _check_forest,
    _check_gradient_boosting,
    _check_hist_gradient_boosting,
    _check_tree,
    _check_tree_built,
    _check_tree_predictor_once,
)
from safeload._validators.work import (
    _check_classifier_outputs,
    _check_count_sketch,
    _check_dummy_regressor,
    _check_forest_outputs,
    _check_gpc_laplace,
    _check_hgb_width,
    _check_lda,
    _check_lle,
    _check_minibatch_nmf,
    _check_n_classes,
    _check_n_features_out,
    _check_n_jobs,
    _check_n_neighbors,
    _check_nmf,
    _check_sparse_coding,
    _check_spline_width,
    _check_vectorizer,
)

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
        "widths == n_features_in_; init_ ('zero', DummyClassifier, DummyRegressor; others refused) "
        "recomputed to yield exactly that many columns",
    ),
    _Rule(
        "sklearn.ensemble._voting.VotingClassifier",
        _check_voting_classifier,
        "members' classes_ (through Pipeline last steps and search best_estimator_) are codes in "
        "[0, len(le_.classes_)): hard voting counts them with np.bincount",
    ),
    _Rule(
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.BaseHistGradientBoosting",
        _check_hist_gradient_boosting,
        "split feature_idx < n_features_in_ == len(_bin_mapper.is_categorical_); "
        "categorical splits only on categorical features; _preprocessor output width recomputed "
        "(passthrough, OrdinalEncoder, check_array FunctionTransformer; anything else refused) == n_features_in_",
    ),
    _Rule(
        "sklearn.neighbors._base.NeighborsBase",
        _check_neighbors,
        "_fit_X width == n_features_in_; _tree.data matches _fit_X; DistanceMetric objects sized for n_features",
    ),
    _Rule(
        "sklearn.neighbors._base.NeighborsBase",
        _check_neighbor_params,
        "metric strings' parameter dicts (metric_params, effective_metric_params_: VI n x n, V/w n, p > 0, "
        "no other arrays); 'precomputed' only with a square _fit_X",
    ),
    _Rule(
        "sklearn.neighbors._base.NeighborsBase",
        _check_neighbor_label_rule,
        "n_samples_fit_ and _y rows == _fit_X rows; classifier _y codes in [0, len(classes_))",
    ),
    _Rule(
        "sklearn.neighbors._kde.KernelDensity",
        _check_kernel_density,
        "tree_.data width == n_features_in_",
    ),
    _Rule(
        "sklearn.svm._base.BaseLibSVM",
        _check_libsvm,
        "_impl read as sklearn reads it (instance, then class); _n_support sums to len(support_); _intercept_ / _probA / _probB sized "
        "n_class*(n_class-1)/2 (exactly, when _effective_probability is set); _dual_coef_ (n_class-1, n_SV); support_vectors_ "
        "(n_SV, n_features_in_) or valid CSR; precomputed support_ < n_train",
    ),
    _Rule(
        "sklearn.cluster._kmeans._BaseKMeans",
        _check_kmeans,
        "cluster_centers_ width == n_features_in_, at least one center",
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
        "sklearn.cluster._agglomerative.FeatureAgglomeration",
        _check_feature_agglomeration,
        "labels_ 1-d integer, one per feature (n_features_in_), values in [0, n_features_in_)",
    ),
    _Rule(
        "sklearn.cluster._hdbscan.hdbscan.HDBSCAN",
        _check_hdbscan,
        "_single_linkage_tree_ of the single-linkage record dtype; row i's children in [0, n + i), "
        "each node merged at most once",
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
        "sklearn.preprocessing._encoders.OneHotEncoder",
        _check_one_hot_encoder,
        "_n_features_outs recomputed from categories_, _infrequent_indices (distinct, in range), "
        "_default_to_infrequent_mappings (in range) and _drop_idx_after_grouping; must be equal",
    ),
    _Rule(
        "sklearn.preprocessing._polynomial.PolynomialFeatures",
        _check_polynomial_features,
        "degrees 0 <= _min_degree <= _max_degree <= 1000; n_output_features_ and _n_out_full "
        "recomputed from n_features_in_, the degrees, interaction_only and include_bias; must be equal",
    ),
    _Rule(
        "sklearn.random_projection.BaseRandomProjection",
        _check_random_projection,
        "components_ (dense, or a sparse matrix's data) finite: inverse_transform's SVD never returns otherwise",
    ),
    _Rule(
        "sklearn.kernel_approximation.AdditiveChi2Sampler",
        _check_additive_chi2,
        "1 <= sample_steps <= 1000 (transform loops and allocates once per step)",
    ),
    # -- inference-time work a stored number decides (_validators/work.py) --
    _Rule("sklearn.decomposition._nmf.NMF", _check_nmf, "1 <= max_iter <= 100000 (transform reruns the solver)"),
    _Rule(
        "sklearn.decomposition._nmf.MiniBatchNMF",
        _check_minibatch_nmf,
        "max_iter, transform_max_iter, _transform_max_iter in [1, 100000]; _n_components == rows of components_",
    ),
    _Rule(
        "sklearn.decomposition._lda.LatentDirichletAllocation",
        _check_lda,
        "0 <= max_doc_update_iter <= 10000 (the E-step of transform, score, perplexity)",
    ),
    _Rule(
        "sklearn.decomposition._dict_learning._BaseSparseCoding",
        _check_sparse_coding,
        "1 <= transform_max_iter <= 100000 (transform's lasso_cd, tol fixed at 1e-8)",
    ),
    _Rule(
        "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        _check_gpc_laplace,
        "1 <= max_iter_predict <= 10000",
    ),
    _Rule(
        "sklearn.neighbors._base.KNeighborsMixin",
        _check_n_neighbors,
        "1 <= n_neighbors <= max(n_samples_fit_, 10000) (predict allocates (n_queries, n_neighbors) heaps)",
    ),
    _Rule("sklearn.base.BaseEstimator", _check_n_jobs, "n_jobs None or an integer <= 256 (joblib starts that many workers)"),
    _Rule(
        "sklearn.base.BaseEstimator",
        _check_n_features_out,
        "a stored _n_features_out at most max(the elements the model's arrays hold, 2**20) (one output name per column)",
    ),
    _Rule(
        "sklearn.feature_extraction.text._VectorizerMixin",
        _check_vectorizer,
        "ngram_range 0 <= min_n, max_n <= 64 (transform is cubic in max_n, unbounded below 0); token_pattern "
        "without a repeat or an alternation inside an unbounded repeat (exponential backtracking)",
    ),
    *(
        _Rule(name, _check_n_classes, "n_classes_ == the sizes of classes_")
        for name in (
            "sklearn.tree._classes.DecisionTreeClassifier",
            "sklearn.ensemble._forest.ForestClassifier",
            "sklearn.ensemble._bagging.BaggingClassifier",
            "sklearn.dummy.DummyClassifier",
        )
    ),
    *(
        _Rule(name, _check_classifier_outputs, "n_outputs_ == the outputs classes_ describes (predict allocates that width)")
        for name in ("sklearn.tree._classes.DecisionTreeClassifier", "sklearn.ensemble._forest.ForestClassifier")
    ),
    _Rule("sklearn.ensemble._forest.BaseForest", _check_forest_outputs, "n_outputs_ == every tree's n_outputs_"),
    _Rule("sklearn.dummy.DummyRegressor", _check_dummy_regressor, "n_outputs_ == constant_.size"),
    _Rule(
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.BaseHistGradientBoosting",
        _check_hgb_width,
        "_baseline_prediction of shape (1, n_trees_per_iteration_)",
    ),
    _Rule(
        "sklearn.manifold._locally_linear.LocallyLinearEmbedding",
        _check_lle,
        "n_components == columns of embedding_",
    ),
    _Rule(
        "sklearn.kernel_approximation.PolynomialCountSketch",
        _check_count_sketch,
        "degree == rows of indexHash_ and bitHash_; max(indexHash_) < n_components <= 2**20",
    ),
    _Rule(
        "sklearn.preprocessing._polynomial.SplineTransformer",
        _check_spline_width,
        "n_features_out_ recomputed from bsplines_ and include_bias",
    ),
    _Rule(
        "sklearn.preprocessing._label.MultiLabelBinarizer",
        _check_multilabel_binarizer,
        "_cached_dict values a permutation of range(len(classes_))",
    ),
    _Rule(
        "sklearn.base.BaseEstimator",
        _check_n_threads,
        "_n_threads (OpenMP thread count) in [1, 1024]",
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

#: The rule applied to every object with an instance ``__dict__`` (not keyed by type).
SHADOWING_RULE: Final = _Rule(
    "*",
    _check_shadowing,
    "instance __dict__ keys naming a class-level attribute (method, property, descriptor, "
    "constant) are refused unless real fitted instances carry them (_shadow_data, from the zoo)",
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


#: Module-level singletons a file can only *name* (classes, functions, ufuncs, numpy's
#: array-function dispatchers): their ``__dict__`` is process state (e.g. a cached
#: ``__signature__``), not state the file built, so the shadowing rule does not apply.
_GLOBAL_CALLABLES: Final = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    np.ufunc,
    type(np.mean),
)


def _compute_checks(cls: type) -> tuple[_Check, ...]:
    found: list[_Check] = []
    if getattr(cls, "__dictoffset__", 0) and not issubclass(cls, _GLOBAL_CALLABLES):
        found.append(_check_shadowing)  # instance state must not shadow the class (any type)
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


def _children_with_suffix(obj: object) -> Iterator[tuple[str, object]]:
    """(path suffix, child) pairs of a container or instance.

    Builds a string per child: used only to name the path of a failing object
    (and by ``tools/gen_shadow_keys.py``), never by the walk itself.
    """
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
        for i, (key, value) in enumerate(list(dict.items(obj))):
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
    yield from _instance_children(obj)


#: Elements deduplicated per numpy pass: bounds the temporary id buffer (512 KiB).
_CHUNK: Final = 1 << 16
#: Sequences up to this length are deduplicated by a plain loop (per element: a type lookup, a set probe).
_SMALL: Final = 64


def _addresses(chunk: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """The object pointers (``id``s) stored in a contiguous 1-d object array, as integers, without a Python loop."""
    raw = ctypes.cast(chunk.ctypes.data, ctypes.POINTER(ctypes.c_ssize_t))
    return np.ctypeslib.as_array(raw, shape=(chunk.size,)).copy()


def _distinct(items: Sequence[Any] | npt.NDArray[Any]) -> Iterator[object]:
    """The distinct non-leaf objects of a sequence, in order of first appearance.

    Per element this costs a C-level ``type`` lookup and one pointer copy; Python
    code runs once per *distinct* object, so an array or list of 10**7 references
    to one object, or of 10**7 ``None``, allocates nothing per element.
    """
    n = len(items)
    if n <= _SMALL and not isinstance(items, np.ndarray):
        # A model's many short lists (a boosting model's rows of predictors, estimators' pairs):
        # the numpy pass below costs ~30 us to set up, a plain loop ~1 us.
        seen: set[int] = set()
        for item in items:
            if not _is_leaf_type(type(item)) and id(item) not in seen:
                seen.add(id(item))
                yield item
        return
    for start in range(0, n, _CHUNK):
        part = items[start : start + _CHUNK]
        if isinstance(part, np.ndarray):
            chunk = np.ascontiguousarray(part)
        else:
            chunk = np.fromiter(part, dtype=object, count=len(part))
        ids = _addresses(chunk)
        if (ids == ids[0]).all():  # one object repeated (or all None): no per-element work at all
            first = np.zeros(1, dtype=np.intp)
        elif _leaf_types(frozenset(map(type, chunk.tolist()))):
            continue
        else:
            first = np.sort(np.unique(ids, return_index=True)[1])
        for j in first.tolist():
            item = chunk[j]
            if not _is_leaf_type(type(item)):
                yield item


#: The container kinds below: one issubclass call instead of six isinstance calls per plain
#: instance, on models made of many small objects.
_CONTAINER_TYPES: Final = (np.ndarray, dict, list, tuple, deque, set, frozenset, functools.partial, types.MethodType)


def _child_objects(obj: object) -> Iterator[object]:
    """Children of a container or instance that the walk must visit (no paths, no per-element objects)."""
    if not issubclass(type(obj), _CONTAINER_TYPES):
        yield from _instance_values(obj)
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            yield from _distinct(obj.reshape(-1))
        elif obj.dtype.hasobject and obj.dtype.names:
            for name in obj.dtype.names:
                if obj.dtype[name].hasobject:
                    yield from _distinct(np.asarray(obj[name]).reshape(-1))
        return
    if isinstance(obj, dict):
        if not _leaf_types(_dict_types(obj, keys=True)):
            yield from _distinct(list(dict.keys(obj)))  # the dict's own, not an overridden __iter__ (dok)
        if not _leaf_types(_dict_types(obj, keys=False)):
            yield from _distinct(list(dict.values(obj)))
    elif isinstance(obj, (list, tuple)):
        yield from _distinct(obj)
    elif isinstance(obj, (deque, set, frozenset)):
        yield from _distinct(list(obj))
    elif isinstance(obj, functools.partial):
        yield obj.func
        yield from obj.args
        yield from obj.keywords.values()
        return
    elif isinstance(obj, types.MethodType):
        yield obj.__self__
        return
    yield from _instance_values(obj)


def _instance_values(obj: object) -> Iterator[object]:
    """An instance's __dict__ values (skipped at once when they are all leaves, e.g. floats and
    strings) and its slots. No suffix strings: paths are rendered only on failure."""
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict) and d:
        values = list(dict.values(d))
        if not _leaf_types(frozenset(map(type, values))):
            yield from values
    for name in _slot_names(type(obj)):
        try:
            yield object.__getattribute__(obj, name)
        except AttributeError:
            continue


#: Slot names per type (mangled), computed once: the walk visits many instances of few types.
_SLOTS: Final[dict[type, tuple[str, ...]]] = {}


def _slot_names(cls: type) -> tuple[str, ...]:
    names = _SLOTS.get(cls)
    if names is None:
        found: list[str] = []
        for base in cls.__mro__:
            slots = base.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name in ("__dict__", "__weakref__"):
                    continue
                if name.startswith("__") and not name.endswith("__"):
                    name = f"_{base.__name__.lstrip('_')}{name}"  # private-name mangling
                found.append(name)
        names = tuple(found)
        if len(_SLOTS) < 4096:
            _SLOTS[cls] = names
    return names


def _instance_children(obj: object) -> Iterator[tuple[str, object]]:
    """``__dict__`` values and slots of an instance, with their (short) suffixes (failure paths)."""
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        for name, value in list(d.items()):
            yield f".{name}", value
    for name in _slot_names(type(obj)):
        try:
            value = object.__getattribute__(obj, name)
        except AttributeError:
            continue
        yield f".{name}", value


def _suffix_of(parent: object, child: object) -> str:
    """The path suffix under which ``child`` hangs from ``parent`` (failure path only)."""
    for suffix, item in _children_with_suffix(parent):
        if item is child:
            return suffix
    return "<?>"


class _Graph:
    """Visited objects in BFS order with parent links: O(objects) ints, no strings.

    Paths are rendered only when something fails, by finding each hop's suffix
    again in its parent.
    """

    __slots__ = ("depths", "index", "nodes", "parents")

    def __init__(self) -> None:
        self.index: dict[int, int] = {}
        self.nodes: list[object] = []
        self.parents = array.array("q")
        self.depths = array.array("I")

    def add(self, obj: object, parent: int, depth: int) -> None:
        self.index[id(obj)] = len(self.nodes)
        self.nodes.append(obj)
        self.parents.append(parent)
        self.depths.append(depth)

    def path(self, i: int) -> str:
        parts: list[str] = []
        while self.parents[i] >= 0:
            p = self.parents[i]
            parts.append(_suffix_of(self.nodes[p], self.nodes[i]))
            i = p
        return _join("", "".join(reversed(parts)))


def validate(obj: object, *, max_depth: int | None = None, prechecked: frozenset[str] = frozenset()) -> None:
    """Check every natively-indexed structure reachable from ``obj``.

    Raises :class:`UnsafeModelError` (with ``.path``) on the first violation, and when the graph
    is nested deeper than ``max_depth`` if one is given. ``load`` gives none: the walk is
    breadth-first and iterative, and what a deep graph could crash (hashing nested tuples, in C
    without a recursion check) the walker refuses from the stream, where ``scan`` sees it too.
    """
    token = _VALIDATED.set(set())
    census = _CENSUS.set({})
    try:
        _walk(obj, max_depth, prechecked)
    finally:
        _CENSUS.reset(census)
        _VALIDATED.reset(token)


def _run_check(check: _Check, item: object, graph: _Graph, i: int) -> None:
    """Run a check without a path; on failure, render the path and run it again for the message."""
    try:
        check(item, "")
        return
    except Exception:  # noqa: BLE001 - any failure is reported below, with its path
        pass
    path = graph.path(i)
    try:
        check(item, path)
    except SafeloadError:
        raise
    except Exception as exc:  # fail closed on malformed state
        raise UnsafeModelError(
            f"{path or '<model>'}: cannot validate {_fullname(type(item))} ({type(exc).__name__}: {exc})",
            path=path,
        ) from exc
    raise UnsafeModelError(f"{path or '<model>'}: {_fullname(type(item))} failed a check once", path=path)


#: Per type: its class-level names when its only rule is the shadowing rule and it has no slots
#: (an instance of one whose ``__dict__`` holds only leaves needs no node of its own in the walk),
#: else ``None``.
_PLAIN_INSTANCE_TYPES: Final[dict[type, frozenset[str] | None]] = {}
_UNKNOWN: Final = frozenset({"<not yet looked up>"})


def _plain_names(cls: type) -> frozenset[str] | None:
    names = (class_level_names(cls) if _checks_for(cls) == (_check_shadowing,) and not _slot_names(cls)
             and not issubclass(cls, _CONTAINER_TYPES) else None)
    if len(_PLAIN_INSTANCE_TYPES) < 4096:
        _PLAIN_INSTANCE_TYPES[cls] = names
    return names


def _leaf_instance(obj: object) -> bool:
    """An instance with nothing to visit below it that passes the shadowing rule, judged without a
    graph node (nor an index entry: judging it twice costs what judging it once does): on a model of
    many small objects (10**6 instances) that is most of the walk."""
    cls = type(obj)
    names = _PLAIN_INSTANCE_TYPES.get(cls, _UNKNOWN)
    if names is _UNKNOWN:
        names = _plain_names(cls)
    if names is None:
        return False
    d = getattr(obj, "__dict__", None)
    if type(d) is not dict:
        return False
    if d and not _leaf_types(frozenset(map(type, d.values()))):
        return False
    return names.isdisjoint(d)  # else the rule runs on a node (its message, its path)


#: What still runs of a rule whose type the walker validated at every BUILD (``prechecked``).
_PRECHECKED_RESIDUE: Final[dict[_Check, _Check]] = {_check_tree: _check_tree_built}


def _walk(obj: object, max_depth: int | None, prechecked: frozenset[str] = frozenset()) -> None:
    graph = _Graph()
    graph.add(obj, -1, 0)
    nodes, index = graph.nodes, graph.index
    plain_arrays_free = not _checks_for(np.ndarray)
    i = 0
    while i < len(nodes):
        item = nodes[i]
        checks = _checks_for(type(item))
        if checks and prechecked and _fullname(type(item)) in prechecked:
            # its state was validated from the stream's bytes at each BUILD; the cheap residue covers an
            # instance that no BUILD reached (the walker refuses those too: defence in depth)
            checks = tuple(_PRECHECKED_RESIDUE.get(c, c) for c in checks
                           if c is _check_shadowing or c in _PRECHECKED_RESIDUE)
        for check in checks:
            _run_check(check, item, graph, i)
        if not (isinstance(item, np.ndarray) and not item.dtype.hasobject):
            depth = graph.depths[i]
            try:
                for child in _child_objects(item):
                    if _is_leaf_type(type(child)) or id(child) in index:
                        continue
                    if max_depth is not None and depth >= max_depth:
                        _fail(graph.path(i), _suffix_of(item, child), f"object graph nested deeper than {max_depth}")
                    if plain_arrays_free and type(child) is np.ndarray and not child.dtype.hasobject:
                        continue  # no rule and nothing below it: a graph node would only cost (HGB: ~900)
                    if _leaf_instance(child):
                        continue  # judged in place: nothing below it to visit
                    graph.add(child, i, depth + 1)
            except SafeloadError:
                raise
            except Exception as exc:  # a container that cannot be listed cannot be checked
                path = graph.path(i)
                raise UnsafeModelError(
                    f"{path or '<model>'}: cannot walk {_fullname(type(item))} ({type(exc).__name__}: {exc})",
                    path=path,
                ) from exc
        i += 1
