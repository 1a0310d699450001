"""The compiled dict census (``_speedups.dict_types``, ``_speedups.index_map_ok``) against the
Python expressions it replaces.

``dict_types`` decides whether the validation walk looks inside a dict at all (all keys and
values leaves: skipped), so one type it failed to report would hide an estimator inside a
dict from every validator. ``index_map_ok`` short-cuts ``_check_index_map``: True must never
be said of a vocabulary the numpy path refuses. Generated dicts hold both to their
references; the validators give the same verdicts with and without them.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from safeload._errors import UnsafeModelError
from safeload._validate import validate
from safeload._validators import _base, text

speedups = pytest.importorskip("safeload._speedups")  # CI builds it: test_speedups asserts so


class _Str(str):
    pass


class _Int(int):
    pass


_KEYS = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.booleans(), st.none(), st.floats(allow_nan=False),
                  st.builds(_Str, st.text(max_size=3)), st.builds(_Int, st.integers(0, 5)),
                  st.tuples(st.integers(0, 2)), st.binary(max_size=2), st.frozensets(st.integers(0, 2), max_size=2))
_VALUES = st.one_of(_KEYS, st.lists(st.integers(), max_size=2), st.builds(LogisticRegression),
                    st.builds(np.int64, st.integers(0, 5)), st.builds(np.float32, st.floats(width=32)))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=30))
def test_dict_types_is_the_type_census(d: dict[Any, Any]) -> None:
    assert speedups.dict_types(d) == (frozenset(map(type, d.keys())), frozenset(map(type, d.values())))


def test_dict_types_reads_the_dict_a_subclass_stores() -> None:
    class Odd(dict[Any, Any]):
        def keys(self) -> Any:  # what a subclass says it holds does not change what it stores
            return iter(())

    d = Odd({1: "a"})
    assert speedups.dict_types(d) == (frozenset({int}), frozenset({str}))
    assert speedups.dict_types(collections.OrderedDict(a=1.0)) == (frozenset({str}), frozenset({float}))
    assert speedups.dict_types({}) == (frozenset(), frozenset())
    with pytest.raises(TypeError):
        speedups.dict_types([("a", 1)])


def test_dict_types_notices_a_dict_that_changes_size_under_it() -> None:
    victim: dict[Any, Any] = {}

    class Meta(type):
        def __hash__(cls) -> int:  # runs inside the census (PySet_Add hashes the type)
            victim[len(victim) + 100] = 0
            return id(cls)

    class Key(metaclass=Meta):
        pass

    victim.update({Key(): 1, "b": 2})
    with pytest.raises(RuntimeError, match="changed size"):
        speedups.dict_types(victim)


def _index_map_reference(d: object) -> bool:
    """The good case of ``_check_index_map`` as the C helper states it."""
    if type(d) is not dict:
        return False
    values = list(d.values())
    return all(type(v) is int for v in values) and sorted(values) == list(range(len(values)))


_INDEX_VALUES = st.one_of(st.integers(-2, 40), st.just(2**63), st.just(-(2**64)), st.booleans(),
                          st.builds(_Int, st.integers(0, 5)), st.builds(np.int64, st.integers(0, 5)),
                          st.floats(0, 5))


@st.composite
def _vocabularies(draw: st.DrawFn) -> dict[str, Any]:
    """A permutation of range(n), then up to two values damaged."""
    n = draw(st.integers(0, 40))
    values: list[Any] = draw(st.permutations(list(range(n))))
    for _ in range(draw(st.integers(0, 2)) if n else 0):
        values[draw(st.integers(0, n - 1))] = draw(_INDEX_VALUES)
    return {f"t{i}": v for i, v in enumerate(values)}


@settings(max_examples=600, deadline=None)
@given(_vocabularies())
def test_index_map_ok_says_true_exactly_of_a_permutation_of_ints(vocab: dict[str, Any]) -> None:
    assert speedups.index_map_ok(vocab) is _index_map_reference(vocab)


@settings(max_examples=300, deadline=None)
@given(_vocabularies())
def test_the_vocabulary_check_gives_the_same_verdict_without_the_helpers(vocab: dict[str, Any]) -> None:
    def verdict() -> str | None:
        try:
            text._check_index_map(vocab, "m", ".vocabulary_")
        except UnsafeModelError as exc:
            return str(exc)
        return None

    fast = verdict()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(text, "c_index_map_ok", None)
        mp.setattr(_base, "_c_dict_types", None)
        assert verdict() == fast


def test_index_map_ok_refuses_what_is_not_an_exact_dict() -> None:
    assert speedups.index_map_ok(collections.OrderedDict(a=0)) is False  # the numpy path decides
    assert speedups.index_map_ok([0, 1]) is False
    assert speedups.index_map_ok({}) is True
    assert speedups.index_map_ok({"a": 0, "b": 0}) is False
    assert speedups.index_map_ok({"a": True}) is False  # bool is not a column index type


def _fitted_vectorizer(vocab: dict[str, Any]) -> CountVectorizer:
    vec = CountVectorizer().fit(["aa bb cc"])
    vec.vocabulary_ = vocab
    return vec


@pytest.mark.parametrize(("vocab", "refused"), [
    ({"a": 0, "b": 1, "c": 2}, False),
    ({"a": 0, "b": 1, "c": 3}, True),   # column 3 of 3
    ({"a": 0, "b": 1, "c": 1}, True),   # column 1 twice
    ({"a": 0, "b": np.int64(1), "c": 2}, False),  # numpy ints: the numpy path accepts them
    ({"a": 0, "b": -1, "c": 2}, True),
])
def test_validate_judges_vocabularies_the_same_with_and_without_the_helpers(
        vocab: dict[str, Any], refused: bool) -> None:
    def outcome() -> str | None:
        try:
            validate(_fitted_vectorizer(dict(vocab)))
        except UnsafeModelError as exc:
            return str(exc)
        return None

    fast = outcome()
    assert (fast is not None) is refused
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(text, "c_index_map_ok", None)
        mp.setattr(_base, "_c_dict_types", None)
        assert outcome() == fast


def test_an_estimator_hidden_in_a_dict_is_still_visited() -> None:
    """The census decides whether a dict's values are walked: an estimator among 10,000 floats
    must still reach its validator (a broken vocabulary inside it is refused)."""
    inner = _fitted_vectorizer({"a": 0, "b": 5})
    holder = LogisticRegression()
    holder.extra_ = {**{f"k{i}": float(i) for i in range(10_000)}, "inner": inner}
    with pytest.raises(UnsafeModelError, match="vocabulary_"):
        validate(holder)
    holder.keys_ = {inner: 1}
    del holder.extra_
    with pytest.raises(UnsafeModelError, match="vocabulary_"):
        validate(holder)
