"""Behaviour of the Merkle core against a naive RFC 9162 model, pymerkle, and read budgets."""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence

import pytest

from phivault.audit.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    NodeKey,
    leaf_hash,
    new_nodes_for_append,
    node_hash,
    perfect_subtrees,
    root,
    verify_tree,
)
from phivault.audit.proofs import (
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from phivault.errors import IntegrityError, ProofError, TreeRangeError

# --- a naive RFC 9162 model, written straight from section 2.1 ----------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def naive_mth(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return _h(b"")
    if n == 1:
        return leaves[0]
    k = _split(n)
    return _h(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_sides(m: int, n: int) -> list[bool]:
    """For each element of PATH(m, D[n]): is that sibling on the left?"""
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*naive_sides(m, k), False]
    return [*naive_sides(m - k, n - k), True]


def naive_subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [naive_mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*naive_subproof(m, leaves[:k], complete), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def naive_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    return naive_subproof(m, leaves, True)


# --- helpers ------------------------------------------------------------------------------


def make_rng(seed: int) -> random.Random:
    # Reproducible batch sizes and samples for the tests; nothing secret comes from it.
    return random.Random(seed)


def entries(n: int, seed: int = 0) -> list[bytes]:
    return [f"entry-{seed}-{i}".encode() for i in range(n)]


def leaves_of(n: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(entry) for entry in entries(n, seed)]


def build(leaves: Sequence[bytes], rng: random.Random, max_batch: int = 9) -> MemoryNodeStore:
    """Append `leaves` in random batches, checking the append-only contract on the way."""
    store = MemoryNodeStore()
    size = 0
    while size < len(leaves):
        batch = leaves[size : size + rng.randint(1, max_batch)]
        new = new_nodes_for_append(size, batch, store.get_nodes)
        assert not new.keys() & store.nodes.keys(), "an append rewrote an existing node"
        store.put_nodes(new)
        size += len(batch)
    return store


def perfect_nodes(leaves: Sequence[bytes]) -> dict[NodeKey, bytes]:
    n = len(leaves)
    return {
        (level, index): naive_mth(leaves[index << level : (index + 1) << level])
        for level in range(n.bit_length())
        for index in range(n >> level)
    }


class CountingStore:
    """Wraps a store to count batch reads and keys read."""

    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.calls = 0
        self.keys = 0

    def get_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        self.calls += 1
        self.keys += len(keys)
        return self.inner.get_nodes(keys)

    def put_nodes(self, nodes: Mapping[NodeKey, bytes]) -> None:
        self.inner.put_nodes(nodes)

    def reset(self) -> None:
        self.calls = 0
        self.keys = 0


def flip(data: bytes, bit: int = 0) -> bytes:
    return bytes([data[0] ^ (1 << bit), *data[1:]])


# --- hashing ------------------------------------------------------------------------------


def test_hashes_use_rfc9162_domain_separation() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 6962 / 9162 leaf hash of the empty entry.
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(b"a") == _h(b"\x00a")
    assert node_hash(left, right) == _h(b"\x01" + left + right)


# --- appends and roots --------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 65))
def test_append_stores_every_perfect_subtree_and_roots(size: int) -> None:
    leaves = leaves_of(size)
    store = build(leaves, make_rng(size))
    assert store.nodes == perfect_nodes(leaves)
    for m in range(size + 1):
        assert root(m, store) == naive_mth(leaves[:m])


@pytest.mark.parametrize("seed", range(4))
def test_larger_random_trees(seed: int) -> None:
    rng = make_rng(1000 + seed)
    size = rng.randint(65, 3000)
    leaves = leaves_of(size, seed)
    store = build(leaves, rng, max_batch=rng.choice([1, 7, 64, 500]))
    assert store.nodes == perfect_nodes(leaves)
    roots = {m: naive_mth(leaves[:m]) for m in {1, size - 1, size, *rng.sample(range(1, size), 8)}}
    for m, expected in roots.items():
        assert root(m, store) == expected
    for index in [0, size - 1, *rng.sample(range(size), 20)]:
        proof = inclusion_proof(index, size, store)
        assert proof == naive_path(index, leaves[:size])
        verify_inclusion(leaves[index], index, size, proof, roots[size])
    for size1 in [1, size - 1, *rng.sample(range(1, size), 20)]:
        proof = consistency_proof(size1, size, store)
        assert proof == naive_proof(size1, leaves)
        verify_consistency(size1, size, proof, naive_mth(leaves[:size1]), roots[size])


def test_one_batch_equals_single_appends() -> None:
    leaves = leaves_of(300)
    one_batch = MemoryNodeStore()
    one_batch.put_nodes(new_nodes_for_append(0, leaves, one_batch.get_nodes))
    assert one_batch.nodes == build(leaves, make_rng(0), max_batch=1).nodes


def test_empty_batch_creates_nothing() -> None:
    store = build(leaves_of(5), make_rng(0))
    assert new_nodes_for_append(5, [], store.get_nodes) == {}


def test_append_refuses_malformed_leaf() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        new_nodes_for_append(0, [b"short"], MemoryNodeStore().get_nodes)


def test_append_fails_closed_on_missing_edge_node() -> None:
    # The caller's size says 3 leaves but the store holds none: never guess a sibling.
    with pytest.raises(IntegrityError):
        new_nodes_for_append(3, leaves_of(1), MemoryNodeStore().get_nodes)


def test_perfect_subtrees_decomposition() -> None:
    assert perfect_subtrees(0, 0) == []
    assert perfect_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert perfect_subtrees(8, 13) == [(2, 2), (0, 12)]
    assert perfect_subtrees(3, 8) == [(0, 3), (2, 1)]


# --- proofs on small trees, exhaustively --------------------------------------------------

SMALL = 64


@pytest.fixture(scope="module")
def small_tree() -> tuple[list[bytes], MemoryNodeStore]:
    leaves = leaves_of(SMALL)
    return leaves, build(leaves, make_rng(7))


@pytest.mark.parametrize("size", range(1, SMALL + 1))
def test_inclusion_proofs_every_index(
    size: int, small_tree: tuple[list[bytes], MemoryNodeStore]
) -> None:
    # Proofs against an earlier tree size come from the same, larger store.
    leaves, store = small_tree
    tree_root = naive_mth(leaves[:size])
    for index in range(size):
        proof = inclusion_proof(index, size, store)
        assert proof == naive_path(index, leaves[:size])
        verify_inclusion(leaves[index], index, size, proof, tree_root)


@pytest.mark.parametrize("size2", range(1, SMALL + 1))
def test_consistency_proofs_every_pair(
    size2: int, small_tree: tuple[list[bytes], MemoryNodeStore]
) -> None:
    leaves, store = small_tree
    root2 = naive_mth(leaves[:size2])
    for size1 in range(1, size2 + 1):
        proof = consistency_proof(size1, size2, store)
        assert proof == naive_proof(size1, leaves[:size2])
        verify_consistency(size1, size2, proof, naive_mth(leaves[:size1]), root2)


# --- tampering ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 31, 32, 33, 64])
def test_tampered_inclusion_fails(
    size: int, small_tree: tuple[list[bytes], MemoryNodeStore]
) -> None:
    leaves, store = small_tree
    tree_root = naive_mth(leaves[:size])
    for index in range(size):
        proof = inclusion_proof(index, size, store)
        leaf = leaves[index]
        with pytest.raises(ProofError):
            verify_inclusion(flip(leaf), index, size, proof, tree_root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof, flip(tree_root, 7))
        for position in range(len(proof)):
            forged = list(proof)
            forged[position] = flip(forged[position], 3)
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, forged, tree_root)
        for other_index in {index - 1, index + 1, index ^ 1} - {index}:
            if 0 <= other_index < size:
                with pytest.raises(ProofError):
                    verify_inclusion(leaf, other_index, size, proof, tree_root)
        for other_size in {size - 1, size + 1, size * 2} - {size}:
            if index >= other_size:
                continue
            # A proof binds the size only through its shape (which side each sibling is
            # on); RFC 9162 cannot tell two sizes apart whose paths have the same shape.
            if naive_sides(index, other_size) == naive_sides(index, size):
                verify_inclusion(leaf, index, other_size, proof, tree_root)
            else:
                with pytest.raises(ProofError):
                    verify_inclusion(leaf, index, other_size, proof, tree_root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, [*proof, leaves[0]], tree_root)
        if proof:
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, proof[:-1], tree_root)


