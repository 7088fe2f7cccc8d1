"""The engine's own view of the audit tree: the hashes of the leaves it has read.

Each scan compares the root of what it read with the root the store's nodes give for the
same size. Entries changed after the engine read them (even with every node recomputed,
which `audit verify` alone cannot tell from a genuine log) or a log rolled back below
what it read both show up as a mismatch: a critical alert.
"""

from __future__ import annotations

from phivault.audit.merkle import fold, leaf_hash, node_hash, perfect_subtrees, read_nodes
from phivault.store.base import ReadView


class CompactRange:
    """The perfect subtrees of [0, size) as (level, hash), left to right."""

    def __init__(self, size: int = 0, hashes: list[tuple[int, bytes]] | None = None) -> None:
        self.size = size
        self.hashes = hashes or []

    @classmethod
    def from_store(cls, view: ReadView, size: int) -> CompactRange:
        keys = perfect_subtrees(0, size)
        nodes = read_nodes(view.audit_nodes, keys)
        return cls(size, [(level, nodes[(level, index)]) for level, index in keys])

    def push(self, entry: bytes) -> None:
        level, value = 0, leaf_hash(entry)
        while self.hashes and self.hashes[-1][0] == level:
            _, left = self.hashes.pop()
            value = node_hash(left, value)
            level += 1
        self.hashes.append((level, value))
        self.size += 1

    def root(self) -> bytes | None:
        return fold([h for _, h in self.hashes]) if self.hashes else None


def stored_root(view: ReadView, size: int) -> bytes | None:
    if size == 0:
        return None
    keys = perfect_subtrees(0, size)
    nodes = read_nodes(view.audit_nodes, keys)
    return fold([nodes[key] for key in keys])
