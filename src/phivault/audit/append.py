"""Appending to the audit log's Merkle tree inside a transaction (audit/log.py decides
when; this module does the append).

`append_entries` writes leaves, every Merkle node they complete, their index rows and
the log's new seal in the caller's write transaction. The appender thread keeps the
committed right edge of the tree (`RightEdge`: the perfect subtrees of the current size)
so that a group commit reads no node; a data write's own transaction reads the edge and
hands its new one over once it has committed. An edge is trusted only while the log
still has the size it was recorded at: another writer's or process's append shows up as
a different size (`StaleEdge`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from phivault.audit.entry import decode_entry, index_row_of
from phivault.audit.merkle import NodeKey, leaf_hash, new_nodes_for_append, perfect_subtrees
from phivault.audit.merkle import read_nodes as _read_nodes
from phivault.audit.seal import LogSeal
from phivault.store.audit_sql import AuditIndexRow
from phivault.store.base import WriteTx

__all__ = ["RightEdge", "StaleEdge", "append_entries"]


class RightEdge:
    """The committed right edge of the tree (the perfect subtrees of ``[0, size)``).

    It lets a group commit extend the tree without reading a node. It is only trusted when
    the log still has exactly the size it was recorded at: the log only grows, so another
    writer's (or another process's) append shows up as a different size and the edge is
    read again. A staged edge becomes current only after its transaction committed.
    """

    __slots__ = ("_current", "_staged")

    def __init__(self) -> None:
        self._current: tuple[int, dict[NodeKey, bytes]] | None = None
        self._staged: tuple[int, dict[NodeKey, bytes]] | None = None

    def at(self, size: int) -> dict[NodeKey, bytes] | None:
        current = self._current
        return current[1] if current is not None and current[0] == size else None

    def current(self) -> tuple[int, dict[NodeKey, bytes]] | None:
        """(size, edge) as last committed, if any."""
        return self._current

    def stage(self, size: int, edge: dict[NodeKey, bytes]) -> None:
        self._staged = (size, edge)

    def commit(self) -> None:
        self._current, self._staged = self._staged, None

    def offer(self, size: int, edge: dict[NodeKey, bytes]) -> None:
        """The edge a data write's transaction left, now that it committed: kept unless
        the current edge is at least as new. (A prefix of the log never changes once
        committed, so an edge stays true of its size; an older one kept by a race with
        the appender only costs a read.)"""
        current = self._current
        if current is None or current[0] < size:
            self._current = (size, edge)

    def discard(self) -> None:
        self._current = self._staged = None


def append_entries(
    tx: WriteTx,
    entries: Sequence[bytes],
    index: Sequence[AuditIndexRow] | None = None,
    edge: RightEdge | None = None,
    seal: LogSeal | None = None,
    *,
    stage: bool = True,
    last: bool = False,
) -> int:
    """Append leaves, every Merkle node they complete and their index rows, in the caller's
    transaction. Returns the index of the first entry.

    With `edge`, a right edge cached at the current size replaces the node reads, and the
    new edge is staged on it (the caller commits it once the transaction is durable);
    with `stage=False` (a transaction whose commit the log does not see: a data write's)
    the new edge is offered to it when the store reports the commit (`after_commit`).
    `last`: nothing else is written in `tx` after this call, so the backend may commit it
    with the rows (PostgreSQL: in the same round trip).
    With `seal` (audit/seal.py), a log this appender did not just write itself must carry
    a matching seal, and the new size is sealed in the same transaction.
    """
    if index is None:
        index = [index_row_of(decode_entry(e)) for e in entries]
    # The appender (it stages the edge) builds on its committed edge before it knows the
    # size under the lock, and checks the size in the same round trip as its rows.
    guess = edge.current() if edge is not None and stage else None
    old_edge: dict[NodeKey, bytes] | None
    if guess is not None:
        size, old_edge = guess
    else:
        size = tx.audit_claim()  # the audit lock, and the size under it
        old_edge = edge.at(size) if edge is not None else None
    if old_edge is None:
        old_edge = _read_nodes(tx.audit_nodes, perfect_subtrees(0, size))
        if seal is not None:
            seal.check(tx, size, old_edge)
    cached = old_edge

    def from_edge(keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        return {key: cached[key] for key in keys if key in cached}

    nodes = new_nodes_for_append(size, [leaf_hash(e) for e in entries], from_edge)
    sealed: tuple[int, bytes] | None = None
    if edge is not None or seal is not None:
        new_size = size + len(entries)
        new_edge = {k: nodes.get(k) or cached[k] for k in perfect_subtrees(0, new_size)}
        if seal is not None:
            sealed = seal.of_edge(new_size, new_edge)
        if edge is not None and stage:
            edge.stage(new_size, new_edge)
        elif edge is not None:
            # A data write's: the edge becomes the appender's once this transaction has
            # committed, so the next write or group commit reads neither nodes nor seal.
            tx.after_commit(functools.partial(edge.offer, new_size, new_edge))
    # Entries, nodes and the new seal in one call (PostgreSQL: one statement).
    if guess is None:
        tx.audit_append(size, entries, nodes, index, sealed)
    elif tx.audit_claim_append(size, entries, nodes, index, sealed, commit=last) != size:
        raise StaleEdge()  # someone else appended: the caller rolls back, reads again
    return size


class StaleEdge(Exception):
    """The appender's cached edge is no longer the log's (another writer or process
    appended since): its transaction is abandoned and the append made again from the
    stored tree, seal check included. Never leaves `AuditLog._append`."""
