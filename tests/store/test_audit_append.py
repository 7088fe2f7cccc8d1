"""The store's audit writes (`WriteTx.audit_claim`, `audit_append`), on SQLite and
PostgreSQL: one call writes the entries, their index columns, their Merkle nodes and the
seal, whatever the row count (PostgreSQL: one statement of column arrays)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import psycopg
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


def test_node_reads_answer_any_batch_of_keys(vault: Vault) -> None:
    vault.audit.close()
    store = vault.store
    entries, index = rows(0, 300)
    nodes = new_nodes_for_append(0, [leaf_hash(e) for e in entries], lambda keys: {})
    with store.write() as tx:
        tx.audit_append(tx.audit_claim(), entries, nodes, index)
    keys = sorted(nodes, reverse=True)  # more than one batch of the OR form (64 keys)
    asked = [*keys, keys[0], (8, 1), (40, 1 << 40)]  # a repeat; absent keys, one above 2**32
    assert store.audit_nodes(asked) == nodes
    assert store.audit_nodes([]) == {}
    assert store.audit_nodes([(2, 74)]) == {(2, 74): nodes[(2, 74)]}


@pytest.mark.postgres
def test_postgres_reads_a_proof_s_nodes_by_index_in_one_statement(pg_schema_url: str) -> None:
    """The statement behind proofs probes the primary key once per key (no scan of the
    node table), with statistics as autovacuum keeps them."""
    import psycopg

    from phivault.store.audit_sql import PG_SELECT_NODES
    from phivault.store.factory import open_store
    from phivault.store.pg_pool import split_schema

    url, schema = split_schema(pg_schema_url)
    open_store(Path("."), pg_schema_url).close()  # the schema and its tables
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(
            "INSERT INTO audit_nodes (level, idx, hash) SELECT l, i, sha256(int8send(i)) "
            "FROM generate_series(0, 3) AS l, generate_series(0, 50000) AS i"
        )
        conn.execute("ANALYZE audit_nodes")
        keys = ([0, 1, 2, 3], [17, 30000, 2, 40000])
        plan = conn.execute(("EXPLAIN " + PG_SELECT_NODES).encode(), keys).fetchall()
        found = conn.cursor(binary=True).execute(PG_SELECT_NODES.encode(), keys).fetchall()
    text = "\n".join(row[0] for row in plan)
    assert "audit_nodes_pkey" in text and "Seq Scan" not in text
    assert sorted((lv, ix) for lv, ix, _ in found) == [(0, 17), (1, 30000), (2, 2), (3, 40000)]


class _Abandon(Exception):
    """Leaves a write block the way the appender leaves a stale attempt."""


@pytest.mark.parametrize("expected", [3, 7])  # rows at taken indexes; a gap after the log
def test_a_committing_append_at_the_wrong_size_commits_nothing(vault: Vault, expected: int) -> None:
    vault.audit.close()
    store = vault.store
    entries, index = rows(0, 5)
    with store.write() as tx:
        tx.audit_append(0, entries, {}, index, (5, b"a" * 32))
    more, more_index = rows(expected, 2)
    with pytest.raises(_Abandon), store.write() as tx:
        found = tx.audit_claim_append(
            expected, more, {}, more_index, (expected + 2, b"b" * 32), commit=True
        )
        assert found != expected
        _assert_transactional(tx)
        raise _Abandon()
    assert store.audit_size() == 5
    assert store.audit_seal() == (5, b"a" * 32)


def test_a_committing_append_is_durable_when_it_returns(vault: Vault) -> None:
    """PostgreSQL commits in the append's own round trip: another connection sees the
    rows before the write block ends (SQLite commits at the block's end, as always)."""
    vault.audit.close()
    store = vault.store
    entries, index = rows(0, 4)
    nodes = new_nodes_for_append(0, [leaf_hash(e) for e in entries], lambda keys: {})
    with store.write() as tx:
        found = tx.audit_claim_append(0, entries, nodes, index, (4, b"c" * 32), commit=True)
        assert found == 0
        _assert_transactional(tx)
        if store.backend == "postgresql":
            assert store.audit_size() == 4  # read through another pooled connection
    assert store.audit_size() == 4
    assert store.audit_nodes(list(nodes)) == nodes
    assert store.audit_seal() == (4, b"c" * 32)


def test_a_committing_append_waits_for_the_audit_lock_and_its_holders_rows(
    vault: Vault,
) -> None:
    """A writer holds the audit lock, then appends at the size it read under it, the size
    the appender expects too. The committing append, sent meanwhile, waits for the lock
    (PostgreSQL: its one statement started before the holder wrote or committed anything)
    instead of taking the holder's indexes, and then, the log having grown, commits
    nothing."""
    vault.audit.close()
    store = vault.store
    mine, mine_index = rows(0, 4)
    theirs, theirs_index = rows(0, 2)
    holding, release = threading.Event(), threading.Event()
    found: list[int] = []

    def holder() -> None:
        with store.write() as tx:
            size = tx.audit_claim()  # the lock, and the size under it
            holding.set()
            release.wait(10)
            tx.audit_append(size, mine, {}, mine_index, (4, b"h" * 32))

    def appender() -> None:
        with contextlib.suppress(_Abandon), store.write() as tx:
            found.append(
                tx.audit_claim_append(0, theirs, {}, theirs_index, (2, b"t" * 32), commit=True)
            )
            _assert_transactional(tx)
            if found[0] != 0:
                raise _Abandon()

    first = threading.Thread(target=holder)
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=appender)
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waiting for the lock
    release.set()
    first.join(10)
    second.join(10)
    assert found and found[0] != 0
    assert store.audit_size() == 4
    assert [bytes(r[1]) for r in store.audit_rows(0, 4)] == mine
    assert store.audit_seal() == (4, b"h" * 32)


def _assert_transactional(tx: Any) -> None:
    """PostgreSQL sends BEGIN and COMMIT itself, on the connection in autocommit for the
    while: it must go back to the write pool as a transaction connection."""
    conn = getattr(tx, "_conn", None)
    if isinstance(conn, psycopg.Connection):
        assert not conn.autocommit
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
