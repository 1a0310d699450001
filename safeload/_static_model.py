"""The static twin of a model: ``scan`` runs ``load``'s estimator validators without building anything.

The estimator-level invariants (neighbour labels, one-hot widths, SVM support counts, gradient-
boosting ``init_`` widths, keys that shadow the class, ...) are judged by validators written for
real objects (``_validators``). ``load`` runs them on what it built; ``scan`` builds nothing, so
here the walker's simulated values become an inert twin of the model:

* a scikit-learn instance becomes a *proxy*: an instance of a generated class that carries the
  real class's name, bases, plain class constants and class-level names (``_class_data``,
  generated from scikit-learn; nothing the file names is imported), with the state dict the
  stream gives it, as ``BaseEstimator.__setstate__`` would apply it;
* an array is read from the stream's own bytes (zero-copy), a dtype or numpy scalar evaluated,
  lists, dicts and tuples rebuilt, plain values are themselves;
* anything else (a function, a sparse matrix, a random state, a list past the walker's cap) is an
  :class:`Unknown`.

Every class-level name a proxy lacks a value for (a method, a property) and every use of an
``Unknown`` (an attribute, a comparison, ``isinstance``, its type's name) marks the check
*unknowable*: that check is left to ``load``. So a check that does finish judged only values that
are exactly what ``load`` would build, and ``scan`` reports what ``load``'s validator reports.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np

from safeload._class_data import CLASSES, SCIPY_VERSION, SETSTATE_CASTS, SKLEARN_VERSION
from safeload._errors import SafeloadError
from safeload._hashwork import HashCost
from safeload._mirrors import (
    _FROMBUFFER,
    _RECONSTRUCT,
    _TREE,
    BINARY_TREES,
    DICT_SUBCLASSES,
    NAMEDTUPLES,
    StaticChecks,
    concrete,
)
from safeload._simulated import MALFORMED, UNSAFE, ArraySpan, Cont, Issue, Obj, Run, Trace
from safeload._validators import _checks_for, _Graph
from safeload._validators._base import _CENSUS, _VALIDATED, _fullname
from safeload._validators.shadow import register_class_names

# (scan imports this module only for a root the twin can open: _analysis._twin_can_open)

__all__ = ["Unknowable", "Unknown", "check_model", "twin", "versions_match"]

#: Simulated values rebuilt per stream at most (beyond it scan gives no static verdict: the walk
#: already bounds the file, this bounds the twin's cost on a model of many small objects).
MAX_VALUES = 200_000
_MAX_DEPTH = 200
_SCALAR = frozenset({"numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar"})
_PLAIN = (type(None), bool, int, float, str, bytes)

_touched = [False]


class Unknowable(Exception):
    """A check used a value scan does not have."""


def _touch(*_: Any) -> NoReturn:
    _touched[0] = True
    raise Unknowable("a value that cannot be established without building the model")


class _UnknownMeta(type):
    """A by-name type check (``_mro_names`` reads ``__mro__``) on an Unknown is a use too."""

    @property
    def __mro__(cls) -> NoReturn:
        _touch()


class Unknown(metaclass=_UnknownMeta):
    """A value scan cannot establish without building it: every use of it is unknowable."""

    __slots__ = ()

    # isinstance() falls back to __class__ when type() does not match
    @property  # type: ignore[misc]
    def __class__(self) -> NoReturn:  # type: ignore[override]
        _touch()

    __getattr__ = _touch
    __len__ = __iter__ = __getitem__ = __contains__ = __bool__ = __int__ = __index__ = __float__ = _touch
    __array__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _touch
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _touch
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __neg__ = __abs__ = __round__ = _touch
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __invert__ = __matmul__ = __rmatmul__ = _touch


UNKNOWN = Unknown()


class IndexCensus(Unknown):
    """A dict too large for the twin to rebuild, filled only by vocabulary runs, whose verdict under
    ``load``'s index-map check (``_validators.text._check_index_map``) the stream's bytes decide:
    ``problem`` is that check's refusal, or None. That check reads it (it knows the marker below);
    every other use is unknowable, as with any Unknown."""

    __slots__ = ("problem",)
    _safeload_index_census = True

    def __init__(self, problem: str | None) -> None:
        self.problem = problem


def census(data: Any, vocab: list[Any]) -> tuple[int, int, int, Any]:
    """(entries, status, bad entry, bad value) of a dict's recorded entries (``Cont.vocab``: runs,
    and keys followed by their values), as ``_speedups.index_census`` defines them."""
    pieces: list[tuple[Any, ...]] = []
    k = 0
    while k < len(vocab):
        x = vocab[k]
        if type(x) is Run:
            pieces.append((x.start, x.end, x.count, x.put))
            k += 1
        else:
            pieces.append((x.encode("utf-8", "surrogatepass"), vocab[k + 1]))
            k += 2
    if _index_census is not None:
        return _index_census(data, pieces)
    texts, values = _entries(data, vocab)  # pure-Python install: expand the runs (slower, same verdict)
    n = len(values)
    if len(set(texts)) != len(texts):
        return n, 2, -1, 0
    seen: set[int] = set()
    for j, v in enumerate(values):
        if type(v) is not int or not 0 <= v < n or v in seen:
            return n, 1, j, v
        seen.add(v)
    return n, 0, -1, 0


def _entries(data: Any, vocab: list[Any]) -> tuple[list[str], list[Any]]:
    """The keys and values a recorded dict's SETITEMS give, in stream order (runs expanded)."""
    from safeload._walker import _expand

    texts: list[str] = []
    values: list[Any] = []
    k = 0
    while k < len(vocab):
        x = vocab[k]
        if type(x) is Run:
            pairs, keys = _expand(data, x)
            texts.extend(keys)
            values.extend(pairs[1::2])
            k += 1
        else:
            texts.append(x)
            values.append(vocab[k + 1])
            k += 2
    return texts, values


