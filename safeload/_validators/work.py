"""Inference-time work that a stored number decides: loop counts and output sizes no array bounds.

A fitted model's ``predict``/``transform`` mostly loops over arrays the file holds, so the file's
size bounds the work. These do not: a plain integer (a hyper-parameter, or a count fitted next to
an array) sets how often a solver iterates, how many workers start, how wide an output is, or how
a regular expression backtracks. A file that sets one to 10**9 makes a call on a one-row input run
for hours or allocate gigabytes, where the honest model costs milliseconds (audited against
scikit-learn 1.9's inference paths; each rule names the loop or allocation it bounds).

Two kinds of rule:

* **caps** for counts that have no source of truth in the file (iteration limits, ``n_jobs``,
  n-gram lengths): far above any value scikit-learn's documentation or a real model uses, far below
  a call that does not return. A model that really needs more is refused with the attribute named.
* **equalities** for counts fitted next to the array they describe (``n_classes_`` and
  ``classes_``, ``n_outputs_`` and ``constant_``...): recomputed from the array, so the output
  size is bounded by what the file holds.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any, Final

import numpy as np

from safeload._validators._base import _array, _attr, _fail, _int

# The regular-expression parser and compiler (``re._parser``/``re._compiler`` since 3.11, before that
# the ``sre_parse``/``sre_compile`` modules, deprecated since).
_sre_parse: Any = importlib.import_module("re._parser" if hasattr(re, "_parser") else "sre_parse")
_sre_compile: Any = importlib.import_module("re._compiler" if hasattr(re, "_compiler") else "sre_compile")

#: Iterative solvers run at inference (NMF, MiniBatchNMF, sparse coding with lasso_cd): defaults
#: 200-1,000; whatever ``tol`` says (tol <= 0, or NaN state, disables early stopping).
MAX_SOLVER_ITER: Final = 100_000
#: LatentDirichletAllocation's per-document E-step (default 100) and the Laplace approximation's
#: Newton steps in GaussianProcessClassifier (default 100).
MAX_INNER_ITER: Final = 10_000
#: joblib starts every worker it is told to, whatever the number of tasks (a loky worker is a whole
#: interpreter with scikit-learn imported): far above the cores of most machines; -1 means all of them.
MAX_JOBS: Final = 256
#: Text n-grams: the work of ``transform`` is cubic in a document's length up to ``max_n``.
MAX_NGRAM: Final = 64
#: PolynomialCountSketch allocates (n_samples, degree, n_components) and FFTs it.
MAX_SKETCH_COMPONENTS: Final = 1 << 20
#: Neighbours a k-NN model may ask for beyond the samples it holds (its predict allocates
#: (n_queries, n_neighbors) heaps before it compares n_neighbors with them).
MAX_FREE_NEIGHBORS: Final = 10_000
#: Output names generated without an array of that size behind them (a million names: ~0.3 s).
MAX_FREE_NAMES: Final = 1 << 20


def _capped(est: Any, name: str, path: str, lo: int | None, hi: int, why: str) -> None:
    """``est.name``, when present and not None, an integer in [lo, hi] (no lower bound when ``lo`` is
    None; a bool is refused)."""
    value = _attr(est, name)
    if value is None:
        return  # not set: scikit-learn reads its default or fails on its own
    if isinstance(value, bool):
        _fail(path, f".{name}", "expected an integer, got a bool")
    n = _int(value, path, f".{name}")
    if lo is None and n > hi:
        _fail(path, f".{name}", f"= {n} above {hi}; {why}")
    if lo is not None and not lo <= n <= hi:
        _fail(path, f".{name}", f"= {n} outside [{lo}, {hi}]; {why}")


def _check_nmf(est: Any, path: str) -> None:
    """NMF.transform runs the solver again, up to ``max_iter`` iterations."""
    _capped(est, "max_iter", path, 1, MAX_SOLVER_ITER, "transform iterates the solver up to that many times")


def _check_minibatch_nmf(est: Any, path: str) -> None:
    """MiniBatchNMF.transform loops ``_transform_max_iter`` times and allocates (n, ``_n_components``)."""
    for name in ("max_iter", "transform_max_iter", "_transform_max_iter"):
        _capped(est, name, path, 1, MAX_SOLVER_ITER, "transform iterates the solver up to that many times")
    components = _source(est, "_n_components", "components_")
    if components is not None:
        rows = _array(components, path, ".components_", ndim=2).shape[0]
        _same_width(est, path, "_n_components", rows, f"components_ has {rows} rows", "transform")


def _check_lda(est: Any, path: str) -> None:
    """LatentDirichletAllocation's E-step (transform, score, perplexity) iterates per document."""
    _capped(est, "max_doc_update_iter", path, 0, MAX_INNER_ITER, "the E-step iterates that often per document")


