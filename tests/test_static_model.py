"""The static twin (safeload/_static_model.py): scan runs load's validators on it.

Two properties make a verdict on the twin the verdict load's validator reaches: the twin is
*faithful* (every value it has equals what load builds; checked against load on every zoo
artifact in every format) and every use of a value it does not have makes the check
*unknowable* (skipped, left to load). Agreement on tampered models is the state fuzzer's
(fuzz/state_fuzz.py checks scan against load on every case) and test_validators_native's.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import safeload
from safeload._containers import COMPRESSED, decompress, sniff
from safeload._mirrors import StaticChecks
from safeload._policy import Policy
from safeload._static_model import (
    _BINARY_TREE_VIEWS,
    _NAMEDTUPLE_TYPES,
    Unknowable,
    Unknown,
    _BunchView,
    _TreeView,
    findings,
    twin,
)
from safeload._walker import walk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_class_data  # noqa: E402

pytest.importorskip("sklearn")


def test_class_data_is_current() -> None:
    """Regenerating from the installed scikit-learn / SciPy gives the checked-in module byte for byte."""
    import difflib

    import scipy
    import sklearn

    from safeload._class_data import SCIPY_VERSION, SKLEARN_VERSION

    if (sklearn.__version__, scipy.__version__) != (SKLEARN_VERSION, SCIPY_VERSION):
        pytest.skip(f"class data is for scikit-learn {SKLEARN_VERSION} / SciPy {SCIPY_VERSION}; "
                    f"installed {sklearn.__version__} / {scipy.__version__}: regenerate to compare")
    have = gen_class_data.DATA.read_text().splitlines()
    want = gen_class_data.render(gen_class_data.classes()).splitlines()
    diff = [line[:300] for line in difflib.unified_diff(have, want, lineterm="", n=0)]
    assert not diff, "stale: run python tools/gen_class_data.py\n" + "\n".join(diff[:12])


def _twin_of(data: bytes) -> tuple[Any, dict[int, int]] | None:
    policy = Policy.default()
    fmt = sniff(data)
    if fmt in COMPRESSED:
        data = decompress(fmt, data, policy.limits)
    trace = walk(data, policy, joblib=True)
    assert trace.ok, trace.issues
    return twin(trace, StaticChecks(policy, data, None, []))


def _fullname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _same(mine: Any, real: Any, where: str, seen: set[int], counts: dict[str, int]) -> None:
    """Every value the twin has equals the built one; an Unknown stands for anything."""
    if type(mine) is Unknown:
        counts["unknown"] += 1
        return
    if id(mine) in seen:
        return
    seen.add(id(mine))
    counts["known"] += 1
    if type(mine) is _TreeView:
        assert _fullname(real) == "sklearn.tree._tree.Tree", where
        assert (mine.n_features, mine.n_outputs, mine.node_count, mine.capacity, mine.max_depth) == (
            real.n_features, real.n_outputs, real.node_count, real.capacity, real.max_depth), where
        assert np.array_equal(mine.n_classes, real.n_classes), where
        return
    if type(mine) in {v for v, _ in _BINARY_TREE_VIEWS.values()}:  # a KD/Ball tree: its class and data
        assert _fullname(mine) == _fullname(real), where
        counts["binary trees"] = counts.get("binary trees", 0) + 1
        data = np.asarray(real.data)
        assert mine.data.dtype == data.dtype and mine.data.tobytes() == data.tobytes(), where
        assert mine.data.shape == data.shape, where
        return
    if type(mine) is _BunchView:
        assert _fullname(real) == "sklearn.utils._bunch.Bunch" and list(real) == list(mine), where
        assert vars(real) == {}, where  # (Bunch.__setstate__ ignores the state)
        counts["bunches"] = counts.get("bunches", 0) + 1
        for key in mine:
            _same(mine[key], real[key], f"{where}[{key!r}]", seen, counts)
        return
    if type(mine) in _NAMEDTUPLE_TYPES:
        assert _fullname(mine) == _fullname(real) and mine._fields == real._fields, where
        counts["namedtuples"] = counts.get("namedtuples", 0) + 1
        for k, (a, b) in enumerate(zip(mine, real, strict=True)):
            _same(a, b, f"{where}[{k}]", seen, counts)
        return
    if isinstance(mine, np.ndarray):
        assert isinstance(real, np.ndarray) and mine.dtype == real.dtype and mine.shape == real.shape, where
        if mine.dtype.hasobject:
            for k, (a, b) in enumerate(zip(mine.reshape(-1).tolist(), real.reshape(-1).tolist(), strict=True)):
                _same(a, b, f"{where}[{k}]", seen, counts)
        else:
            assert mine.tobytes() == real.tobytes(), where
        return
    if type(mine) in (list, tuple):
        assert type(real) is type(mine) and len(real) == len(mine), where
        for k, (a, b) in enumerate(zip(mine, real, strict=True)):
            _same(a, b, f"{where}[{k}]", seen, counts)
        return
    if type(mine) is dict:
        assert isinstance(real, dict) and list(real) == list(mine), where
        for key in mine:
            _same(mine[key], real[key], f"{where}[{key!r}]", seen, counts)
        return
    if isinstance(mine, (np.generic, np.dtype)) or type(mine) in (bool, int, float, str, bytes, type(None)):
        assert type(real) is type(mine), where
        assert mine == real or (mine != mine and real != real), where  # (NaN == NaN)
        return
    # a proxy: the real class's name, the real instance's keys and values
    assert _fullname(mine) == _fullname(real), where
    assert list(vars(mine)) == list(vars(real)), where
    for key, value in vars(mine).items():
        _same(value, vars(real)[key], f"{where}.{key}", seen, counts)


@pytest.mark.parametrize("fmt", ["pickle-p0", "pickle-p2", "pickle-p4", "pickle-p5", "joblib", "joblib-zlib"])
def test_twin_equals_what_load_builds(zoo_store: Any, fmt: str) -> None:
    counts = {"known": 0, "unknown": 0}
    compared = 0
    for name in sorted(zoo_store.entries):
        if fmt not in zoo_store.entries[name].files:
            continue
        data = Path(zoo_store.path(name, fmt)).read_bytes()
        built = _twin_of(data)
        assert built is not None, name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            real = safeload.load(zoo_store.path(name, fmt))
        _same(built[0], real, name, set(), counts)
        compared += 1
    assert compared > 100
    assert counts.get("binary trees", 0) > 0, "the zoo's KD/Ball trees must be compared"
    assert counts.get("namedtuples", 0) > 0, "the zoo's IterativeImputer triplets must be compared"
    assert counts.get("bunches", 0) > 0, "the zoo's Bunches (named_estimators_) must be compared"
    # most of the model is known (else the twin would judge nothing)
    assert counts["known"] > 10 * counts["unknown"], counts


def test_using_an_unknown_is_unknowable() -> None:
    u = Unknown()
    for use in (lambda: isinstance(u, np.ndarray), lambda: u == "x", lambda: len(u), lambda: u.shape,
                lambda: np.asarray(u), lambda: int(u), lambda: getattr(u, "__dict__", None),
                lambda: type(u).__mro__):
        with pytest.raises(Unknowable):
            use()


def _proxy_of(model: Any) -> Any:
    built = _twin_of(pickle.dumps(model, protocol=5))
    assert built is not None
    return built[0]


def test_check_on_known_values_reports_and_unknown_values_skip() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    X = np.arange(40, dtype=float).reshape(10, 4)
    m = KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(X, [0, 1] * 5)
    m._y = np.full_like(m._y, 7)  # labels outside the 2 classes
    found = findings(_proxy_of(m))
    assert any("_y[0]" in message for _, message in found), found
    m.classes_ = Unknown()  # (never in a real twin; stands for a value scan could not establish)
    proxy = _proxy_of(KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(X, [0, 1] * 5))
    proxy.__dict__["_y"] = np.full(10, 7)
    proxy.__dict__["classes_"] = Unknown()
    assert not [m for _, m in findings(proxy) if "_y" in m]


def test_proxy_answers_like_the_class() -> None:
    from sklearn.svm import SVR

    X = np.arange(40, dtype=float).reshape(10, 4)
    proxy = _proxy_of(SVR().fit(X, np.arange(10.0)))
    assert _fullname(proxy) == "sklearn.svm._classes.SVR"
    assert type(proxy)._impl == "epsilon_svr"  # a plain class constant
    with pytest.raises(Unknowable):
        proxy.predict  # noqa: B018 - a method: the twin has no value for it
    with pytest.raises(AttributeError):
        proxy.not_an_attribute  # noqa: B018 - neither instance nor class has it


def test_scipy_alias_properties() -> None:
    import scipy.sparse as sp

    assert gen_class_data._alias(vars(sp.csr_matrix.__mro__[3]).get("format", None)) in (None, "_format")
    from safeload._class_data import CLASSES

    assert CLASSES["scipy.sparse._base._spbase"][4] == {"format": "_format", "shape": "_shape"}

    class C:
        @property
        def x(self) -> int:
            """doc"""
            return self._x  # type: ignore[attr-defined,no-any-return]

        @property
        def y(self) -> int:
            return len(self._x)  # type: ignore[attr-defined]

    assert gen_class_data._alias(vars(C)["x"]) == "_x"
    assert gen_class_data._alias(vars(C)["y"]) is None


def test_over_budget_twin_gives_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    import safeload._static_model as sm

    monkeypatch.setattr(sm, "MAX_VALUES", 3)
    from sklearn.linear_model import LinearRegression

    X = np.arange(40, dtype=float).reshape(10, 4)
    assert _twin_of(pickle.dumps(LinearRegression().fit(X, np.arange(10.0)))) is None


def test_masked_array_mask_size_is_mirrored(tmp_path: Path) -> None:
    """numpy refuses a mask whose byte count differs from the data's; scan says so too (state fuzz)."""
    import numpy.ma as ma

    from safeload._errors import MalformedModelError

    m = ma.masked_array([1.0, 2.0, 3.0, 4.0], mask=[0, 1, 0, 0])
    func, args, state = m.__reduce__()
    state = (*state[:5], state[5][:1], *state[6:])

    class Tampered:
        def __reduce__(self) -> Any:
            return func, args, state

    path = tmp_path / "mask.pkl"
    path.write_bytes(pickle.dumps(Tampered(), protocol=4))
    with pytest.raises(ValueError, match="buffer size"):
        pickle.loads(path.read_bytes())
    with pytest.raises(MalformedModelError, match="mask holds 1 bytes for 4"):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("mask holds 1 bytes" in f.message for f in report.findings)