try:
    from safeload import _speedups
except ImportError:  # pure-Python install: census() expands the runs instead
    _speedups = None  # type: ignore[assignment]
_index_census: Callable[[Any, list[tuple[Any, ...]]], tuple[int, int, int, Any]] | None = getattr(
    _speedups, "index_census", None)


class _Opaque:
    """A class-level name scan has no value for (a method, a non-literal constant)."""

    __slots__ = ()

    def __get__(self, obj: Any, owner: Any = None) -> NoReturn:
        _touch()


class _OpaqueData(_Opaque):
    """The same for a data descriptor (a property wins over an instance key, as in the real class)."""

    __slots__ = ()

    def __set__(self, obj: Any, value: Any) -> NoReturn:
        _touch()

    def __delete__(self, obj: Any) -> NoReturn:
        _touch()


class _Alias(_OpaqueData):
    """A property whose getter is only ``return self.<attribute>`` (scipy's ``format``, ``shape``)."""

    __slots__ = ("attribute",)

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            _touch()
        return getattr(obj, self.attribute)


class _TreeView:
    """What estimator validators read of a ``Tree`` (its own arrays are checked by ``check_tree``)."""

    __slots__ = ("capacity", "max_depth", "max_n_classes", "n_classes", "n_features", "n_outputs", "node_count")
    capacity: Any
    max_depth: Any
    max_n_classes: Any
    n_classes: Any
    n_features: Any
    n_outputs: Any
    node_count: Any

    __getattr__ = _touch


_TreeView.__module__ = "sklearn.tree._tree"
_TreeView.__qualname__ = "Tree"
_TreeView.__name__ = "Tree"


class _BinaryTreeView:
    """What estimator validators read of a KD/Ball tree: its ``data`` (its own arrays are checked
    by ``StaticChecks.check_binary_tree``). One subclass per tree class carries the real MRO's names."""

    __slots__ = ("data",)
    data: Any

    __getattr__ = _touch


