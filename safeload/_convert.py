"""``convert``: turn a pickle/joblib model into a skops file, proving the copy is faithful.

Migration off pickle is only worth doing if it cannot make things worse, so the
order is: judge the source statically (nothing runs for an unsafe file), build
it with ``safeload.load``, serialise with skops in memory, write a temporary
file next to the destination, load that file back with ``safeload.load`` and
compare it with the original (type, ``get_params()``, and outputs on a probe
input), and only then move it into place.  Any failure leaves no destination
file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import types
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeload._errors import (
    LimitExceededError,
    MalformedModelError,
    SafeloadError,
    UnsafeModelError,
    UnsupportedFormatError,
)
from safeload._load import effective_policy, load
from safeload._policy import Policy
from safeload._report import ScanReport, Verdict
from safeload._scan import scan

__all__ = [
    "ConversionError",
    "ConvertResult",
    "DestinationError",
    "RoundTripError",
    "SourceError",
    "UnrepresentableError",
    "convert",
    "same",
]

#: Methods whose outputs must survive the round trip, when the object has them.
PROBE_METHODS: tuple[str, ...] = (
    "predict", "predict_proba", "decision_function", "score_samples", "transform", "mahalanobis", "kneighbors",
)
_PROBE_ROWS = 8
_PROBE_SEED = 0
_TEXT_PROBE: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog",
    "a model file should never be a program",
    "safe loading of scikit-learn estimators",
    "spam spam spam eggs and spam",
)
_PRIMITIVES = frozenset(
    f"builtins.{t}" for t in ("dict", "list", "tuple", "str", "int", "float", "bool", "NoneType", "set",
                              "frozenset", "bytes", "bytearray", "complex", "slice")
)
_LOCATE_DEPTH = 8


class ConversionError(SafeloadError):
    """The conversion did not happen for a reason other than the source being unsafe."""


class SourceError(ConversionError):
    """SRC does not exist or cannot be read."""


class DestinationError(ConversionError):
    """DST exists (and ``force`` is off), is SRC itself, or cannot be written."""


class UnrepresentableError(ConversionError):
    """skops cannot represent (part of) the object; ``where`` is the attribute path, ``type_name`` its type."""

    def __init__(self, message: str, *, where: str, type_name: str, reason: str) -> None:
        super().__init__(message)
        self.where = where
        self.type_name = type_name
        self.reason = reason


class RoundTripError(ConversionError):
    """The skops copy does not reproduce the original (type, parameters or outputs differ)."""


@dataclass(frozen=True)
class ConvertResult:
    """What ``convert`` wrote and what it verified.

    ``skops_types`` lists every non-builtin type the skops file names (what a
    loader must trust); ``untrusted_types`` is the subset plain
    ``skops.io.load`` does not trust by default, i.e. what to review and pass as
    ``trusted=`` when loading the file without safeload.
    """

    src: str
    dst: str
    estimator_type: str
    source_format: str
    skops_types: tuple[str, ...]
    untrusted_types: tuple[str, ...]
    checked_params: bool
    checked_predictions: bool
    probe_methods: tuple[str, ...]


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    force: bool = False,
    allow: Iterable[str] | Mapping[str, str] = (),
    allow_unsafe: bool = False,
    policy: Policy | None = None,
) -> ConvertResult:
    """Convert the pickle/joblib model ``src`` into the skops file ``dst``, verified by a round trip.

    Raises ``UnsafeModelError`` (or another ``SafeloadError``) for a source the
    policy refuses, before anything is built; ``UnrepresentableError`` when skops
    cannot represent the object; ``RoundTripError`` when the copy differs;
    ``DestinationError`` when ``dst`` exists and ``force`` is false.  On any
    error nothing is written.  ``allow`` obeys the dangerous-name rule
    (``DangerousAllowError`` unless ``allow_unsafe=True``); the configuration is found
    from ``src``'s directory.
    """
    src_path, dst_path = os.fspath(src), os.fspath(dst)
    pol = effective_policy(policy, allow, allow_unsafe=allow_unsafe, near=src_path)
    _check_paths(src_path, dst_path, force)
    report = scan(src_path, policy=pol)
    _raise_unless_safe(report)
    obj = load(src_path, policy=pol)
    data = _dumps(obj)
    tmp = _write_temp(data, dst_path)
    try:
        copy = load(tmp, policy=pol)
        checked_params, methods = _verify(obj, copy)
        skops_types, untrusted = _types(data, pol)
        _move_into_place(tmp, dst_path, force)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return ConvertResult(
        src=src_path,
        dst=dst_path,
        estimator_type=type_name(obj),
        source_format=report.format,
        skops_types=skops_types,
        untrusted_types=untrusted,
        checked_params=checked_params,
        checked_predictions=bool(methods),
        probe_methods=methods,
    )


def type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# -- paths -------------------------------------------------------------------------------


def _check_paths(src: str, dst: str, force: bool) -> None:
    if not os.path.exists(src):
        raise SourceError(f"{src}: no such file")
    if not os.path.isfile(src):
        raise SourceError(f"{src}: not a regular file")
    if os.path.isdir(dst):
        raise DestinationError(f"{dst} is a directory; give the name of the .skops file to write")
    if os.path.exists(dst):
        if os.path.samefile(src, dst):
            raise DestinationError(f"{dst} is the source file itself; write the skops copy elsewhere")
        if not force:
            raise DestinationError(f"{dst} already exists (use force=True / --force to replace it)")
    parent = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(parent):
        raise DestinationError(f"cannot write {dst}: directory {parent} does not exist")


def _write_temp(data: bytes, dst: str) -> str:
    """Write next to ``dst`` (same filesystem, so the final move is atomic), honouring the umask."""
    parent = os.path.dirname(os.path.abspath(dst))
    tmp = os.path.join(parent, f".{os.path.basename(dst)}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise DestinationError(f"cannot write {dst}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise DestinationError(f"cannot write {dst}: {exc.strerror or exc}") from None
    return tmp


def _move_into_place(tmp: str, dst: str, force: bool) -> None:
    try:
        if force:
            os.replace(tmp, dst)
            return
        try:
            os.link(tmp, dst)  # fails if dst appeared meanwhile: never clobber without force
        except FileExistsError:
            raise DestinationError(f"{dst} already exists (use force=True / --force to replace it)") from None
        except OSError:  # no hard links on this filesystem
            if os.path.exists(dst):
                raise DestinationError(f"{dst} already exists (use force=True / --force to replace it)") from None
            os.replace(tmp, dst)
            return
        os.unlink(tmp)
    except DestinationError:
        raise
    except OSError as exc:
        raise DestinationError(f"cannot write {dst}: {exc.strerror or exc}") from None


# -- judging the source --------------------------------------------------------------------


def _raise_unless_safe(report: ScanReport) -> None:
    """Turn a scan verdict into the error ``load`` would raise, without building anything."""
    if report.safe:
        return
    serious = [f for f in report.findings if f.severity != "info"] or list(report.findings)
    message = f"{report.path}: " + ("; ".join(f.message for f in serious[:5]) or report.verdict)
    if report.verdict == Verdict.UNSAFE:
        names = sorted({n for f in serious for n in f.names})
        raise UnsafeModelError(f"refused to convert {message}", names=names, source=report.path)
    if any(f.rule == "limit" or f.rule.startswith("limit-") for f in serious):
        raise LimitExceededError(f"refused to convert {message}")
    if report.verdict == Verdict.ERROR:
        if any("cannot read" in f.message for f in serious):
            raise SourceError(message)
        raise MalformedModelError(f"cannot convert {message}")
    raise UnsupportedFormatError(f"cannot convert {message}")


# -- skops --------------------------------------------------------------------------------


def _skops() -> Any:
    import skops.io as sio

    return sio


def _dumps(obj: Any) -> bytes:
    sio = _skops()
    try:
        with _quiet():
            data: bytes = sio.dumps(obj)
        return data
    except Exception as exc:  # noqa: BLE001 - skops raises many types for one meaning
        where, culprit, reason = _locate_unrepresentable(obj, exc)
        version = _skops_version()
        place = "the object itself" if not where else where
        raise UnrepresentableError(
            f"skops {version} cannot represent {type_name(culprit)} at {place}: {reason}",
            where=where,
            type_name=type_name(culprit),
            reason=reason,
        ) from None


def _skops_version() -> str:
    try:
        import skops

        return str(skops.__version__)
    except (ImportError, AttributeError):  # pragma: no cover
        return "?"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield f"[{key!r}]", value
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield f"[{i}]", value
    elif not isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, np.ndarray)):
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            for key, value in attrs.items():
                yield f".{key}", value


def _locate_unrepresentable(obj: Any, exc: BaseException) -> tuple[str, Any, str]:
    """Find the innermost attribute skops refuses, so the message can name it."""
    sio = _skops()
    path, culprit, reason = "", obj, _reason(exc)
    for _ in range(_LOCATE_DEPTH):
        if _names_own_type(reason, culprit):
            break
        for suffix, child in _children(culprit):
            try:
                with _quiet():
                    sio.dumps(child)
            except Exception as child_exc:  # noqa: BLE001
                path, culprit, reason = path + suffix, child, _reason(child_exc)
                break
        else:
            break
    return path, culprit, reason


def _names_own_type(reason: str, obj: Any) -> bool:
    """skops' UnsupportedTypeException names the refused class: stop descending when it is this one."""
    return f"type {type(obj).__name__} " in reason and "not supported" in reason


