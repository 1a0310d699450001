"""What CPython's ``hash()`` of a stream value costs, measured without hashing it.

A tuple hashes its items, recursively, and caches nothing: a tuple built through the memo as
``t[k+1] = (t[k], t[k])`` is 60 opcodes of file and 2**60 items of hashing, and one nested a
million deep overflows the C stack (``tuplehash`` has no recursion check in 3.11: plain
``pickle.load`` segfaults on an 8-byte-per-level key). Every place that hashes values from a
stream (dict keys, set items, the materialising calls) measures them here first: depth against
``Limits.max_nesting_depth``, size against the stream's hash budget. Each distinct tuple is
measured once per stream (memoised by identity, kept alive so its id stays its own), so the
measuring itself is linear in the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

__all__ = ["HASH_MODULUS", "SCALARS", "Chains", "HashCost", "TooDeep", "is_scalar", "big_int", "collision_work", "compare_weight", "compared_items",
           "hash_budget", "hash_work_problem", "items_hash_work"]

#: ``sys.hash_info.modulus``: an int below it in size is its own hash (but -1), so only larger
#: ones, and values whose hash combines others' (tuples, frozensets, complex, numpy scalars...),
#: can be made to share a hash.
HASH_MODULUS: Final = (1 << 61) - 1

def big_int(n: int) -> bool:
    """Is ``n`` too large to be its own hash (so it can share one with a small int, or with others)?"""
    return n >= HASH_MODULUS or n <= -HASH_MODULUS


#: The hash budget's floor (tuple items hashed per stream); above it, 4 per byte of stream.
HASH_WORK_PER_BYTE = 4


def hash_budget(max_hash_work: int, stream_bytes: int) -> int:
    """Items a stream may make CPython hash: a file without shared tuples never needs more than a
    few per byte (each item is at least one opcode), a memo-built tuple DAG needs exponentially more."""
    return max(max_hash_work, HASH_WORK_PER_BYTE * stream_bytes)


class TooDeep(Exception):
    """A hashed value nests tuples deeper than the limit (or through itself)."""


#: Plain scalars: every ``HashCost``'s ``children`` and ``unhashable`` must call them leaves that
#: hash (tests/test_hashwork.py holds all five to it), so the loops below take them without two
#: calls each (a compiled call through an attribute: ~300 instructions; an array's state has five).
SCALARS: Final = frozenset({type(None), bool, int, float, str, bytes})


def is_scalar(v: Any) -> bool:
    """``type(v) in SCALARS`` by identity tests (compiled: a native call, not a set lookup)."""
    t = type(v)
    return t is int or t is str or t is float or t is bool or t is bytes or v is None


class HashCost:
    """Items ``hash()`` visits in a value: 1 for a value that is not a tuple, 1 + its items' costs
    for a tuple (repeats included), or -1 when CPython cannot hash it at all.

    ``children(v)``: the items ``hash(v)`` recurses into (a tuple's), or None for a leaf.
    ``unhashable(v)``: is the leaf ``v`` one that CPython refuses to hash (a list, a dict...)?
    """

    def __init__(self, children: Callable[[Any], Sequence[Any] | None], unhashable: Callable[[Any], bool],
                 max_depth: int, cap: int) -> None:
        self.children = children
        self._unhashable = unhashable
        self._max_depth = max_depth
        self._cap = cap  # sizes saturate here: a 2**1000 count is as refused as cap + 1
        self._known: dict[int, tuple[Any, int, int]] = {}  # id -> (the tuple, kept alive; cost; depth)

    def measure(self, value: Any) -> int:
        kids = self.children(value)
        if kids is None:
            return -1 if self._unhashable(value) else 1
        hit = self._known.get(id(value))
        if hit is not None:
            return hit[1]
        size = self._shallow(value, kids)
        return size if size is not None else self._walk(value, kids)

    def depth(self, value: Any) -> int:
        """How deep :meth:`measure` found ``value`` nested (0 for a leaf or one not measured)."""
        hit = self._known.get(id(value))
        return hit[2] if hit is not None and hit[0] is value else 0

    def _shallow(self, node: Any, items: Sequence[Any]) -> int | None:
        """The common case in one loop, without a walk: every item is a leaf, a measured tuple or a
        tuple of leaves (an array's state holding its shape). None: something deeper, walk it.
        (Written for mypyc: no ``max``/``min`` on boxed ints.)"""
        known, children, unhashable = self._known, self.children, self._unhashable
        size = 1
        depth = 0
        for item in items:
            if is_scalar(item):
                size += 1
                continue
            sub = children(item)
            if sub is None:
                if unhashable(item):
                    return -1
                size += 1
                continue
            hit = known.get(id(item))
            if hit is not None:
                size += hit[1]
                if hit[2] > depth:
                    depth = hit[2]
                continue
            for x in sub:
                if not is_scalar(x) and (children(x) is not None or unhashable(x)):
                    return None
            size += 1 + len(sub)
            if depth < 1:
                depth = 1
        depth += 1
        if depth > self._max_depth:
            raise TooDeep
        if size > self._cap:
            size = self._cap
        known[id(node)] = (node, size, depth)
        return size

    def _walk(self, root: Any, kids: Sequence[Any]) -> int:
        """Post-order over the distinct tuples below ``root``; each node's depth is one more than its
        deepest child's, so a chain is refused however much of it was measured before."""
        known, cap, max_depth = self._known, self._cap, self._max_depth
        path: list[list[Any]] = [[root, kids, 0, 1, 0]]  # [tuple, its items, next item, cost, deepest child]
        on_path = {id(root)}
        while True:
            frame = path[-1]
            node, items, k = frame[0], frame[1], frame[2]
            if k == len(items):
                size: int = frame[3]
                depth: int = frame[4] + 1
                if depth > max_depth:
                    raise TooDeep
                path.pop()
                on_path.discard(id(node))
                known[id(node)] = (node, size, depth)
                if not path:
                    return size
                parent = path[-1]
                parent[3] = min(cap, parent[3] + size)
                parent[4] = max(parent[4], depth)
                continue
            frame[2] = k + 1
            item = items[k]
            if is_scalar(item):
                frame[3] = min(cap, frame[3] + 1)
                continue
            sub = self.children(item)
            if sub is None:
                if self._unhashable(item):
                    return -1
                frame[3] = min(cap, frame[3] + 1)
                continue
            hit = known.get(id(item))
            if hit is not None:
                frame[3] = min(cap, frame[3] + hit[1])
                frame[4] = max(frame[4], hit[2])
                continue
            if len(path) >= max_depth or id(item) in on_path:
                raise TooDeep
            on_path.add(id(item))
            path.append([item, sub, 0, 1, 0])


def items_hash_work(items: Sequence[Any], cost: HashCost) -> int:
    """What a call that hashes every item (``set``, ``frozenset``, ``Counter``, ``OrderedDict``'s
    pairs) costs in tuple items; strings and numbers, one step each, are not counted."""
    total = 0
    for item in items:
        if cost.children(item) is not None:
            total += max(0, cost.measure(item))
    return total


def hash_work_problem(items: Sequence[Any], cost: HashCost, limit: int) -> str | None:
    """Why hashing every item of ``items`` (``set(items)``, ``Counter(items)``...) would not end:
    tuples shared through the memo (the runtime guard and its static mirror both ask this)."""
    if items_hash_work(items, cost) > limit:
        return f"hashing the items of this argument visits more than {limit:,} tuple items (tuples shared through the memo)"
    return None


#: hash -> the one key of that hash met so far (most hashes: no dict for it), or, from the second,
#: {id: (position, key)}: keys kept alive so that no id is reused. A key is hashable, so never a dict.
Chains = dict[int, Any]


def collision_work(keys: Iterable[tuple[int, Any]], chains: Chains,
                   weigh: Callable[[Any], int] | None = None) -> int:
    """Key comparisons a dict or set makes inserting ``keys`` ((hash, the key object) each) after
    the keys ``chains`` (see :data:`Chains`) already holds, which it updates. CPython randomises
    only str and bytes hashes: ints equal
    modulo ``HASH_MODULUS`` share one (and so do tuples, complex numbers and numpy scalars built
    from them); every insertion walks the keys of its hash in insertion order, comparing each,
    until it meets the same object, so n distinct such keys cost n**2/2 comparisons (40,000 of
    them, 11 bytes each in a pickle: 10 s), and the same object again costs its position. An equal
    key that is another object counts as a new one (real pickles repeat no key; this over-counts
    only hand-made files). ``weigh(key)``: what one comparison with ``key`` can cost (a tuple's
    comparison walks its items: 2,000 tuples of 1,000 items, equal but for the last, cost 2 M
    comparisons but 2 G item steps; :func:`compare_weight`), asked only of keys that collide."""
    work = 0
    for h, key in keys:
        chain = chains.get(h)
        if chain is None:
            chains[h] = key
            continue
        if type(chain) is not dict:
            if chain is key:
                continue  # (the first key again: position 0, no comparison)
            chain = chains[h] = {id(chain): (0, chain)}
        seen = chain.get(id(key))
        if seen is None:
            at = len(chain)
            chain[id(key)] = (at, key)
        else:
            at = seen[0]
        if at and weigh is not None:
            work += at * weigh(key)
        else:
            work += at
    return work


def compared_items(v: Any) -> Sequence[Any] | None:
    """What ``==`` between two keys of one hash walks: a tuple's items (up to the first unequal
    pair), a frozenset's (each looked up in the other). Proxies (``_keyhash``) and built objects alike."""
    if isinstance(v, tuple):
        return v
    if isinstance(v, frozenset):
        return tuple(v)
    return None


def _never(v: Any) -> bool:
    return False


#: Nesting past which comparing two keys of one hash is refused: ``==`` recurses in C through
#: ``Py_EnterRecursiveCall``, so two colliding keys nested ~1,000 deep raise RecursionError in the
#: middle of a load (how deep exactly depends on the caller's stack); real keys are flat.
COMPARE_DEPTH = 500


def compare_weight(max_depth: int, cap: int) -> Callable[[Any], int]:
    """``weigh`` for :func:`collision_work`: the items one comparison with a key can visit, its
    nested tuples and frozensets expanded (an upper bound: the identity shortcut and the first
    difference stop it sooner), memoised per object, saturating at ``cap``; a key nested past
    ``COMPARE_DEPTH`` (or ``max_depth``) weighs ``cap``: comparing it recurses as deep."""
    cost = HashCost(compared_items, _never, max_depth, cap)

    def weigh(key: Any) -> int:
        try:
            size = cost.measure(key)
        except TooDeep:
            return cap
        return cap if cost.depth(key) > COMPARE_DEPTH else max(1, size)

    return weigh