def _binary_tree_views() -> dict[str, tuple[type, np.dtype[Any]]]:
    """``sklearn.neighbors._kd_tree.KDTree`` → (a view class named KDTree → KDTree64 → BinaryTree64,
    the dtype its ``__setstate__`` accepts for ``data``: a typed memoryview of exactly that type)."""
    views: dict[str, tuple[type, np.dtype[Any]]] = {}
    for module, kind in (("sklearn.neighbors._kd_tree", "KDTree"), ("sklearn.neighbors._ball_tree", "BallTree")):
        for bits, dtype in (("64", np.dtype(np.float64)), ("32", np.dtype(np.float32))):
            base = type(f"BinaryTree{bits}", (_BinaryTreeView,), {"__module__": module, "__slots__": ()})
            sized = type(f"{kind}{bits}", (base,), {"__module__": module, "__slots__": ()})
            views[f"{module}.{kind}{bits}"] = (sized, dtype)
            if bits == "64":  # KDTree/BallTree subclass the 64-bit class
                plain = type(kind, (sized,), {"__module__": module, "__slots__": ()})
                views[f"{module}.{kind}"] = (plain, dtype)
    return views


_BINARY_TREE_VIEWS: dict[str, tuple[type, np.dtype[Any]]] = _binary_tree_views()
assert set(_BINARY_TREE_VIEWS) == BINARY_TREES
#: The twin's views of Cython objects: their own state is judged by the walker, not by validators.
_VIEW_TYPES: frozenset[type] = frozenset({_TreeView, *(v for v, _ in _BINARY_TREE_VIEWS.values())})


def _namedtuple_view(name: str, fields: tuple[str, ...]) -> type:
    """A tuple subclass named like the real one, with its fields; any other attribute is unknowable."""
    import operator

    module, _, qualname = name.rpartition(".")
    namespace: dict[str, Any] = {"__module__": module, "__qualname__": qualname, "__slots__": (),
                                 "_fields": fields, "__getattr__": _touch}
    for k, field in enumerate(fields):
        namespace[field] = property(operator.itemgetter(k))
    return type(qualname, (tuple,), namespace)


_NAMEDTUPLE_VIEWS: dict[str, type] = {name: _namedtuple_view(name, f) for name, f in NAMEDTUPLES.items()}
_NAMEDTUPLE_TYPES: frozenset[type] = frozenset(_NAMEDTUPLE_VIEWS.values())

class _BunchView(dict):  # type: ignore[type-arg]
    """A ``Bunch`` as unpickling leaves it: its items (SETITEMS), an empty ``__dict__`` (its
    ``__setstate__`` ignores the state), attribute reads answered from the items."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


_BunchView.__module__ = "sklearn.utils._bunch"
_BunchView.__qualname__ = _BunchView.__name__ = "Bunch"
_DICT_VIEWS: dict[str, type] = {"sklearn.utils._bunch.Bunch": _BunchView}
assert set(_DICT_VIEWS) == DICT_SUBCLASSES

_PROXIES: dict[str, type | None] = {}
_PROXY_TYPES: set[type] = set()
_OBJECT_NAMES = frozenset(vars(object)) | {"__dict__", "__weakref__", "__module__", "__doc__"}


def _proxy_class(name: str) -> type | None:
    """A stand-in for the class ``name``; None where one cannot be faithful."""
    if name in _PROXIES:
        return _PROXIES[name]
    _PROXIES[name] = None  # (a base cycle in corrupt data cannot recurse)
    info = CLASSES.get(name)
    if info is None:
        return None
    base_names, consts, data, other, aliases = info
    bases = tuple(_proxy_class(b) for b in base_names)
    if any(b is None for b in bases):
        return None
    module, _, qualname = name.rpartition(".")
    namespace: dict[str, Any] = {"__module__": module, "__qualname__": qualname}
    for key, value in consts.items():
        if not (key.startswith("__") and key.endswith("__")):
            namespace[key] = value
    for key in data:
        if not (key.startswith("__") and key.endswith("__")):
            namespace[key] = _Alias(aliases[key]) if key in aliases else _OpaqueData()
    for key in other:
        if not (key.startswith("__") and key.endswith("__")):
            namespace[key] = _Opaque()
    if "__getattr__" in other:  # (FrozenEstimator, MetadataRequest: a missing attribute is theirs to answer)
        namespace["__getattr__"] = _touch
    try:
        cls = type(qualname.rpartition(".")[2], tuple(b for b in bases if b is not None) or (object,), namespace)
    except TypeError:  # an MRO that does not linearise from the data
        return None
    _PROXIES[name] = cls
    _PROXY_TYPES.add(cls)
    register_class_names(cls, class_names(cls))
    return cls


def _faithful(name: str) -> type | None:
    """A proxy only for classes whose instances get their state as pickle's default BUILD,
    ``BaseEstimator.__setstate__`` or a known dtype cast (``SETSTATE_CASTS``) gives it, and that
    have no ``__getattribute__``. A class with a ``__getattr__`` gets a proxy whose ``__getattr__``
    is unknowable: an attribute the state holds reads as in the real class, a missing one is load's."""
    cls = _proxy_class(name)
    if cls is None:
        return None
    for base in cls.__mro__:
        base_name = f"{base.__module__}.{base.__qualname__}"
        info = CLASSES.get(base_name)
        if info is None:
            continue
        own = set(info[3]) | set(info[2]) | set(info[1])
        if "__getattribute__" in own:
            return None
        if "__setstate__" in own:
            return cls if base_name in ("sklearn.base.BaseEstimator", name) and (
                base_name != name or name in SETSTATE_CASTS or name in _SETSTATE) else None
    return cls