def test_second_build_leaves_the_instance_unknown(tmp_path: Path) -> None:
    """__setstate__ merges a second BUILD into the first: the twin, which keeps one state dict,
    must not judge the instance (it would miss the first dict's keys and refuse a good model)."""
    from sklearn.tree import DecisionTreeClassifier

    X = np.arange(40, dtype=float).reshape(10, 4)
    m = DecisionTreeClassifier(random_state=0).fit(X, [0, 1] * 5)
    del m.n_features_in_  # comes from a first BUILD instead
    payload = pickle.dumps(m, protocol=2)
    root = payload.index(b"\x81q\x01}")  # NEWOBJ of the root, before its state dict
    first = b"}X\x0e\x00\x00\x00n_features_in_K\x04sb"  # {'n_features_in_': 4} BUILD
    path = tmp_path / "two_builds.pkl"
    path.write_bytes(payload[: root + 3] + first + payload[root + 3 :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = safeload.load(path)
    assert loaded.n_features_in_ == 4 and loaded.predict(X).shape == (10,)
    built = _twin_of(path.read_bytes())
    assert built is not None and type(built[0]) is Unknown
    assert safeload.scan(path).safe


def test_no_twin_under_other_library_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Class data from another scikit-learn could make a proxy differ from the real class: no verdict."""
    from sklearn.neighbors import KNeighborsClassifier

    import safeload._static_model as sm

    X = np.arange(40, dtype=float).reshape(10, 4)
    m = KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(X, [0, 1] * 5)
    m._y = np.full_like(m._y, 7)
    data = pickle.dumps(m, protocol=5)
    policy = Policy.default()
    trace = walk(data, policy, joblib=True)
    assert sm.check_model(trace, StaticChecks(policy, data, None, []))  # the installed versions: judged
    monkeypatch.setattr(sm, "_VERSIONS", [False])
    assert sm.check_model(trace, StaticChecks(policy, data, None, [])) == []


@pytest.mark.parametrize("baseclass", [int, "text"])
def test_masked_array_baseclass_is_mirrored(tmp_path: Path, baseclass: Any) -> None:
    """_mareconstruct's guard checks the base class too (the state fuzzer's largest gap, 65 cases)."""
    import numpy.ma as ma

    from safeload._errors import UnsafeModelError

    m = ma.masked_array([1.0, 2.0], mask=[0, 1])
    func, args, state = m.__reduce__()

    class Tampered:
        def __reduce__(self) -> Any:
            return func, (args[0], baseclass, *args[2:]), state

    path = tmp_path / "masked.pkl"
    path.write_bytes(pickle.dumps(Tampered(), protocol=4))
    with pytest.raises(UnsafeModelError, match="array type"):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("array type" in f.message for f in report.findings), report.findings


def _frozen_logistic() -> Any:
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    X = np.random.RandomState(0).rand(30, 3)
    return FrozenEstimator(LogisticRegression().fit(X, (X[:, 0] > 0.5).astype(int)))


def _with_metadata_request() -> Any:
    from sklearn.linear_model import LogisticRegression

    X = np.random.RandomState(0).rand(30, 3)
    with __import__("sklearn").config_context(enable_metadata_routing=True):
        m = LogisticRegression().set_fit_request(sample_weight=True)
    return m.fit(X, (X[:, 0] > 0.5).astype(int))


def _shadowed(root: Any, part: Any, name: str) -> Any:
    """``root`` with a state key on ``part`` that shadows a class-level name of part's class."""
    vars(part(root))[name] = -1
    return root


# Classes with a __getattr__ (FrozenEstimator delegates to its estimator, MetadataRequest answers
# for methods): the twin gives them a proxy whose __getattr__ is unknowable, so the validators see
# their state and everything below them (state fuzz, seed 1818: these were scan-safe/load-refused).
_GETATTR_CASES: dict[str, Any] = {
    "frozen: inner estimator shadows": lambda: _shadowed(_frozen_logistic(), lambda r: r.estimator,
                                                         "_parameter_constraints"),
    "frozen: own key shadows": lambda: _shadowed(_frozen_logistic(), lambda r: r, "_get_metadata_request"),
    "metadata request shadows": lambda: _shadowed(_with_metadata_request(), lambda r: r._metadata_request.fit,
                                                  "_consumes"),
}


@pytest.mark.parametrize("case", sorted(_GETATTR_CASES))
@pytest.mark.parametrize("protocol", [2, 5])
def test_classes_with_getattr_are_judged_through(case: str, protocol: int, tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(_GETATTR_CASES[case](), protocol=protocol))
    with pytest.raises(safeload.UnsafeModelError, match="shadows the class attribute"):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("shadows the class attribute" in f.message for f in report.findings), report


@pytest.mark.parametrize("make", [_frozen_logistic, _with_metadata_request])
def test_intact_classes_with_getattr_scan_safe(make: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(make(), protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        safeload.load(path)
    assert safeload.scan(path).safe


def test_namedtuples_are_every_allowed_tuple_subclass() -> None:
    """The twin rebuilds exactly the allowed namedtuples (their fields from the class itself)."""
    import importlib

    from safeload._allowlist import DEFAULT_ENTRIES
    from safeload._mirrors import NAMEDTUPLES

    found = {}
    for entry in DEFAULT_ENTRIES:
        module, _, name = entry.name.rpartition(".")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (numpy.core's deprecation)
                obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(obj, type) and issubclass(obj, tuple) and obj is not tuple:
            found[entry.name] = obj._fields
    assert found == NAMEDTUPLES


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_iterative_imputer_estimators_are_judged(protocol: int, tmp_path: Path) -> None:
    """IterativeImputer keeps its fitted estimators in namedtuples: scan now judges them too."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    X = np.random.RandomState(0).rand(30, 3)
    X[::4, 1] = np.nan
    model = IterativeImputer(max_iter=2, random_state=0).fit(X)
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    assert safeload.scan(path).safe
    vars(model.imputation_sequence_[1].estimator)["get_params"] = -1
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    with pytest.raises(safeload.UnsafeModelError, match="shadows the class attribute"):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("imputation_sequence_[1][2].get_params" in f.message for f in report.findings)


def test_dict_carriers_are_every_allowed_class_with_a_dict_outside_sklearn() -> None:
    """Scan mirrors load's shadowing rule on every allowed class whose __dict__ a file fills."""
    import importlib

    from safeload._allowlist import DEFAULT_ENTRIES
    from safeload._mirrors import _DICT_CARRIERS

    # (these have a __dict__ no file fills: joblib swaps the wrapper for its array before anything
    # sees it; ndarray's and MaskedArray's __setstate__ take an array state, not attributes)
    not_filled = {"joblib.numpy_pickle.NumpyArrayWrapper", "numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray",
                  "numpy.matrix"}
    found = set()
    for entry in DEFAULT_ENTRIES:
        if entry.name.startswith(("sklearn.", "scipy.")):
            continue
        module, _, name = entry.name.rpartition(".")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(obj, type) and obj.__dictoffset__:
            found.add(entry.name)
    assert found == set(_DICT_CARRIERS) | {"functools.partial"} | not_filled


class _Reduced:
    def __init__(self, reduced: Any) -> None:
        self.reduced = reduced

    def __reduce__(self) -> Any:
        return self.reduced


_SHADOWING_BUILDS: dict[str, Any] = {
    # (what plain pickle builds: the class's own reduction, with a BUILD state a file can add)
    "OrderedDict": lambda: _Reduced((__import__("collections").OrderedDict, (), {"keys": 1})),
    "OrderedDict, slot state": lambda: _Reduced((__import__("collections").OrderedDict, (), (None, {"items": 1}))),
    "Counter": lambda: _Reduced((__import__("collections").Counter, ({"a": 1},), {"most_common": 2})),
    "partial": lambda: _Reduced((__import__("functools").partial, (np.add,), (np.add, (), {}, {"func": 1}))),
}


@pytest.mark.parametrize("case", sorted(_SHADOWING_BUILDS))
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_shadowing_keys_outside_sklearn_are_refused_by_scan_and_load(case: str, protocol: int,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"model": _SHADOWING_BUILDS[case]()}, protocol=protocol))
    pickle.loads(path.read_bytes())  # (plain pickle builds it)
    with pytest.raises(safeload.UnsafeModelError, match="shadows the class attribute"):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("shadows the class attribute" in f.message for f in report.findings), report


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_plain_state_on_dict_carriers_stays_safe(protocol: int, tmp_path: Path) -> None:
    import collections
    import functools

    model = {"o": _Reduced((collections.OrderedDict, (), {"note": 1})),
             "p": _Reduced((functools.partial, (np.add,), (np.add, (), {}, {"note": 1})))}
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    safeload.load(path)
    assert safeload.scan(path).safe


def _hgb() -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    X = np.random.RandomState(0).rand(60, 3)
    return HistGradientBoostingRegressor(max_iter=3).fit(X, X[:, 0])


_UNBUILDABLE: dict[str, Any] = {
    "no nodes": lambda p: vars(p).pop("nodes"),
    "nodes an int": lambda p: vars(p).__setitem__("nodes", 3),
    "nodes a list": lambda p: vars(p).__setitem__("nodes", [1, 2]),
    "nodes not records": lambda p: vars(p).__setitem__("nodes", np.zeros(4)),
}


@pytest.mark.parametrize("case", sorted(_UNBUILDABLE))
@pytest.mark.parametrize("protocol", [2, 5])
def test_a_predictor_its_setstate_cannot_build_is_malformed_to_scan_and_load(case: str, protocol: int,
                                                                             tmp_path: Path) -> None:
    """TreePredictor.__setstate__ casts ``nodes``: a state without a castable array fails the load
    (state fuzz seed 1818: scan said safe); the twin knows the state exactly, so scan says so too."""
    model = _hgb()
    _UNBUILDABLE[case](model._predictors[1][0])
    _assert_unbuildable(tmp_path, pickle.dumps(model, protocol=protocol), (AttributeError, TypeError), "unbuildable")


def _assert_unbuildable(tmp_path: Path, data: bytes, fails: Any, rule: str) -> None:
    """Plain pickle fails on ``data``; load says malformed, and scan flags it under ``rule``."""
    path = tmp_path / "m.pkl"
    path.write_bytes(data)
    with pytest.raises(fails):
        pickle.loads(data)
    with pytest.raises(safeload.MalformedModelError):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any(f.rule == rule for f in report.findings), report


def _isotonic() -> Any:
    from sklearn.isotonic import IsotonicRegression

    X = np.random.RandomState(0).rand(40)
    return IsotonicRegression(out_of_bounds="clip").fit(X, X + np.random.RandomState(1).rand(40) * 0.1)


_ISOTONIC_DAMAGE: dict[str, Any] = {
    "y one longer": lambda m: vars(m).__setitem__("y_thresholds_", np.append(m.y_thresholds_, 1.0)),
    "X two-dimensional": lambda m: vars(m).__setitem__("X_thresholds_", np.c_[m.X_thresholds_, m.X_thresholds_]),
    "no out_of_bounds": lambda m: vars(m).pop("out_of_bounds"),
    "y a 0-d array": lambda m: vars(m).__setitem__("y_thresholds_", np.array(1.0)),
}


@pytest.mark.parametrize("case", sorted(_ISOTONIC_DAMAGE))
@pytest.mark.parametrize("protocol", [2, 5])
def test_isotonic_setstate_is_imitated(case: str, protocol: int, tmp_path: Path) -> None:
    """IsotonicRegression.__setstate__ rebuilds f_ with interp1d from its thresholds: a state it
    fails on fails the load (state fuzz seed 2020: scan said safe); the twin runs the same step."""
    model = _isotonic()
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    assert safeload.scan(path).safe
    _ISOTONIC_DAMAGE[case](model)
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    with pytest.raises((AttributeError, TypeError, ValueError)):
        pickle.loads(path.read_bytes())
    with pytest.raises(safeload.MalformedModelError):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any(f.rule == "unbuildable" for f in report.findings), report


def test_isotonic_estimator_level_rules_now_reach_scan(tmp_path: Path) -> None:
    """With IsotonicRegression no longer unknown, its validators and the shadowing rule judge it."""
    model = _isotonic()
    vars(model)["predict"] = 1
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(model, protocol=4))
    with pytest.raises(safeload.UnsafeModelError, match="shadows the class attribute"):
        safeload.load(path)
    assert not safeload.scan(path).safe


@pytest.mark.parametrize("fmt", ["p0", "p1", "p2", "p5", "joblib"])
def test_estimators_only_a_bunch_holds_are_judged(fmt: str, tmp_path: Path) -> None:
    """A Bunch (named_estimators_) keeps its items through SETITEMS, or _reconstructor's copy in
    protocols 0-1: the walker keeps them and the twin rebuilds it, so an estimator reachable only
    through it is judged (state fuzz seed 2020: a VotingRegressor's dropped estimator, tampered)."""
    import io

    import joblib
    from sklearn.ensemble import VotingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.tree import DecisionTreeRegressor

    X = np.random.RandomState(0).rand(30, 4)
    model = VotingRegressor([("r", Ridge()), ("dt", DecisionTreeRegressor(max_depth=2))]).fit(X, X[:, 0])

    def dump() -> bytes:
        if fmt == "joblib":
            buf = io.BytesIO()
            joblib.dump(model, buf)
            return buf.getvalue()
        return pickle.dumps(model, protocol=int(fmt[1]))

    path = tmp_path / "m.pkl"
    path.write_bytes(dump())
    assert safeload.scan(path).safe
    model.estimators_ = model.estimators_[:1]
    vars(model.named_estimators_["dt"])["n_features_in_"] = -5
    path.write_bytes(dump())
    with pytest.raises(safeload.UnsafeModelError, match="n_features_in_"):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("n_features_in_" in f.message for f in report.findings), report


def _coo_file(tmp_path: Path, state_change: Any, protocol: int) -> Path:
    import copyreg

    import scipy.sparse as sp

    m = sp.coo_matrix((np.array([1.0, 2.0]), (np.array([0, 2]), np.array([1, 0]))), shape=(3, 2))
    state = dict(vars(m))
    state_change(state)
    vars(m).clear()
    vars(m).update(state)  # pickled as NEWOBJ + BUILD(state), the matrix's own reduction
    assert m.__reduce_ex__(protocol)[0] is copyreg.__newobj__
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"m": m}, protocol=protocol))
    return path


