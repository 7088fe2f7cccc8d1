"""The store's audit writes (`WriteTx.audit_claim`, `audit_append`), on SQLite and
PostgreSQL: one call writes the entries, their index columns, their Merkle nodes and the
seal, whatever the row count (PostgreSQL: one statement of column arrays)."""

from __future__ import annotations

import pytest

from phivault.audit.merkle import leaf_hash, new_nodes_for_append
from phivault.errors import VersionConflict
from phivault.store.audit_sql import AuditIndexRow
from phivault.vault import Vault


def rows(start: int, count: int) -> tuple[list[bytes], list[AuditIndexRow]]:
    entries = [f'{{"n":{n}}}'.encode() for n in range(start, start + count)]
    index = [
        AuditIndexRow(f"t{n}", "read", "0", "ä-actor", "Patient" if n % 2 else None, str(n))
        for n in range(start, start + count)
    ]
    return entries, index


def test_entries_nodes_and_seal_land_in_one_call(vault: Vault) -> None:
    vault.audit.close()  # nothing else appends meanwhile
    store = vault.store
    entries, index = rows(0, 301)  # more rows than any one INSERT of the SQLite store
    nodes = new_nodes_for_append(0, [leaf_hash(e) for e in entries], lambda keys: {})
    with store.write() as tx:
        size = tx.audit_claim()
        tx.audit_append(size, entries, nodes, index, (size + 301, b"m" * 32))
    assert size == 0
    assert store.audit_size() == 301
    stored = store.audit_rows(0, 301)
    assert [bytes(r[1]) for r in stored] == entries
    assert [AuditIndexRow(*r[2:9]) for r in stored] == index  # NULLs and non-ASCII kept
    assert store.audit_nodes(list(nodes)) == nodes
    assert store.audit_seal() == (301, b"m" * 32)

    more, _ = rows(301, 3)
    with store.write() as tx:
        size = tx.audit_claim()
        tx.audit_append(size, more, {}, ())  # no index rows, no seal: the seal stays
    assert size == 301
    assert store.audit_rows(301, 304)[0][2:9] == (None,) * 7
    assert store.audit_seal() == (301, b"m" * 32)


def test_an_append_over_taken_indexes_writes_nothing(vault: Vault) -> None:
    vault.audit.close()
    store = vault.store
    entries, index = rows(0, 5)
    with store.write() as tx:
        tx.audit_append(0, entries, {}, index, (5, b"a" * 32))
    with pytest.raises(VersionConflict), store.write() as tx:
        tx.audit_append(3, entries, {}, index, (8, b"b" * 32))
    assert store.audit_size() == 5
    assert store.audit_seal() == (5, b"a" * 32)
