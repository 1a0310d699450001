"""Native-state invariants of issue 12, one general rule each (safeload._validators).

Each test takes a real fitted model, changes only its state (every name stays
allowed), writes it with ``joblib.dump`` and PROVES in a child process that plain
``joblib.load`` + the model's ordinary method kills the interpreter (a fatal
signal, or OpenMP aborting without a Python exception). ``safeload.load`` must
refuse the same file, naming the field. Healthy variants of the same models
must load.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

import safeload
from safeload._errors import UnsafeModelError

pytest.importorskip("sklearn")

from sklearn.datasets import make_classification  # noqa: E402

X, y = make_classification(200, 6, n_informative=4, n_classes=3, random_state=0)
ALARM_SECONDS = 20


def child(tmp_path: Path, model: Any, action: str, data: Any, *,
          alarm: int = ALARM_SECONDS) -> subprocess.CompletedProcess[str]:
    """Dump ``model`` with joblib; a fresh interpreter loads it with plain joblib and runs ``action``
    (SIGALRM, whose default action ends the process even inside C code, after ``alarm`` seconds)."""
    joblib.dump(model, tmp_path / "model.joblib")
    joblib.dump(data, tmp_path / "X.joblib")
    code = textwrap.dedent(
        f"""
        import signal, sys, warnings
        import joblib
        import numpy as np
        warnings.simplefilter("ignore")
        m = joblib.load(sys.argv[1])
        X = joblib.load(sys.argv[2])
        print("loaded", flush=True)
        signal.alarm({alarm})
        {action}
        print("survived", flush=True)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "model.joblib"), str(tmp_path / "X.joblib")],
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_kills(proc: subprocess.CompletedProcess[str], *, abort_ok: bool = False) -> None:
    assert proc.stdout.startswith("loaded"), proc.stderr[-2000:]
    assert "survived" not in proc.stdout, proc.stdout
    if abort_ok and proc.returncode > 0:
        # the runtime ended the process itself: no Python exception was raised
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        return
    assert proc.returncode < 0, f"expected a fatal signal, got rc={proc.returncode}\n{proc.stderr[-2000:]}"


def assert_hangs(proc: subprocess.CompletedProcess[str]) -> None:
    """``action`` had not returned when the alarm ended the child (the healthy model takes milliseconds)."""
    assert proc.stdout.startswith("loaded") and "survived" not in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    assert proc.returncode == -signal.SIGALRM, proc.stderr[-2000:]


def assert_load_refuses(tmp_path: Path, fragment: str, *, scan_gap: bool = False) -> UnsafeModelError:
    """``scan_gap``: a refusal scan cannot establish statically (README, Known gaps); pinned, so that
    closing the gap shows here."""
    with pytest.raises(UnsafeModelError) as info:
        safeload.load(tmp_path / "model.joblib")
    # the validator names the path; a rule the walker mirrors refuses before anything is built
    # (no path, the walker's message names the attribute)
    where = info.value.path if info.value.path is not None else str(info.value)
    assert fragment in where, str(info.value)
    # scan agrees: the walker's mirrors, or load's own validators run on the model's static twin
    report = safeload.scan(tmp_path / "model.joblib")
    if scan_gap:
        assert report.safe, "scan now judges this one: drop scan_gap and the README's Known gaps entry"
    else:
        assert not report.safe, f"scan says safe where load refuses: {info.value}"
        assert fragment in " ".join(f.message for f in report.findings), report.findings
    return info.value


class _Overflow(Exception):
    pass