def _types(data: bytes, policy: Policy) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from safeload._skops import audit

    found = tuple(t for t in audit(data, policy).types if t not in _PRIMITIVES)
    try:
        untrusted = tuple(sorted(_skops().get_untrusted_types(data=data)))
    except Exception:  # noqa: BLE001 - informational only; our own freshly written file
        untrusted = ()
    return found, untrusted


# -- verification -------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _verify(original: Any, copy: Any) -> tuple[bool, tuple[str, ...]]:
    """Compare the reloaded copy with the original; returns (parameters compared, methods compared).

    The structural comparison covers ``get_params(deep=False)`` and the public
    fitted attributes of every estimator reachable from the object; the probe
    then checks that the copy computes the same outputs.
    """
    if type(copy) is not type(original):
        raise RoundTripError(f"the skops copy is a {type_name(copy)}, the original a {type_name(original)}")
    diff = same(original, copy, "model")
    if diff:
        raise RoundTripError(f"the skops copy differs from the original: {diff}")
    checked_params = False
    methods: list[str] = []
    for where, a, b in _predictors(original, copy):
        lost = sorted(set(getattr(a, "__dict__", {})) ^ set(getattr(b, "__dict__", {})))
        if lost:
            raise RoundTripError(f"the skops copy lost or gained attributes {', '.join(lost)} at model{where}")
        checked_params = True
        methods.extend(where + m for m in _compare_outputs(a, b, where))
    return checked_params, tuple(methods)