def class_names(cls: type) -> frozenset[str]:
    """The class-level names of the real class a proxy stands for (the shadowing rule's input)."""
    names = set(_OBJECT_NAMES)
    for base in cls.__mro__:
        info = CLASSES.get(f"{base.__module__}.{base.__qualname__}")
        if info is not None:
            names.update(info[1], info[2], info[3])
    return frozenset(names)


class _Twin:
    """Rebuilds simulated values; ``origins`` maps each proxy to the offset of the opcode that made it."""

    def __init__(self, checks: StaticChecks) -> None:
        self.checks = checks
        self.done: dict[int, Any] = {}
        self.origins: dict[int, int] = {}
        self.budget = MAX_VALUES
        #: (offset, message) for instances whose own __setstate__ fails on the state the file gives.
        self.unbuildable: list[tuple[int, str]] = []
        # Plain keys the twin may hash: each distinct tuple judged once (a memo-built tuple DAG is
        # exponential to walk item by item; the walker bounded what hashing it costs).
        self._keys = HashCost(_tuple_items, _not_plain, sys.getrecursionlimit(), MAX_VALUES)

    def value(self, v: Any, depth: int = 0) -> Any:
        if type(v) in _PLAIN:
            return v
        key = id(v)
        if key in self.done:
            return self.done[key]
        self.budget -= 1
        if self.budget < 0:
            raise _OverBudget
        if depth > _MAX_DEPTH:
            return UNKNOWN
        if type(v) is tuple:
            out: Any = tuple(self.value(x, depth + 1) for x in v)
        elif type(v) is memoryview:
            out = v.tobytes() if v.nbytes <= 1 << 20 else UNKNOWN
        elif type(v) is Cont:
            out = self.container(v, depth)
        elif type(v) is Obj:
            out = self.obj(v, depth)
        else:  # G (a global), a vocabulary run, a set, anything the walker does not model
            out = UNKNOWN
        self.done[key] = out
        return out

    def container(self, c: Cont, depth: int) -> Any:
        if not c.complete():
            if c.kind == "dict" and c.vocabulary_only():
                return self.index_census(c)
            return UNKNOWN
        if c.kind == "list":
            items: list[Any] = []
            self.done[id(c)] = items  # before its items: a list may hold itself
            items.extend(self.value(x, depth + 1) for x in c.flat)
            return items
        if c.kind == "dict":
            d: dict[Any, Any] = {}
            self.done[id(c)] = d
            flat, value = c.flat, self.value
            for j in range(0, len(flat), 2):
                key = flat[j]
                if type(key) is not str:  # (state keys are names: the common case costs one test)
                    key = value(key, depth + 1)
                    if self._keys.measure(key) < 0:
                        return UNKNOWN
                item = flat[j + 1]
                d[key] = item if type(item) in _PLAIN else value(item, depth + 1)
            return d
        return UNKNOWN

    def index_census(self, c: Cont) -> Any:
        assert c.vocab is not None
        entries, status, bad, value = census(self.checks.data, c.vocab)
        if status == 2:  # equal keys: CPython's dict keeps the first position and the last value
            return self.built_dict(c.vocab, entries)
        if entries != c.count:
            return UNKNOWN
        if status == 1:
            reason = "repeats an earlier column" if type(value) is int and 0 <= value < entries \
                else f"is not a column index in [0, {entries})"
            # (bytes stay views in the walk; protocols 0-2 spell them as a _codecs.encode call)
            shown = repr(bytes(value)) if type(value) is memoryview else (
                "a bytes value" if type(value) is Obj else repr(value))
            return IndexCensus(f"entry {bad} (in stream order) maps to {shown}, which {reason}; "
                                        "transform() builds sparse columns from it unchecked")
        return IndexCensus(None)

    def built_dict(self, vocab: list[Any], entries: int) -> Any:
        """The dict CPython builds from a record with repeated keys (small enough: the twin's
        budget counts its entries), for load's own index-map check to judge; else unknown."""
        self.budget -= entries
        if self.budget < 0:
            return UNKNOWN
        try:
            texts, values = _entries(self.checks.data, vocab)
        except UnicodeDecodeError:  # (the pure-Python matcher does not check texts: load fails on it)
            return UNKNOWN
        return dict(zip(texts, values, strict=True))  # (a later equal key keeps the first's place)

    def obj(self, o: Obj, depth: int) -> Any:
        callee = o.callee
        if callee is None:
            return UNKNOWN
        if o.array:
            span = o.state
            if isinstance(span, ArraySpan) and span.nested is not None:
                return self.value(span.nested.root, depth + 1) if span.nested.root is not None else UNKNOWN
            return self.array(o)
        if callee in _RECONSTRUCT:
            arr = self.array(o)
            return arr if arr is not UNKNOWN else self.object_array(o, depth)
        if callee in _FROMBUFFER:
            return self.array(o)
        if callee == "numpy.dtype":
            try:
                dt = concrete(o)
            except Exception:  # noqa: BLE001 - unevaluable: unknown
                return UNKNOWN
            return dt if isinstance(dt, np.dtype) else UNKNOWN
        if callee in _SCALAR:
            return _scalar(o.args)
        if callee == _TREE:
            return self.tree(o)
        if callee in BINARY_TREES:
            return self.binary_tree(o, callee)
        if callee in _DICT_VIEWS:
            items = self.value(o.args, depth + 1) if type(o.args) is Cont else UNKNOWN
            return _DICT_VIEWS[callee](items) if type(items) is dict else UNKNOWN
        if callee in _NAMEDTUPLE_VIEWS:
            args = o.args
            if not (isinstance(args, tuple) and len(args) == len(NAMEDTUPLES[callee])) or o.state is not None:
                return UNKNOWN  # (BUILD on a namedtuple fails the load)
            return _NAMEDTUPLE_VIEWS[callee](self.value(args, depth + 1))
        if callee.startswith(("sklearn.", "scipy.")):
            return self.instance(o, callee, depth)
        return UNKNOWN

    def array(self, o: Obj) -> Any:
        arr = self.checks.static_array(o, limit=None)
        return UNKNOWN if arr is None else arr

    def object_array(self, o: Obj, depth: int) -> Any:
        """An object array pickled as ``_reconstruct`` + BUILD(version, shape, dtype, fortran, items)."""
        state = o.state
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[4], Cont)):
            return UNKNOWN
        _, shape, dtype, fortran, raw = state
        try:
            dt = concrete(dtype)
        except Exception:  # noqa: BLE001
            return UNKNOWN
        if not (isinstance(dt, np.dtype) and dt == np.dtype(object) and isinstance(shape, tuple)
                and all(type(d) is int and d >= 0 for d in shape) and type(fortran) is bool):
            return UNKNOWN
        items = self.value(raw, depth + 1)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if type(items) is not list or len(items) != count:
            return UNKNOWN
        out = np.empty(count, dtype=object)
        for j, item in enumerate(items):
            out[j] = item
        return out.reshape(shape, order="F" if fortran else "C")

    def tree(self, o: Obj) -> Any:
        args, state = o.args, o.state
        fields = state.str_fields() if isinstance(state, Cont) else None
        if not (isinstance(args, tuple) and len(args) == 3) or fields is None:
            return UNKNOWN
        n_classes = self.checks.static_array(args[1])
        nodes = self.checks.static_array(fields.get("nodes"), limit=None)
        if n_classes is None or nodes is None or type(args[0]) is not int or type(args[2]) is not int:
            return UNKNOWN
        view = _TreeView()
        view.n_features, view.n_outputs, view.n_classes = args[0], args[2], n_classes
        view.max_n_classes = int(n_classes.max()) if n_classes.size else 0
        view.node_count = fields.get("node_count")
        view.max_depth = fields.get("max_depth")
        view.capacity = nodes.shape[0] if nodes.ndim == 1 else UNKNOWN
        return view

    def binary_tree(self, o: Obj, callee: str) -> Any:
        """A KD/Ball tree built by ``newObj`` + BUILD(13-tuple): ``__setstate__`` takes ``data`` as a
        C-contiguous 2-d memoryview of one exact dtype (anything else fails the load: unknown)."""
        state = o.state
        if not (isinstance(state, tuple) and len(state) == 13):
            return UNKNOWN
        cls, dtype = _BINARY_TREE_VIEWS[callee]
        data = self.checks.static_array(state[0], limit=None)
        if data is None or data.ndim != 2 or data.dtype != dtype or not data.flags.c_contiguous:
            return UNKNOWN
        view = cls()
        view.data = data
        return view

    def instance(self, o: Obj, callee: str, depth: int) -> Any:
        how = _how(callee)
        state = o.state
        if how is None or not (state is None or (isinstance(state, Cont) and state.kind == "dict" and state.whole())):
            return UNKNOWN  # (a state the walker dropped, or a second BUILD, is OTHER: unknown)
        cls, pops_version, cast = how
        inst: Any = object.__new__(cls)
        self.done[id(o)] = inst
        self.origins[id(inst)] = o.origin
        if state is None:
            return inst
        d = self.value(state, depth + 1)
        if type(d) is not dict or not all(type(k) is str for k in d):
            return UNKNOWN  # (exact types: isinstance on an unknown state would touch it)
        d = dict(d)
        if pops_version:
            d.pop("_sklearn_version", None)  # BaseEstimator.__setstate__ pops it before the update
        if cast is not None:  # e.g. TreePredictor: nodes = nodes.astype(RECORD_DTYPE, casting="same_kind")
            attr, target = cast
            value = d.get(attr, _MISSING)
            if type(value) is not np.ndarray:
                if value is _MISSING or type(value) in _PLAIN or type(value) in _CONTAINERS:
                    # its __setstate__ reads value.dtype: an AttributeError, and load cannot build the model
                    what = "no" if value is _MISSING else f"a {type(value).__name__} for its"
                    self.unbuildable.append((o.origin, f"{callee} state has {what} {attr!r} array; its "
                                                       f"__setstate__ reads {attr}.dtype, so the model cannot be built"))
                return UNKNOWN
            if value.dtype != target:
                try:
                    d[attr] = value.astype(target, casting="same_kind")
                except Exception as exc:  # noqa: BLE001 - numpy's refusal is the load's
                    self.unbuildable.append((o.origin, f"{callee} state {attr!r} cannot be cast to the record "
                                                       f"dtype its __setstate__ casts it to ({exc})"))
                    return UNKNOWN
        imitate = _SETSTATE.get(callee)
        if imitate is None:
            inst.__dict__.update(d)
        else:
            problem = imitate(inst, d)
            if problem is not None:
                self.unbuildable.append((o.origin, f"{callee}.__setstate__ fails on this state: {problem}"))
                return UNKNOWN
        return inst


