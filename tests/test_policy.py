"""The default allowlist's claims, tested against the installed libraries."""

from __future__ import annotations

import importlib
import inspect
import types
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.utils import all_estimators

import safeload
from safeload._allowlist import DEFAULT_ENTRIES, Kind
from safeload._guards import GUARDS, Guarded
from safeload._mirrors import FUNCTIONS
from safeload._policy import DANGEROUS_NAMES, Policy

# Modules whose whole purpose is I/O, code execution or networking: no entry may live there.
IO_MODULES = (
    "os", "posix", "subprocess", "shutil", "socket", "io", "_io", "pickle", "_pickle", "marshal", "runpy",
    "urllib", "http", "ftplib", "smtplib", "tempfile", "pathlib", "glob", "zipfile", "tarfile", "gzip",
    "bz2", "lzma", "logging", "sqlite3", "ctypes", "importlib", "pkgutil", "code", "codeop", "pdb",
    "numpy.lib.npyio", "numpy.lib.format", "numpy.testing", "numpy.f2py", "numpy.distutils",
    "sklearn.datasets", "sklearn.utils._testing", "sklearn.externals", "joblib.numpy_pickle_compat",
    "joblib.memory", "joblib.parallel", "scipy.io", "skops.io",
)


def _resolve(name: str) -> object:
    module, _, qual = name.rpartition(".")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj: object = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