def _is_estimator(obj: Any) -> bool:
    return callable(getattr(obj, "get_params", None)) and not isinstance(obj, type)


def _predictors(original: Any, copy: Any) -> Iterator[tuple[str, Any, Any]]:
    """The estimators whose outputs to compare: the object itself, or those of a dict/list bundle."""
    if isinstance(original, Mapping):
        for key, value in original.items():
            if _is_estimator(value) and key in copy:
                yield f"[{key!r}].", value, copy[key]
    elif isinstance(original, (list, tuple)):
        for i, (value, other) in enumerate(zip(original, copy, strict=False)):
            if _is_estimator(value):
                yield f"[{i}].", value, other
    elif _is_estimator(original):
        yield "", original, copy


def _has(obj: Any, name: str) -> bool:
    try:
        return callable(getattr(obj, name, None))
    except Exception:  # noqa: BLE001 - available_if checks may raise anything
        return False


def _compare_outputs(original: Any, copy: Any, where: str) -> list[str]:
    """Methods compared on the first probe any of them accepts; raises on a difference."""
    methods = [m for m in PROBE_METHODS if _has(original, m)]
    if not methods:
        return []
    for probe in _probes(original):
        done: list[str] = []
        for method in methods:
            try:
                with _quiet():
                    expected = getattr(original, method)(probe)
            except Exception:  # noqa: BLE001 - this probe does not suit this method
                continue
            try:
                with _quiet():
                    got = getattr(copy, method)(probe)
            except Exception as exc:  # noqa: BLE001
                raise RoundTripError(f"{where}{method}() works on the original but fails on the skops copy: "
                                     f"{_reason(exc)}") from None
            diff = same(expected, got, f"{where}{method}(probe)")
            if diff:
                with _quiet():
                    again = getattr(original, method)(probe)
                if same(expected, again, method):
                    continue  # the original itself is not deterministic here: nothing to compare
                raise RoundTripError(f"the skops copy gives different outputs: {diff}")
            done.append(method)
        if done:
            return done
    return []


def _first_step(obj: Any) -> Any:
    for _ in range(10):
        steps = getattr(obj, "steps", None)
        if isinstance(steps, list) and steps and isinstance(steps[0], tuple) and len(steps[0]) == 2:
            obj = steps[0][1]
        else:
            break
    return obj


