"""The RFC 9162 Merkle tree behind the tamper-evident audit log, free of any storage.

The log must answer roots, inclusion proofs and consistency proofs for any past tree size
without rebuilding the tree, at tens of millions of entries. So the tree is kept as the
hashes of its *perfect* subtrees only, keyed by ``(level, index)``: the node at
``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``. A perfect
subtree never changes once its last leaf exists, which makes the store append-only, and
every RFC 9162 node of a tree of any size ``m <= n`` is either such a subtree or the right
fold of at most ``log2(m)`` of them. Every read below is therefore planned first and made
in one batch of O(log n) keys.

Proof generation and verification live in `phivault.audit.proofs`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeAlias

from phivault.errors import IntegrityError, TreeRangeError

HASH_SIZE = 32
"""Length of every leaf, node and root hash (SHA-256)."""

NodeKey: TypeAlias = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""

GetNodes: TypeAlias = Callable[[Sequence[NodeKey]], dict[NodeKey, bytes]]

_sha256 = hashlib.sha256
# The domain-separation prefixes keep a leaf from ever hashing like an inner node
# (second-preimage attack, RFC 9162 section 2.1.1); dropping them would let a forged
# "entry" stand in for a whole subtree.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = _sha256(b"").digest()
"""MTH({}) of RFC 9162: the root of the empty tree."""


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE_PREFIX + left + right).digest()


class NodeStore(Protocol):
    """Where perfect-subtree hashes live (a DB table, a dict, a file).

    Reads come in batches so that a SQL store answers a whole proof with one query.
    """

    def get_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        """Return the stored hashes among `keys`; absent keys are simply left out."""
        ...

    def put_nodes(self, nodes: Mapping[NodeKey, bytes]) -> None: ...


class MemoryNodeStore:
    """A dict-backed `NodeStore`, for tests and for rebuilding a tree while verifying."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: dict[NodeKey, bytes] = {}

    def get_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        nodes = self.nodes
        return {key: nodes[key] for key in keys if key in nodes}

    def put_nodes(self, nodes: Mapping[NodeKey, bytes]) -> None:
        self.nodes.update(nodes)


def perfect_subtrees(start: int, end: int) -> list[NodeKey]:
    """Split the leaf range ``[start, end)`` into the fewest perfect subtrees, left to right.

    When `start` is a multiple of the largest power of two not above ``end - start`` (true
    of every node of an RFC 9162 tree, and of ``[0, size)``), the subtrees shrink from left
    to right and their right fold is exactly the RFC 9162 MTH of the range.
    """
    keys: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        keys.append((level, start >> level))
        start += 1 << level
    return keys


def fold(hashes: Sequence[bytes]) -> bytes:
    """Combine perfect-subtree hashes (left to right) into their RFC 9162 root.

    RFC 9162 always splits at the largest power of two, so the leftmost subtree joins the
    root last: ``H(h0, H(h1, H(h2, ...)))``.
    """
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = _sha256(_NODE_PREFIX + left + result).digest()
    return result


def read_nodes(get_nodes: GetNodes, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
    """One batch read that fails closed when the store lost or mangled a node.

    A missing node means the store is corrupt or the caller asked beyond the log; either
    way no root or proof may be made from guesses.
    """
    if not keys:
        return {}
    nodes = get_nodes(keys)
    for key in keys:
        value = nodes.get(key)
        if value is None or len(value) != HASH_SIZE:
            raise IntegrityError("the audit tree store is missing a node")
    return nodes


def root(size: int, store: NodeStore) -> bytes:
    """The signed-tree-head root of the first `size` leaves, for this or any earlier size."""
    if size < 0:
        raise TreeRangeError()
    if size == 0:
        return EMPTY_ROOT
    keys = perfect_subtrees(0, size)
    nodes = read_nodes(store.get_nodes, keys)
    return fold([nodes[key] for key in keys])


def new_nodes_for_append(
    size: int, leaf_hashes: Sequence[bytes], get_nodes: GetNodes
) -> dict[NodeKey, bytes]:
    """Every perfect subtree completed by appending `leaf_hashes` to a tree of `size` leaves.

    The audit writer stores the result in the same transaction as the entries, so the tree
    can never disagree with the log it covers. Only the left siblings on the old right edge
    that the batch completes are read (at most one per level); `get_nodes` may be a cache
    of that edge so that a group commit makes no read at all.
    """
    if size < 0:
        raise ValueError("tree size must not be negative")
    count = len(leaf_hashes)
    if count == 0:
        return {}
    for leaf in leaf_hashes:
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash must be 32 bytes")
    new_size = size + count

    # Old node (level, (size >> level) - 1) is a left child on the right edge; it is needed
    # when its right sibling becomes complete.
    needed = [
        (level, (size >> level) - 1)
        for level in range(size.bit_length())
        if (size >> level) & 1 and ((size >> level) + 1) << level <= new_size
    ]
    edge = read_nodes(get_nodes, needed)

    out: dict[NodeKey, bytes] = {(0, size + i): leaf for i, leaf in enumerate(leaf_hashes)}
    level = 0
    first, end = size, new_size  # new nodes of this level: indices [first, end)
    row: list[bytes] = list(leaf_hashes)
    sha256, prefix = _sha256, _NODE_PREFIX
    while (end >> 1) > (first >> 1):  # at least one parent gets completed
        if first & 1:
            row.insert(0, edge[(level, first - 1)])
        parents = [sha256(prefix + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
        level += 1
        first >>= 1
        end >>= 1
        for offset, parent in enumerate(parents):
            out[(level, first + offset)] = parent
        row = parents
    return out


def verify_tree(leaf_hashes: Iterable[bytes], size: int) -> bytes:
    """Recompute the root of the first `size` leaves, streaming, in O(log n) memory.

    This is what `audit verify` trusts instead of the stored nodes: it reads every entry,
    so any edit, deletion or reordering shows up as a different root. Items after the
    first `size` are not consumed, so a prefix can be checked against an older tree head.
    """
    if size < 0:
        raise ValueError("tree size must not be negative")
    sha256, prefix = _sha256, _NODE_PREFIX
    # stack[i] is a perfect subtree; sizes strictly shrink to the right, like a binary
    # counter, so merging on each trailing zero of the running count keeps it at log2(n).
    stack: list[bytes] = []
    count = 0
    for node in itertools.islice(leaf_hashes, size):
        if len(node) != HASH_SIZE:
            raise IntegrityError("a leaf hash in the audit log is malformed")
        count += 1
        carry = count
        while not carry & 1:
            node = sha256(prefix + stack.pop() + node).digest()
            carry >>= 1
        stack.append(node)
    if count != size:
        raise IntegrityError("the audit log has fewer entries than the tree size")
    return fold(stack) if stack else EMPTY_ROOT