def _isotonic_setstate(inst: Any, d: dict[str, Any]) -> str | None:
    """IsotonicRegression.__setstate__ is BaseEstimator's, then ``_build_f(X_thresholds_, y_thresholds_)``
    rebuilds ``f_``: run the same ``interp1d`` on numeric arrays (deterministic, sized by the file)
    for its verdict; ``f_`` itself stays unknown. The problem load would raise on, or None."""
    inst.__dict__.update(d)
    if "X_thresholds_" not in d or "y_thresholds_" not in d:
        return None
    if "out_of_bounds" not in d:
        return "_build_f reads out_of_bounds, which the state lacks (AttributeError)"
    inst.f_ = UNKNOWN
    x, y, oob = d["X_thresholds_"], d["y_thresholds_"], d["out_of_bounds"]
    if not (type(x) is np.ndarray and type(y) is np.ndarray and x.dtype.kind in "biuf" and y.dtype.kind in "biuf"
            and type(oob) in (str, type(None))):
        return None  # (what interp1d would make of other values is load's to find out)
    if y.ndim == 0:
        return "y_thresholds_ is a 0-d array; len() fails on it"
    if len(y) == 1:
        return None
    from scipy.interpolate import interp1d

    try:
        interp1d(x, y, kind="linear", bounds_error=oob == "raise")
    except Exception as exc:  # noqa: BLE001 - scipy's refusal is the load's
        return f"interp1d(X_thresholds_, y_thresholds_) raises {type(exc).__name__}: {exc}"
    return None