@pytest.mark.parametrize("size2", [2, 3, 5, 8, 13, 32, 33, 64])
def test_tampered_consistency_fails(
    size2: int, small_tree: tuple[list[bytes], MemoryNodeStore]
) -> None:
    leaves, store = small_tree
    root2 = naive_mth(leaves[:size2])
    for size1 in range(1, size2):
        root1 = naive_mth(leaves[:size1])
        proof = consistency_proof(size1, size2, store)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, flip(root1), root2)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, flip(root2))
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root2, root1)
        for position in range(len(proof)):
            forged = list(proof)
            forged[position] = flip(forged[position], 5)
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, forged, root1, root2)
        for other1, other2 in [(size1 + 1, size2), (size1 - 1, size2), (size1, size2 + 1)]:
            # As for inclusion, only a change of the proof's shape is detectable.
            if other1 == 0 or len(naive_proof(other1, leaves[:other2])) != len(proof):
                with pytest.raises(ProofError):
                    verify_consistency(other1, other2, proof, root1, root2)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof[:-1], root1, root2)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, [*proof, root1], root1, root2)


# --- malformed input ----------------------------------------------------------------------

_LEAF = leaf_hash(b"x")
_OTHER = leaf_hash(b"y")
_ROOT2 = node_hash(_LEAF, _OTHER)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ((_LEAF, 0, 2, [_OTHER], _ROOT2), None),
        ((_LEAF, 2, 2, [_OTHER], _ROOT2), "index == size"),
        ((_LEAF, 0, 0, [], _ROOT2), "empty tree"),
        ((_LEAF, -1, 2, [_OTHER], _ROOT2), "negative index"),
        ((_LEAF, 0, True, [], _LEAF), "bool size"),
        ((_LEAF[:31], 0, 2, [_OTHER], _ROOT2), "short leaf"),
        ((_LEAF, 0, 2, [_OTHER + b"\x00"], _ROOT2), "long proof node"),
        ((_LEAF, 0, 2, [_OTHER], _ROOT2[:16]), "short root"),
        ((_LEAF, 0, 2, _OTHER, _ROOT2), "proof is bytes, not a list"),
        ((_LEAF, 0, 2, None, _ROOT2), "proof is None"),
        ((_LEAF, 0, 2, [_OTHER.hex()], _ROOT2), "proof of str"),
        ((_LEAF, 0, 2, [_OTHER, _OTHER], _ROOT2), "proof too long"),
        ((_LEAF, 0, 2, [], _ROOT2), "proof too short"),
    ],
)
def test_verify_inclusion_input_checks(args: tuple[object, ...], why: str | None) -> None:
    if why is None:
        verify_inclusion(*args)  # type: ignore[arg-type]
    else:
        with pytest.raises(ProofError):
            verify_inclusion(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ((1, 2, [_OTHER], _LEAF, _ROOT2), None),
        ((1, 1, [], _LEAF, _LEAF), None),
        ((2, 1, [], _ROOT2, _LEAF), "size1 > size2"),
        ((0, 2, [], EMPTY_ROOT, _ROOT2), "from the empty tree"),
        ((0, 0, [], EMPTY_ROOT, EMPTY_ROOT), "both empty"),
        ((1, 1, [_LEAF], _LEAF, _LEAF), "equal sizes with a proof"),
        ((1, 1, [], _LEAF, _OTHER), "equal sizes, different roots"),
        ((1, 2, [], _LEAF, _ROOT2), "empty proof"),
        ((1, 2, [_OTHER[:31]], _LEAF, _ROOT2), "short proof node"),
        ((1, 2, [_OTHER], _LEAF[:31], _ROOT2), "short root1"),
        ((1, 2, [_OTHER], _LEAF, b""), "empty root2"),
        ((-1, 2, [_OTHER], _LEAF, _ROOT2), "negative size"),
        ((1, 2, (_OTHER for _ in range(1)), _LEAF, _ROOT2), "proof is a generator"),
    ],
)
def test_verify_consistency_input_checks(args: tuple[object, ...], why: str | None) -> None:
    if why is None:
        verify_consistency(*args)  # type: ignore[arg-type]
    else:
        with pytest.raises(ProofError):
            verify_consistency(*args)  # type: ignore[arg-type]


