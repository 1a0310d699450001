"""Regenerate safeload/_class_data.py: what scan needs to know about allowlisted classes.

``scan`` runs load's estimator validators on a *static twin* of the model
(``safeload/_static_model.py``) without importing the modules a file names, so it
needs, for every allowlisted scikit-learn class with an instance ``__dict__``, what
the real class would contribute: its bases (the MRO names the validator registry
dispatches on), the names its class dicts define (the shadowing rule), the value of
each plain constant (``SVR._impl``, a loss's ``is_multiclass``) and which other
names are data descriptors (a property wins over an instance key) or anything else.
Run by a maintainer when upgrading scikit-learn; ``tests/test_static_model.py``
fails when the checked-in data differs from what this produces.

    python tools/gen_class_data.py            # rewrite the data module
    python tools/gen_class_data.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "safeload" / "_class_data.py"
sys.path.insert(0, str(ROOT))

_PLAIN = (type(None), bool, int, float, str, bytes)
#: Names the runtime caches on a class once it is used (copyreg when it pickles, inspect): process state.
_CACHES = ("__slotnames__", "__signature__")


def _fullname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN) and type(value) in _PLAIN:
        return not (isinstance(value, float) and value != value)  # repr(nan) is not a literal
    if type(value) in (tuple, frozenset) and depth < 3:
        return all(_plain(v, depth + 1) for v in value)
    return False


def _literal(value: Any) -> str:
    """``repr``, with frozensets sorted (their order follows string hashing, random per process)."""
    if type(value) is frozenset:
        return f"frozenset({{{', '.join(sorted(map(_literal, value)))}}})" if value else "frozenset()"
    if type(value) is tuple:
        return f"({', '.join(map(_literal, value))}{',' if len(value) == 1 else ''})"
    return repr(value)


def _resolve(name: str) -> Any:
    module, _, qualname = name.rpartition(".")
    while module:
        try:
            obj: Any = importlib.import_module(module)
        except ImportError:
            module, _, head = module.rpartition(".")
            qualname = f"{head}.{qualname}"
            continue
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    raise ImportError(name)


def classes() -> dict[str, type]:
    """Allowlisted scikit-learn and SciPy classes whose instances have a ``__dict__``, with every base."""
    from safeload._allowlist import DEFAULT_ENTRIES, Kind

    found: dict[str, type] = {}
    for entry in DEFAULT_ENTRIES:
        if entry.kind is not Kind.NEW or not entry.name.startswith(("sklearn.", "scipy.")):
            continue
        try:
            cls = _resolve(entry.name)
        except (ImportError, AttributeError):
            continue
        if not isinstance(cls, type) or not cls.__dictoffset__:
            continue
        for base in cls.__mro__:
            if base is not object:
                found[_fullname(base)] = base
    return found


def _alias(value: Any) -> str | None:
    """``x`` for a property whose getter is only ``return self.x`` (scipy's ``format``, ``shape``)."""
    fget = getattr(value, "fget", None)
    if not isinstance(value, property) or fget is None:
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fget)))
    except (OSError, TypeError, SyntaxError):
        return None
    func = tree.body[0] if tree.body else None
    if not isinstance(func, ast.FunctionDef) or len(func.args.args) != 1:
        return None
    body = [b for b in func.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return None
    ret = body[0].value
    if isinstance(ret, ast.Attribute) and isinstance(ret.value, ast.Name) and ret.value.id == func.args.args[0].arg:
        return ret.attr
    return None


def describe(cls: type) -> tuple[tuple[str, ...], dict[str, Any], tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """(bases, plain constants, data-descriptor names, other names, alias properties) of one class's own dict."""
    consts: dict[str, Any] = {}
    data: list[str] = []
    other: list[str] = []
    aliases: dict[str, str] = {}
    for name, value in vars(cls).items():
        if name in ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", *_CACHES):
            continue
        if _plain(value):
            consts[name] = value
        elif inspect.isdatadescriptor(value):
            data.append(name)
            target = _alias(value)
            if target is not None:
                aliases[name] = target
        else:
            other.append(name)
    bases = tuple(_fullname(b) for b in cls.__bases__ if b is not object)
    return bases, consts, tuple(sorted(data)), tuple(sorted(other)), aliases


def _setstate_casts() -> dict[str, tuple[str, Any]]:
    """The one such class today (its __setstate__ is read by the static-model test)."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    return {"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": ("nodes", PREDICTOR_RECORD_DTYPE)}


def render(found: dict[str, type]) -> str:
    import scipy
    import sklearn

    lines = [
        f'"""Generated by tools/gen_class_data.py from scikit-learn {sklearn.__version__} and SciPy '
        f'{scipy.__version__}; do not edit."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, Final",
        "",
        f'SKLEARN_VERSION: Final = "{sklearn.__version__}"',
        f'SCIPY_VERSION: Final = "{scipy.__version__}"',
        "",
        "#: class -> (bases, plain constants, data-descriptor names, other class-level names,",
        "#: properties whose getter is only ``return self.<attribute>``: name -> attribute).",
        "CLASSES: Final[dict[str, tuple[tuple[str, ...], dict[str, Any], tuple[str, ...], tuple[str, ...],",
        "                               dict[str, str]]]] = {",
    ]
    for name in sorted(found):
        bases, consts, data, other, aliases = describe(found[name])
        const_text = ", ".join(f"{k!r}: {_literal(consts[k])}" for k in sorted(consts))
        alias_text = ", ".join(f"{k!r}: {aliases[k]!r}" for k in sorted(aliases))
        lines.append(f"    {name!r}: ({bases!r}, {{{const_text}}}, {data!r}, {other!r}, {{{alias_text}}}),")
    lines.append("}")
    lines += [
        "",
        "#: classes whose own __setstate__ is a dict update followed by ``attr = attr.astype(dtype,",
        "#: casting='same_kind')`` when the dtype differs: (attribute, dtype descr).",
        "SETSTATE_CASTS: Final[dict[str, tuple[str, list[tuple[str, str]]]]] = {",
    ]
    for name, (attr, dtype) in sorted(_setstate_casts().items()):
        lines.append(f"    {name!r}: ({attr!r}, {dtype.descr!r}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    from _generated import write_or_check

    return write_or_check(__doc__.splitlines()[0], DATA, lambda: render(classes()), "tools/gen_class_data.py")


if __name__ == "__main__":
    raise SystemExit(main())
