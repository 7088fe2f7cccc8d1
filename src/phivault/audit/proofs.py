"""RFC 9162 inclusion and consistency proofs: making them from a node store, checking them.

Verification is pure and strict because it is what a witness, an auditor or `audit verify`
relies on: anything that is not exactly a well-formed proof for the stated sizes raises
`ProofError`, with a message that names no hash, entry or patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from phivault.audit.merkle import (
    HASH_SIZE,
    NodeKey,
    NodeStore,
    fold,
    perfect_subtrees,
    read_nodes,
)
from phivault.errors import ProofError, TreeRangeError

_sha256 = hashlib.sha256
_NODE_PREFIX = b"\x01"

# --- generation --------------------------------------------------------------------------


def inclusion_proof(index: int, size: int, store: NodeStore) -> list[bytes]:
    """The audit path of leaf `index` in the tree of the first `size` leaves (PATH in RFC 9162).

    `size` may be any size the store has reached, so a proof can be made against any tree
    head a client holds. One batch read of at most ``2 * log2(size)`` nodes.
    """
    if not 0 <= index < size:
        raise TreeRangeError()
    return _hash_ranges(_path_ranges(index, size, 0), store)


def consistency_proof(size1: int, size2: int, store: NodeStore) -> list[bytes]:
    """The proof that the tree of `size1` leaves is a prefix of the one of `size2` (PROOF).

    It is the inclusion proof, inside the larger tree, of the biggest perfect subtree that
    ends at `size1`, preceded by that subtree unless it is the whole old tree (the verifier
    already holds the old root then). Proofs from the empty tree are refused: they would
    prove nothing, and RFC 9162 defines none.
    """
    if not 0 < size1 <= size2:
        raise TreeRangeError()
    if size1 == size2:
        return []
    level = (size1 & -size1).bit_length() - 1
    first = size1 - (1 << level)
    ranges = [] if first == 0 else [(first, size1)]
    ranges += _path_ranges(first, size2, level)
    return _hash_ranges(ranges, store)


def _path_ranges(leaf: int, size: int, from_level: int) -> list[tuple[int, int]]:
    """Leaf ranges of the siblings on the way from `leaf` (at `from_level`) up to the root.

    Below the level where `leaf` and the last leaf part ways ("inner" levels) the path
    runs inside a perfect subtree, except for its topmost sibling, which may be the ragged
    right edge. Above it, the tree has a sibling only where `leaf` is a right child, and
    that sibling is always a perfect subtree on the left.
    """
    ranges: list[tuple[int, int]] = []
    inner = (leaf ^ (size - 1)).bit_length()
    for level in range(from_level, inner):
        start = ((leaf >> level) ^ 1) << level
        ranges.append((start, min(start + (1 << level), size)))
    for level in range(max(inner, from_level), size.bit_length()):
        if (leaf >> level) & 1:
            start = ((leaf >> level) ^ 1) << level
            ranges.append((start, start + (1 << level)))
    return ranges


def _hash_ranges(ranges: list[tuple[int, int]], store: NodeStore) -> list[bytes]:
    """RFC 9162 hashes of `ranges`, planned as one batch read of their perfect subtrees."""
    plans = [perfect_subtrees(start, end) for start, end in ranges]
    keys: list[NodeKey] = [key for plan in plans for key in plan]
    nodes = read_nodes(store.get_nodes, keys)
    return [fold([nodes[key] for key in plan]) for plan in plans]


# --- verification ------------------------------------------------------------------------


def verify_inclusion(
    leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `leaf_index` of the tree with `root` (RFC 9162 2.1.3.2).

    Returns only if the proof verifies; any other outcome, malformed input included,
    raises `ProofError`.
    """
    _check_hash(leaf_hash)
    _check_hash(root)
    _check_count(leaf_index)
    _check_count(tree_size)
    path = _check_path(proof)
    if leaf_index >= tree_size:
        raise ProofError("the leaf index is not inside the tree")
    if len(path) != _inclusion_length(leaf_index, tree_size):
        raise ProofError("the inclusion proof has the wrong length")

    sha256, prefix = _sha256, _NODE_PREFIX
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash
    for p in path:
        if sn == 0:
            raise ProofError()
        if fn & 1 or fn == sn:
            r = sha256(prefix + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(prefix + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise ProofError()


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree with `root1` is a prefix of the one with `root2` (RFC 9162 2.1.4.2).

    Equal sizes need an empty proof and equal roots (RFC 9162 defines SUBPROOF(m, D[m]) as
    empty); nothing is hashed then, so the roots are only compared, whatever their length
    (as the transparency-dev vectors require). A first size of zero is refused: the empty
    tree is a prefix of every tree, so such a check proves nothing and a caller making one
    has a bug.
    """
    _check_count(size1)
    _check_count(size2)
    path = _check_path(proof)
    if size1 == 0 or size1 > size2:
        raise ProofError("the tree sizes do not allow a consistency proof")
    if size1 == size2:
        if path or not isinstance(root1, bytes) or not isinstance(root2, bytes):
            raise ProofError()
        if root1 != root2:
            raise ProofError()
        return
    _check_hash(root1)
    _check_hash(root2)
    if len(path) != _consistency_length(size1, size2):
        raise ProofError("the consistency proof has the wrong length")

    if size1 & (size1 - 1) == 0:
        # The old tree is itself a perfect subtree: the proof leaves it out.
        path.insert(0, root1)
    sha256, prefix = _sha256, _NODE_PREFIX
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError()
        if fn & 1 or fn == sn:
            fr = sha256(prefix + c + fr).digest()
            sr = sha256(prefix + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha256(prefix + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise ProofError()


def _inclusion_length(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(size1: int, size2: int) -> int:
    level = (size1 & -size1).bit_length() - 1
    first = size1 - (1 << level)
    inner = (first ^ (size2 - 1)).bit_length()
    return (first != 0) + (inner - level) + (first >> inner).bit_count()


def _check_hash(value: object) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError("a hash is not 32 bytes")


def _check_count(value: object) -> None:
    # bool is an int subclass; a True/False "size" is a caller bug, not a size.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError("a tree size or index is not a non-negative integer")


def _check_path(proof: object) -> list[bytes]:
    if isinstance(proof, (bytes, str)) or not isinstance(proof, Sequence):
        raise ProofError("the proof is not a list of hashes")
    path = list(proof)
    for node in path:
        _check_hash(node)
    return path
