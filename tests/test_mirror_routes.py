"""check_state decides its branch once per callee name (``_mirrors._route``), not per BUILD.

The reference below is the branch order check_state tested on every BUILD before (an elif
chain over the name); every allowed name, and names that only share a prefix with one, must
take the same branch, and the state check_state keeps for the static model must be the one the
chain kept (the array state, a binary tree's 13-tuple, a scikit-learn/SciPy instance's first
dict state; nothing for the rest).
"""

from __future__ import annotations

from typing import Any

import pytest

from safeload import _mirrors
from safeload._policy import Policy
from safeload._simulated import OTHER, Cont, Obj

ROUTES = {
    "array": _mirrors._ROUTE_ARRAY, "masked": _mirrors._ROUTE_MASKED, "rng": _mirrors._ROUTE_RNG,
    "tree": _mirrors._ROUTE_TREE, "binary": _mirrors._ROUTE_BINARY, "length": _mirrors._ROUTE_LENGTH,
    "partial": _mirrors._ROUTE_PARTIAL, "shadow": _mirrors._ROUTE_SHADOW,
    "estimator": _mirrors._ROUTE_ESTIMATOR, "scipy": _mirrors._ROUTE_SCIPY, "none": _mirrors._ROUTE_NONE,
}


def _reference(callee: str) -> str:
    """The elif chain of check_state before routes, on the name alone."""
    if callee in _mirrors._RECONSTRUCT:
        return "array"
    if callee == _mirrors._MARECONSTRUCT:
        return "masked"
    if callee in _mirrors._RNG_STATE_TARGETS:
        return "rng"
    if callee == _mirrors._TREE:
        return "tree"
    if callee in _mirrors.BINARY_TREES:
        return "binary"  # (a 13-tuple state goes to the binary-tree check, any other to the length rule)
    if callee in _mirrors._STATE_LENGTHS:
        return "length"
    if callee == "functools.partial":
        return "partial"
    if callee in _mirrors._DICT_CARRIERS:
        return "shadow"
    if callee.startswith("sklearn."):
        return "estimator"
    if callee.startswith("scipy."):
        return "scipy"
    return "none"


def _names() -> list[str]:
    names = set(Policy().entries)
    names |= set(_mirrors._RECONSTRUCT) | set(_mirrors._RNG_STATE_TARGETS) | set(_mirrors.BINARY_TREES)
    names |= set(_mirrors._STATE_LENGTHS) | set(_mirrors._DICT_CARRIERS)
    names |= {_mirrors._MARECONSTRUCT, _mirrors._TREE, "functools.partial"}
    # near misses: a shared prefix or suffix is not the name
    names |= {n + "X" for n in sorted(names)[::40]} | {"sklearn", "scipy", "sklearnx.A", "scipyx.B", "numpy.ma.core"}
    return sorted(names)


@pytest.mark.parametrize("callee", _names())
def test_route_is_the_elif_chain(callee: str) -> None:
    assert _mirrors._route(callee) == ROUTES[_reference(callee)]


def _kept(callee: str, state: Any, first: bool) -> Any:
    """What the chain stored on the target for the static model."""
    if callee in _mirrors._RECONSTRUCT:
        return state
    if callee in _mirrors.BINARY_TREES:
        return state if first and isinstance(state, tuple) and len(state) == 13 else OTHER
    if callee.startswith(("sklearn.", "scipy.")):
        return state if first and isinstance(state, Cont) and state.kind == "dict" else OTHER
    return None


def _states() -> list[Any]:
    d = Cont("dict")
    d.flat = ["a", 1]
    d.count = 1
    return [d, tuple(range(13)), (1, 2, 3), None, 7]


_SAMPLED = [n for n in _names() if _reference(n) in ("binary", "tree", "length", "estimator", "scipy", "none",
                                                      "shadow")]


@pytest.mark.parametrize("callee", _SAMPLED[::3] + [n for n in _SAMPLED if _reference(n) != "estimator"])
def test_check_state_keeps_what_the_chain_kept(callee: str) -> None:
    checks = _mirrors.StaticChecks(Policy(), b"", None, [])
    for state in _states():
        for first in (True, False):
            target = Obj(callee)
            if not first:
                target.state = OTHER
            checks.check_state(0, target, state)
            assert target.state is _kept(callee, state, first), (callee, state, first)