def _coo_setstate(inst: Any, d: dict[str, Any]) -> str | None:
    """coo_matrix.__setstate__: a state without ``coords`` (older SciPy) gets ``(row, col)`` moved there."""
    if "coords" not in d:
        missing = [k for k in ("row", "col") if k not in d]
        if missing:
            return f"a state with neither coords nor {missing[0]!r} (KeyError)"
        d = dict(d)
        d["coords"] = (d.pop("row"), d.pop("col"))
    inst.__dict__.update(d)
    return None


#: Classes with their own __setstate__ that the twin imitates exactly (applying ``d``, which
#: BaseEstimator's version-popping and casts have already seen): the problem load would raise
#: on, or None. The class is then as faithful as one that takes pickle's default BUILD.
_SETSTATE: dict[str, Callable[[Any, dict[str, Any]], str | None]] = {
    "sklearn.isotonic.IsotonicRegression": _isotonic_setstate,
    "scipy.sparse._coo.coo_matrix": _coo_setstate,
}
_HOW: dict[str, tuple[type, bool, tuple[str, np.dtype[Any]] | None] | None] = {}


def _how(callee: str) -> tuple[type, bool, tuple[str, np.dtype[Any]] | None] | None:
    """How an instance of ``callee`` takes its state: (proxy class, pops ``_sklearn_version``,
    dtype cast); None where the twin cannot imitate it (cached per class name)."""
    if callee in _HOW:
        return _HOW[callee]
    cls = _faithful(callee)
    how: tuple[type, bool, tuple[str, np.dtype[Any]] | None] | None = None
    if cls is not None:
        pops = callee.startswith("sklearn.") and any(
            f"{b.__module__}.{b.__qualname__}" == "sklearn.base.BaseEstimator" for b in cls.__mro__)
        spec = SETSTATE_CASTS.get(callee)
        cast = (spec[0], np.dtype([tuple(f) for f in spec[1]])) if spec is not None else None
        how = (cls, pops, cast)
    _HOW[callee] = how
    return how