def _check_sparse_coding(est: Any, path: str) -> None:
    """DictionaryLearning, MiniBatchDictionaryLearning, SparseCoder: transform's lasso (tol fixed at 1e-8)."""
    _capped(est, "transform_max_iter", path, 1, MAX_SOLVER_ITER, "transform's lasso iterates that often per row")


def _check_gpc_laplace(est: Any, path: str) -> None:
    """The binary Laplace GP classifier's Newton iterations (log_marginal_likelihood)."""
    _capped(est, "max_iter_predict", path, 1, MAX_INNER_ITER, "the posterior mode is searched that many steps")


def _check_n_neighbors(est: Any, path: str) -> None:
    """KNeighborsClassifier.predict (ArgKminClassMode, for metrics other than euclidean) allocates
    (n_queries, n_neighbors) before kneighbors' own ``n_neighbors <= n_samples_fit`` check runs."""
    fitted = _attr(est, "n_samples_fit_")
    held = _int(fitted, path, ".n_samples_fit_") if fitted is not None else 0
    _capped(est, "n_neighbors", path, 1, max(held, MAX_FREE_NEIGHBORS),
            "predict allocates (n_queries, n_neighbors) neighbour heaps")


def _check_n_jobs(est: Any, path: str) -> None:
    """joblib starts ``n_jobs`` processes or threads on the first parallel call, whatever the work."""
    # negative counts are relative to the CPUs (at least one worker): no lower bound
    _capped(est, "n_jobs", path, None, MAX_JOBS, "joblib would start that many workers")


def _check_vectorizer(est: Any, path: str) -> None:
    """Text vectorizers: n-gram lengths (cubic work per document) and the token regex (backtracking)."""
    ngram = _attr(est, "ngram_range")
    if ngram is not None:
        if not isinstance(ngram, tuple) or len(ngram) != 2:
            _fail(path, ".ngram_range", f"expected a (min_n, max_n) tuple, got {type(ngram).__name__}")
        hi = _int(ngram[1], path, ".ngram_range[1]")
        lo = _int(ngram[0], path, ".ngram_range[0]")
        if hi > MAX_NGRAM:
            _fail(path, ".ngram_range", f"max_n = {hi} above {MAX_NGRAM}; transform's work is cubic in it")
        if lo < 0:  # (state fuzzer seed 3132: (-2**31 - 1, 2) hung a TF-IDF pipeline's predict)
            _fail(path, ".ngram_range", f"min_n = {lo} below 0; transform counts n up from min_n and takes "
                                        f"len(document) - n + 1 slices for each: work and memory grow with |min_n|")
    pattern = _attr(est, "token_pattern")
    if isinstance(pattern, str):
        problem = backtracking_problem(pattern)
        if problem:
            _fail(path, ".token_pattern", f"{pattern!r}: {problem}; transform would backtrack exponentially "
                                          "on a short document (if the pattern is trusted, fit the vectorizer "
                                          "with a tokenizer that avoids it)")


_REPEATS: Final = frozenset({"MAX_REPEAT", "MIN_REPEAT"})


def backtracking_problem(pattern: str) -> str | None:
    """``_backtracking_problem``, remembered for short patterns (a store holds many vectorizers with
    the default pattern, each parsed again otherwise: ~50 us of a 90 us static twin)."""
    return _remembered_problem(pattern) if len(pattern) <= 256 else _backtracking_problem(pattern)