def test_proof_error_is_an_integrity_error_without_hashes() -> None:
    with pytest.raises(IntegrityError) as caught:
        verify_inclusion(_LEAF, 0, 2, [_OTHER], flip(_ROOT2))
    assert _ROOT2.hex() not in str(caught.value)
    assert caught.value.exit_code == 65


def test_generation_rejects_impossible_ranges(
    small_tree: tuple[list[bytes], MemoryNodeStore],
) -> None:
    _, store = small_tree
    for index, size in [(0, 0), (5, 5), (-1, 3)]:
        with pytest.raises(TreeRangeError):
            inclusion_proof(index, size, store)
    for size1, size2 in [(0, 5), (6, 5), (-1, 2)]:
        with pytest.raises(TreeRangeError):
            consistency_proof(size1, size2, store)
    with pytest.raises(TreeRangeError):
        root(-1, store)
    assert consistency_proof(7, 7, store) == []


def test_generation_beyond_the_store_fails_closed(
    small_tree: tuple[list[bytes], MemoryNodeStore],
) -> None:
    _, store = small_tree
    with pytest.raises(IntegrityError):
        root(SMALL + 1, store)
    with pytest.raises(IntegrityError):
        inclusion_proof(0, SMALL + 3, store)
    with pytest.raises(IntegrityError):
        consistency_proof(3, SMALL + 1, store)


def test_corrupt_store_node_fails_closed() -> None:
    store = build(leaves_of(8), make_rng(0))
    store.nodes[(1, 1)] = b"\x00" * 5
    with pytest.raises(IntegrityError):
        inclusion_proof(0, 8, store)