def _old_style(state: dict[str, Any]) -> None:
    state["row"], state["col"] = state.pop("coords")


def _out_of_range(state: dict[str, Any]) -> None:
    state["coords"] = (np.array([0, 7]), state["coords"][1])


def _old_style_out_of_range(state: dict[str, Any]) -> None:
    _old_style(state)
    state["row"] = np.array([0, 7])


@pytest.mark.parametrize("protocol", [2, 5])
def test_coo_matrix_setstate_is_imitated(protocol: int, tmp_path: Path) -> None:
    """coo_matrix's own __setstate__ (older SciPy's row/col moved to coords) made it unknown to the
    twin; it is imitated now, so its structural rule and build failures reach scan."""
    for change in (lambda s: None, _old_style):
        path = _coo_file(tmp_path, change, protocol)
        assert safeload.load(path)["m"].toarray().shape == (3, 2)
        assert safeload.scan(path).safe
    for change in (_out_of_range, _old_style_out_of_range):
        path = _coo_file(tmp_path, change, protocol)
        with pytest.raises(safeload.UnsafeModelError, match="coords"):
            safeload.load(path)
        assert not safeload.scan(path).safe
    path = _coo_file(tmp_path, lambda s: s.pop("coords"), protocol)
    with pytest.raises(safeload.MalformedModelError):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any(f.rule == "unbuildable" for f in report.findings), report


