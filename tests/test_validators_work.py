"""Inference-time work a stored number decides (safeload/_validators/work.py).

Each case takes a real fitted model, changes one stored number (every name stays allowed), and
PROVES in a child process that plain ``joblib.load`` + the model's ordinary method on a tiny input
either does not return within seconds (the healthy model takes milliseconds) or runs out of a
1.5 GiB address space; ``safeload.load`` refuses the same file naming the attribute, ``scan``
agrees, and the untouched model loads and predicts the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from test_validators_native import assert_hangs, assert_load_refuses, child

import safeload
from safeload._validators.work import backtracking_problem

pytest.importorskip("sklearn")

from sklearn.datasets import make_classification  # noqa: E402

X, y = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)
XP = np.abs(X)
DOCS = ["the cat sat on the mat", "a dog and a cat", "the mat was red"]
LIMIT = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29)); "


def _nmf() -> Any:
    from sklearn.decomposition import NMF

    return NMF(3, solver="mu", max_iter=400, random_state=0).fit(XP)


def _minibatch_nmf() -> Any:
    from sklearn.decomposition import MiniBatchNMF

    return MiniBatchNMF(3, random_state=0).fit(XP)


def _lda() -> Any:
    from sklearn.decomposition import LatentDirichletAllocation

    return LatentDirichletAllocation(3, random_state=0).fit(np.round(XP * 3))


def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer().fit(DOCS)


def _count_sketch() -> Any:
    from sklearn.kernel_approximation import PolynomialCountSketch

    return PolynomialCountSketch(n_components=20, random_state=0).fit(X)


def _spline() -> Any:
    from sklearn.preprocessing import SplineTransformer

    return SplineTransformer(include_bias=False).fit(X)


def _hgb() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=5).fit(X, y)


def _knn_manhattan() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(metric="manhattan", algorithm="brute").fit(X, y)  # (predict: ArgKminClassMode)


def _dummy_regressor() -> Any:
    from sklearn.dummy import DummyRegressor

    return DummyRegressor().fit(X, X[:, :2])


def _dummy_classifier() -> Any:
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="uniform").fit(X, y)


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(5, random_state=0).fit(X, y)


def _forest_regressor() -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(5, random_state=0).fit(X, X[:, :2])


def _tree() -> Any:
    from sklearn.tree import ExtraTreeClassifier

    return ExtraTreeClassifier(random_state=0).fit(X, y)


def _bagging() -> Any:
    from sklearn.ensemble import BaggingClassifier

    return BaggingClassifier(n_estimators=3, random_state=0).fit(X, y)


def _lle() -> Any:
    from sklearn.manifold import LocallyLinearEmbedding

    return LocallyLinearEmbedding(n_neighbors=8, n_components=2, random_state=0).fit(X)


def _sparse_coder() -> Any:
    """Two atoms at an angle of 1e-5 and a signal along their difference: coordinate descent
    converges at a rate of about 1 - 1e-10 per sweep (scikit-learn fixes lasso_cd's tol at 1e-8),
    so 10**9 sweeps (~30 s here) all run."""
    from sklearn.decomposition import SparseCoder

    return SparseCoder(dictionary=_ATOMS, transform_algorithm="lasso_cd", transform_alpha=1e-9,
                       transform_max_iter=1000)


def _atoms() -> tuple[Any, Any]:
    rng = np.random.RandomState(0)
    a = rng.randn(5)
    a /= np.linalg.norm(a)
    b = rng.randn(5)
    b -= a * (a @ b)
    b /= np.linalg.norm(b)
    return np.vstack([a, a * np.sqrt(1 - 1e-10) + 1e-5 * b]), (b * 10)[None, :]


_ATOMS, _ALONG = _atoms()


def _set(**values: Any) -> Callable[[Any], None]:
    def tamper(m: Any) -> None:
        for name, value in values.items():
            setattr(m, name, value)

    return tamper


BIG = 10**9
LONG_DOC = [" ".join(f"w{k}" for k in range(3000))]

# name: (model, tamper, action in the child, input, "hang" | "memory", fragment load names)
CASES: dict[str, tuple[Callable[[], Any], Callable[[Any], None], str, Any, str, str]] = {
    "nmf-max-iter": (_nmf, _set(max_iter=BIG, tol=0.0), "m.transform(X)", XP[:2], "hang", "max_iter"),
    "minibatch-nmf-transform-max-iter": (_minibatch_nmf, _set(_transform_max_iter=BIG, tol=0.0), "m.transform(X)",
                                         XP[:2], "hang", "_transform_max_iter"),
    "lda-doc-iterations": (_lda, _set(max_doc_update_iter=BIG, mean_change_tol=0.0), "m.transform(X)",
                           np.round(XP[:2] * 3), "hang", "max_doc_update_iter"),
    "sparse-coding-iterations": (_sparse_coder, _set(transform_max_iter=BIG), "m.transform(X)", _ALONG, "hang",
                                 "transform_max_iter"),
    "ngram-range": (_vectorizer, _set(ngram_range=(1, BIG)), "m.transform(X)", LONG_DOC, "hang", "ngram_range"),
    # (state fuzz seed 3132: a negative min_n; word and character n-grams alike)
    "ngram-range-negative-min": (_vectorizer, _set(ngram_range=(-BIG, 2)), LIMIT + "m.transform(X)", DOCS[:1],
                                 "memory", "ngram_range"),
    "char-ngram-negative-min": (_vectorizer, _set(analyzer="char_wb", ngram_range=(-BIG, 2)), LIMIT + "m.transform(X)",
                                DOCS[:1], "memory", "ngram_range"),
    "token-pattern": (_vectorizer, _set(token_pattern=r"(?:a|a)+b"), "m.transform(X)", ["a" * 40], "hang",
                      "token_pattern"),
    "minibatch-nmf-width": (_minibatch_nmf, _set(_n_components=BIG), LIMIT + "m.transform(X)", XP[:2], "memory",
                            "_n_components"),
    "count-sketch-width": (_count_sketch, _set(n_components=BIG), LIMIT + "m.transform(X)", X[:2], "memory",
                           "n_components"),
    "spline-width": (_spline, _set(n_features_out_=BIG), LIMIT + "m.transform(X)", X[:2], "memory",
                     "n_features_out_"),
    "hgb-trees-per-iteration": (_hgb, _set(n_trees_per_iteration_=BIG), LIMIT + "m.predict(X)", X[:2], "memory",
                                "n_trees_per_iteration_"),
    "dummy-regressor-outputs": (_dummy_regressor, _set(n_outputs_=BIG), LIMIT + "m.predict(X)", X[:2], "memory",
                                "n_outputs_"),
    "dummy-classifier-classes": (_dummy_classifier, _set(n_classes_=BIG), LIMIT + "m.predict_proba(X)", X[:2],
                                 "memory", "n_classes_"),
    "forest-classes": (_forest, _set(n_classes_=BIG), LIMIT + "m.predict_proba(X)", X[:2], "memory", "n_classes_"),
    "forest-outputs": (_forest_regressor, _set(n_outputs_=BIG), LIMIT + "m.predict(X)", X[:2], "memory",
                       "n_outputs_"),
    "tree-outputs": (_tree, _set(n_outputs_=BIG), LIMIT + "m.predict(X)", X[:2], "memory", "n_outputs_"),
    "forest-classifier-outputs": (_forest, _set(n_outputs_=BIG), LIMIT + "m.predict(X)", X[:2], "memory",
                                  "n_outputs_"),
    "bagging-classes": (_bagging, _set(n_classes_=BIG), LIMIT + "m.predict_proba(X)", X[:2], "memory", "n_classes_"),
    "lle-width": (_lle, _set(n_components=BIG), LIMIT + "m.transform(X)", X[:2], "memory", "n_components"),
    # (state fuzz seed 1919: ArgKminClassMode allocates the heaps before kneighbors' own check)
    "knn-neighbors": (_knn_manhattan, _set(n_neighbors=BIG), LIMIT + "m.predict(X)", X[:2], "memory",
                      "n_neighbors"),
}


def test_a_knn_asking_for_more_neighbours_than_it_holds_still_loads(tmp_path: Path) -> None:
    """Below the cap, n_neighbors > n_samples_fit_ is a model scikit-learn fits and predicts with."""
    model = _knn_manhattan()
    model.n_neighbors = 500  # > the 120 samples it holds
    joblib.dump(model, tmp_path / "m.joblib")
    assert (safeload.load(tmp_path / "m.joblib").predict(X) == model.predict(X)).all()
    assert safeload.scan(tmp_path / "m.joblib").safe


def assert_exhausts(proc: Any) -> None:
    """The method ran out of the child's address space (the healthy model needs a few KB)."""
    assert proc.stdout.startswith("loaded") and "survived" not in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    assert "MemoryError" in proc.stderr or "bad_alloc" in proc.stderr or proc.returncode < 0, proc.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stored_number_that_hangs_or_exhausts_is_refused(tmp_path: Path, name: str) -> None:
    make, tamper, action, data, kind, fragment = CASES[name]
    model = make()
    joblib.dump(model, tmp_path / "good.joblib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        healthy = safeload.load(tmp_path / "good.joblib")  # the untouched model loads ...
        method = action.rsplit("m.", 1)[1].split("(")[0]
        np.testing.assert_allclose(np.asarray(_dense(getattr(healthy, method)(data))),
                                   np.asarray(_dense(getattr(model, method)(data))))  # ... and agrees
    tamper(model)
    proc = child(tmp_path, model, action, data, alarm=3)
    (assert_hangs if kind == "hang" else assert_exhausts)(proc)
    assert_load_refuses(tmp_path, fragment)


def _dense(a: Any) -> Any:
    return a.toarray() if hasattr(a, "toarray") else a


def test_n_jobs_starts_that_many_workers_and_is_refused(tmp_path: Path) -> None:
    """joblib starts every worker ``n_jobs`` asks for: 600 threads for a one-row ``transform``."""
    from sklearn.kernel_approximation import Nystroem

    model = Nystroem(n_components=10, random_state=0).fit(X)
    model.n_jobs = 600
    # count the threads started, not those still alive afterwards: finished workers exit
    action = ("import threading; from joblib import parallel_backend\n"
              "started = []; start = threading.Thread.start\n"
              "threading.Thread.start = lambda self: (started.append(self), start(self))[1]\n"
              "with parallel_backend('threading'):\n    m.transform(X)\n"
              "print('threads', len(started), flush=True)")
    proc = child(tmp_path, model, action.replace("\n", "\n        "), X[:1], alarm=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    threads = int(proc.stdout.split("threads", 1)[1].split()[0])
    assert threads >= 600, proc.stdout
    assert_load_refuses(tmp_path, "n_jobs")


@pytest.mark.parametrize("value", [None, -1, -2, 1, 8, 256])
def test_ordinary_n_jobs_load(tmp_path: Path, value: Any) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_jobs=value).fit(X, y)
    joblib.dump(model, tmp_path / "m.joblib")
    assert (safeload.load(tmp_path / "m.joblib").predict(X) == model.predict(X)).all()


@pytest.mark.parametrize("pattern", [r"(?u)\b\w\w+\b", r"(?u)\b\w+\b", r"\S+", r"[^\s]+", r"(?u)\b[a-zA-Z]{2,}\b",
                                     r"(?u)\b\w+(?:'\w+)?\b", r"(?:[A-Za-z]+|\d+)", r"#?\w+", r"[A-Za-z0-9_\-]+",
                                     r"(?:\w++)+", r"(?>\w+)+", r"\w+(?:-\w+)*", r"(?:\.\w+)*", r"(?:-[^-]+)*", r"(?u)\b\w\w+\b(?=\s)", "(unclosed"])
def test_patterns_real_vectorizers_use_pass(pattern: str) -> None:
    assert backtracking_problem(pattern) is None


@pytest.mark.parametrize("pattern", [r"(a+)+b", r"(?:a|a)+b", r"(a*)*", r"(\w+\s?)+$", r"(?:aa|a)+b",
                                     r"((ab)*)+", r"(?:a{2,})*", r"(?:x(?:ab|c)y)*z", r"(?=(a+)+)b", r"(?:a\w+)*", r"(?:-.+)*"])
def test_backtracking_shapes_are_named(pattern: str) -> None:
    problem = backtracking_problem(pattern)
    assert problem is not None and "unbounded repeat" in problem


def test_the_backtracking_rule_is_what_makes_re_slow() -> None:
    """The refused shape is really exponential in Python's engine, the accepted default is linear."""
    import re
    import time

    def seconds(pattern: str, text: str) -> float:
        t = time.perf_counter()
        re.findall(pattern, text)
        return time.perf_counter() - t

    assert seconds(r"(?u)\b\w\w+\b", "a" * 100_000) < 0.5
    assert seconds(r"(?:a|a)+b", "a" * 22) > 20 * seconds(r"(?:a|a)+b", "a" * 14)


def test_gaussian_process_newton_steps_are_capped(tmp_path: Path) -> None:
    """Defence in depth, not proven to hang: ``max_iter_predict`` bounds the Laplace approximation's
    Newton steps, reached only through ``log_marginal_likelihood(theta)`` (which stops early on
    sane data)."""
    from sklearn.gaussian_process import GaussianProcessClassifier

    model = GaussianProcessClassifier(random_state=0).fit(X[:40], y[:40] == 0)
    joblib.dump(model, tmp_path / "model.joblib")
    assert (safeload.load(tmp_path / "model.joblib").predict(X) == model.predict(X)).all()
    model.base_estimator_.max_iter_predict = BIG
    joblib.dump(model, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "max_iter_predict")


def test_stored_output_name_count_is_bounded_by_the_arrays(tmp_path: Path) -> None:
    """With pandas output on, ``transform`` names every output column first: 10**9 names."""
    import signal

    from sklearn.kernel_approximation import RBFSampler

    model = RBFSampler(n_components=20, random_state=0).fit(X)
    joblib.dump(model, tmp_path / "model.joblib")
    assert np.allclose(safeload.load(tmp_path / "model.joblib").transform(X), model.transform(X))
    model._n_features_out = BIG
    action = LIMIT + "import sklearn; sklearn.set_config(transform_output='pandas'); m.transform(X)"
    proc = child(tmp_path, model, action, X[:2], alarm=5)
    assert proc.stdout.startswith("loaded") and "survived" not in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    assert proc.returncode == -signal.SIGALRM or "MemoryError" in proc.stderr, proc.stderr[-2000:]
    assert_load_refuses(tmp_path, "_n_features_out")


def test_output_name_count_is_judged_alike_by_scan_past_cython_objects(tmp_path: Path) -> None:
    """The count of held elements walks nested estimators; a RandomTreesEmbedding's trees hold Cython
    objects (no dict for load, an unknown value for scan's twin): scan counts what load counts and
    flags what load refuses (its first version gave up on the twin and called the file safe)."""
    from sklearn.ensemble import RandomTreesEmbedding

    model = RandomTreesEmbedding(n_estimators=3, random_state=0).fit(X)
    joblib.dump(model, tmp_path / "model.joblib")
    assert safeload.scan(tmp_path / "model.joblib").safe
    model._n_features_out = BIG
    joblib.dump(model, tmp_path / "model.joblib")
    assert_load_refuses(tmp_path, "_n_features_out")