def _backtracking_problem(pattern: str) -> str | None:
    """Why ``pattern`` can backtrack exponentially in Python's ``re``, or None.

    Refused: an unbounded repeat (``*``, ``+``, ``{n,}``) whose body holds another repeat of more
    than one (``(a+)+``) or an alternation (``(a|a)+``): the two shapes behind exponential
    backtracking. Let through: a body that starts with a literal character none of its inner
    repeats can match (``(?:-\\w+)*``: each round is anchored at a hyphen, so there is one way to
    split), possessive repeats and atomic groups (they never give back). Polynomial shapes
    (``\\w+\\w+``) are not refused. A pattern that does not compile is left to scikit-learn,
    which raises on it."""
    try:
        tree = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    return _scan(tree, list(tree), None)


_remembered_problem = functools.lru_cache(maxsize=128)(_backtracking_problem)


def _scan(tree: Any, items: list[Any], star: list[Any] | None) -> str | None:
    """``star``: the body of the innermost unbounded repeat around ``items`` (None: not under one)."""
    for op, arg in items:
        name = str(op)
        if name in _REPEATS:
            lo, hi, body = arg
            unbounded = hi == _sre_parse.MAXREPEAT
            if star is not None and (unbounded or hi > 1) and not _anchored(tree, star, list(body)):
                return "a repeat inside an unbounded repeat"
            found = _scan(tree, list(body), list(body) if unbounded else star)
            if found:
                return found
        elif name == "BRANCH":
            if star is not None:
                return "an alternation inside an unbounded repeat"
            for alt in arg[1]:
                found = _scan(tree, list(alt), star)
                if found:
                    return found
        elif name == "SUBPATTERN":
            found = _scan(tree, list(arg[-1]), star)
            if found:
                return found
        elif name in ("ASSERT", "ASSERT_NOT"):
            found = _scan(tree, list(arg[1]), star)
            if found:
                return found
        elif name == "GROUPREF_EXISTS":
            for alt in arg[1:]:
                if alt is not None:
                    found = _scan(tree, list(alt), star)
                    if found:
                        return found
        # POSSESSIVE_REPEAT / ATOMIC_GROUP never give back what they matched: not scanned
    return None


_ONE_CHAR: Final = frozenset({"LITERAL", "NOT_LITERAL", "IN", "ANY"})


def _anchored(tree: Any, star: list[Any], inner: list[Any]) -> bool:
    """Does the outer repeat's body start with a literal character the inner repeat (one character
    matcher repeated) cannot match? Then each round of the outer repeat starts at that character."""
    if not star or str(star[0][0]) != "LITERAL" or len(inner) != 1 or str(inner[0][0]) not in _ONE_CHAR:
        return False
    try:
        matcher = _sre_compile.compile(_sre_parse.SubPattern(tree.state, inner), tree.state.flags)
    except Exception:  # noqa: BLE001 - not compilable on its own: judged as not anchored
        return False
    return matcher.fullmatch(chr(star[0][1])) is None


def _source(est: Any, stored: str, source: str) -> Any:
    """``est.source`` when both it and the count ``est.stored`` are set (an unfitted model has neither)."""
    value = _attr(est, source)
    return None if value is None or _attr(est, stored) is None else value


def _same_width(est: Any, path: str, name: str, want: int, source: str, method: str) -> None:
    """The stored count ``est.name`` must be ``want``, what ``source`` says: ``method`` allocates it."""
    value = _attr(est, name)
    if _int(value, path, f".{name}") != want:
        _fail(path, f".{name}", f"= {value} but {source}; {method} allocates that width")


def _classes_widths(classes: Any, path: str) -> list[int]:
    """The number of classes per output: ``classes_`` is one array, or a list of them."""
    if isinstance(classes, np.ndarray) and classes.ndim == 1:
        return [classes.shape[0]]
    if isinstance(classes, list):
        return [_array(c, path, f".classes_[{k}]", ndim=1).shape[0] for k, c in enumerate(classes)]
    _fail(path, ".classes_", f"expected an array or a list of arrays, got {type(classes).__name__}")