ENTRIES = list(DEFAULT_ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_entry_is_what_it_claims(entry) -> None:
    assert entry.why.strip(), "every entry needs a justification"
    obj = _resolve(entry.name)
    assert not isinstance(obj, types.ModuleType)
    real_module = getattr(obj, "__module__", None) or ""
    for bad in IO_MODULES:
        assert not entry.name.startswith(bad + "."), f"{entry.name} lives in I/O module {bad}"
        assert not (real_module == bad or real_module.startswith(bad + ".")), (
            f"{entry.name} is really {real_module}.{getattr(obj, '__qualname__', '')}")
    if entry.kind is Kind.NEW:
        assert isinstance(obj, type), f"NEW entries must be classes: {entry.name}"
    if entry.kind is Kind.CALL:
        assert callable(obj)
        # the walker's mirrors cannot import a name to tell a function from a class
        assert (entry.name in FUNCTIONS) == (not isinstance(obj, type)), f"_mirrors.FUNCTIONS is stale: {entry.name}"
    if entry.guard is not None:
        assert entry.guard in GUARDS


def test_every_estimator_class_is_a_sklearn_estimator() -> None:
    estimators = {f"{c.__module__}.{c.__qualname__}" for _, c in all_estimators()}
    names = {e.name for e in DEFAULT_ENTRIES}
    assert estimators <= names, f"allowlist lags the installed scikit-learn: {sorted(estimators - names)[:5]}"
    for e in DEFAULT_ENTRIES:
        if "scikit-learn estimator" in e.why:
            cls = _resolve(e.name)
            assert inspect.isclass(cls) and issubclass(cls, BaseEstimator), e.name


def test_no_dangerous_name_and_no_prefix_entries() -> None:
    names = {e.name for e in DEFAULT_ENTRIES}
    assert not names & DANGEROUS_NAMES
    assert all("*" not in n and not n.endswith(".") for n in names)


def test_allow_is_exact_not_prefix() -> None:
    policy = Policy.default().extended(["numpy.testing"])
    assert policy.allows("numpy.testing")
    assert not policy.allows("numpy.testing._private.utils.runstring")
    with pytest.raises(ValueError):
        Policy.default().extended(["numpy.*"])
    with pytest.raises(TypeError):
        Policy.default().extended("os.system")  # a bare string is a mistake, not a list


def test_guards_refuse_hostile_arguments() -> None:
    policy = Policy.default()
    recon = policy.resolve("numpy._core.multiarray", "_reconstruct")
    assert isinstance(recon, Guarded)
    with pytest.raises(safeload.LimitExceededError):
        recon(np.ndarray, (10**13,), b"b")
    assert recon(np.ndarray, (0,), b"b").shape == (0,)
    rebuild = policy.resolve("copyreg", "_reconstructor")
    with pytest.raises(safeload.UnsafeModelError):
        rebuild(types.SimpleNamespace, object, None)  # class not allowed
    encode = policy.resolve("_codecs", "encode")
    with pytest.raises(safeload.UnsafeModelError):
        encode("x", "zlib_codec")
    sized = policy.resolve("builtins", "bytearray")
    with pytest.raises(safeload.UnsafeModelError):
        sized(10**12)
    with pytest.raises(safeload.UnsafeModelError):
        recon.__setstate__({"x": 1})  # BUILD on a guard is refused


def test_policy_listing_has_reason_for_every_entry() -> None:
    for e in Policy.default().entries.values():
        assert e.kind in (Kind.NEW, Kind.CALL, Kind.VALUE)
        assert len(e.why) > 10


# -- public alias modules (scipy.sparse.csr, numpy.core, ...) --------------------------------

from safeload._policy import ALIASES  # noqa: E402


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_is_the_same_object_as_its_allowed_target(alias: str) -> None:
    module, qual = ALIASES[alias]
    target = f"{module}.{qual}"
    assert target in dict(Policy.default().entries.items()), f"{alias} points at {target}, which is not an entry"
    assert _resolve(alias) is _resolve(target), f"{alias} is not {target}"
    entry = Policy.default().entries[alias]
    assert entry.name == target and Policy.default().kind(alias) is entry.kind


SPARSE = ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")


def _renamed(obj: object, real: bytes, alias: bytes) -> bytes:
    """A protocol-2 pickle of ``obj`` naming ``alias`` where it named ``real`` (GLOBAL is text)."""
    import pickle

    data = pickle.dumps(obj, protocol=2)
    assert real in data
    return data.replace(real, alias)


@pytest.mark.parametrize("fmt", SPARSE)
def test_old_scipy_alias_modules_load_as_their_class(fmt: str) -> None:
    import scipy.sparse as sp

    matrix = sp.random(5, 4, density=0.5, format=fmt, random_state=0)
    matrix = sp.csr_matrix(matrix).asformat(fmt)  # the spmatrix flavour old pickles hold
    data = _renamed(matrix, f"scipy.sparse._{fmt}\n".encode(), f"scipy.sparse.{fmt}\n".encode())
    got = safeload.loads(data)
    assert type(got) is type(matrix)
    assert (got != matrix).nnz == 0


def test_old_tfidf_vectorizer_with_idf_diag_loads() -> None:
    """Old TfidfVectorizer pickles kept ``_idf_diag`` as a ``scipy.sparse.csr.csr_matrix``."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer().fit(["alpha beta gamma", "beta gamma delta", "gamma delta epsilon"])
    vec._tfidf._idf_diag = sp.csr_matrix(sp.diags(vec.idf_))  # the attribute sklearn < 1.5 stored
    data = _renamed(vec, b"scipy.sparse._csr\n", b"scipy.sparse.csr\n")
    assert b"scipy.sparse.csr\ncsr_matrix" in data
    got = safeload.loads(data)
    assert (got._tfidf._idf_diag != vec._tfidf._idf_diag).nnz == 0
    assert (got.transform(["alpha gamma"]) != vec.transform(["alpha gamma"])).nnz == 0


def test_numpy_core_alias_pickles_load() -> None:
    arr = np.arange(6.0).reshape(2, 3)
    data = _renamed(arr, b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    np.testing.assert_array_equal(safeload.loads(data), arr)
    bare = _renamed(np.float64(2.5), b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert safeload.loads(bare) == 2.5


def test_codecs_encode_alias_loads() -> None:
    import pickle

    data = _renamed(b"\xe9a", b"c_codecs\nencode\n", b"ccodecs\nencode\n")
    assert safeload.loads(data) == pickle.loads(data) == b"\xe9a"


def test_alias_module_is_not_imported() -> None:
    """Resolving an alias imports the target module, never the (deprecated) alias module."""
    import subprocess
    import sys

    code = (
        "import sys, pickle, scipy.sparse as sp, safeload\n"
        "data = pickle.dumps(sp.csr_matrix(sp.eye(3)), protocol=2).replace(b'scipy.sparse._csr\\n', "
        "b'scipy.sparse.csr\\n')\n"
        "sys.modules.pop('scipy.sparse.csr', None)\n"
        "safeload.loads(data)\n"
        "print('scipy.sparse.csr' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_alias_of_a_refused_name_is_not_allowed() -> None:
    pol = Policy.default()
    assert not pol.allows("scipy.sparse.csr.spmatrix") and not pol.allows("scipy.sparse.csr.something")
    assert not pol.allows("numpy.core.multiarray.nothere")