def _array_with_state(state: Any, masked: bool = False) -> Any:
    import numpy.ma as ma

    if masked:
        func, args, _ = ma.masked_array([1.0, 2.0], mask=[0, 1]).__reduce__()
    else:
        func, args, _ = np.arange(3.0).__reduce__()
    return _Reduced((func, args, state))


_BAD_ARRAY_STATES: dict[str, Any] = {
    "6 items": lambda: _array_with_state((1, (3,), np.dtype("f8"), False, b"\0" * 24, 0)),
    "3 items": lambda: _array_with_state(((3,), np.dtype("f8"), b"\0" * 24)),
    "a dict": lambda: _array_with_state({"shape": (3,)}),
    "an int": lambda: _array_with_state(5),
    "dtype a str": lambda: _array_with_state((1, (3,), "f8", False, b"\0" * 24)),
    "version a float": lambda: _array_with_state((1.0, (3,), np.dtype("f8"), False, b"\0" * 24)),
    "is_fortran None": lambda: _array_with_state((1, (3,), np.dtype("f8"), None, b"\0" * 24)),
    "4 items, dtype None": lambda: _array_with_state(((3,), None, False, b"\0" * 24)),
    "frombuffer, not whole items": lambda: _Reduced((np.arange(3.0).__reduce_ex__(5)[0],
                                                     (b"\0" * 20, np.dtype("f8"), (3,), "C"))),
    "frombuffer, not the shape's items": lambda: _Reduced((np.arange(3.0).__reduce_ex__(5)[0],
                                                           (b"\0" * 32, np.dtype("f8"), (3,), "C"))),
    "masked, 6 items": lambda: _array_with_state(np.arange(2.0).__reduce__()[2] + (b"\0\1",), masked=True),
}