def _check_n_classes(est: Any, path: str) -> None:
    """``n_classes_`` sizes predict_proba's output (forests, bagging, dummy): it must be ``classes_``'s."""
    n_classes = _attr(est, "n_classes_")
    classes = _attr(est, "classes_")
    if n_classes is None or classes is None:
        return
    widths = _classes_widths(classes, path)
    if isinstance(n_classes, (list, np.ndarray)):
        stored = [_int(v, path, f".n_classes_[{k}]") for k, v in enumerate(list(n_classes))]
    else:
        stored = [_int(n_classes, path, ".n_classes_")]
    if stored != widths:
        _fail(path, ".n_classes_", f"= {n_classes!r} but classes_ holds {widths} classes; predict_proba "
                                   "allocates that width")


def _check_forest_outputs(est: Any, path: str) -> None:
    """A forest's ``n_outputs_`` sizes predict's output; each tree knows its own."""
    n = _attr(est, "n_outputs_")
    trees = _attr(est, "estimators_")
    if n is None or not isinstance(trees, list):
        return
    want = _int(n, path, ".n_outputs_")
    for k, tree in enumerate(trees):
        got = _attr(tree, "n_outputs_")
        if got is not None and _int(got, path, f".estimators_[{k}].n_outputs_") != want:
            _fail(path, ".n_outputs_", f"= {want} but estimators_[{k}] has {got} outputs; predict allocates that width")


def _check_classifier_outputs(est: Any, path: str) -> None:
    """A tree or forest classifier with several outputs allocates (n, ``n_outputs_``) in predict; its
    ``classes_`` is one array per output (a list), or a single array for one output."""
    classes = _source(est, "n_outputs_", "classes_")
    if classes is None:
        return
    want = len(classes) if isinstance(classes, list) else 1
    _same_width(est, path, "n_outputs_", want, f"classes_ describes {want} output(s)", "predict")


def _check_dummy_regressor(est: Any, path: str) -> None:
    """DummyRegressor.predict fills (n, ``n_outputs_``) with ``constant_``."""
    constant = _source(est, "n_outputs_", "constant_")
    if constant is None:
        return
    size = np.asarray(constant).size if isinstance(constant, (np.ndarray, np.generic, int, float)) else None
    if size is None:
        _fail(path, ".constant_", f"expected an array, got {type(constant).__name__}")
    _same_width(est, path, "n_outputs_", size, f"constant_ holds {size} values", "predict")


def _check_hgb_width(est: Any, path: str) -> None:
    """HistGradientBoosting's raw predictions are (n, ``n_trees_per_iteration_``) plus the baseline."""
    baseline = _source(est, "n_trees_per_iteration_", "_baseline_prediction")
    if baseline is None:
        return
    arr = _array(baseline, path, "._baseline_prediction", ndim=2)
    if arr.shape[0] != 1:
        _fail(path, "._baseline_prediction", f"expected one row, got shape {arr.shape}")
    _same_width(est, path, "n_trees_per_iteration_", arr.shape[1], f"_baseline_prediction has shape {arr.shape}",
                "predict")


def _check_lle(est: Any, path: str) -> None:
    """LocallyLinearEmbedding.transform allocates (n, ``n_components``) and fills it from ``embedding_``."""
    embedding = _source(est, "n_components", "embedding_")
    if embedding is None:
        return
    cols = _array(embedding, path, ".embedding_", ndim=2).shape[1]
    _same_width(est, path, "n_components", cols, f"embedding_ has {cols} columns", "transform")