_CONTAINERS = (list, tuple, dict, np.ndarray)
_MISSING: Any = object()


class _OverBudget(Exception):
    pass


def _tuple_items(v: Any) -> Any:
    return v if type(v) is tuple else None


def _not_plain(v: Any) -> bool:
    return type(v) not in _PLAIN


def _scalar(args: Any) -> Any:
    if not (isinstance(args, tuple) and len(args) == 2):
        return UNKNOWN
    try:
        dt = concrete(args[0])
        raw = concrete(args[1])
    except Exception:  # noqa: BLE001
        return UNKNOWN
    if not isinstance(dt, np.dtype) or dt.hasobject or not isinstance(raw, bytes) or len(raw) != dt.itemsize:
        return UNKNOWN
    return np.frombuffer(raw, dt)[0]


def twin(trace: Trace, checks: StaticChecks) -> tuple[Any, dict[int, int]] | None:
    """The model's twin and the stream offset of each proxy; None when it would cost too much."""
    builder, root = _build(trace, checks)
    return None if root is _NO_TWIN else (root, builder.origins)


_NO_TWIN: Any = object()


def _build(trace: Trace, checks: StaticChecks) -> tuple[_Twin, Any]:
    builder = _Twin(checks)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * _MAX_DEPTH + 200))
    try:
        return builder, builder.value(trace.root)
    except (_OverBudget, Unknowable):  # (a builder step that touched an unknown: no twin, no verdict)
        return builder, _NO_TWIN
    finally:
        sys.setrecursionlimit(limit)