@pytest.mark.parametrize("case", sorted(_BAD_ARRAY_STATES))
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_array_states_numpy_refuses_are_malformed_to_scan(case: str, protocol: int, tmp_path: Path) -> None:
    """numpy's __setstate__ refuses a state of the wrong length or kind; load fails to build such a
    file, and scan says so too (byte fuzz seed 1919: scan said safe)."""
    _assert_unbuildable(tmp_path, pickle.dumps({"a": _BAD_ARRAY_STATES[case]()}, protocol=protocol),
                        (TypeError, ValueError), "array-state")


@pytest.mark.parametrize("protocol", [2, 5])
def test_an_array_as_a_dict_key_is_malformed_to_scan(protocol: int, tmp_path: Path) -> None:
    """CPython cannot hash an ndarray: a stream that makes one a dict key fails the load (byte fuzz
    seed 1919, a duplicated range); the walker refuses it where it used to walk past."""
    key = np.arange(3.0)
    reduced = key.__reduce_ex__(protocol)
    data = bytearray(pickle.dumps({"k": 1}, protocol=protocol))
    sample = pickle.dumps(_Reduced(reduced), protocol=protocol)
    # the array's reduction in place of the key 'k' (the same opcodes pickle writes for it)
    body = sample[2:-1].removeprefix(b"\x95" + sample[3:11]) if protocol >= 4 else sample[2:-1]
    at = data.index(b"k")
    start = data.rindex(b"X" if protocol < 4 else b"\x8c", 0, at)
    tampered = bytes(data[:start]) + body + bytes(data[at + 1:])
    if protocol >= 4:  # (drop the frame: its length no longer matches)
        tampered = tampered[:2] + tampered[11:]
    with pytest.raises(TypeError, match="unhashable"):
        pickle.loads(tampered)
    path = tmp_path / "m.pkl"
    path.write_bytes(tampered)
    with pytest.raises(safeload.MalformedModelError):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("unhashable" in f.message for f in report.findings), report


@pytest.mark.parametrize("protocol", [2, 5])
def test_hgb_preprocessor_entries_are_judged_before_the_transformers(protocol: int, tmp_path: Path) -> None:
    """The width rule reads each transformer (a FunctionTransformer's func is a global the twin
    does not have); every entry's shape is checked first, so a malformed entry after such a
    transformer reaches scan too (byte fuzz seed 1919: scan said safe)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = np.random.RandomState(0).rand(80, 3)
    X[:, 0] = np.floor(X[:, 0] * 4)
    model = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(X, X[:, 1] > 0.5)
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    assert safeload.scan(path).safe
    model._preprocessor.transformers_.insert(2, "remainder")
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    with pytest.raises(safeload.UnsafeModelError, match="name, transformer, columns"):
        safeload.load(path)
    report = safeload.scan(path)
    assert not report.safe and any("name, transformer, columns" in f.message for f in report.findings), report