def _probes(obj: Any) -> list[Any]:
    """Probe inputs, most likely first: numeric rows of the fitted width, then text, dicts, labels."""
    probes: list[Any] = []
    n = getattr(obj, "n_features_in_", None)
    if isinstance(n, (int, np.integer)) and 0 < int(n) <= 100_000:
        rng = np.random.RandomState(_PROBE_SEED)
        x = rng.normal(size=(_PROBE_ROWS, int(n)))
        candidates: list[Any] = [x, np.abs(x), rng.randint(0, 3, size=(_PROBE_ROWS, int(n)))]
        categorical = _category_probe(_first_step(obj), int(n))
        if categorical is not None:
            candidates.insert(0, categorical)
        names = getattr(obj, "feature_names_in_", None)
        if names is not None:
            candidates = [_frame(c, names) for c in candidates] + candidates
        probes.extend(candidates)
    first = _first_step(obj)
    vocabulary = getattr(first, "vocabulary_", None)
    if isinstance(vocabulary, Mapping) and hasattr(first, "feature_names_") and vocabulary:
        keys = list(vocabulary)[: _PROBE_ROWS * 2]
        probes.append([{k: 1.0} for k in keys])  # DictVectorizer
    if not probes or hasattr(first, "build_analyzer"):
        probes.insert(0 if hasattr(first, "build_analyzer") else len(probes), list(_TEXT_PROBE))
    classes = getattr(obj, "classes_", None)
    if n is None and isinstance(classes, np.ndarray) and classes.ndim == 1 and len(classes):
        probes.append(classes[:_PROBE_ROWS])
    return probes


def _category_probe(obj: Any, n: int) -> Any:
    """Rows made of seen categories, for encoders (OneHotEncoder, OrdinalEncoder...) that refuse unknown ones."""
    categories = getattr(obj, "categories_", None)
    if not isinstance(categories, list) or len(categories) != n or not all(
            isinstance(c, np.ndarray) and c.ndim == 1 and len(c) for c in categories):
        return None
    columns = [np.resize(c, _PROBE_ROWS) for c in categories]
    probe = np.empty((_PROBE_ROWS, n), dtype=object if any(c.dtype == object for c in columns) else
                     np.result_type(*[c.dtype for c in columns]))
    for j, column in enumerate(columns):
        probe[:, j] = column
    return probe


def _frame(x: Any, names: Any) -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        return x
    return pd.DataFrame(x, columns=list(names))


# -- robust equality ----------------------------------------------------------------------


def same(a: Any, b: Any, where: str = "value") -> str | None:
    """``None`` when ``a`` and ``b`` are equal, else a one-line description of the first difference.

    Handles numpy arrays (dtype, shape, NaN == NaN), scipy sparse matrices, pandas
    objects, nested containers, estimators (type + ``get_params(deep=False)``),
    random states and functions (identity), without recursing forever on cycles.
    """
    return _Same().diff(a, b, where)