def _check_count_sketch(est: Any, path: str) -> None:
    """PolynomialCountSketch.transform allocates (n, degree, n_components) and FFTs it."""
    index = _attr(est, "indexHash_")
    if index is None:
        return
    index_arr = _array(index, path, ".indexHash_", ndim=2)
    bits = _array(_attr(est, "bitHash_"), path, ".bitHash_", ndim=2)
    degree = _int(_attr(est, "degree"), path, ".degree")
    if not degree == index_arr.shape[0] == bits.shape[0]:
        _fail(path, ".degree", f"= {degree} but indexHash_ has {index_arr.shape[0]} rows and bitHash_ "
                               f"{bits.shape[0]}")
    n = _int(_attr(est, "n_components"), path, ".n_components")
    top = int(index_arr.max()) if index_arr.size else -1
    if not top < n <= MAX_SKETCH_COMPONENTS:
        _fail(path, ".n_components", f"= {n} outside ({top}, {MAX_SKETCH_COMPONENTS}]; transform allocates "
                                     "n_samples * degree * n_components values")


def _check_spline_width(est: Any, path: str) -> None:
    """SplineTransformer.transform allocates (n, ``n_features_out_`` [+ n_features]) and loops over it."""
    splines = _source(est, "n_features_out_", "bsplines_")
    if splines is None:
        return
    if not isinstance(splines, list) or not splines:
        _fail(path, ".bsplines_", "expected a non-empty list of splines")
    n_features = len(splines)
    stored_c = _attr(splines[0], "_c")  # scipy's BSpline keeps ``c`` (a property) as ``_c``
    if stored_c is None:
        stored_c = _attr(splines[0], "c")  # older SciPy: a plain attribute
    coefficients = _array(stored_c, path, ".bsplines_[0].c", ndim=2)
    include_bias = _attr(est, "include_bias")
    if not isinstance(include_bias, (bool, np.bool_)):
        _fail(path, ".include_bias", f"expected a bool, got {type(include_bias).__name__}")
    want = n_features * coefficients.shape[1] - n_features * (1 - int(include_bias))
    _same_width(est, path, "n_features_out_", want, f"the splines give {want} columns", "transform")


def _elements(value: Any, depth: int) -> int:
    """How many array elements ``value`` holds (arrays, and lists/tuples/dicts/scikit-learn estimators
    of them, to ``depth`` levels): what the file itself stores. Types are tested with ``type()`` and
    dicts read past the class's attribute hooks, so scan's static twin counts the same values without
    touching one it does not have (a Cython object has no dict on either side)."""
    kind = type(value)
    if issubclass(kind, np.ndarray):
        return int(value.size)
    if depth <= 0:
        return 0
    if kind is list or kind is tuple:
        return sum(_elements(v, depth - 1) for v in value[:4096])
    if kind is dict:
        return sum(_elements(v, depth - 1) for v in list(value.values())[:4096])
    if str(getattr(kind, "__module__", "")).startswith("sklearn."):
        try:  # the instance's own dict, past any __getattr__/__getattribute__ of its class
            d = object.__getattribute__(value, "__dict__")
        except (AttributeError, TypeError):
            return 0
        if type(d) is dict:
            return _elements(d, depth)
    return 0


def _check_n_features_out(est: Any, path: str) -> None:
    """A stored ``_n_features_out`` (RBFSampler, KMeans, Nystroem, PLS, RandomTreesEmbedding...) is the
    number of output names ``get_feature_names_out`` generates, which ``transform`` does whenever
    pandas output is on. The output it names is built from the fitted arrays (or, for hashing
    transformers such as PolynomialCountSketch, is as wide as a parameter says): at most the
    elements they hold, or MAX_FREE_NAMES."""
    value = _attr(est, "_n_features_out")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return  # a property on most classes; anything else fails in scikit-learn itself
    n = int(value)
    if n < 0:
        _fail(path, "._n_features_out", f"= {n}, negative")
    if n <= MAX_FREE_NAMES:
        return
    held = _elements(getattr(est, "__dict__", {}), 4)
    if n > max(held, MAX_FREE_NAMES):
        _fail(path, "._n_features_out", f"= {n} but the model's arrays hold {held} values (and widths up to "
                                         f"{MAX_FREE_NAMES} are let through); get_feature_names_out (transform "
                                         "with pandas output) builds one name per output column")
