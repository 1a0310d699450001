"""Instance state that shadows what the class defines.

Python looks an attribute up in the instance ``__dict__`` before a class-level
constant, method or non-data descriptor, so a file can replace, for one object,
what its class says: an ``_impl`` key turns an ``SVR`` into a ``c_svc`` for
libsvm, an ``is_multiclass`` key changes a loss's output width. The rule is
general: a key of an instance ``__dict__`` that names a class-level attribute
is refused unless real fitted instances of that class carry it. What real
instances carry is generated from the model zoo by ``tools/gen_shadow_keys.py``
into :mod:`safeload._validators._shadow_data` (a test keeps it current).
"""

from __future__ import annotations

from typing import Any, Final

from safeload._validators._base import _fail, _fullname
from safeload._validators._shadow_data import SHADOW_KEYS

_CLASS_NAMES: Final[dict[type, frozenset[str]]] = {}


def class_level_names(cls: type) -> frozenset[str]:
    """Every name defined in the class dicts along the MRO (cached per type)."""
    names = _CLASS_NAMES.get(cls)
    if names is None:
        names = frozenset(name for base in cls.__mro__ for name in vars(base))
        if len(_CLASS_NAMES) < 4096:
            _CLASS_NAMES[cls] = names
    return names


def register_class_names(cls: type, names: frozenset[str]) -> None:
    """A stand-in class (``_static_model``'s proxies) answers with the names of the class it stands for."""
    _CLASS_NAMES[cls] = names


def shadowing_keys(obj: object) -> frozenset[str]:
    """Keys of ``obj.__dict__`` that name a class-level attribute (the tool's census too)."""
    d = getattr(obj, "__dict__", None)
    if not isinstance(d, dict) or not d:
        return frozenset()
    return frozenset(k for k in d.keys() & class_level_names(type(obj)) if isinstance(k, str))


def _check_shadowing(obj: Any, path: str) -> None:
    """Refuse instance keys that shadow the class, unless real fitted instances carry them."""
    d = getattr(obj, "__dict__", None)
    if not isinstance(d, dict) or not d:
        return
    names = class_level_names(type(obj))
    if names.isdisjoint(d):  # the common case, without building a set per instance
        return
    found = d.keys() & names
    extra = found - SHADOW_KEYS.get(_fullname(type(obj)), frozenset())
    if extra:
        key = sorted(map(str, extra))[0]
        _fail(
            path,
            f".{key}",
            f"instance state shadows the class attribute {_fullname(type(obj))}.{key}, "
            "which real fitted instances never carry; code reading it would see the file's value",
        )