def versions_match() -> bool:
    """The class data describes the installed scikit-learn and SciPy (read from package metadata:
    nothing is imported). Under other versions a proxy could differ from the real class, so the
    twin is not built: ``scan`` then judges what the walker mirrors, and ``load`` the rest."""
    if not _VERSIONS:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _VERSIONS.append(version("scikit-learn") == SKLEARN_VERSION and version("scipy") == SCIPY_VERSION)
        except PackageNotFoundError:
            _VERSIONS.append(False)
    return _VERSIONS[0]


_VERSIONS: list[bool] = []


def check_model(trace: Trace, checks: StaticChecks) -> list[Issue]:
    """The issues ``load``'s validators would raise on this model, as far as they can be established."""
    if not versions_match():
        return []
    # As in walk(): the twin allocates a few values per instance, and a collection now would
    # traverse everything the walk left in the youngest generation (measured: ~0.1 s on a
    # model of 100,000 small objects). The twin is bounded; the GC resumes when it is done.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        builder, root = _build(trace, checks)
        # (each unbuildable instance is a fact on its own: pickle builds every object, reachable or not)
        issues = [Issue("unbuildable", MALFORMED, offset, message) for offset, message in builder.unbuildable]
        if root is _NO_TWIN:
            return issues
        return issues + [Issue("estimator-state", UNSAFE, builder.origins.get(id(obj), 0),
                               f"load's validator refuses it: {message}") for obj, message in findings(root)]
    finally:
        if paused:
            gc.enable()



def findings(root: Any) -> list[tuple[Any, str]]:
    """(object, message) for every validator that fails on the twin, skipping checks that used an
    unknown value; the graph is walked breadth-first as ``_validators.validate`` walks the model."""
    token = _VALIDATED.set(set())
    census = _CENSUS.set({})
    out: list[tuple[Any, str]] = []
    try:
        graph = _Graph()
        graph.add(root, -1, 0)
        nodes, index = graph.nodes, graph.index
        i = 0
        while i < len(nodes):
            item = nodes[i]
            t = type(item)
            if t is Unknown or t is IndexCensus or t in _VIEW_TYPES:
                i += 1
                continue
            if t not in _CONTAINERS and t not in _PLAIN:
                for check in _checks_for(t):
                    message = _judge(check, item, graph, i)
                    if message is not None:
                        out.append((item, message))
            for child in _children(item):
                if type(child) not in _PLAIN and id(child) not in index:
                    graph.add(child, i, graph.depths[i] + 1)
            i += 1
    finally:
        _CENSUS.reset(census)
        _VALIDATED.reset(token)
    return out


def _judge(check: Any, item: Any, graph: _Graph, i: int) -> str | None:
    """The check's refusal, or None when it passes or used an unknown value."""
    _touched[0] = False
    try:
        check(item, "")
        return None
    except Exception:  # noqa: BLE001 - told apart below
        if _touched[0]:
            return None
    try:
        path = graph.path(i)
    except Exception:  # noqa: BLE001 - a path through an unknown value
        path = ""
    _touched[0] = False
    try:
        check(item, path)
    except SafeloadError as exc:
        return None if _touched[0] else str(exc)
    except Exception as exc:  # noqa: BLE001 - load fails closed on these too
        return None if _touched[0] else f"{path or '<model>'}: cannot validate {_fullname(type(item))} ({exc})"
    return None


def _children(obj: Any) -> Any:
    """The twin's own children (lists, tuples, dicts, object arrays, proxies' state), by exact type:
    no isinstance on an unknown value."""
    t = type(obj)
    if t is list or t is tuple or t in _NAMEDTUPLE_TYPES:
        return obj
    if t is dict or t is _BunchView:
        return list(obj.values())
    if t is np.ndarray:
        return obj.reshape(-1).tolist() if obj.dtype == object else ()
    d = obj.__dict__ if t.__module__.startswith("sklearn") and t in _PROXY_TYPES else None
    return list(d.values()) if d else ()
