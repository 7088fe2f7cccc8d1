"""Read side of the audit log for verifiers: checkpoints, proofs and raw leaves.

What this returns is public verification material: sizes, hashes and signed tree heads
(and, for `leaves`, the entries themselves, which name patients only by pseudonym). The
HTTP routes and the CLI both use it, so the two always answer alike.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from phivault.audit.checkpoint import latest_stored
from phivault.audit.merkle import NodeKey, read_nodes
from phivault.audit.proofs import consistency_proof, inclusion_proof
from phivault.errors import BadRequest, TreeRangeError
from phivault.store.base import ReadView

MAX_LEAVES = 1000
"""Largest page of raw entries one request returns."""


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


class StoreNodes:
    """The store's node table as a `NodeStore` (read-only)."""

    def __init__(self, view: ReadView) -> None:
        self._view = view

    def get_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        return self._view.audit_nodes(keys)

    def put_nodes(self, nodes: Mapping[NodeKey, bytes]) -> None:
        raise TypeError("the audit tree is written only by the audit log")


class LogReader:
    def __init__(self, view: ReadView) -> None:
        self.view = view
        self.nodes = StoreNodes(view)

    def size(self) -> int:
        return self.view.audit_size()

    def latest_checkpoint(self) -> bytes | None:
        return latest_stored(self.view)

    def _size_or_current(self, size: int | None) -> int:
        current = self.view.audit_size()
        if size is None:
            return current
        if size > current:
            raise TreeRangeError("the log has not reached that size")
        return size

    def inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        """The audit path of entry `index` in the tree of `size` entries (default: now)."""
        tree_size = self._size_or_current(size)
        proof = inclusion_proof(index, tree_size, self.nodes)
        leaf = read_nodes(self.nodes.get_nodes, [(0, index)])[(0, index)]
        return {
            "index": index,
            "size": tree_size,
            "leaf_hash": b64(leaf),
            "proof": [b64(node) for node in proof],
        }

    def consistency(self, first: int, second: int | None = None) -> dict[str, Any]:
        """The proof that the tree of `first` entries is a prefix of the one of `second`."""
        second_size = self._size_or_current(second)
        proof = consistency_proof(first, second_size, self.nodes)
        return {"first": first, "second": second_size, "proof": [b64(n) for n in proof]}

    def consistency_nodes(self, first: int, second: int) -> list[bytes]:
        return consistency_proof(first, self._size_or_current(second), self.nodes)

    def leaves(self, start: int, stop: int) -> list[bytes]:
        """Raw entries `[start, stop)`, at most MAX_LEAVES, in order and without gaps."""
        if start < 0 or stop < start:
            raise BadRequest("leaves: need 0 <= from <= to")
        if stop - start > MAX_LEAVES:
            raise BadRequest(f"leaves: at most {MAX_LEAVES} entries per request")
        if stop > self.view.audit_size():
            raise TreeRangeError("the log has not reached that size")
        rows = self.view.audit_entries(start, stop)
        return [entry for _, entry in rows]
