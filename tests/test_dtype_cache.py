"""The walker's cache of evaluated plain dtypes (``_mirrors._PLAIN_DTYPES``): a hit gives exactly
what evaluating the stream's dtype afresh gives, keys tell ``True`` from ``1``, and it is bounded."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from safeload import _mirrors
from safeload._policy import Policy
from safeload._walker import walk

DTYPES = ["f8", "<i4", ">f8", "u1", "?", "c16", "M8[ns]", "m8[s]", "U5", "S3", "V4", ">u2",
          [("a", "<f8"), ("b", "i1")], "(2,)f4"]


def _walk(data: bytes) -> tuple[list[tuple[str, str]], object]:
    trace = walk(data, Policy.default(), joblib=True)
    root = trace.root
    return [(i.rule, i.message) for i in trace.issues], getattr(root, "value", None)


@pytest.mark.parametrize("proto", [2, 4])
@pytest.mark.parametrize("spec", DTYPES, ids=str)
def test_a_hit_is_a_fresh_evaluation(spec: object, proto: int) -> None:
    data = pickle.dumps(np.dtype(spec), protocol=proto)  # type: ignore[call-overload]
    _mirrors._PLAIN_DTYPES.clear()
    fresh = _walk(data)
    warm = _walk(data)  # (from the cache, where the dtype is plain)
    assert fresh[0] == warm[0] == []
    assert fresh[1] == warm[1] == np.dtype(spec)  # type: ignore[call-overload]
    assert isinstance(warm[1], np.dtype) and warm[1].str == np.dtype(spec).str  # type: ignore[call-overload]


def _dtype_stream(version: object, order: str = "<") -> bytes:
    """``numpy.dtype('f8', False, True)`` with BUILD(state), the state's version as given."""
    head = pickle.dumps(version, protocol=2)[2:-1]  # the opcode that pushes ``version``
    return (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(" + head + b"X\x01\x00\x00\x00"
            + order.encode() + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.")


def test_keys_tell_true_from_one() -> None:
    """A state whose version is ``True`` is not the cached state whose version is 3 or 1: a refusal of
    the one must not be answered by the other's cached evaluation, nor the other way round."""
    assert _walk(_dtype_stream(3))[0] == []
    assert _mirrors._plain_dtype(("f8", False, True), (True, "<", None, None, None, -1, -1, 0)) is None
    assert _mirrors._plain_dtype(("f8", 0, 1), (3, "<", None, None, None, -1, -1, 0)) is None
    _mirrors._PLAIN_DTYPES.clear()
    refused = _walk(_dtype_stream(True))[0]
    assert [r for r, _ in refused] == ["dtype-state"]
    _walk(_dtype_stream(3))
    assert _walk(_dtype_stream(True))[0] == refused


def test_the_cache_is_bounded() -> None:
    _mirrors._PLAIN_DTYPES.clear()
    for k in range(_mirrors._MAX_PLAIN_DTYPES):
        _mirrors._PLAIN_DTYPES[(("f8", False, True), (k,))] = np.dtype("f8")
    _walk(pickle.dumps(np.dtype(">i2"), protocol=2))  # full: emptied, then this one kept
    assert list(_mirrors._PLAIN_DTYPES.values()) == [np.dtype(">i2")]
    _mirrors._PLAIN_DTYPES.clear()


_CODES: list[object] = ["b", b"b", "f8", b"<f8", "i4", b"(3,)O", "O", "S5", "U3", "bogus", b"\xff", "", b"",
                        "f8,i4", "M8[s]", b"b\x00"]


@pytest.mark.parametrize("code", _CODES)
def test_a_cached_type_code_is_a_fresh_evaluation(code: object) -> None:
    """``_static_dtype`` keeps the dtypes of the type strings placeholders name (``b'b'`` in every
    pickled array): a second, cached answer equals numpy's own, a refused code stays refused (and
    is not kept), and a str and a bytes spelling are separate entries."""
    def fresh() -> object:
        try:
            return np.dtype(code if isinstance(code, str) else code.decode("latin1"))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - refused: the mirror says None
            return None

    expected = fresh()
    first, second = _mirrors._static_dtype(code), _mirrors._static_dtype(code)
    assert first == expected and second == expected
    if expected is None:
        assert code not in _mirrors._TYPE_CODES
    else:
        assert _mirrors._TYPE_CODES[code] == expected  # type: ignore[index]
    other = code.encode("latin1") if isinstance(code, str) else code.decode("latin1")  # type: ignore[attr-defined]
    assert _mirrors._static_dtype(other) == expected  # the other spelling: its own entry, the same dtype


def test_is_dtype_answers_as_isinstance_per_type() -> None:
    """The walker's ``is_dtype`` remembers the answer per exact type: numpy gives every dtype kind
    its own class (under a metaclass without its own ``__instancecheck__``, so the type decides)."""
    assert type(np.dtype).__dict__.get("__instancecheck__") is None
    values: list[object] = [np.dtype(code) for code in ("b", "f8", "O", "S3", "U2", "M8[s]", "m8", "V4", "c16", "?")]
    values += [np.dtype([("a", "f8"), ("b", "i4")]), np.dtype(("f8", (3,))), np.dtype("f8").newbyteorder(),
               np.float64, np.dtype, "f8", b"b", 1, None, (1,), np.zeros(2), np.float64(1.0)]
    for _ in range(2):  # the second round is answered from the cache
        for v in values:
            assert _mirrors.is_dtype(v) == isinstance(v, np.dtype), v