class _Same:
    def __init__(self) -> None:
        self.active: set[tuple[int, int]] = set()
        self.depth = 0

    def diff(self, a: Any, b: Any, where: str) -> str | None:
        if a is b:
            return None
        key = (id(a), id(b))
        if key in self.active or self.depth > 200:
            return None
        self.active.add(key)
        self.depth += 1
        try:
            return self._diff(a, b, where)
        finally:
            self.depth -= 1
            self.active.discard(key)

    def _diff(self, a: Any, b: Any, where: str) -> str | None:  # noqa: C901 - one case per kind of value
        if type(a) is not type(b):
            return f"{where}: {type_name(a)} != {type_name(b)}"
        if isinstance(a, np.ndarray):
            return self._array(a, b, where)
        if _is_sparse(a):
            return self._sparse(a, b, where)
        if _is_pandas(a):
            return None if (a.equals(b) and _pandas_labels_equal(a, b)) else f"{where}: pandas objects differ"
        if isinstance(a, Mapping):
            if list(a) != list(b):
                return f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
            for k in a:
                d = self.diff(a[k], b[k], f"{where}[{k!r}]")
                if d:
                    return d
            return None
        if isinstance(a, (list, tuple)):
            if len(a) != len(b):
                return f"{where}: length {len(a)} != {len(b)}"
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                d = self.diff(x, y, f"{where}[{i}]")
                if d:
                    return d
            return None
        if isinstance(a, (set, frozenset)):
            return None if a == b else f"{where}: {a!r} != {b!r}"
        if isinstance(a, (float, complex, np.floating, np.complexfloating)):
            return None if (a == b or (np.isnan(a) and np.isnan(b))) else f"{where}: {a!r} != {b!r}"
        if isinstance(a, (str, bytes, int, bool, np.generic, np.dtype, type(None))):
            return None if a == b else f"{where}: {a!r} != {b!r}"
        if isinstance(a, types.MethodType):
            return self.diff(a.__func__, b.__func__, f"{where}.__func__") or \
                self.diff(a.__self__, b.__self__, f"{where}.__self__")
        if isinstance(a, (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType, np.ufunc)):
            return f"{where}: {a!r} is not {b!r}"  # a is b was checked first
        if isinstance(a, np.random.RandomState):
            return self.diff(a.get_state(legacy=False), b.get_state(legacy=False), f"{where}.get_state()")
        if isinstance(a, np.random.Generator):
            return self.diff(a.bit_generator.state, b.bit_generator.state, f"{where}.bit_generator.state")
        if _is_estimator(a):
            return self.diff(a.get_params(deep=False), b.get_params(deep=False), f"{where}.get_params()") or \
                self.diff(fitted_attributes(a), fitted_attributes(b), where)
        return self._other(a, b, where)

    def _array(self, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], where: str) -> str | None:
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{where}: array {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"
        if a.dtype.hasobject:
            for i, (x, y) in enumerate(zip(a.ravel(order="K"), b.ravel(order="K"), strict=False)):
                d = self.diff(x, y, f"{where}.flat[{i}]")
                if d:
                    return d
            return None
        nan = a.dtype.kind in "fc"
        try:
            equal = bool(np.array_equal(a, b, equal_nan=nan))
        except TypeError:
            equal = bool(np.array_equal(a, b))
        return None if equal else f"{where}: array values differ"

    def _sparse(self, a: Any, b: Any, where: str) -> str | None:
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{where}: sparse {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"
        x, y = a.tocsr(), b.tocsr()
        x.sort_indices()
        y.sort_indices()
        # Index dtypes may legitimately narrow (int64 -> int32) on the way through skops.
        if not (np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices)):
            return f"{where}: sparse structure differs"
        return self.diff(x.data, y.data, f"{where}.data")

    def _other(self, a: Any, b: Any, where: str) -> str | None:
        try:
            eq = a == b
            if isinstance(eq, (bool, np.bool_)) and eq:
                return None
        except Exception:  # noqa: BLE001 - fall back to comparing state
            pass
        state_a, state_b = _state(a), _state(b)
        if state_a is None or state_b is None:
            return f"{where}: {type_name(a)} objects cannot be compared"
        return self.diff(state_a, state_b, f"{where}.<state>")


def fitted_attributes(est: Any) -> dict[str, Any]:
    """Public fitted attributes (scikit-learn's trailing-underscore convention), by name."""
    attrs = getattr(est, "__dict__", {})
    return {k: v for k, v in sorted(attrs.items()) if k.endswith("_") and not k.startswith("_")}


def _state(obj: Any) -> Any:
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict) and attrs:
        return attrs
    try:
        reduced = obj.__reduce_ex__(2)
    except Exception:  # noqa: BLE001
        return attrs
    if isinstance(reduced, tuple) and len(reduced) >= 2:
        return tuple(reduced[1:3]) if len(reduced) >= 3 else (reduced[1],)
    return attrs


def _is_sparse(obj: Any) -> bool:
    mod = type(obj).__module__
    if not mod.startswith("scipy.sparse"):
        return False
    import scipy.sparse as sp

    return bool(sp.issparse(obj))


def _is_pandas(obj: Any) -> bool:
    return type(obj).__module__.startswith("pandas.") and hasattr(obj, "equals")


def _pandas_labels_equal(a: Any, b: Any) -> bool:
    for attr in ("index", "columns"):
        x, y = getattr(a, attr, None), getattr(b, attr, None)
        if x is not None and not x.equals(y):
            return False
    dtypes_a, dtypes_b = getattr(a, "dtypes", None), getattr(b, "dtypes", None)
    if dtypes_a is None:
        return True
    if hasattr(dtypes_a, "equals"):
        return bool(dtypes_a.equals(dtypes_b))
    return bool(dtypes_a == dtypes_b)
