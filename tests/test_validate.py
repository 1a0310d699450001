"""Structural validation (safeload._validate).

For each validator a real fitted model is broken the way an attacker would break
it: the state that native code trusts is edited and the file is written with
plain ``pickle``. Where the break is memory-unsafe we first PROVE, in a child
process, that plain ``pickle.load`` accepts the file and the model's ordinary
method then kills the interpreter (negative return code: SIGSEGV, SIGFPE,
SIGABRT, or SIGALRM for an endless loop). Then ``validate()`` must refuse the
object with a path naming the bad field. Real models of many kinds must pass.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeload import _validate
from safeload._errors import SafeloadError, UnsafeModelError
from safeload._validate import REFUSED_TYPES, VALIDATED_TYPES, validate

pytest.importorskip("sklearn")
sp = pytest.importorskip("scipy.sparse")

from sklearn.datasets import make_classification  # noqa: E402

ALARM_SECONDS = 4  # a healthy predict() on these tiny models takes milliseconds


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class Reduce:
    """Pickles as ``cls(*args)`` + ``__setstate__(state)``.

    Lets a test write a broken native object without ever building it in the
    test process (some broken states already read out of bounds when built
    and re-pickled).
    """

    def __init__(self, cls: Any, args: tuple[Any, ...], state: Any) -> None:
        self.cls, self.args, self.state = cls, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.cls, self.args, self.state)


def roundtrip(obj: Any) -> Any:
    """A private copy of a fitted model (as it would come out of a file)."""
    return pickle.loads(pickle.dumps(obj))


def broken_tree(tree: Any, edit: Callable[[dict[str, Any]], None], n_features: int | None = None) -> Reduce:
    cls, args, state = tree.__reduce__()
    state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    edit(state)
    if n_features is not None:
        args = (n_features, *args[1:])
    return Reduce(cls, args, state)


def broken_binary_tree(tree: Any, edit: Callable[[list[Any]], None]) -> Reduce:
    cls, args, state = tree.__reduce__()
    fields = [v.copy() if isinstance(v, np.ndarray) else v for v in state]
    edit(fields)
    return Reduce(cls, args, tuple(fields))


def run_child(tmp_path: Path, payload: bytes, action: str) -> subprocess.CompletedProcess[str]:
    """Load ``payload`` with plain pickle in a fresh interpreter, then run ``action``."""
    model = tmp_path / "model.pkl"
    model.write_bytes(payload)
    code = textwrap.dedent(
        f"""
        import pickle, signal, sys, warnings
        import numpy as np
        warnings.simplefilter("ignore")
        with open(sys.argv[1], "rb") as f:
            m = pickle.load(f)
        print("loaded", flush=True)
        with open(sys.argv[2], "rb") as f:
            X = pickle.load(f)
        signal.alarm({ALARM_SECONDS})
        """
    )
    code += textwrap.dedent(action) + '\nprint("survived", flush=True)\n'
    return subprocess.run(
        [sys.executable, "-c", code, str(model), str(tmp_path / "X.pkl")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_crashes(tmp_path: Path, payload: bytes, action: str, X: Any) -> None:
    (tmp_path / "X.pkl").write_bytes(pickle.dumps(X))
    proc = run_child(tmp_path, payload, action)
    assert proc.stdout.startswith("loaded"), proc.stderr[-2000:]
    assert proc.returncode < 0, (
        f"expected a fatal signal, got rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-2000:]}"
    )


def assert_refused(payload: bytes, path: str | None, *fragments: str) -> UnsafeModelError:
    """validate() refuses the unpickled object; ``path`` None: any path."""
    obj = pickle.loads(payload)  # loading itself is harmless; using it is not
    with pytest.raises(UnsafeModelError) as info:
        validate(obj)
    err = info.value
    assert err.path is not None, str(err)
    if path is not None:
        assert err.path == path, str(err)
    for fragment in fragments:
        assert fragment in str(err)
    return err


def check(
    tmp_path: Path, model: Any, path: str, action: str = "m.predict(X)", X: Any = None, *, crash: bool = True
) -> None:
    payload = pickle.dumps(model)
    if crash:
        assert_crashes(tmp_path, payload, action, DATA[0] if X is None else X)
    assert_refused(payload, path)


def _data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(300, 6, n_informative=4, n_classes=3, random_state=0)
    return X, y


DATA = _data()
X, y = DATA


@pytest.fixture(scope="module")
def forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def tree_clf() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def hgb_cat() -> tuple[Any, np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    Xc = X.copy()
    Xc[:, 0] = (np.abs(Xc[:, 0]) * 3).astype(int) % 5
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0], random_state=0).fit(Xc, y)
    return model, Xc


def first_internal(tree_or_nodes: Any) -> int:
    if isinstance(tree_or_nodes, np.ndarray):
        return int(np.flatnonzero(tree_or_nodes["is_leaf"] == 0)[0])
    return int(np.flatnonzero(tree_or_nodes.children_left != -1)[0])


# --------------------------------------------------------------------------
# harness sanity: the healthy model survives the very same child script
# --------------------------------------------------------------------------


def test_child_harness_survives_healthy_model(tmp_path: Path, forest: Any) -> None:
    (tmp_path / "X.pkl").write_bytes(pickle.dumps(X))
    proc = run_child(tmp_path, pickle.dumps(forest), "m.predict(X); m.decision_path(X)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["loaded", "survived"]
    validate(forest)


# --------------------------------------------------------------------------
# sklearn.tree._tree.Tree
# --------------------------------------------------------------------------


def test_tree_child_out_of_range_segfaults(tmp_path: Path, forest: Any) -> None:
    model = roundtrip(forest)
    model.estimators_[3].tree_ = broken_tree(
        model.estimators_[3].tree_, lambda s: s["nodes"]["left_child"].__setitem__(0, 10**9)
    )
    check(tmp_path, model, "estimators_[3].tree_.children_left[0]")


def test_tree_cycle_hangs(tmp_path: Path, tree_clf: Any) -> None:
    internal = np.flatnonzero(tree_clf.tree_.children_left != -1)
    last = int(internal[-1])

    def cycle(s: dict[str, Any]) -> None:
        s["nodes"]["left_child"][last] = 0
        s["nodes"]["right_child"][last] = 0

    model = roundtrip(tree_clf)
    model.tree_ = broken_tree(model.tree_, cycle)
    check(tmp_path, model, f"tree_.children_left[{last}]")


def test_tree_feature_out_of_range_segfaults(tmp_path: Path, tree_clf: Any) -> None:
    model = roundtrip(tree_clf)
    model.tree_ = broken_tree(model.tree_, lambda s: s["nodes"]["feature"].__setitem__(0, 10**9))
    check(tmp_path, model, "tree_.feature[0]")


def test_tree_negative_feature_segfaults(tmp_path: Path, tree_clf: Any) -> None:
    model = roundtrip(tree_clf)
    model.tree_ = broken_tree(model.tree_, lambda s: s["nodes"]["feature"].__setitem__(0, -(10**9)))
    check(tmp_path, model, "tree_.feature[0]")


def test_tree_max_depth_too_small_corrupts_heap(tmp_path: Path, tree_clf: Any) -> None:
    model = roundtrip(tree_clf)
    model.tree_ = broken_tree(model.tree_, lambda s: s.__setitem__("max_depth", 0))
    check(tmp_path, model, "tree_.max_depth", action="m.decision_path(np.repeat(X, 50, axis=0))")


def test_forest_tree_wider_than_forest_input_segfaults(tmp_path: Path, forest: Any) -> None:
    # The tree is self-consistent (feature < its n_features) but the forest
    # validates X to 6 columns and calls the tree with check_input=False.
    model = roundtrip(forest)
    model.estimators_[0].tree_ = broken_tree(
        model.estimators_[0].tree_,
        lambda s: s["nodes"]["feature"].__setitem__(0, 10**9 - 1),
        n_features=10**9,
    )
    check(tmp_path, model, "estimators_[0].tree_.n_features")


def test_tree_without_state_is_refused(tree_clf: Any) -> None:
    model = roundtrip(tree_clf)
    cls, args, _ = model.tree_.__reduce__()
    model.tree_ = Reduce(cls, args, None)
    assert_refused(pickle.dumps(model), "tree_.node_count")


def test_tree_leaf_flags_disagree(tree_clf: Any) -> None:
    model = roundtrip(tree_clf)
    leaf = int(np.flatnonzero(tree_clf.tree_.children_left == -1)[0])
    model.tree_ = broken_tree(model.tree_, lambda s: s["nodes"]["right_child"].__setitem__(leaf, 1))
    assert_refused(pickle.dumps(model), f"tree_.children_right[{leaf}]")


def test_tree_node_with_two_parents(tree_clf: Any) -> None:
    internal = np.flatnonzero(tree_clf.tree_.children_left != -1)
    a, b = int(internal[0]), int(internal[-1])
    target = int(tree_clf.tree_.children_left[b])
    model = roundtrip(tree_clf)
    # a < b < target, so the edge stays "forward" but target gets two parents.
    model.tree_ = broken_tree(model.tree_, lambda s: s["nodes"]["right_child"].__setitem__(a, target))
    assert_refused(pickle.dumps(model), f"tree_.children_right[{a}]", "already has a parent")


def test_tree_unreachable_node(tree_clf: Any) -> None:
    a = int(np.flatnonzero(tree_clf.tree_.children_left != -1)[-1])
    orphan = int(tree_clf.tree_.children_left[a])

    def cut(s: dict[str, Any]) -> None:
        s["nodes"]["left_child"][a] = -1
        s["nodes"]["right_child"][a] = -1

    model = roundtrip(tree_clf)
    model.tree_ = broken_tree(model.tree_, cut)
    assert_refused(pickle.dumps(model), f"tree_.children_left[{orphan}]", "no parent")


def test_tree_missing_go_to_left_not_boolean(tree_clf: Any) -> None:
    model = roundtrip(tree_clf)
    model.tree_ = broken_tree(model.tree_, lambda s: s["nodes"]["missing_go_to_left"].__setitem__(0, 7))
    assert_refused(pickle.dumps(model), "tree_.missing_go_to_left[0]")


def test_gradient_boosting_more_columns_than_outputs_segfaults(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y)
    model.estimators_ = np.tile(model.estimators_, (1, 2000))
    check(tmp_path, model, "estimators_")


# --------------------------------------------------------------------------
# HistGradientBoosting TreePredictor
# --------------------------------------------------------------------------


def test_hgb_child_out_of_range_segfaults(tmp_path: Path, hgb_cat: tuple[Any, np.ndarray]) -> None:
    model, Xc = roundtrip(hgb_cat[0]), hgb_cat[1]
    model._predictors[0][0].nodes["left"][0] = 10**9
    check(tmp_path, model, "_predictors[0][0].nodes[0]['left']", X=Xc)


def test_hgb_feature_out_of_range_segfaults(tmp_path: Path, hgb_cat: tuple[Any, np.ndarray]) -> None:
    model, Xc = roundtrip(hgb_cat[0]), hgb_cat[1]
    nodes = model._predictors[0][0].nodes
    i = first_internal(nodes)
    nodes["feature_idx"][i] = 10**9
    check(tmp_path, model, f"_predictors[0][0].nodes[{i}]['feature_idx']", X=Xc)


def test_hgb_bitset_index_out_of_range_segfaults(tmp_path: Path, hgb_cat: tuple[Any, np.ndarray]) -> None:
    model, Xc = roundtrip(hgb_cat[0]), hgb_cat[1]
    where = None
    for i, row in enumerate(model._predictors):
        for k, pred in enumerate(row):
            cat = np.flatnonzero((pred.nodes["is_categorical"] == 1) & (pred.nodes["is_leaf"] == 0))
            pred.nodes["bitset_idx"][cat] = 10**9
            if where is None and cat.size:
                where = f"_predictors[{i}][{k}].nodes[{int(cat[0])}]['bitset_idx']"
    assert where is not None, "the fixture must contain categorical splits"
    check(tmp_path, model, where, X=Xc)


def test_hgb_cycle_hangs(tmp_path: Path, hgb_cat: tuple[Any, np.ndarray]) -> None:
    model, Xc = roundtrip(hgb_cat[0]), hgb_cat[1]
    nodes = model._predictors[0][0].nodes
    last = int(np.flatnonzero(nodes["is_leaf"] == 0)[-1])
    nodes["left"][last] = 0
    nodes["right"][last] = 0
    check(tmp_path, model, f"_predictors[0][0].nodes[{last}]['left']", X=Xc)


def test_hgb_path_inside_pipeline() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), HistGradientBoostingRegressor(max_iter=3)).fit(X, y.astype(float))
    model = roundtrip(model)
    nodes = model.steps[1][1]._predictors[0][0].nodes
    i = int(np.flatnonzero((nodes["is_leaf"] == 0) & (np.arange(nodes.size) >= 5))[0])
    nodes["left"][i] = nodes.size + 3
    assert_refused(pickle.dumps(model), f"steps[1][1]._predictors[0][0].nodes[{i}]['left']")


def test_hgb_empty_predictor(hgb_cat: tuple[Any, np.ndarray]) -> None:
    model = roundtrip(hgb_cat[0])
    pred = model._predictors[1][2]
    pred.nodes = pred.nodes[:0].copy()
    assert_refused(pickle.dumps(model), "_predictors[1][2].nodes")


def test_hgb_bitset_shape(hgb_cat: tuple[Any, np.ndarray]) -> None:
    model = roundtrip(hgb_cat[0])
    pred = model._predictors[0][1]
    pred.raw_left_cat_bitsets = np.zeros((pred.raw_left_cat_bitsets.shape[0], 1), np.uint32)
    assert_refused(pickle.dumps(model), "_predictors[0][1].raw_left_cat_bitsets")


def test_hgb_categorical_split_on_numeric_feature(hgb_cat: tuple[Any, np.ndarray]) -> None:
    # known_cat_bitsets has no row for a numeric feature: out-of-bounds read.
    model = roundtrip(hgb_cat[0])
    model._bin_mapper.is_categorical_[:] = 0
    err = assert_refused(pickle.dumps(model), None)
    assert err.path is not None and err.path.endswith("['is_categorical']")


def test_hgb_preprocessor_dropping_columns(hgb_cat: tuple[Any, np.ndarray]) -> None:
    model = roundtrip(hgb_cat[0])
    ct = model._preprocessor
    name, _, cols = ct.transformers_[1]
    ct.transformers_[1] = (name, "drop", cols)
    assert_refused(pickle.dumps(model), "_preprocessor.transformers_")


# --------------------------------------------------------------------------
# KDTree / BallTree and their distance metrics
# --------------------------------------------------------------------------


def knn(algorithm: str, **params: Any) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return roundtrip(KNeighborsClassifier(algorithm=algorithm, **params).fit(X, y))


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
def test_binary_tree_idx_array_out_of_range_segfaults(tmp_path: Path, algorithm: str) -> None:
    model = knn(algorithm)
    model._tree = broken_binary_tree(model._tree, lambda f: f[1].__setitem__(5, 10**9))
    check(tmp_path, model, "_tree.idx_array[5]")


def test_kd_tree_node_range_out_of_bounds_segfaults(tmp_path: Path) -> None:
    model = knn("kd_tree")
    last = model._tree.node_data.shape[0] - 1
    model._tree = broken_binary_tree(model._tree, lambda f: f[2]["idx_end"].__setitem__(last, 10**9))
    check(tmp_path, model, f"_tree.node_data[{last}]")


def test_ball_tree_without_leaves_segfaults(tmp_path: Path) -> None:
    model = knn("ball_tree")
    n_nodes = model._tree.node_data.shape[0]
    model._tree = broken_binary_tree(model._tree, lambda f: f[2]["is_leaf"].__setitem__(slice(None), 0))
    check(tmp_path, model, f"_tree.node_data[{n_nodes // 2}]['is_leaf']")


def test_kernel_density_leaf_size_zero_sigfpe(tmp_path: Path) -> None:
    from sklearn.neighbors import KernelDensity

    model = roundtrip(KernelDensity().fit(X))
    model.tree_ = broken_binary_tree(model.tree_, lambda f: f.__setitem__(4, 0))
    check(tmp_path, model, "tree_.leaf_size", action="m.score_samples(X)")


def test_mahalanobis_matrix_too_small_corrupts_heap(tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.RandomState(0)
    X50, y50 = rng.rand(200, 50), rng.randint(0, 2, 200)
    params = {"algorithm": "ball_tree", "metric": "mahalanobis", "metric_params": {"VI": np.eye(50)}}
    model = roundtrip(KNeighborsClassifier(**params).fit(X50, y50))

    def shrink(f: list[Any]) -> None:
        cls, args, (p, vec, _mat) = f[11].__reduce__()
        f[11] = Reduce(cls, args, (p, vec, np.eye(1)))

    model._tree = broken_binary_tree(model._tree, shrink)
    check(tmp_path, model, "_tree.dist_metric.VI", X=X50)


def test_binary_tree_bounds_and_sizes() -> None:
    cases: list[tuple[Callable[[list[Any]], None], str]] = [
        (lambda f: f.__setitem__(3, f[3][:, :1].copy()), "_tree.node_bounds"),
        (lambda f: f.__setitem__(6, 10**6), "_tree.n_nodes"),
        (lambda f: f.__setitem__(1, f[1][:10].copy()), "_tree.idx_array"),
        (lambda f: f.__setitem__(12, np.ones(3)), "_tree.sample_weight"),
        (lambda f: f[1].__setitem__(0, f[1][1]), "_tree.idx_array[1]"),
    ]
    for edit, path in cases:
        model = knn("kd_tree")
        model._tree = broken_binary_tree(model._tree, edit)
        assert_refused(pickle.dumps(model), path)


def test_minkowski_weights_too_short() -> None:
    model = knn("ball_tree", metric="minkowski", p=3, metric_params={"w": np.ones(6)})

    def shorten(f: list[Any]) -> None:
        cls, args, (p, _vec, mat) = f[11].__reduce__()
        f[11] = Reduce(cls, args, (p, np.ones(2), mat))

    model._tree = broken_binary_tree(model._tree, shorten)
    assert_refused(pickle.dumps(model), "_tree.dist_metric.vec")


def test_standalone_mahalanobis_not_square() -> None:
    from sklearn.metrics import DistanceMetric

    metric = DistanceMetric.get_metric("mahalanobis", VI=np.eye(3))
    cls, args, (p, vec, _mat) = metric.__reduce__()
    payload = pickle.dumps({"metric": Reduce(cls, args, (p, vec, np.ones((3, 2))))})
    assert_refused(payload, "['metric'].VI")


def test_brute_neighbors_fit_x_narrower_than_input_segfaults(tmp_path: Path) -> None:
    model = knn("brute")
    model._fit_X = np.ascontiguousarray(model._fit_X[:, :1])
    model.n_features_in_ = 100_000
    check(tmp_path, model, "_fit_X", X=np.random.RandomState(0).rand(5, 100_000))


# --------------------------------------------------------------------------
# libsvm
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def svc() -> Any:
    from sklearn.svm import SVC

    return SVC().fit(X, y)


def test_svc_class_count_inflated_segfaults(tmp_path: Path, svc: Any) -> None:
    model = roundtrip(svc)
    n_support = np.zeros(4000, np.int32)
    n_support[0] = model.support_.size
    model._n_support = n_support
    check(tmp_path, model, "_n_support")


def test_svc_more_support_indices_than_vectors_segfaults(tmp_path: Path, svc: Any) -> None:
    model = roundtrip(svc)
    n = model.support_.size
    model.support_ = np.arange(n * 1000, dtype=np.int32) % n
    model._dual_coef_ = np.ascontiguousarray(np.tile(model._dual_coef_, 1000))
    check(tmp_path, model, "_n_support")


def test_svc_precomputed_support_out_of_range_segfaults(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    model = roundtrip(SVC(kernel="precomputed").fit(X @ X.T, y))
    model.support_ = np.full_like(model.support_, 10**8)
    check(tmp_path, model, "support_[0]", X=X @ X.T)


def test_sparse_svc_indptr_segfaults(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    Xs = sp.csr_matrix(X)
    model = roundtrip(SVC().fit(Xs, y))
    model.support_vectors_.indptr[-1] = 10**8
    check(tmp_path, model, "support_vectors_.indptr", X=Xs)


def test_svc_intercept_and_dual_coef_sizes(svc: Any) -> None:
    model = roundtrip(svc)
    model._intercept_ = model._intercept_[:1].copy()
    assert_refused(pickle.dumps(model), "_intercept_")
    model = roundtrip(svc)
    model._dual_coef_ = np.ascontiguousarray(model._dual_coef_[:, :1])
    assert_refused(pickle.dumps(model), "_dual_coef_")


# --------------------------------------------------------------------------
# scipy.sparse held by estimators, and on their own
# --------------------------------------------------------------------------


def test_sparsified_coef_indices_segfault(tmp_path: Path) -> None:
    from sklearn.linear_model import SGDClassifier

    model = roundtrip(SGDClassifier(random_state=0).fit(X, y).sparsify())
    model.coef_.indices[:] = 10**9
    check(tmp_path, model, "coef_.indices[0]")


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda m: m.indices.__setitem__(2, 99), "indices[2]"),
        (lambda m: m.indices.__setitem__(0, -1), "indices[0]"),
        (lambda m: m.indptr.__setitem__(2, 0), "indptr[2]"),
        (lambda m: m.indptr.__setitem__(-1, 10**6), "indptr"),
        (lambda m: setattr(m, "indptr", m.indptr[:-1].copy()), "indptr"),
        (lambda m: setattr(m, "_shape", (5, -1)), "_shape"),
    ],
)
def test_csr_structure(edit: Callable[[Any], None], path: str) -> None:
    m = sp.random(5, 7, density=0.5, format="csr", random_state=0)
    edit(m)
    assert_refused(pickle.dumps(m), path)


def test_csr_sorted_flag_must_be_true() -> None:
    m = sp.csr_matrix(np.eye(4) + np.eye(4, k=1))
    m.has_sorted_indices = True
    m.indices[[0, 1]] = m.indices[[1, 0]]
    assert_refused(pickle.dumps(m), "indices[1]")


def test_other_sparse_formats() -> None:
    coo = sp.coo_array(np.eye(3))
    coo.coords[1][0] = 7
    assert_refused(pickle.dumps(coo), "coords[1][0]")
    dia = sp.dia_matrix(np.eye(3))
    dia.offsets = np.array([0, 1])
    assert_refused(pickle.dumps(dia), "offsets")
    lil = sp.lil_matrix(np.eye(3))
    lil.rows[1] = [9]
    assert_refused(pickle.dumps(lil), "rows[1]")
    bsr = sp.bsr_matrix(np.eye(4), blocksize=(2, 2))
    bsr.indices[0] = 5
    assert_refused(pickle.dumps(bsr), "indices[0]")
    for good in (
        sp.csc_array(np.eye(3)),
        sp.dok_matrix(np.eye(3)),
        sp.csr_array(np.arange(4.0)),
        sp.coo_array(np.eye(3)),
    ):
        validate(roundtrip(good))


# --------------------------------------------------------------------------
# text / dict vectorizers, hashers
# --------------------------------------------------------------------------


DOCS = ["the cat sat on the mat", "dogs and cats", "a quick brown fox", "lorem ipsum dolor"] * 10
DOC_Y = [0, 1, 0, 1] * 10


def test_count_vectorizer_vocabulary_out_of_range_segfaults(tmp_path: Path) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = roundtrip(make_pipeline(CountVectorizer(), LogisticRegression()).fit(DOCS, DOC_Y))
    vocab = model.steps[0][1].vocabulary_
    for word in vocab:
        vocab[word] = 10**9
    first = next(iter(vocab))
    check(tmp_path, model, f"steps[0][1].vocabulary_[{first!r}]", X=DOCS)


def test_dict_vectorizer_vocabulary_out_of_range_segfaults(tmp_path: Path) -> None:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows = [{"a": 1, "b": 2}, {"c": 3}] * 5
    model = roundtrip(make_pipeline(DictVectorizer(), LogisticRegression()).fit(rows, [0, 1] * 5))
    model.steps[0][1].vocabulary_["a"] = 10**9
    check(tmp_path, model, "steps[0][1].vocabulary_['a']", X=rows)


def test_vocabulary_duplicates_refused() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    model = roundtrip(TfidfVectorizer().fit(DOCS))
    words = sorted(model.vocabulary_, key=model.vocabulary_.__getitem__)
    model.vocabulary_[words[1]] = 0
    err = assert_refused(pickle.dumps(model), None, "used twice")
    assert err.path in (f"vocabulary_[{words[0]!r}]", f"vocabulary_[{words[1]!r}]")


def test_hashing_vectorizer_zero_features_sigfpe(tmp_path: Path) -> None:
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = roundtrip(make_pipeline(HashingVectorizer(n_features=16), LogisticRegression()).fit(DOCS, DOC_Y))
    model.steps[0][1].n_features = 0
    check(tmp_path, model, "steps[0][1].n_features", X=DOCS)


# --------------------------------------------------------------------------
# widths trusted by Cython/BLAS kernels
# --------------------------------------------------------------------------


def test_sgd_partial_fit_with_narrow_coef_segfaults(tmp_path: Path) -> None:
    from sklearn.linear_model import SGDRegressor

    n = 200_000
    model = roundtrip(SGDRegressor(random_state=0).fit(X, y.astype(float)))
    model.coef_ = np.ascontiguousarray(model.coef_[:1])
    model.n_features_in_ = n
    action = f"m.partial_fit(np.random.RandomState(0).rand(50, {n}), np.arange(50.0))"
    check(tmp_path, model, "coef_", action=action, X=np.zeros(1))


def test_kmeans_centers_narrower_than_input() -> None:
    from sklearn.cluster import BisectingKMeans, KMeans, MiniBatchKMeans

    for est in (KMeans(3, n_init=1, random_state=0), MiniBatchKMeans(3, n_init=1, random_state=0)):
        model = roundtrip(est.fit(X))
        model.cluster_centers_ = np.ascontiguousarray(model.cluster_centers_[:, :1])
        assert_refused(pickle.dumps(model), "cluster_centers_")
    model = roundtrip(BisectingKMeans(3, random_state=0).fit(X))
    model._bisecting_tree.left.center = model._bisecting_tree.left.center[:2].copy()
    assert_refused(pickle.dumps(model), "_bisecting_tree.left.center")


def test_birch_cached_norms_too_short() -> None:
    # Not a crash here, but ArgKmin reads past the norms array (garbage labels).
    from sklearn.cluster import Birch

    model = roundtrip(Birch(threshold=0.3).fit(X))
    model._subcluster_norms = model._subcluster_norms[:1].copy()
    assert_refused(pickle.dumps(model), "_subcluster_norms")


def test_bspline_coefficients_too_short_reads_out_of_bounds() -> None:
    # Not a crash, but evaluation returns heap garbage (leaked addresses).
    from sklearn.preprocessing import SplineTransformer

    model = roundtrip(SplineTransformer().fit(X))
    spline = model.bsplines_[2]
    spline.__dict__["_c"] = spline._c[:1].copy()
    assert_refused(pickle.dumps(model), "bsplines_[2]._c")
    model = roundtrip(SplineTransformer().fit(X))
    model.bsplines_[0].__dict__["_t"] = model.bsplines_[0]._t[::-1].copy()
    assert_refused(pickle.dumps(model), "bsplines_[0]._t")


# --------------------------------------------------------------------------
# walker behaviour
# --------------------------------------------------------------------------


def test_refused_fit_time_machinery() -> None:
    from sklearn.tree._criterion import Gini

    payload = pickle.dumps({"x": [1, Gini(1, np.array([3], dtype=np.intp))]})
    err = assert_refused(payload, "['x'][1]")
    assert "fit-time" in str(err)
    assert any("sklearn.tree._criterion." == t for t in REFUSED_TYPES)


def test_cycles_and_sharing_terminate(forest: Any) -> None:
    loop: list[Any] = [forest]
    loop.append(loop)
    shared = {"a": loop, "b": loop, "c": (forest, forest)}
    validate(shared)


def test_depth_bound() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(50):
        node.append([])
        node = node[0]
    validate(deep, max_depth=60)
    with pytest.raises(UnsafeModelError, match="deeper than 10"):
        validate(deep, max_depth=10)


def test_broken_tree_found_through_containers(tree_clf: Any) -> None:
    model = roundtrip(tree_clf)
    model.tree_ = broken_tree(model.tree_, lambda s: s["nodes"]["left_child"].__setitem__(0, 10**9))
    bundle = {"models": np.array([None, model], dtype=object), "meta": ("v1", {"k": model})}
    obj = pickle.loads(pickle.dumps(bundle))
    with pytest.raises(UnsafeModelError) as info:
        validate(obj)
    assert info.value.path in ("['models'][1].tree_.children_left[0]", "['meta'][1]['k'].tree_.children_left[0]")
    assert isinstance(info.value, SafeloadError) and isinstance(info.value, pickle.UnpicklingError)


def test_malformed_state_fails_closed(hgb_cat: tuple[Any, np.ndarray]) -> None:
    model = roundtrip(hgb_cat[0])
    model._predictors[0][0].nodes = "not an array"
    with pytest.raises(UnsafeModelError) as info:
        validate(model)
    assert info.value.path is not None and info.value.path.startswith("_predictors[0][0]")


def test_validated_types_table() -> None:
    names = [name for name, _ in VALIDATED_TYPES]
    for expected in (
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.BinaryTree64",
        "sklearn.neighbors._ball_tree.BinaryTree64",
        "scipy.sparse._base._spbase",
        "sklearn.svm._base.BaseLibSVM",
    ):
        assert expected in names
    assert all(isinstance(summary, str) and summary for _, summary in VALIDATED_TYPES)


# --------------------------------------------------------------------------
# real, healthy models pass
# --------------------------------------------------------------------------


def _healthy_models() -> list[tuple[str, Callable[[], Any]]]:
    from sklearn import cluster, ensemble, linear_model, neighbors, pipeline, preprocessing, svm, tree
    from sklearn.feature_extraction import DictVectorizer, FeatureHasher
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer

    rng = np.random.RandomState(0)
    Xs = sp.csr_matrix(np.where(rng.rand(*X.shape) > 0.6, X, 0.0))
    yr = X[:, 0] * 2 + rng.rand(len(X))
    Xc = X.copy()
    Xc[:, [0, 3]] = (np.abs(Xc[:, [0, 3]]) * 4).astype(int) % 7
    geo = np.deg2rad(rng.rand(100, 2) * [90, 180])

    def hgb_pandas() -> Any:
        pd = pytest.importorskip("pandas")
        df = pd.DataFrame(X[:, :4], columns=list("abcd"))
        df["cat"] = pd.Categorical(np.array(["x", "y", "z"])[y])
        return ensemble.HistGradientBoostingClassifier(max_iter=10, categorical_features="from_dtype").fit(df, y)

    return [
        ("random_forest", lambda: ensemble.RandomForestClassifier(20, random_state=0).fit(X, y)),
        ("extra_trees_regressor", lambda: ensemble.ExtraTreesRegressor(10, random_state=0).fit(X, yr)),
        ("random_forest_multioutput", lambda: ensemble.RandomForestRegressor(5).fit(X, np.c_[yr, yr**2])),
        ("decision_tree_pruned", lambda: tree.DecisionTreeClassifier(ccp_alpha=0.01).fit(X, y)),
        ("decision_tree_best_first", lambda: tree.DecisionTreeRegressor(max_leaf_nodes=9).fit(X, yr)),
        ("decision_tree_stump_sparse", lambda: tree.DecisionTreeClassifier(max_depth=1).fit(Xs, y)),
        ("decision_tree_nan", lambda: tree.DecisionTreeClassifier().fit(np.where(X > 1, np.nan, X), y)),
        ("gradient_boosting", lambda: ensemble.GradientBoostingClassifier(n_estimators=10).fit(X, y)),
        ("gradient_boosting_binary", lambda: ensemble.GradientBoostingClassifier(n_estimators=5).fit(X, y > 0)),
        (
            "gradient_boosting_init",
            lambda: ensemble.GradientBoostingRegressor(n_estimators=5, init=linear_model.Ridge()).fit(X, yr),
        ),
        ("hgb_numeric", lambda: ensemble.HistGradientBoostingRegressor(max_iter=10).fit(X, yr)),
        (
            "hgb_categorical_mask",
            lambda: ensemble.HistGradientBoostingClassifier(max_iter=10, categorical_features=[0, 3]).fit(Xc, y),
        ),
        ("hgb_categorical_pandas", hgb_pandas),
        ("isolation_forest", lambda: ensemble.IsolationForest(n_estimators=10, random_state=0).fit(X)),
        (
            "isolation_forest_features",
            lambda: ensemble.IsolationForest(n_estimators=5, max_features=3, random_state=0).fit(X),
        ),
        (
            "bagging_features",
            lambda: ensemble.BaggingClassifier(
                tree.DecisionTreeClassifier(), n_estimators=4, max_features=0.5, bootstrap_features=True
            ).fit(X, y),
        ),
        ("adaboost", lambda: ensemble.AdaBoostClassifier(n_estimators=5).fit(X, y)),
        ("random_trees_embedding", lambda: ensemble.RandomTreesEmbedding(n_estimators=5).fit(X)),
        ("knn_kd", lambda: neighbors.KNeighborsClassifier(algorithm="kd_tree").fit(X, y)),
        ("knn_ball", lambda: neighbors.KNeighborsClassifier(algorithm="ball_tree", leaf_size=3).fit(X, y)),
        ("knn_brute_sparse", lambda: neighbors.KNeighborsClassifier().fit(Xs, y)),
        ("radius_neighbors", lambda: neighbors.RadiusNeighborsRegressor(radius=3.0).fit(X, yr)),
        ("nearest_neighbors_tiny", lambda: neighbors.NearestNeighbors(n_neighbors=1).fit(X[:3])),
        ("lof", lambda: neighbors.LocalOutlierFactor(novelty=True).fit(X)),
        ("kde", lambda: neighbors.KernelDensity(bandwidth=0.5).fit(X)),
        (
            "kde_ball_weights",
            lambda: neighbors.KernelDensity(algorithm="ball_tree").fit(X, sample_weight=rng.rand(300)),
        ),
        (
            "knn_mahalanobis",
            lambda: neighbors.KNeighborsClassifier(
                algorithm="ball_tree", metric="mahalanobis", metric_params={"VI": np.eye(6)}
            ).fit(X, y),
        ),
        (
            "knn_seuclidean",
            lambda: neighbors.KNeighborsClassifier(
                algorithm="ball_tree", metric="seuclidean", metric_params={"V": np.ones(6)}
            ).fit(X, y),
        ),
        (
            "knn_minkowski_weights",
            lambda: neighbors.KNeighborsClassifier(
                algorithm="ball_tree", p=3, metric_params={"w": np.arange(1.0, 7.0)}
            ).fit(X, y),
        ),
        ("balltree_haversine", lambda: neighbors.BallTree(geo, metric="haversine")),
        ("kdtree_leaf1", lambda: neighbors.KDTree(X, leaf_size=1)),
        ("svc_proba", lambda: svm.SVC(probability=True, random_state=0).fit(X, y)),
        ("svc_sparse", lambda: svm.SVC().fit(Xs, y)),
        ("svc_precomputed", lambda: svm.SVC(kernel="precomputed").fit(X @ X.T, y)),
        ("nusvr", lambda: svm.NuSVR().fit(X, yr)),
        ("one_class_svm", lambda: svm.OneClassSVM().fit(X)),
        ("svr_sparse", lambda: svm.SVR().fit(Xs, yr)),
        ("kmeans", lambda: cluster.KMeans(4, n_init=1).fit(X)),
        ("minibatch_kmeans_sparse", lambda: cluster.MiniBatchKMeans(4, n_init=1).fit(Xs)),
        ("bisecting_kmeans", lambda: cluster.BisectingKMeans(5).fit(X)),
        ("birch", lambda: cluster.Birch(threshold=0.3, branching_factor=5).fit(X)),
        ("sgd_sparsified", lambda: linear_model.SGDClassifier(average=True).fit(X, y).sparsify()),
        ("sgd_regressor", lambda: linear_model.SGDRegressor().fit(X, yr)),
        ("tfidf", lambda: TfidfVectorizer().fit(DOCS)),
        ("count_bigrams", lambda: CountVectorizer(ngram_range=(1, 2)).fit(DOCS)),
        ("hashing", lambda: HashingVectorizer(n_features=2**10).fit(DOCS)),
        ("dict_vectorizer", lambda: DictVectorizer().fit([{"a": 1, "b": 2}, {"c": 3}])),
        ("feature_hasher", lambda: FeatureHasher(n_features=8)),
        ("spline", lambda: preprocessing.SplineTransformer(extrapolation="periodic").fit(X)),
        (
            "stacking_pipeline",
            lambda: pipeline.make_pipeline(
                preprocessing.StandardScaler(),
                ensemble.StackingClassifier(
                    [("rf", ensemble.RandomForestClassifier(5)), ("knn", neighbors.KNeighborsClassifier())]
                ),
            ).fit(X, y),
        ),
    ]


def test_healthy_models_pass() -> None:
    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, build in _healthy_models():
            model = roundtrip(build())
            try:
                validate(model)
            except UnsafeModelError as exc:
                failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


def test_benign_zoo_passes(zoo_store: Any) -> None:
    """Every artifact of the shared benign zoo validates (no false positives)."""
    import zoo

    failures = []
    warnings.simplefilter("ignore")  # pytest restores the filters after the test
    for name in zoo_store.entries:
        try:
            path = zoo_store.path(name, "pickle-p5")
        except KeyError:
            continue
        try:
            validate(zoo.load_plain(path, "pickle-p5"))
        except UnsafeModelError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


class _TreeStub:
    """The attributes _check_tree reads, around node arrays a test can corrupt freely."""

    def __init__(self, tree: Any, nodes: np.ndarray, max_depth: int) -> None:
        self.node_count = self.capacity = len(nodes)
        self.n_features, self.n_outputs, self.max_n_classes = tree.n_features, tree.n_outputs, tree.max_n_classes
        self.n_classes = tree.n_classes
        self.max_depth = max_depth
        self._state = {"nodes": nodes, "values": tree.__getstate__()["values"]}

    def __getstate__(self) -> dict[str, Any]:
        return self._state


def _reference_tree_ok(nodes: np.ndarray, n_features: int, max_depth: int) -> bool:
    """The rules of _check_tree, one node at a time in plain Python."""
    n = len(nodes)
    left, right = nodes["left_child"].tolist(), nodes["right_child"].tolist()
    parents = [0] * n
    for i in range(n):
        if (left[i] == -1) != (right[i] == -1):
            return False
        if left[i] == -1:
            continue
        for c in (left[i], right[i]):
            if not i < c < n:
                return False
            parents[c] += 1
        if not 0 <= nodes["feature"][i] < n_features or nodes["missing_go_to_left"][i] > 1:
            return False
    if parents[0] != 0 or any(p != 1 for p in parents[1:]):
        return False
    depth = [0] * n
    for i in range(n):  # parents come before children
        if left[i] != -1:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
    return max(depth) <= max_depth < n


def test_tree_check_agrees_with_a_plain_python_reference(tree_clf: Any) -> None:
    """Random corruptions of a real tree: _check_tree refuses exactly what the reference refuses."""
    rng = np.random.RandomState(0)
    tree = tree_clf.tree_
    base = tree.__getstate__()["nodes"]
    true_depth = int(tree.max_depth)
    outcomes = {True: 0, False: 0}
    for trial in range(400):
        nodes = base.copy()
        max_depth = true_depth
        for _ in range(rng.randint(0, 3)):
            kind = rng.randint(6)
            i = int(rng.randint(len(nodes)))
            if kind == 0:
                nodes["left_child"][i] = rng.randint(-2, len(nodes) + 2)
            elif kind == 1:
                nodes["right_child"][i] = rng.randint(-2, len(nodes) + 2)
            elif kind == 2:
                nodes["feature"][i] = rng.randint(-2, tree.n_features + 2)
            elif kind == 3:
                nodes["missing_go_to_left"][i] = rng.randint(0, 3)
            elif kind == 4:
                max_depth = true_depth + rng.randint(-3, 4)
            else:
                j = int(rng.randint(len(nodes)))
                nodes["right_child"][i], nodes["right_child"][j] = nodes["right_child"][j], nodes["right_child"][i]
        expected = _reference_tree_ok(nodes, tree.n_features, max_depth)
        try:
            _validate._check_tree(_TreeStub(tree, nodes, max_depth), "tree")
            got = True
        except UnsafeModelError:
            got = False
        assert got == expected, f"trial {trial}: _check_tree says {got}, the reference {expected}"
        outcomes[got] += 1
    assert min(outcomes.values()) > 50, outcomes  # both verdicts were exercised


def _bad_rngs() -> list[tuple[str, Any]]:
    """Generators whose state positions are out of range (numpy stores them; the next draw reads out of bounds)."""
    rs = np.random.RandomState(0)
    st = rs.get_state(legacy=False)
    st["state"]["pos"] = 625
    rs.set_state(st)
    mt = np.random.MT19937(1)
    mst = mt.state
    mst["state"]["pos"] = -1
    mt.state = mst
    ph = np.random.Philox(2)
    pst = ph.state
    pst["buffer_pos"] = 5
    ph.state = pst
    ph2 = np.random.Philox(3)
    pst2 = ph2.state
    pst2["buffer_pos"] = -7
    ph2.state = pst2
    return [("RandomState", rs), ("MT19937", mt), ("Philox", ph), ("Generator(Philox)", np.random.Generator(ph2))]


@pytest.mark.parametrize("label", [label for label, _ in _bad_rngs()])
def test_random_generators_with_positions_out_of_range_are_refused(label: str) -> None:
    """Checked after building too (not only by the walker): a state can reach the setter in ways the static
    view does not keep (e.g. inside a vocabulary-style run), and an estimator may carry one."""
    rng = dict(_bad_rngs())[label]
    with pytest.raises(UnsafeModelError, match="outside"):
        validate(rng)
    from sklearn.ensemble import RandomForestClassifier

    holder = RandomForestClassifier(random_state=rng)
    with pytest.raises(UnsafeModelError, match="random_state"):
        validate(holder)


def test_random_generators_in_range_pass() -> None:
    for rng in (np.random.RandomState(0), np.random.MT19937(0), np.random.Philox(0), np.random.SFC64(0),
                np.random.Generator(np.random.PCG64(0)), np.random.default_rng(0)):
        validate(rng)
        validate(pickle.loads(pickle.dumps(rng)))


def test_a_tree_no_build_reached_is_refused_even_when_the_walker_prechecked_trees() -> None:
    """load skips the per-node Tree checks the walker already ran on every BUILD's state; a Tree that
    no BUILD reached keeps its constructor's empty arrays (byte fuzzer seed 105: SIGSEGV in predict).
    The walker refuses such a stream; the cheap residue still runs at load (defence in depth)."""
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._tree import Tree

    from safeload._load import _WALKER_VALIDATED

    model = DecisionTreeRegressor(max_depth=1).fit([[0.0], [1.0]], [0.0, 1.0])
    validate(model, prechecked=_WALKER_VALIDATED)  # a real tree passes
    model.tree_ = Tree(1, np.array([1], dtype=np.intp), 1)
    assert model.tree_.node_count == 0
    for prechecked in (frozenset(), _WALKER_VALIDATED):
        with pytest.raises(UnsafeModelError, match="node_count"):
            validate(model, prechecked=prechecked)


@pytest.mark.parametrize("opcode", ["REDUCE", "NEWOBJ"])
def test_every_type_load_leaves_to_the_walker_is_refused_when_no_build_reaches_it(opcode: str) -> None:
    """For each type of ``_mirrors.BUILD_VALIDATED`` (load skips its full validator: the walker judged
    every BUILD of it), a stream that creates one and never BUILDs it is refused by the walker, however
    it is created; a type added to the set later gets the same check without more code."""
    import pickle

    from safeload import scan
    from safeload._mirrors import BUILD_VALIDATED

    for name in sorted(BUILD_VALIDATED):
        module, _, qualname = name.rpartition(".")
        head = b"\x80\x04\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(qualname)]) \
            + qualname.encode() + b"\x93"
        if opcode == "REDUCE":  # the Tree constructor's arguments: (n_features, n_classes, n_outputs)
            args = b"K\x01" + pickle.dumps(np.array([1], dtype=np.intp), 4)[2:-1] + b"K\x01\x87"
            data = head + args + b"R."
        else:
            data = head + b")\x81."
        report = scan(data)
        assert not report.safe, (name, opcode)
        if opcode == "REDUCE":  # (NEWOBJ of a class allowed only as a call is refused earlier)
            assert any("never given its state" in f.message for f in report.findings), report.findings