def assert_reaches_bincount_overflow(tmp_path: Path, model: Any, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dump ``model``; plain joblib's copy hands ``np.bincount`` a value of 2**63 - 1 in ``method``.

    numpy sizes bincount's output as max + 1, which overflows there, and writes out of bounds.
    Whether that kills the process depends on the heap, so the call is intercepted instead."""
    joblib.dump(model, tmp_path / "model.joblib")
    plain = joblib.load(tmp_path / "model.joblib")
    real = np.bincount

    def bincount(x: Any, *args: Any, **kwargs: Any) -> Any:
        if np.asarray(x).size and int(np.max(x)) == 2**63 - 1:
            raise _Overflow
        return real(x, *args, **kwargs)

    monkeypatch.setattr(np, "bincount", bincount)
    try:
        with pytest.raises(_Overflow):
            getattr(plain, method)(X)
    finally:
        monkeypatch.undo()


def proven(tmp_path: Path, model: Any, action: str, data: Any, fragment: str, *, abort_ok: bool = False) -> None:
    assert_kills(child(tmp_path, model, action, data), abort_ok=abort_ok)
    assert_load_refuses(tmp_path, fragment)


def loads(tmp_path: Path, model: Any) -> Any:
    joblib.dump(model, tmp_path / "good.joblib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return safeload.load(tmp_path / "good.joblib")


# --------------------------------------------------------------------------
# (a) neighbour classifiers: stored labels index the class-mode histograms
# --------------------------------------------------------------------------


def _knn() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(metric="manhattan", algorithm="brute").fit(X, y)


def test_knn_label_values_out_of_range_segfault(tmp_path: Path) -> None:
    m = _knn()
    m._y = np.full_like(m._y, 10**6)
    proven(tmp_path, m, "m.predict_proba(X)", X, "_y[0]")


def test_knn_fewer_labels_than_training_rows_segfault(tmp_path: Path) -> None:
    m = _knn()
    m._y = m._y[:5].copy()
    proven(tmp_path, m, "m.predict_proba(X)", X, "_y")


def test_radius_neighbors_negative_label_refused(tmp_path: Path) -> None:
    from sklearn.neighbors import RadiusNeighborsClassifier

    m = RadiusNeighborsClassifier(radius=10.0, metric="manhattan").fit(X, y)
    m._y = m._y.copy()
    m._y[3] = -1
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_y[3]")


def test_multioutput_knn_labels_checked_per_output(tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    Y = np.stack([y, y % 2], axis=1)
    m = KNeighborsClassifier().fit(X, Y)
    assert loads(tmp_path, m).predict(X[:3]).shape == (3, 2)
    m._y = m._y.copy()
    m._y[7, 1] = 2  # output 1 has 2 classes
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_y[7, 1]")


# --------------------------------------------------------------------------
# (b) derived widths that become sparse column indices
# --------------------------------------------------------------------------

XC = np.random.RandomState(0).randint(0, 3, (100, 2))


def test_one_hot_widths_that_sum_right_segfault(tmp_path: Path) -> None:
    from sklearn.preprocessing import OneHotEncoder

    m = OneHotEncoder().fit(XC)
    m._n_features_outs = [10**6, 6 - 10**6]  # same total, wrong per feature
    proven(tmp_path, m, "m.transform(X).toarray()", XC, "_n_features_outs[0]")


def test_one_hot_inside_kbins_discretizer_segfault(tmp_path: Path) -> None:
    from sklearn.preprocessing import KBinsDiscretizer

    m = KBinsDiscretizer(n_bins=3, encode="onehot").fit(X)
    outs = list(m._encoder._n_features_outs)
    m._encoder._n_features_outs = [10**6, *outs[1:-1], outs[-1] + outs[0] - 10**6]
    proven(tmp_path, m, "m.transform(X).toarray()", X, "_encoder._n_features_outs[0]")


def test_one_hot_infrequent_mapping_out_of_range_refused(tmp_path: Path) -> None:
    from sklearn.preprocessing import OneHotEncoder

    data = np.array([[0] * 20 + [1] * 20 + [2] * 2 + [3] * 2]).T
    m = OneHotEncoder(min_frequency=5, handle_unknown="infrequent_if_exist").fit(data)
    assert loads(tmp_path, m).transform(data).shape == (44, 3)
    m._default_to_infrequent_mappings = [np.array([0, 1, 2, 10**6])]
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_default_to_infrequent_mappings[0]")


def test_one_hot_drop_and_infrequent_healthy(tmp_path: Path) -> None:
    from sklearn.preprocessing import OneHotEncoder

    data = np.array([[0] * 20 + [1] * 20 + [2] * 2 + [3] * 2, [5, 6] * 22]).T
    for params in ({"drop": "first"}, {"drop": "if_binary"}, {"min_frequency": 5, "drop": "first"}):
        m = OneHotEncoder(**params).fit(data)
        np.testing.assert_array_equal(loads(tmp_path, m).transform(data).toarray(), m.transform(data).toarray())


def test_multilabel_binarizer_cached_map_segfault(tmp_path: Path) -> None:
    from sklearn.preprocessing import MultiLabelBinarizer

    labels = [[1, 2], [3]]
    m = MultiLabelBinarizer().fit(labels)
    m.transform([[1]])  # fills the cache
    m._cached_dict = {1: 10**7, 2: 1, 3: 2}
    proven(
        tmp_path, m, "m.transform(X).toarray() if hasattr(m.transform(X), 'toarray') else None", labels, "_cached_dict"
    )


# --------------------------------------------------------------------------
# (c) gradient boosting: init_ output width vs the estimator grid
# --------------------------------------------------------------------------


def test_gradient_boosting_init_narrower_than_grid_aborts(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    m = GradientBoostingClassifier(n_estimators=3).fit(X, y)
    m.init_.class_prior_ = m.init_.class_prior_[:1].copy()
    m.init_.n_classes_ = 1
    proven(tmp_path, m, "m.predict(X)", X, "init_")


def test_gradient_boosting_custom_init_fails_closed(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    m = GradientBoostingClassifier(n_estimators=2, init=LogisticRegression()).fit(X, y)
    joblib.dump(m, tmp_path / "model.joblib")
    err = assert_load_refuses(tmp_path, "init_")
    assert "cannot be established" in str(err)


def test_gradient_boosting_default_inits_load(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    for m in (
        GradientBoostingClassifier(n_estimators=2).fit(X, y),
        GradientBoostingClassifier(n_estimators=2).fit(X, y % 2),
        GradientBoostingClassifier(n_estimators=2, init="zero").fit(X, y),
        GradientBoostingRegressor(n_estimators=2).fit(X, y),
        GradientBoostingRegressor(n_estimators=2, loss="quantile").fit(X, y),
    ):
        np.testing.assert_array_equal(loads(tmp_path, m).predict(X), m.predict(X))


# --------------------------------------------------------------------------
# (d) instance keys shadowing class attributes
# --------------------------------------------------------------------------


def test_svr_with_instance_impl_segfaults(tmp_path: Path) -> None:
    from sklearn.svm import SVR

    m = SVR().fit(X, y)
    n = m.support_.size
    m.__dict__["_impl"] = "c_svc"  # shadows SVR._impl = "epsilon_svr"
    m._n_support = np.array([n + 10**7, -(10**7)], dtype=np.int32)  # sums to n
    proven(tmp_path, m, "m.predict(X)", X, "_impl")


def test_svm_check_reads_impl_as_sklearn_does() -> None:
    from sklearn.svm import SVR

    from safeload._validators.svm import _check_libsvm

    m = SVR().fit(X, y)
    n = m.support_.size
    m.__dict__["_impl"] = "c_svc"
    m._n_support = np.array([n + 10**7, -(10**7)], dtype=np.int32)
    with pytest.raises(UnsafeModelError, match="_n_support"):
        _check_libsvm(m, "m")


def test_shadowing_a_method_is_refused(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression().fit(X, y)
    m.__dict__["predict"] = np.zeros(3)
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "predict")


def test_shadowing_a_class_constant_of_a_loss_is_refused(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    m = GradientBoostingClassifier(n_estimators=2).fit(X, y % 2)
    m._loss.__dict__["is_multiclass"] = True
    joblib.dump(m._loss, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "is_multiclass")
    joblib.dump(m, tmp_path / "model.joblib")  # the boosting check also sees the widened init output
    assert_load_refuses(tmp_path, "")


def test_shadow_keys_real_instances_carry_are_allowed(tmp_path: Path) -> None:
    from sklearn.linear_model import LassoLars

    m = LassoLars(positive=True).fit(X, y)  # LassoLars.positive is also a class attribute
    assert "positive" in vars(m)
    np.testing.assert_array_equal(loads(tmp_path, m).predict(X), m.predict(X))


# --------------------------------------------------------------------------
# (e) integers handed to the runtime
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1])
def test_kmeans_thread_count_aborts(tmp_path: Path, value: int) -> None:
    from sklearn.cluster import KMeans

    m = KMeans(3, n_init=1, random_state=0).fit(X)
    m._n_threads = value
    proven(tmp_path, m, "m.predict(X)", X, "_n_threads", abort_ok=True)


@pytest.mark.parametrize("value", [0, 10**9, 2**31, True, 2.0])
def test_thread_counts_out_of_range_refused(tmp_path: Path, value: Any) -> None:
    from sklearn.cluster import BisectingKMeans

    m = BisectingKMeans(3, random_state=0).fit(X)
    m._n_threads = value
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_n_threads")
    report = safeload.scan(tmp_path / "model.joblib")  # the walker's static mirror agrees
    assert not report.safe and "estimator-state" in [f.rule for f in report.findings], report.findings


# --------------------------------------------------------------------------
# (f) metric parameters handed to scipy / sklearn distance code
# --------------------------------------------------------------------------


def test_mahalanobis_params_smaller_than_features_segfault(tmp_path: Path) -> None:
    from sklearn.neighbors import NearestNeighbors

    wide = np.random.RandomState(0).rand(30, 3000)
    m = NearestNeighbors(metric="mahalanobis", metric_params={"VI": np.eye(3000)}, algorithm="brute").fit(wide)
    m.metric_params = {"VI": np.eye(1)}
    m.effective_metric_params_ = {"VI": np.eye(1)}
    m._fit_X = np.asfortranarray(m._fit_X)  # not C-ordered: sklearn hands the work to scipy's cdist
    proven(tmp_path, m, "m.kneighbors(X)", wide, "metric_params['VI']")


@pytest.mark.parametrize(
    ("metric", "params", "bad"),
    [
        ("seuclidean", {"V": np.ones(2)}, {"V": np.ones(1)}),
        ("minkowski", {"w": np.ones(6), "p": 3}, {"w": np.ones(7), "p": 3}),
        ("minkowski", {"p": 3}, {"p": -1}),
        ("minkowski", {"p": 3}, {"p": 3, "extra": np.ones(4)}),
    ],
)
def test_metric_parameter_shapes(tmp_path: Path, metric: str, params: dict[str, Any], bad: dict[str, Any]) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    good = KNeighborsClassifier(metric=metric, metric_params=params, algorithm="brute")
    if metric == "seuclidean":
        good.set_params(metric_params={"V": np.ones(6)})
    good.fit(X, y)
    np.testing.assert_array_equal(loads(tmp_path, good).predict(X[:5]), good.predict(X[:5]))
    good.metric_params = bad
    joblib.dump(good, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "metric_params")


# --------------------------------------------------------------------------
# (g) checks that used to fail open now fail closed
# --------------------------------------------------------------------------


def _hgb() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    Xc = X.copy()
    Xc[:, 0] = np.random.RandomState(0).randint(0, 4, len(X))
    return HistGradientBoostingClassifier(max_iter=2, categorical_features=[0]).fit(Xc, y)


def test_hgb_preprocessor_of_unknown_width_refused(tmp_path: Path) -> None:
    """A transformer whose output width cannot be computed: refused, not skipped."""
    from sklearn.feature_selection import VarianceThreshold

    m = _hgb()
    assert loads(tmp_path, m).predict(X[:3]).shape == (3,)
    ct = m._preprocessor
    name, trans, cols = ct.transformers_[1]
    ct.transformers_[1] = (name, VarianceThreshold().fit(X[:, 1:]), cols)
    joblib.dump(m, tmp_path / "model.joblib")
    err = assert_load_refuses(tmp_path, "_preprocessor.transformers_[1]")
    assert "cannot be established" in str(err)


def test_hgb_preprocessor_mask_of_wrong_length_refused(tmp_path: Path) -> None:
    m = _hgb()
    ct = m._preprocessor
    name, trans, cols = ct.transformers_[1]
    ct.transformers_[1] = (name, trans, np.ones(9, dtype=bool))
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_preprocessor.transformers_[1]")


def test_hgb_function_transformer_with_other_func_refused(tmp_path: Path) -> None:
    m = _hgb()
    ct = m._preprocessor
    ct.transformers_[1][1].func = np.log1p  # elementwise: width kept, still loads
    assert loads(tmp_path, m).predict(X[:3]).shape == (3,)
    ct = m._preprocessor
    ct.transformers_[1][1].func = np.mean  # allowlisted, and it collapses the columns
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_preprocessor.transformers_[1]", scan_gap=True)  # func: a global


# --------------------------------------------------------------------------
# found by the state fuzzer (fuzz/state_crashes/d2ad0f3573354ce7)
# --------------------------------------------------------------------------


def test_sparse_svc_probability_flag_without_platt_pairs_segfaults(tmp_path: Path) -> None:
    import scipy.sparse as sp
    from sklearn.svm import SVC

    data = sp.csr_matrix(X)
    m = SVC().fit(data, y)
    m._effective_probability = True  # libsvm then reads _probA/_probB, which are empty
    proven(tmp_path, m, "m.predict(X)", data, "_probA")


def test_dense_svc_probability_flag_without_platt_pairs_refused(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    m = SVC().fit(X, y)
    m._effective_probability = True
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_probA")
    good = SVC(probability=True, random_state=0).fit(X, y)
    np.testing.assert_array_equal(loads(tmp_path, good).predict_proba(X[:4]), good.predict_proba(X[:4]))


# --------------------------------------------------------------------------
# models pickled by other scikit-learn versions (README, Structural validation)
# --------------------------------------------------------------------------


def test_other_version_with_current_layout_loads(tmp_path: Path) -> None:
    from sklearn.preprocessing import OneHotEncoder

    m = OneHotEncoder().fit(XC)
    m._sklearn_version = "1.0"
    assert loads(tmp_path, m).transform(XC).shape == (100, 6)


def test_other_version_with_missing_native_state_fails_closed(tmp_path: Path) -> None:
    from sklearn.preprocessing import OneHotEncoder

    m = OneHotEncoder().fit(XC)
    m._sklearn_version = "1.0"
    del m._n_features_outs  # an older layout
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_n_features_outs")


# --------------------------------------------------------------------------
# (h) labels counted by numpy's bincount (found by the state fuzzer, seed 62)
# --------------------------------------------------------------------------


def test_voting_member_labels_near_int64_max_reach_bincount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hard voting hands a member's label to np.bincount, which sizes its output as max + 1: at
    2**63 - 1 that overflows and numpy writes 8 bytes before its buffer. Whether the process then
    dies depends on the heap (the fuzz workers died twice, seeds 41 and 62; a direct predict
    segfaulted once here and survived in CI), so this test proves the write is reached instead:
    plain joblib's model calls bincount with that label (intercepted before numpy runs it)."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    m = VotingClassifier([("lr", LogisticRegression(max_iter=500)), ("dt", DecisionTreeClassifier(random_state=0))],
                         voting="hard").fit(X, y)
    m.estimators_[1].classes_ = np.array([2**63 - 1, 1, 10**6])
    assert_reaches_bincount_overflow(tmp_path, m, "predict", monkeypatch)
    assert_load_refuses(tmp_path, "estimators_[1].classes_[0]")


def test_voting_members_with_good_labels_load(tmp_path: Path) -> None:
    from sklearn.ensemble import VotingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m = VotingClassifier([("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))),
                          ("lr2", LogisticRegression(max_iter=500))], voting="hard").fit(X, y)
    assert (loads(tmp_path, m).predict(X) == m.predict(X)).all()


# --------------------------------------------------------------------------
# stored counts that drive loops: PolynomialFeatures degrees (a hang, not a crash)
# --------------------------------------------------------------------------


def _poly(**kwargs: Any) -> Any:
    from sklearn.preprocessing import PolynomialFeatures

    return PolynomialFeatures(**kwargs).fit(X)


def test_polynomial_degree_that_never_ends_is_refused(tmp_path: Path) -> None:
    """Found by the state fuzzer (timeouts): with sparse input, transform walks every term of every
    degree up to the stored _max_degree. Proven here: plain joblib's transform has not returned after
    3 s (the healthy model takes milliseconds), then SIGALRM ends the child."""
    import scipy.sparse as sp

    m = _poly(degree=2)
    m._max_degree = 2**31
    assert_hangs(child(tmp_path, m, "m.transform(X)", sp.csr_matrix(X), alarm=3))
    assert_load_refuses(tmp_path, "_max_degree")


@pytest.mark.parametrize("attr", ["n_output_features_", "_n_out_full"])
def test_polynomial_widths_must_match_the_degrees(tmp_path: Path, attr: str) -> None:
    m = _poly(degree=(2, 3), interaction_only=True)
    setattr(m, attr, getattr(m, attr) + 1)
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, attr)


@pytest.mark.parametrize("kwargs", [
    {"degree": 0}, {"degree": 1, "include_bias": False}, {"degree": 3}, {"degree": (2, 3)},
    {"degree": (0, 2), "interaction_only": True}, {"degree": 9, "interaction_only": True, "include_bias": False},
])
def test_fitted_polynomial_features_load(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    m = _poly(**kwargs)
    assert np.allclose(loads(tmp_path, m).transform(X), m.transform(X))
    assert safeload.scan(tmp_path / "good.joblib").safe


# --------------------------------------------------------------------------
# found by an audit of inference paths (session 13): FeatureAgglomeration, HDBSCAN, precomputed
# neighbours, k-means without centers
# --------------------------------------------------------------------------


def test_feature_agglomeration_label_reaches_bincount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """transform pools with np.bincount(labels_): the VotingClassifier overflow, another owner. The
    crash is heap-dependent (SIGABRT in the audit), so the test proves the label reaches bincount."""
    from sklearn.cluster import FeatureAgglomeration

    m = FeatureAgglomeration(n_clusters=2).fit(X)
    m.labels_ = np.array([0, 1, 1, 0, 1, 2**63 - 1])
    assert_reaches_bincount_overflow(tmp_path, m, "transform", monkeypatch)
    assert_load_refuses(tmp_path, "labels_")


def test_hdbscan_linkage_children_index_the_union_find(tmp_path: Path) -> None:
    from sklearn.cluster import HDBSCAN

    m = HDBSCAN(min_cluster_size=3).fit(X[:40])
    tree = m._single_linkage_tree_.copy()
    tree["left_node"][0] = 10**12
    tree["value"][0] = 0.0  # below the cut: the row is merged
    m._single_linkage_tree_ = tree
    proven(tmp_path, m, "m.dbscan_clustering(cut_distance=0.5)", X, "_single_linkage_tree_")


@pytest.mark.parametrize("field", ["cluster_size", "node reuse"])
def test_hdbscan_linkage_must_be_a_tree(tmp_path: Path, field: str) -> None:
    from sklearn.cluster import HDBSCAN

    m = HDBSCAN(min_cluster_size=3).fit(X[:40])
    tree = m._single_linkage_tree_
    if field == "node reuse":
        tree = tree.copy()
        tree["right_node"][5] = tree["left_node"][5]
    else:
        tree = tree.astype([("left_node", np.intp), ("right_node", np.intp), ("value", np.float64),
                            ("cluster_size", np.int32)])
    m._single_linkage_tree_ = tree
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_single_linkage_tree_")


def test_precomputed_metric_on_a_feature_model(tmp_path: Path) -> None:
    """The victim's sparse X is read as a distance graph: its column indices become neighbour ids of
    a CSR with n_samples_fit_ columns, and sparsetools writes through them (audit: SIGSEGV/SIGABRT)."""
    import scipy.sparse as sp
    from sklearn.neighbors import KNeighborsTransformer

    m = KNeighborsTransformer(n_neighbors=2, algorithm="brute").fit(np.random.RandomState(0).rand(5, 3000))
    m.metric = m.effective_metric_ = "precomputed"
    joblib.dump(m, tmp_path / "model.joblib")
    data = sp.random(4, 3000, density=0.5, format="csr", random_state=0)
    # whether toarray() then kills the process depends on the heap; the out-of-range index does not
    graph = joblib.load(tmp_path / "model.joblib").transform(data)
    assert graph.shape[1] == 5 and graph.indices.max() >= graph.shape[1]
    assert_load_refuses(tmp_path, "metric")


def test_kmeans_needs_a_center(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans

    m = KMeans(3, n_init=1, random_state=0).fit(X)
    m.cluster_centers_ = m.cluster_centers_[:0]
    joblib.dump(m, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "cluster_centers_")


def test_healthy_cluster_and_precomputed_models_load(tmp_path: Path) -> None:
    from sklearn.cluster import HDBSCAN, FeatureAgglomeration
    from sklearn.neighbors import KNeighborsClassifier

    fa = FeatureAgglomeration(n_clusters=3).fit(X)
    assert np.allclose(loads(tmp_path, fa).transform(X), fa.transform(X))
    hdb = HDBSCAN(min_cluster_size=3).fit(X[:60])
    assert (loads(tmp_path, hdb).dbscan_clustering(0.8) == hdb.dbscan_clustering(0.8)).all()
    D = np.abs(X[:50, None, :] - X[None, :50, :]).sum(-1)
    knn = KNeighborsClassifier(n_neighbors=3, metric="precomputed").fit(D, y[:50])
    assert (loads(tmp_path, knn).predict(D[:10]) == knn.predict(D[:10])).all()


# --------------------------------------------------------------------------
# fitted state that hangs a method: random projections (LAPACK SVD), chi-squared sampler steps
# --------------------------------------------------------------------------


def _projection(kind: str, **kwargs: Any) -> Any:
    from sklearn.random_projection import GaussianRandomProjection, SparseRandomProjection

    cls = GaussianRandomProjection if kind == "gaussian" else SparseRandomProjection
    return cls(3, random_state=0, **kwargs).fit(X)


@pytest.mark.parametrize("kind", ["gaussian", "sparse"])
def test_random_projection_with_an_infinite_component_is_refused(tmp_path: Path, kind: str) -> None:
    """Found by the state fuzzer (timeouts): inverse_transform computes pinv(components_) with
    check_finite=False, and LAPACK's SVD never returns on an infinity. Proven on plain joblib: the
    child is still inside inverse_transform after 8 s (the healthy model takes milliseconds)."""
    m = _projection(kind)
    Z = m.transform(X)  # the user's projected data: finite
    if kind == "gaussian":
        m.components_[0, -1] = np.inf
    else:
        m.components_.data[0] = np.inf
    assert_hangs(child(tmp_path, m, "m.inverse_transform(X)", Z, alarm=8))
    assert_load_refuses(tmp_path, "components_")


@pytest.mark.parametrize("kind", ["gaussian", "sparse"])
@pytest.mark.parametrize("stored", [False, True])
def test_fitted_random_projections_load(tmp_path: Path, kind: str, stored: bool) -> None:
    m = _projection(kind, compute_inverse_components=stored)
    got = loads(tmp_path, m)
    assert np.allclose(got.transform(X), m.transform(X))
    assert np.allclose(got.inverse_transform(m.transform(X)), m.inverse_transform(m.transform(X)))
    assert safeload.scan(tmp_path / "good.joblib").safe


def test_chi2_sampler_steps_that_never_end_are_refused(tmp_path: Path) -> None:
    """transform loops (and allocates a block) once per sample_steps: 2**31 never returns. Proven on
    plain joblib: still inside transform after 5 s; the healthy sampler takes milliseconds."""
    from sklearn.kernel_approximation import AdditiveChi2Sampler

    Xp = np.abs(X)
    m = AdditiveChi2Sampler(sample_steps=2).fit(Xp)
    m.sample_steps, m.sample_interval = 2**31, 0.5
    assert_hangs(child(tmp_path, m, "m.transform(X)", Xp[:20], alarm=5))
    assert_load_refuses(tmp_path, "sample_steps")


@pytest.mark.parametrize("steps, interval", [(1, None), (2, None), (3, None), (7, 0.3), (1000, 0.01)])
def test_fitted_chi2_samplers_load(tmp_path: Path, steps: int, interval: float | None) -> None:
    from sklearn.kernel_approximation import AdditiveChi2Sampler

    m = AdditiveChi2Sampler(sample_steps=steps, sample_interval=interval).fit(np.abs(X))
    assert np.allclose(loads(tmp_path, m).transform(np.abs(X)), m.transform(np.abs(X)))
    assert safeload.scan(tmp_path / "good.joblib").safe
