"""Benign model zoo: real, fitted scikit-learn models for safeload tests and benchmarks.

The zoo holds one artifact per estimator of ``sklearn.utils.all_estimators()`` (default
parameters, or the minimal required ones for meta-estimators, fitted on small synthetic
data of the right kind) plus "realistic" extras: pipelines, a ColumnTransformer fitted on
a pandas DataFrame, text vectorizers, sparse input, numpy ufuncs, ``RandomState`` objects,
search CVs, categorical HistGradientBoosting, a dict bundle...

Every artifact is written in every format of ``FORMATS`` (pickle protocols 0-5, joblib raw,
joblib compressed with each compressor, skops).  Expected outputs are computed on the
original in-memory object; a loader is correct when the reloaded object reproduces them
exactly (``assert_same_outputs``).

Coverage (scikit-learn 1.9.1: 208 estimators + 3 experimental ones, all in the zoo):

* ``SKIPPED_ESTIMATORS`` is empty: every estimator is built.
* ``NON_DEFAULT_PARAMS``: the two random projections get ``n_components=3`` (their default
  ``"auto"`` needs thousands of features); meta-estimators get a simple base estimator
  (``_meta_constructors``); everything else keeps its defaults (incl. ``n_estimators``).
* ``UNSUPPORTED_FORMATS``: only Birch/skops (skops cannot dump Birch).  Protocols 0 and 1
  work for every artifact.
* Not compared: ``BernoulliRBM.score_samples`` (random by design); methods that raise on
  the probe (e.g. ``predict`` of a ``LocalOutlierFactor(novelty=False)``) are not used.
* Estimators left with ``random_state=None`` are fitted after ``np.random.seed(0)``, and
  fitting runs single-threaded, so builds are deterministic.

Library use::

    import zoo
    store = zoo.ensure_zoo("/tmp/zoo")              # builds once, then reuses the disk cache
    for name, fmt in zoo.cases():
        entry = store.entries[name]
        path = store.path(name, fmt)
        ...                                         # load path, then:
        zoo.assert_same_outputs(zoo.outputs(obj, entry.probe, entry.methods), entry.expected)

Command line::

    python tests/zoo.py --check      # build everything, reload with plain pickle/joblib/skops
    python tests/zoo.py --globals    # write tests/zoo_globals.txt (needs a built cache)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import io
import os
import pickle
import pickletools
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import joblib
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "EXTRA_BUILDERS",
    "FORMATS",
    "NON_DEFAULT_PARAMS",
    "PICKLE_FORMATS",
    "SKIPPED_ESTIMATORS",
    "UNSUPPORTED_FORMATS",
    "ArtifactSpec",
    "Zoo",
    "ZooEntry",
    "artifact_names",
    "artifact_specs",
    "assert_same_outputs",
    "build_spec",
    "cases",
    "default_cache_dir",
    "dump",
    "ensure_zoo",
    "load_plain",
    "outputs",
    "pickle_globals",
    "sklearn_estimators",
    "type_name",
    "write_formats",
]

# --------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------

PICKLE_FORMATS: tuple[str, ...] = tuple(f"pickle-p{p}" for p in range(6))
JOBLIB_COMPRESSORS: tuple[str, ...] = ("zlib", "gzip", "bz2", "xz", "lzma", "lz4")
JOBLIB_FORMATS: tuple[str, ...] = (
    "joblib",
    *(f"joblib-{c}" for c in JOBLIB_COMPRESSORS),
)
FORMATS: tuple[str, ...] = (*PICKLE_FORMATS, *JOBLIB_FORMATS, "skops")

#: Formats known not to work for an artifact, with the reason.  ``cases()`` leaves them
#: out; ``--check`` fails if this table is stale in either direction.
UNSUPPORTED_FORMATS: dict[str, dict[str, str]] = {
    "Birch": {"skops": "skops 0.16 refuses to dump Birch (UnsupportedTypeException)"},
}

#: Estimators of ``all_estimators()`` deliberately not in the zoo, with the reason.
SKIPPED_ESTIMATORS: dict[str, str] = {}

#: Estimators whose defaults cannot fit small data: (parameters used, why).
NON_DEFAULT_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "GaussianRandomProjection": (
        {"n_components": 3},
        "n_components='auto' (Johnson-Lindenstrauss) needs > 3500 features for 60 samples",
    ),
    "SparseRandomProjection": (
        {"n_components": 3},
        "n_components='auto' (Johnson-Lindenstrauss) needs > 3500 features for 60 samples",
    ),
}

#: Methods tried (in this order) to get comparable outputs from a fitted object.
PROBE_METHODS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "score_samples",
    "transform",
    "mahalanobis",
    "kneighbors",
)

#: Fitted attributes compared when present (covers fit-only estimators: DBSCAN, TSNE...).
PROBE_ATTRS: tuple[str, ...] = (
    "labels_",
    "embedding_",
    "negative_outlier_factor_",
    "row_labels_",
    "column_labels_",
    "core_sample_indices_",
)

N_SAMPLES = 60
N_PROBE = 12
SEED = 0


# --------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------

_WORDS = (
    ("apple", "banana", "cherry", "grape", "lemon", "mango"),
    ("car", "train", "plane", "boat", "bike", "truck"),
    ("red", "green", "blue", "yellow", "black", "white"),
)


@dataclass(frozen=True)
class Data:
    """All the small synthetic data sets the zoo fits on (deterministic)."""

    X: np.ndarray  # (60, 4) float64, three well separated classes
    y3: np.ndarray  # 3-class int labels
    y2: np.ndarray  # binary int labels
    ystr: np.ndarray  # 3-class string labels (object dtype)
    yr: np.ndarray  # regression target
    ypos: np.ndarray  # strictly positive regression target
    Yr2: np.ndarray  # (60, 2) multi-output regression target
    Yml: np.ndarray  # (60, 3) multilabel indicator target
    ysemi: np.ndarray  # y3 with -1 (unlabelled) for a third of the samples
    Xcount: np.ndarray  # (60, 6) non-negative integer counts
    Xnan: np.ndarray  # X with some NaN
    Xcat: np.ndarray  # (60, 2) object array of categories
    Xsparse: sp.csr_matrix  # sparse version of a mostly-zero X
    docs: list[str]  # 60 short documents, class-dependent words
    dicts: list[dict[str, float]]
    labelsets: list[tuple[str, ...]]
    images: np.ndarray  # (4, 20, 20) grey images
    K: np.ndarray  # (60, 60) linear kernel of X
    frame: pd.DataFrame  # numeric + categorical columns


@cache
def data() -> Data:
    """Return the deterministic synthetic data sets."""
    from sklearn.datasets import make_classification

    rng = np.random.RandomState(SEED)
    X, y3 = make_classification(
        n_samples=N_SAMPLES,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=SEED,
    )
    y2 = (y3 == 0).astype(np.int64)
    ystr = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y3]
    w = np.array([1.5, -2.0, 0.5, 1.0])
    yr = X @ w + 0.1 * rng.randn(N_SAMPLES) + 3.0
    ypos = np.exp(yr / 5.0)
    Yr2 = np.column_stack([yr, X @ w[::-1] + 0.1 * rng.randn(N_SAMPLES)])
    Yml = np.column_stack([y3 == 0, y3 == 1, X[:, 0] > 0]).astype(np.int64)
    ysemi = y3.copy()
    ysemi[rng.rand(N_SAMPLES) < 0.33] = -1
    lam = 1.0 + 3.0 * (y3[:, None] == np.arange(6)[None, :] % 3)
    Xcount = rng.poisson(lam).astype(np.float64)
    Xnan = X.copy()
    Xnan[rng.rand(*X.shape) < 0.1] = np.nan
    cats = np.array(["a", "b", "c"], dtype=object)
    Xcat = np.column_stack([cats[y3], cats[rng.randint(0, 3, N_SAMPLES)]])
    Xs = X.copy()
    Xs[np.abs(Xs) < 0.8] = 0.0
    docs = []
    for i, c in enumerate(y3):
        words = [_WORDS[c][(i + k) % 6] for k in range(3)] + [_WORDS[(c + 1) % 3][i % 6]]
        docs.append(" ".join(words))
    dicts = [{"f0": float(r[0]), "f1": float(r[1]), f"tag_{c}": 1.0} for r, c in zip(X, y3, strict=True)]
    labelsets = [tuple(sorted({f"l{c}", f"l{(c + i) % 4}"})) for i, c in enumerate(y3)]
    images = rng.rand(4, 20, 20)
    frame = pd.DataFrame(
        {
            "num0": X[:, 0],
            "num1": X[:, 1],
            "color": pd.Series(cats[y3], dtype=object),
            "size": pd.Series(np.array(["S", "M", "L"], dtype=object)[rng.randint(0, 3, N_SAMPLES)]),
        }
    )
    return Data(
        X=X,
        y3=y3,
        y2=y2,
        ystr=ystr,
        yr=yr,
        ypos=ypos,
        Yr2=Yr2,
        Yml=Yml,
        ysemi=ysemi,
        Xcount=Xcount,
        Xnan=Xnan,
        Xcat=Xcat,
        Xsparse=sp.csr_matrix(Xs),
        docs=docs,
        dicts=dicts,
        labelsets=labelsets,
        images=images,
        K=X @ X.T,
        frame=frame,
    )


# --------------------------------------------------------------------------------------
# Recipes: how each estimator is constructed and fitted
# --------------------------------------------------------------------------------------


def _kind_data(kind: str) -> tuple[tuple[Any, ...], Any]:
    """(fit arguments, probe) for a data ``kind`` (the kind of data an estimator needs)."""
    d = data()
    p = slice(0, N_PROBE)
    table: dict[str, tuple[tuple[Any, ...], Any]] = {
        "clf": ((d.X, d.y3), d.X[p]),
        "bin": ((d.X, d.y2), d.X[p]),
        "reg": ((d.X, d.yr), d.X[p]),
        "pos_reg": ((d.X, d.ypos), d.X[p]),
        "multireg": ((d.X, d.Yr2), d.X[p]),
        "multilabel": ((d.X, d.Yml), d.X[p]),
        "semi": ((d.X, d.ysemi), d.X[p]),
        "unsup": ((d.X,), d.X[p]),
        "count_clf": ((d.Xcount, d.y3), d.Xcount[p]),
        "count": ((d.Xcount,), d.Xcount[p]),
        "nan": ((d.Xnan,), d.Xnan[p]),
        "cat": ((d.Xcat,), d.Xcat[p]),
        "cat_clf": ((d.Xcat, d.y3), d.Xcat[p]),
        "text": ((d.docs,), d.docs[p]),
        "text_clf": ((d.docs, d.ystr), d.docs[p]),
        "dict": ((d.dicts,), d.dicts[p]),
        "labels": ((d.y3,), d.y3[p]),
        "labelsets": ((d.labelsets,), d.labelsets[p]),
        "images": ((d.images,), d.images[:2]),
        "kernel": ((d.K,), d.K[p]),
        "iso": ((d.X[:, 0], d.yr), d.X[p, 0]),
        "sparse_count": ((sp.csr_matrix(d.Xcount),), sp.csr_matrix(d.Xcount[p])),
        "frame": ((d.frame,), d.frame.iloc[p]),
        "frame_clf": ((d.frame, d.y3), d.frame.iloc[p]),
    }
    return table[kind]


#: Estimators whose data kind cannot be derived from their tags.
KIND_OVERRIDES: dict[str, str] = {
    "CCA": "multireg",
    "PLSCanonical": "multireg",
    "PLSSVD": "multireg",
    "MultiTaskElasticNet": "multireg",
    "MultiTaskElasticNetCV": "multireg",
    "MultiTaskLasso": "multireg",
    "MultiTaskLassoCV": "multireg",
    "GammaRegressor": "pos_reg",
    "PoissonRegressor": "pos_reg",
    "CategoricalNB": "count_clf",
    "ComplementNB": "count_clf",
    "MultinomialNB": "count_clf",
    "LatentDirichletAllocation": "count",
    "NMF": "count",
    "MiniBatchNMF": "count",
    "AdditiveChi2Sampler": "count",
    "SkewedChi2Sampler": "count",
    "SpectralBiclustering": "count",
    "SpectralCoclustering": "count",
    "TfidfTransformer": "sparse_count",
    "CountVectorizer": "text",
    "TfidfVectorizer": "text",
    "HashingVectorizer": "text",
    "DictVectorizer": "dict",
    "FeatureHasher": "dict",
    "LabelBinarizer": "labels",
    "LabelEncoder": "labels",
    "MultiLabelBinarizer": "labelsets",
    "PatchExtractor": "images",
    "KernelCenterer": "kernel",
    "IsotonicRegression": "iso",
    "KNNImputer": "nan",
    "IterativeImputer": "nan",
    "SimpleImputer": "nan",
    "MissingIndicator": "nan",
    "OneHotEncoder": "cat",
    "OrdinalEncoder": "cat",
    "TargetEncoder": "cat_clf",
    "LabelPropagation": "semi",
    "LabelSpreading": "semi",
    "GenericUnivariateSelect": "clf",
    "SelectFdr": "clf",
    "SelectFpr": "clf",
    "SelectFwe": "clf",
    "SelectKBest": "clf",
    "SelectPercentile": "clf",
    "NeighborhoodComponentsAnalysis": "clf",
}


def _lr() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression()


def _meta_constructors() -> dict[str, tuple[Callable[[], Any], str]]:
    """Estimators with required parameters: minimal constructor and data kind."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA, SparseCoder
    from sklearn.ensemble import (
        StackingClassifier,
        StackingRegressor,
        VotingClassifier,
        VotingRegressor,
    )
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.feature_selection import (
        RFE,
        RFECV,
        SelectFromModel,
        SequentialFeatureSelector,
    )
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import (
        FixedThresholdClassifier,
        GridSearchCV,
        HalvingGridSearchCV,
        HalvingRandomSearchCV,
        RandomizedSearchCV,
        TunedThresholdClassifierCV,
    )
    from sklearn.multiclass import (
        OneVsOneClassifier,
        OneVsRestClassifier,
        OutputCodeClassifier,
    )
    from sklearn.multioutput import (
        ClassifierChain,
        MultiOutputClassifier,
        MultiOutputRegressor,
        RegressorChain,
    )
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.semi_supervised import SelfTrainingClassifier
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    d = data()
    grid4 = {"C": [0.01, 0.1, 1.0, 10.0]}
    dictionary = d.X[:3] / np.linalg.norm(d.X[:3], axis=1, keepdims=True)

    def frozen() -> Any:
        return FrozenEstimator(_lr().fit(d.X, d.y3))

    def column_transformer() -> Any:
        return ColumnTransformer(
            [
                ("num", StandardScaler(), ["num0", "num1"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["color", "size"]),
            ]
        )

    return {
        "ClassifierChain": (lambda: ClassifierChain(_lr()), "multilabel"),
        "ColumnTransformer": (column_transformer, "frame"),
        "FeatureUnion": (
            lambda: FeatureUnion([("pca", PCA()), ("scaler", StandardScaler())]),
            "unsup",
        ),
        "FixedThresholdClassifier": (lambda: FixedThresholdClassifier(_lr()), "bin"),
        "FrozenEstimator": (frozen, "clf"),
        "GridSearchCV": (lambda: GridSearchCV(_lr(), {"C": [0.1, 1.0]}), "clf"),
        "HalvingGridSearchCV": (lambda: HalvingGridSearchCV(_lr(), grid4), "clf"),
        "HalvingRandomSearchCV": (lambda: HalvingRandomSearchCV(_lr(), grid4), "clf"),
        "MultiOutputClassifier": (lambda: MultiOutputClassifier(_lr()), "multilabel"),
        "MultiOutputRegressor": (lambda: MultiOutputRegressor(Ridge()), "multireg"),
        "OneVsOneClassifier": (lambda: OneVsOneClassifier(_lr()), "clf"),
        "OneVsRestClassifier": (lambda: OneVsRestClassifier(_lr()), "clf"),
        "OutputCodeClassifier": (lambda: OutputCodeClassifier(_lr()), "clf"),
        "Pipeline": (
            lambda: Pipeline([("scaler", StandardScaler()), ("clf", _lr())]),
            "clf",
        ),
        "RFE": (lambda: RFE(_lr()), "clf"),
        "RFECV": (lambda: RFECV(_lr()), "clf"),
        "RandomizedSearchCV": (
            lambda: RandomizedSearchCV(_lr(), grid4),
            "clf",
        ),
        "RegressorChain": (lambda: RegressorChain(Ridge()), "multireg"),
        "SelectFromModel": (lambda: SelectFromModel(_lr()), "clf"),
        "SelfTrainingClassifier": (lambda: SelfTrainingClassifier(_lr()), "semi"),
        "SequentialFeatureSelector": (lambda: SequentialFeatureSelector(_lr()), "clf"),
        "SparseCoder": (lambda: SparseCoder(dictionary=dictionary), "unsup"),
        "StackingClassifier": (
            lambda: StackingClassifier([("lr", _lr()), ("dt", DecisionTreeClassifier())]),
            "clf",
        ),
        "StackingRegressor": (
            lambda: StackingRegressor([("ridge", Ridge()), ("dt", DecisionTreeRegressor())]),
            "reg",
        ),
        "TunedThresholdClassifierCV": (
            lambda: TunedThresholdClassifierCV(_lr()),
            "bin",
        ),
        "VotingClassifier": (
            lambda: VotingClassifier([("lr", _lr()), ("dt", DecisionTreeClassifier())]),
            "clf",
        ),
        "VotingRegressor": (
            lambda: VotingRegressor([("ridge", Ridge()), ("dt", DecisionTreeRegressor())]),
            "reg",
        ),
    }


def _kind_from_tags(est: Any) -> str:
    """Derive the data kind of a default-constructed estimator from its sklearn tags."""
    from sklearn.utils import get_tags

    tags = get_tags(est)
    if tags.estimator_type == "classifier":
        return "count_clf" if tags.input_tags.positive_only else "clf"
    if tags.estimator_type == "regressor":
        if tags.target_tags.multi_output and not tags.target_tags.single_output:
            return "multireg"
        return "reg"
    if tags.target_tags.required:
        return "clf"
    return "count" if tags.input_tags.positive_only else "unsup"


def _fit(est: Any, kind: str) -> tuple[Any, Any]:
    """Fit ``est`` on the data of ``kind``; return (fitted object, probe)."""
    args, probe = _kind_data(kind)
    fitted = est.fit(*args)
    return (est if fitted is None else fitted), probe


def _estimator_builder(name: str, cls: type) -> Callable[[], tuple[Any, Any]]:
    """Builder of the zoo artifact of one ``all_estimators()`` entry."""

    def build() -> tuple[Any, Any]:
        metas = _meta_constructors()
        if name in metas:
            make, kind = metas[name]
            est = make()
        else:
            est = cls(**NON_DEFAULT_PARAMS.get(name, ({}, ""))[0])
            kind = KIND_OVERRIDES.get(name) or _kind_from_tags(est)
        return _fit(est, kind)

    return build


# --------------------------------------------------------------------------------------
# Extras: realistic objects beyond "one estimator with defaults"
# --------------------------------------------------------------------------------------


def _x_pipeline_scaler_pca_svc() -> tuple[Any, Any]:
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return _fit(make_pipeline(StandardScaler(), PCA(n_components=2), SVC()), "clf")


def _x_column_transformer_pipeline() -> tuple[Any, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    ct = ColumnTransformer(
        [
            ("num", StandardScaler(), ["num0", "num1"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color", "size"]),
        ],
        remainder="drop",
    )
    return _fit(Pipeline([("prep", ct), ("clf", _lr())]), "frame_clf")


def _x_text(vectorizer: str) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        from sklearn.feature_extraction.text import (
            CountVectorizer,
            HashingVectorizer,
            TfidfVectorizer,
        )
        from sklearn.linear_model import SGDClassifier
        from sklearn.naive_bayes import MultinomialNB
        from sklearn.pipeline import make_pipeline

        pipes = {
            "count": lambda: make_pipeline(CountVectorizer(), MultinomialNB()),
            "tfidf": lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), _lr()),
            "hashing": lambda: make_pipeline(HashingVectorizer(n_features=2**10), SGDClassifier()),
        }
        return _fit(pipes[vectorizer](), "text_clf")

    return build


def _x_sparse(estimator: str, container: str) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import TruncatedSVD
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import Ridge
        from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
        from sklearn.preprocessing import MaxAbsScaler
        from sklearn.svm import SVC, LinearSVC

        makers: dict[str, Callable[[], Any]] = {
            "LogisticRegression": _lr,
            "LinearSVC": LinearSVC,
            "SVC": SVC,
            "Ridge": Ridge,
            "KNeighborsClassifier": KNeighborsClassifier,
            "NearestNeighbors": NearestNeighbors,
            "RandomForestClassifier": RandomForestClassifier,
            "KMeans": KMeans,
            "TruncatedSVD": TruncatedSVD,
            "MaxAbsScaler": MaxAbsScaler,
        }
        d = data()
        convert: dict[str, Callable[[Any], Any]] = {
            "csr_matrix": sp.csr_matrix,
            "csc_matrix": sp.csc_matrix,
            "csr_array": sp.csr_array,
        }
        Xs = convert[container](d.Xsparse)
        est = makers[estimator]()
        y = d.yr if estimator == "Ridge" else d.y3
        supervised = estimator not in (
            "NearestNeighbors",
            "KMeans",
            "TruncatedSVD",
            "MaxAbsScaler",
        )
        if supervised:
            est.fit(Xs, y)
        else:
            est.fit(Xs)
        return est, Xs[:N_PROBE]

    return build


def _x_function_transformer_log1p() -> tuple[Any, Any]:
    from sklearn.preprocessing import FunctionTransformer

    return _fit(FunctionTransformer(np.log1p, inverse_func=np.expm1), "count")


def _x_transformed_target_log() -> tuple[Any, Any]:
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import Ridge

    est = TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, inverse_func=np.expm1)
    return _fit(est, "pos_reg")


def _x_random_state_object() -> tuple[Any, Any]:
    from sklearn.ensemble import RandomForestClassifier

    return _fit(RandomForestClassifier(random_state=np.random.RandomState(0)), "clf")


def _x_grid_search_pipeline() -> tuple[Any, Any]:
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    pipe = Pipeline([("scaler", StandardScaler()), ("svc", SVC())])
    grid = {"svc__C": [0.1, 1.0, 10.0], "svc__kernel": ["linear", "rbf"]}
    return _fit(GridSearchCV(pipe, grid), "clf")


def _x_hgb_categorical_mask() -> tuple[Any, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    d = data()
    Xc = np.column_stack([d.y3 * (d.X[:, 0] > 0), d.X[:, 1:]]).astype(np.float64)
    est = HistGradientBoostingClassifier(categorical_features=[True, False, False, False])
    return est.fit(Xc, d.y3), Xc[:N_PROBE]


def _x_hgb_categorical_pandas() -> tuple[Any, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    d = data()
    frame = d.frame.assign(
        color=d.frame["color"].astype("category"),
        size=d.frame["size"].astype("category"),
    )
    est = HistGradientBoostingClassifier(categorical_features="from_dtype")
    return est.fit(frame, d.y3), frame.iloc[:N_PROBE]


def _x_bundle() -> tuple[Any, Any]:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = data()
    model = make_pipeline(StandardScaler(), _lr()).fit(d.X, d.y3)
    bundle = {
        "model": model,
        "meta": {
            "name": "iris-like",
            "version": "1.2.0",
            "features": ["f0", "f1", "f2", "f3"],
            "classes": (0, 1, 2),
            "accuracy": np.float64(model.score(d.X, d.y3)),
            "n_samples": N_SAMPLES,
            "threshold": 0.5,
            "calibrated": False,
            "notes": None,
        },
    }
    return bundle, d.X[:N_PROBE]


def _x_set_output_pandas() -> tuple[Any, Any]:
    from sklearn.preprocessing import StandardScaler

    d = data()
    frame = d.frame[["num0", "num1"]]
    est = StandardScaler().set_output(transform="pandas").fit(frame)
    return est, frame.iloc[:N_PROBE]


def _x_string_labels(estimator: str) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        from sklearn.tree import DecisionTreeClassifier

        est = _lr() if estimator == "LogisticRegression" else DecisionTreeClassifier()
        d = data()
        return est.fit(d.X, d.ystr), d.X[:N_PROBE]

    return build


def _x_lof_novelty() -> tuple[Any, Any]:
    from sklearn.neighbors import LocalOutlierFactor

    return _fit(LocalOutlierFactor(novelty=True), "unsup")


#: Extra artifacts: name -> builder returning (fitted object, probe).
EXTRA_BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "x_pipeline_scaler_pca_svc": _x_pipeline_scaler_pca_svc,
    "x_column_transformer_df_pipeline": _x_column_transformer_pipeline,
    "x_text_count_multinomialnb": _x_text("count"),
    "x_text_tfidf_logreg": _x_text("tfidf"),
    "x_text_hashing_sgd": _x_text("hashing"),
    "x_sparse_csr_LogisticRegression": _x_sparse("LogisticRegression", "csr_matrix"),
    "x_sparse_csr_LinearSVC": _x_sparse("LinearSVC", "csr_matrix"),
    "x_sparse_csr_SVC": _x_sparse("SVC", "csr_matrix"),
    "x_sparse_csc_Ridge": _x_sparse("Ridge", "csc_matrix"),
    "x_sparse_csr_KNeighborsClassifier": _x_sparse("KNeighborsClassifier", "csr_matrix"),
    "x_sparse_csr_array_NearestNeighbors": _x_sparse("NearestNeighbors", "csr_array"),
    "x_sparse_csc_RandomForestClassifier": _x_sparse("RandomForestClassifier", "csc_matrix"),
    "x_sparse_csr_KMeans": _x_sparse("KMeans", "csr_matrix"),
    "x_sparse_csr_TruncatedSVD": _x_sparse("TruncatedSVD", "csr_matrix"),
    "x_sparse_csr_array_MaxAbsScaler": _x_sparse("MaxAbsScaler", "csr_array"),
    "x_function_transformer_log1p": _x_function_transformer_log1p,
    "x_transformed_target_log1p": _x_transformed_target_log,
    "x_random_state_object_forest": _x_random_state_object,
    "x_grid_search_pipeline": _x_grid_search_pipeline,
    "x_hgb_categorical_mask": _x_hgb_categorical_mask,
    "x_hgb_categorical_pandas": _x_hgb_categorical_pandas,
    "x_bundle_dict": _x_bundle,
    "x_set_output_pandas": _x_set_output_pandas,
    "x_string_labels_LogisticRegression": _x_string_labels("LogisticRegression"),
    "x_string_labels_DecisionTreeClassifier": _x_string_labels("DecisionTreeClassifier"),
    "x_lof_novelty": _x_lof_novelty,
}


# --------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------


@dataclass
class ArtifactSpec:
    """One zoo artifact: the fitted object, its probe input and output methods."""

    name: str
    obj: Any
    probe: Any
    methods: tuple[str, ...]
    fit_seconds: float = 0.0
    nondeterministic: tuple[str, ...] = ()


@cache
def sklearn_estimators() -> tuple[tuple[str, type], ...]:
    """``all_estimators()`` with the experimental estimators enabled (stable answer)."""
    from sklearn.experimental import (  # noqa: F401 - enabling imports
        enable_halving_search_cv,
        enable_iterative_imputer,
    )
    from sklearn.utils import all_estimators

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(all_estimators())


def _builders() -> dict[str, Callable[[], tuple[Any, Any]]]:
    builders = {
        name: _estimator_builder(name, cls) for name, cls in sklearn_estimators() if name not in SKIPPED_ESTIMATORS
    }
    builders.update(EXTRA_BUILDERS)
    return builders


def artifact_names() -> list[str]:
    """Names of all zoo artifacts, in a stable order (cheap: nothing is fitted)."""
    return list(_builders())


def cases() -> list[tuple[str, str]]:
    """All (artifact name, format) pairs expected to work."""
    return [(name, fmt) for name in artifact_names() for fmt in FORMATS if fmt not in UNSUPPORTED_FORMATS.get(name, {})]


@cache
def _threadpools() -> Any:
    """One threadpoolctl controller (creating one costs ~2 ms; using it ~0.1 ms)."""
    import sklearn.ensemble  # noqa: F401 - load sklearn's OpenMP runtime first
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings, no float errors, one native thread (deterministic and no oversubscription)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"), _threadpools().limit(limits=1):
        warnings.simplefilter("ignore")
        yield


def build_spec(name: str) -> ArtifactSpec:
    """Fit the artifact ``name`` (deterministically) and detect its output methods."""
    builder = _builders()[name]
    np.random.seed(SEED)  # estimators left with random_state=None draw from the global RNG
    start = time.perf_counter()
    with _quiet():
        obj, probe = builder()
    elapsed = time.perf_counter() - start
    methods, nondet = _detect_methods(obj, probe)
    if not methods:
        raise RuntimeError(f"zoo artifact {name!r} has no comparable output")
    return ArtifactSpec(name, obj, probe, methods, elapsed, nondet)


def artifact_specs(names: Sequence[str] | None = None) -> list[ArtifactSpec]:
    """Build (fit) the given artifacts, or all of them."""
    return [build_spec(n) for n in (artifact_names() if names is None else names)]


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------
# A method string is one of:
#   "predict" (any name in PROBE_METHODS): ``obj.predict(probe)``
#   "attr:labels_": the fitted attribute ``obj.labels_``
#   "key:model|predict": apply the rest to ``obj["model"]``;  "key:meta|value": ``obj["meta"]``


def _apply(obj: Any, method: str, probe: Any) -> Any:
    if method.startswith("key:"):
        key, _, rest = method[4:].partition("|")
        return _apply(obj[key], rest, probe)
    if method == "value":
        return obj
    if method.startswith("attr:"):
        return getattr(obj, method[5:])
    return getattr(obj, method)(probe)


def _candidate_methods(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        found = []
        for key, value in obj.items():
            if hasattr(value, "get_params"):
                found += [f"key:{key}|{m}" for m in _candidate_methods(value)]
            else:
                found.append(f"key:{key}|value")
        return found
    cands = [m for m in PROBE_METHODS if _has(obj, m)]
    cands += [f"attr:{a}" for a in PROBE_ATTRS if _has(obj, a)]
    return cands


def _has(obj: Any, name: str) -> bool:
    try:
        return hasattr(obj, name)
    except Exception:  # noqa: BLE001 - some available_if checks raise other errors
        return False


def _detect_methods(obj: Any, probe: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Methods that succeed on ``probe`` and give the same answer twice."""
    ok: list[str] = []
    nondet: list[str] = []
    for method in _candidate_methods(obj):
        try:
            with _quiet():
                first = _apply(obj, method, probe)
                second = _apply(obj, method, probe)
        except Exception:  # noqa: BLE001 - a method that fails is not an output
            continue
        try:
            _assert_same(first, second, method)
        except AssertionError:
            nondet.append(method)
            continue
        ok.append(method)
    return tuple(ok), tuple(nondet)


def outputs(obj: Any, probe: Any, methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Comparable outputs of ``obj`` on ``probe`` (auto-detects methods when not given)."""
    if methods is None:
        methods = _detect_methods(obj, probe)[0]
    with _quiet():
        return {m: _apply(obj, m, probe) for m in methods}


def assert_same_outputs(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Require exactly equal outputs (same keys, dtypes, shapes, values; NaN == NaN)."""
    assert list(actual) == list(expected), f"methods differ: {list(actual)} != {list(expected)}"
    for key, value in expected.items():
        _assert_same(actual[key], value, key)


def _assert_same(a: Any, b: Any, where: str) -> None:
    if sp.issparse(b):
        assert sp.issparse(a), f"{where}: expected sparse, got {type(a).__name__}"
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a.toarray(), b.toarray(), err_msg=where, strict=True)
    elif isinstance(b, pd.DataFrame | pd.Series):
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        if isinstance(b, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        else:
            pd.testing.assert_series_equal(a, b, check_exact=True)
    elif isinstance(b, dict):
        assert isinstance(a, dict), f"{where}: expected dict, got {type(a).__name__}"
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in b:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(b, tuple | list):
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray), f"{where}: expected ndarray, got {type(a).__name__}"
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    else:
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        if isinstance(b, float | np.floating) and np.isnan(b):
            assert np.isnan(a), f"{where}: {a!r} != nan"
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"


# --------------------------------------------------------------------------------------
# Writing and plain (unsafe, reference) loading
# --------------------------------------------------------------------------------------


def type_name(obj: Any) -> str:
    """``module.qualname`` of ``type(obj)``."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _suffix(fmt: str) -> str:
    if fmt.startswith("pickle"):
        return ".pkl"
    return ".skops" if fmt == "skops" else ".joblib"


def dump(obj: Any, path: str | os.PathLike[str], fmt: str) -> None:
    """Write ``obj`` to ``path`` in format ``fmt`` (one of ``FORMATS``)."""
    if fmt in PICKLE_FORMATS:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=int(fmt[-1]))
    elif fmt == "joblib":
        joblib.dump(obj, path)
    elif fmt in JOBLIB_FORMATS:
        joblib.dump(obj, path, compress=(fmt.removeprefix("joblib-"), 3))
    elif fmt == "skops":
        import skops.io

        skops.io.dump(obj, path)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def load_plain(path: str | os.PathLike[str], fmt: str) -> Any:
    """Reference loader: plain pickle / joblib / skops (trusting the file: zoo files only)."""
    if fmt in PICKLE_FORMATS:
        with open(path, "rb") as f:
            return pickle.load(f)
    if fmt in JOBLIB_FORMATS:
        return joblib.load(path)
    import skops.io

    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))


def write_formats(
    obj: Any, directory: str | os.PathLike[str], formats: Sequence[str] = FORMATS
) -> tuple[dict[str, Path], dict[str, str]]:
    """Write ``obj`` in every format into ``directory``.

    Returns (format -> path of the files written, format -> error of the dumps that failed).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    errors: dict[str, str] = {}
    for fmt in formats:
        path = directory / f"{fmt}{_suffix(fmt)}"
        try:
            with _quiet():
                dump(obj, path, fmt)
        except Exception as exc:  # noqa: BLE001 - recorded, checked against UNSUPPORTED_FORMATS
            path.unlink(missing_ok=True)
            errors[fmt] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        else:
            written[fmt] = path
    return written, errors


# --------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------


@dataclass
class ZooEntry:
    """What the tests need about one artifact (the fitted object itself is not kept)."""

    name: str
    probe: Any
    methods: tuple[str, ...]
    expected: dict[str, Any]
    files: dict[str, str]  # format -> path relative to the zoo directory
    errors: dict[str, str]  # format -> why the dump failed
    fit_seconds: float
    nondeterministic: tuple[str, ...] = ()
    type_name: str = ""  # "module.qualname" of the artifact's top-level object


@dataclass
class Zoo:
    """A built zoo on disk."""

    directory: Path
    entries: dict[str, ZooEntry]
    build_seconds: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)

    def path(self, name: str, fmt: str) -> Path:
        """Path of artifact ``name`` in format ``fmt``; KeyError if it was not written."""
        entry = self.entries[name]
        if fmt not in entry.files:
            raise KeyError(f"{name} was not written as {fmt}: {entry.errors.get(fmt, 'not built')}")
        return self.directory / entry.files[fmt]


_MANIFEST = "manifest.pkl"


def _versions() -> dict[str, str]:
    import scipy
    import sklearn
    import skops

    return {
        "python": sys.version.split()[0],
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
        "skops": skops.__version__,
        "pandas": pd.__version__,
    }


def _cache_key() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(repr(sorted(_versions().items())).encode())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$SAFELOAD_ZOO_CACHE`` or ``tests/.zoo_cache`` next to this file."""
    env = os.environ.get("SAFELOAD_ZOO_CACHE")
    return Path(env) if env else Path(__file__).resolve().parent / ".zoo_cache"


def ensure_zoo(cache_dir: str | os.PathLike[str] | None = None, *, verbose: bool = False) -> Zoo:
    """Build the zoo into ``cache_dir/<key>`` unless a complete build is already there.

    Safe to call from several processes at once (pytest-xdist workers): a file lock makes
    one process build while the others wait and then read the manifest.  ``<key>`` hashes
    this file and the library versions, so an edit or an upgrade triggers a rebuild.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    directory = root / _cache_key()
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            manifest = directory / _MANIFEST
            if manifest.exists():
                with open(manifest, "rb") as f:
                    state = pickle.load(f)
                return Zoo(
                    directory=directory,
                    entries={n: ZooEntry(**e) for n, e in state["entries"].items()},
                    build_seconds=state["build_seconds"],
                    meta=state["meta"],
                )
            _remove_stale(root, keep=directory)
            shutil.rmtree(directory, ignore_errors=True)  # an interrupted build
            zoo = _build(directory, verbose=verbose)
            tmp = directory / (_MANIFEST + ".tmp")
            state = {  # plain data: no zoo classes, whatever name this module runs under
                "entries": {n: dataclasses.asdict(e) for n, e in zoo.entries.items()},
                "build_seconds": zoo.build_seconds,
                "meta": zoo.meta,
            }
            with open(tmp, "wb") as f:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(manifest)
            return zoo
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_stale(root: Path, keep: Path, max_age: float = 3600.0) -> None:
    """Remove builds for other keys, unless recent (a concurrent session may use them)."""
    now = time.time()
    for stale in root.iterdir():
        if stale.is_dir() and stale != keep and now - stale.stat().st_mtime > max_age:
            shutil.rmtree(stale, ignore_errors=True)


def _build(directory: Path, *, verbose: bool = False) -> Zoo:
    start = time.perf_counter()
    entries: dict[str, ZooEntry] = {}
    for name in artifact_names():
        spec = build_spec(name)
        expected = outputs(spec.obj, spec.probe, spec.methods)
        written, errors = write_formats(spec.obj, directory / name)
        entries[name] = ZooEntry(
            name=name,
            probe=spec.probe,
            methods=spec.methods,
            expected=expected,
            files={fmt: str(p.relative_to(directory)) for fmt, p in written.items()},
            errors=errors,
            fit_seconds=spec.fit_seconds,
            nondeterministic=spec.nondeterministic,
            type_name=type_name(spec.obj),
        )
        if verbose:
            print(f"  built {name:45s} fit {spec.fit_seconds:6.2f}s  {','.join(spec.methods)}")
    return Zoo(directory, entries, time.perf_counter() - start, _versions())


# --------------------------------------------------------------------------------------
# Globals in the pickles (for the default allowlist)
# --------------------------------------------------------------------------------------

_STRING_OPS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def pickle_globals(data: bytes) -> list[str]:
    """Globals a plain pickle stream names, statically (``pickletools.genops``).

    GLOBAL/INST carry "module name" as operand; STACK_GLOBAL takes the two strings on top
    of the stack, pushed by string opcodes or fetched from the memo.  Names are returned as
    written (protocol < 3 streams use Python 2 names, e.g. ``copy_reg._reconstructor``).
    Raises on streams that are not plain pickles (e.g. joblib files with raw array data).
    """
    names: list[str] = []
    recent: list[Any] = []  # shadow of the top of the stack (strings only; None otherwise)
    memo: dict[Any, Any] = {}
    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        opname = op.name
        if opname in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            names.append(f"{module}.{qualname}")
            recent.append(None)
        elif opname == "STACK_GLOBAL":
            module, qualname = recent[-2], recent[-1]
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise ValueError("STACK_GLOBAL operands are not strings")
            names.append(f"{module}.{qualname}")
            del recent[-2:]
            recent.append(None)
        elif opname in _STRING_OPS:
            recent.append(arg if isinstance(arg, str) else None)
        elif opname in _GET_OPS:
            recent.append(memo.get(arg))
        elif opname == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif opname in _PUT_OPS:
            memo[arg] = recent[-1] if recent else None
        elif opname not in ("FRAME", "PROTO"):
            recent.append(None)
        del recent[:-4]
    return names


def canonical_global(name: str) -> str:
    """Map a Python 2 name written by protocol < 3 pickles to the name Python 3 imports."""
    import _compat_pickle

    module, _, qualname = name.rpartition(".")
    if (module, qualname) in _compat_pickle.NAME_MAPPING:
        module, qualname = _compat_pickle.NAME_MAPPING[(module, qualname)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{qualname}"


def joblib_globals(path: str | os.PathLike[str]) -> list[str]:
    """Globals a joblib file asks for, recorded by loading it (zoo files only: trusted)."""
    from joblib import numpy_pickle

    seen: list[str] = []
    original = numpy_pickle.NumpyUnpickler.find_class

    def recording(self: Any, module: str, name: str) -> Any:
        seen.append(f"{module}.{name}")
        return original(self, module, name)

    with mock.patch.object(numpy_pickle.NumpyUnpickler, "find_class", recording), _quiet():
        joblib.load(path)
    return seen


def collect_globals(zoo: Zoo) -> dict[str, set[str]]:
    """Canonical global name -> set of formats (and raw aliases) it appears in."""
    found: dict[str, set[str]] = {}
    for name, entry in zoo.entries.items():
        for fmt in entry.files:
            path = zoo.path(name, fmt)
            if fmt in PICKLE_FORMATS:
                raw = pickle_globals(path.read_bytes())
            elif fmt in JOBLIB_FORMATS:
                raw = joblib_globals(path)
            else:
                continue
            for g in raw:
                canon = canonical_global(g)
                found.setdefault(canon, set()).add(fmt)
                if canon != g:
                    found[canon].add(f"alias:{g}")
    return found


# --------------------------------------------------------------------------------------
# Self-check (plain pickle/joblib/skops) and CLI
# --------------------------------------------------------------------------------------


def check(zoo: Zoo) -> list[str]:
    """Reload every file with the reference loaders and compare outputs; return problems."""
    problems: list[str] = []
    known = {n for n, _ in sklearn_estimators()}
    missing = known - set(zoo.entries) - set(SKIPPED_ESTIMATORS)
    problems += [f"{n}: in all_estimators() but neither built nor skipped" for n in missing]
    problems += [f"{n}: listed as skipped but no longer in all_estimators()" for n in set(SKIPPED_ESTIMATORS) - known]
    for name, entry in zoo.entries.items():
        unsupported = UNSUPPORTED_FORMATS.get(name, {})
        for fmt in FORMATS:
            if fmt in entry.errors and fmt not in unsupported:
                problems.append(f"{name} [{fmt}]: dump failed: {entry.errors[fmt]}")
            if fmt in entry.files and fmt in unsupported:
                problems.append(f"{name} [{fmt}]: listed unsupported but dump worked")
        for fmt in entry.files:
            try:
                with _quiet():
                    obj = load_plain(zoo.path(name, fmt), fmt)
                assert_same_outputs(outputs(obj, entry.probe, entry.methods), entry.expected)
            except Exception as exc:  # noqa: BLE001 - collected and reported
                problems.append(f"{name} [{fmt}]: reload: {type(exc).__name__}: {exc}"[:400])
    return problems


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="reload with plain loaders")
    parser.add_argument(
        "--globals",
        type=Path,
        nargs="?",
        const=Path(__file__).with_name("zoo_globals.txt"),
        default=None,
        help="write the sorted globals list",
    )
    parser.add_argument("--report", action="store_true", help="print per-artifact details")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    zoo = ensure_zoo(args.cache_dir, verbose=args.report)
    print(
        f"zoo at {zoo.directory}: {len(zoo.entries)} artifacts, "
        f"built in {zoo.build_seconds:.1f}s (this call {time.perf_counter() - start:.1f}s)"
    )
    n_files = sum(len(e.files) for e in zoo.entries.values())
    print(f"{n_files} files in {len(FORMATS)} formats; {len(cases())} expected cases")
    slow = sorted((e.fit_seconds, n) for n, e in zoo.entries.items() if e.fit_seconds > 1.0)
    for seconds, name in reversed(slow):
        print(f"  slow fit: {name} {seconds:.1f}s")
    for name, entry in zoo.entries.items():
        if entry.nondeterministic:
            print(f"  not compared (nondeterministic): {name}: {entry.nondeterministic}")
        for fmt, err in entry.errors.items():
            print(f"  dump failed: {name} [{fmt}]: {err}")
    status = 0
    if args.check:
        t0 = time.perf_counter()
        problems = check(zoo)
        for p in problems:
            print("PROBLEM", p)
        print(f"check: {len(problems)} problems ({time.perf_counter() - t0:.1f}s)")
        status = 1 if problems else 0
    if args.globals is not None:
        found = collect_globals(zoo)
        args.globals.write_text("".join(f"{g}\n" for g in sorted(found)))
        print(f"{len(found)} globals written to {args.globals}")
        if args.report:
            for g in sorted(found):
                print(f"  {g}: {' '.join(sorted(found[g]))}")
    return status


if __name__ == "__main__":
    sys.exit(_main())