# --- streaming verification ---------------------------------------------------------------


@pytest.mark.parametrize("size", [*range(0, 70), 1000, 1023, 1024, 1025])
def test_verify_tree_matches_naive_root(size: int) -> None:
    leaves = leaves_of(size)
    assert verify_tree(iter(leaves), size) == naive_mth(leaves)


def test_verify_tree_checks_a_prefix_without_reading_past_it() -> None:
    leaves = leaves_of(20)
    stream: Iterator[bytes] = iter(leaves)
    assert verify_tree(stream, 13) == naive_mth(leaves[:13])
    assert next(stream) == leaves[13]


def test_verify_tree_detects_missing_and_malformed_entries() -> None:
    leaves = leaves_of(10)
    with pytest.raises(IntegrityError):
        verify_tree(iter(leaves), 11)
    with pytest.raises(IntegrityError):
        verify_tree(iter([*leaves[:4], b"short", *leaves[5:]]), 10)
    reordered = [leaves[1], leaves[0], *leaves[2:]]
    assert verify_tree(iter(reordered), 10) != naive_mth(leaves)


# --- cross-check with an independent implementation ---------------------------------------


def test_roots_match_pymerkle() -> None:
    pymerkle = pytest.importorskip("pymerkle")
    tree = pymerkle.InmemoryTree(algorithm="sha256", disable_security=False)
    # disable_security=False is what turns on the RFC 9162 0x00/0x01 prefixes.
    assert tree.leaf_prefix == b"\x00"
    assert tree.node_prefix == b"\x01"
    data = entries(1100, seed=42)
    tree.append_entries(data)
    store = build([leaf_hash(entry) for entry in data], make_rng(42), max_batch=50)
    for size in [0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 64, 100, 511, 512, 513, 1000, 1024, 1100]:
        assert root(size, store) == tree.get_root(size), size


# --- read budgets at about a million entries ----------------------------------------------

BIG = 1 << 20


@pytest.fixture(scope="module")
def big_tree() -> tuple[list[bytes], MemoryNodeStore, float]:
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(BIG)]
    store = MemoryNodeStore()
    rng = make_rng(2020)
    started = time.perf_counter()
    size = 0
    while size < BIG:
        batch = leaves[size : size + rng.randint(1, 512)]
        store.put_nodes(new_nodes_for_append(size, batch, store.get_nodes))
        size += len(batch)
    return leaves, store, time.perf_counter() - started


def test_big_tree_builds_quickly_and_matches_streaming_root(
    big_tree: tuple[list[bytes], MemoryNodeStore, float],
) -> None:
    leaves, store, seconds = big_tree
    assert seconds < 20, f"appending 2^20 leaves took {seconds:.1f} s"
    assert root(BIG, store) == verify_tree(iter(leaves), BIG)


def _budget(size: int) -> int:
    return 2 * math.ceil(math.log2(size)) + 2


@pytest.mark.parametrize("size", [BIG, BIG - 1, 1_000_000, 999_999, 0b10101010101010101011])
def test_proofs_read_one_batch_of_log_n_nodes(
    size: int, big_tree: tuple[list[bytes], MemoryNodeStore, float]
) -> None:
    leaves, inner, _ = big_tree
    store = CountingStore(inner)
    rng = make_rng(size)
    tree_root = root(size, inner)

    store.reset()
    assert root(size, store) == tree_root
    assert store.calls == 1
    assert store.keys <= size.bit_length()

    for index in [0, 1, size // 2, size - 2, size - 1, *rng.sample(range(size), 100)]:
        store.reset()
        proof = inclusion_proof(index, size, store)
        assert store.calls == 1
        assert store.keys <= _budget(size)
        verify_inclusion(leaves[index], index, size, proof, tree_root)

    for size1 in [1, 2, 3, size // 2 + 1, size - 1, size, *rng.sample(range(1, size), 100)]:
        store.reset()
        proof = consistency_proof(size1, size, store)
        assert store.calls <= 1
        assert store.keys <= _budget(size)
        verify_consistency(size1, size, proof, root(size1, inner), tree_root)


def test_append_reads_at_most_the_right_edge(
    big_tree: tuple[list[bytes], MemoryNodeStore, float],
) -> None:
    leaves, inner, _ = big_tree
    store = CountingStore(inner)
    for size in [BIG - 1, BIG - 2, 1_000_000, 0b11111111111111111110]:
        store.reset()
        new = new_nodes_for_append(size, leaves[size : size + 1], store.get_nodes)
        assert store.calls <= 1
        assert store.keys <= size.bit_count()
        for key, value in new.items():
            assert inner.nodes[key] == value
