"""PostgreSQL store: the production and scale-out engine (psycopg 3, pooled).

The URL is a libpq URL; a `schema=NAME` query parameter selects (and creates) a schema,
which lets several phivault instances or test runs share one database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from phivault.errors import StoreError
from phivault.store import audit_sql
from phivault.store.audit_scan import AuditScanSource
from phivault.store.audit_sql import AuditIndexRow
from phivault.store.base import NewVersion, VersionRecord
from phivault.store.common import SqlReadView, SqlWriteTx
from phivault.store.pg_pool import (
    KEEPALIVES,
    PROBE_AFTER_IDLE_S,
    PROBE_WRITE_AFTER_IDLE_S,
    PoolExec,
    ProbeIfIdle,
    pool_options,
    read_retrying,
    split_schema,
    translate,
)
from phivault.store.sql import (
    BLIND,
    BLIND_TOKEN_BYTES,
    INDEX_TABLES,
    VERSION_COLUMNS,
    Queries,
    blind_bytes,
    index_params,
    load_migrations,
    new_version_params,
    row_columns,
    row_to_version,
)

# Any advisory lock key works as long as every phivault process uses the same one.
_MIGRATION_LOCK = 0x70686976
_COPY_FROM_ROWS = 4  # smaller bulk inserts are plain INSERTs
# One resource's blind tokens: $1 is their 16-byte tokens end to end, $4 its length.
_INSERT_BLIND = (
    "INSERT INTO idx_blind (token, rtype, rid) "
    f"SELECT substring(%s::bytea FROM i FOR {BLIND_TOKEN_BYTES}), %s, %s "
    f"FROM generate_series(1, %s, {BLIND_TOKEN_BYTES}) AS i ORDER BY i"
)


class PostgresStore(SqlReadView):
    backend = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int | None = None) -> None:
        self.url, self.schema = split_schema(url)
        pool_timeout, pool_size = pool_options(url)
        max_size = pool_size if max_size is None else max_size
        self._queries = Queries(
            lambda s: s.replace("?", "%s"), insert_returning=True, one_statement_deletes=True
        )
        schema = self.schema

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(f'SET search_path TO "{schema}"')
            # A session whose client vanished mid-transaction (network cut, killed worker)
            # must not hold its locks (the audit lock of its schema) until TCP notices.
            conn.execute("SET idle_in_transaction_session_timeout = '60s'")
            conn.commit()

        read_probe = ProbeIfIdle(PROBE_AFTER_IDLE_S)
        write_probe = ProbeIfIdle(PROBE_WRITE_AFTER_IDLE_S)

        def pool(autocommit: bool) -> ConnectionPool[Any]:
            check = read_probe if autocommit else write_probe
            return ConnectionPool(
                self.url,
                min_size=min_size,
                max_size=max_size,
                configure=configure,
                open=False,
                timeout=pool_timeout,
                # Keepalives: a server that vanished without a FIN/RST is noticed in ~25 s
                # instead of hanging the request for the OS default of hours.
                kwargs={"autocommit": autocommit, "connect_timeout": 5, **KEEPALIVES},
                check=check,
            )

        self._pool: ConnectionPool[Any] = pool(autocommit=False)
        self._read_pool: ConnectionPool[Any] = pool(autocommit=True)
        try:
            self._pool.open(wait=True, timeout=10.0)
            self._read_pool.open(wait=True, timeout=10.0)
        except (psycopg.Error, Exception) as exc:
            self.close()
            raise StoreError("cannot connect to PostgreSQL") from exc
        with self._pool.connection() as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        super().__init__(PoolExec(self._read_pool), self._queries)

    def release_space_reserve(self) -> bool:
        return False  # the server's disk: nothing this client can hold back

    def refresh_statistics(self) -> None:
        # Without statistics (autovacuum off, or not yet run after a large import) the
        # planner guesses table sizes from their pages, and at 100,000 patients it
        # walked every Patient in id order for a family-name prefix (probing the
        # prefix's few hundred matches for each) instead of reading those matches and
        # sorting them: 346 ms instead of 7 ms. ANALYZE samples each table (seconds).
        tables = ["resources", *sorted({table for table, _ in INDEX_TABLES.values()})]
        try:
            with self._pool.connection() as conn:
                for table in tables:
                    conn.execute(f"ANALYZE {table}")
        except psycopg.Error as exc:
            raise translate(exc) from None

    @contextmanager
    def write(self, *, spare: bool = False) -> Iterator[SqlWriteTx]:
        # The pool commits when the block ends normally and rolls back on any exception.
        try:
            with self._pool.connection() as conn:
                tx = _PgWriteTx(conn, self._queries)
                yield tx
        except psycopg.Error as exc:
            raise translate(exc) from None
        for fn in tx.committed:  # reached only once the block ended and its COMMIT held
            fn()

    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"
            )
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0) if row else 0

    def migrate(self) -> int:
        with self._pool.connection() as conn:
            # Several workers may start at once: one migrates, the others wait.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"
            )
            rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
            applied = {int(r[0]) for r in rows}
            current = max(applied, default=0)
            for version, script in load_migrations("postgres"):
                # Every migration not yet applied, even one numbered below the newest.
                if version not in applied:
                    conn.execute(script.encode())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    current = max(current, version)
            conn.commit()
        return current

    def count_current(self, rtype: str | None = None) -> int:
        q = self._queries
        if rtype is None:
            return int(self._conn.execute(q.count_all, (False,)).fetchone()[0])
        return int(self._conn.execute(q.count_type, (False, rtype)).fetchone()[0])

    # -- audit reads that stream the whole log (audit verify) ------------------------------
    def _binary_rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # Binary results: bytea arrives as bytes rather than as hex text to decode, which
        # is a third of the time of reading every entry and node.
        try:
            with self._pool.connection() as conn:
                cur = conn.cursor(binary=True)
                cur.execute(self._queries.render(sql).encode(), params)
                rows: list[tuple[Any, ...]] = cur.fetchall()
                return rows
        except psycopg.Error as exc:
            raise translate(exc) from None

    def audit_rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        return self._binary_rows(audit_sql.SELECT_ROWS, (start, stop))

    def audit_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        # Proofs and roots: one prepared statement on a read connection, binary results.
        if not keys:
            return {}
        params = ([level for level, _ in keys], [idx for _, idx in keys])

        def run(conn: psycopg.Connection[Any]) -> dict[tuple[int, int], bytes]:
            cur = conn.cursor(binary=True)
            cur.execute(_SELECT_NODES, params, prepare=True)
            return {(int(lv), int(ix)): h for lv, ix, h in cur.fetchall()}

        return read_retrying(self._read_pool, run)

    def audit_nodes_range(self, level: int, start: int, stop: int) -> list[tuple[int, bytes]]:
        rows = self._binary_rows(audit_sql.SELECT_NODE_RANGE, (level, start, stop))
        return [(int(r[0]), r[1]) for r in rows]

    def audit_scan_source(self) -> AuditScanSource:
        return AuditScanSource("postgresql", self.url, self.schema)

    def iter_current(self, rtype: str | None = None) -> Iterator[VersionRecord]:
        cols = ", ".join("v." + c.strip() for c in VERSION_COLUMNS.split(","))
        sql = f"SELECT {cols} FROM resources r JOIN versions v ON v.seq = r.seq WHERE NOT r.deleted"
        params: tuple[Any, ...] = ()
        if rtype is not None:
            sql += " AND r.rtype = %s"
            params = (rtype,)
        with self._pool.connection() as conn:
            with conn.cursor(name="phivault_iter") as cur:
                cur.itersize = 2000
                cur.execute((sql + " ORDER BY r.seq").encode(), params)
                for row in cur:
                    yield row_to_version(row)

    def close(self) -> None:
        self._read_pool.close()
        self._pool.close()


# key_lock (FOR SHARE) and key_put(replace=False) in one round trip: the insert only if
# the locked row holds the expected blob.
_KEY_ADD_IF = (
    "WITH locked AS (SELECT blob FROM wrapped_keys WHERE key_id = %s FOR SHARE), "
    "added AS (INSERT INTO wrapped_keys (key_id, blob) SELECT %s, %s "
    "WHERE (SELECT blob FROM locked) IS NOT DISTINCT FROM %s "
    "ON CONFLICT (key_id) DO NOTHING RETURNING key_id) "
    "SELECT count(*) FROM added"
)


class _PgWriteTx(SqlWriteTx):
    def __init__(self, conn: psycopg.Connection[Any], queries: Queries) -> None:
        def executemany(sql: str, rows: list[tuple[Any, ...]]) -> None:
            with conn.cursor() as cur:
                cur.executemany(sql, rows)

        super().__init__(conn, queries, executemany)

    def key_add_if(self, lock_id: str, expected: bytes | None, key_id: str, blob: bytes) -> bool:
        row = self._conn.execute(_KEY_ADD_IF, (lock_id, key_id, blob, expected)).fetchone()
        return row is not None and int(row[0]) == 1

    def insert_rows(
        self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        # COPY: one stream, no client-side parsing of a statement with thousands of
        # placeholders (psycopg does not cache those), whatever the group commit's size.
        if len(rows) <= _COPY_FROM_ROWS:
            super().insert_rows(table, columns, rows)  # one entry of a write: one INSERT
            return
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self._conn.cursor() as cur, cur.copy(statement.encode()) as copy:
            for row in rows:
                copy.write_row(row)

    def insert_index(self, kind: str, rows: list[tuple[Any, ...]]) -> None:
        # A resource's blind tokens (a Patient has ~45) in one statement: one bytea of
        # them all, cut into rows by the server. Less client CPU than COPY (which binds
        # every row in Python) and one round trip less. No ON CONFLICT is needed: a
        # resource's tokens are distinct (index_params), and its old rows are deleted
        # before a new version's go in (append_versions does the same). Rows go in in
        # token order, as index_params sorted them.
        if kind == BLIND:
            if len(rows) != 1:
                raise ValueError("insert_index takes the blind tokens of one resource")
            ((doc, rtype, rid),) = rows
            tokens = bytes.fromhex(doc)  # the hex tokens, the spaces between them skipped
            self._conn.execute(_INSERT_BLIND, (tokens, rtype, rid, len(tokens)))
        elif len(rows) > _COPY_FROM_ROWS:
            self.insert_rows(INDEX_TABLES[kind][0], row_columns(kind), rows)
        else:
            super().insert_index(kind, rows)

    def append_versions(self, news: Sequence[NewVersion]) -> list[VersionRecord]:
        # Bulk import: a few statements for the whole run instead of three or more per
        # version (each a round trip, and the import waited on those more than it
        # computed): the seqs drawn in one query, the versions and every index row by
        # COPY, the current pointers in one upsert of arrays.
        if len(news) <= _COPY_FROM_ROWS:
            return super().append_versions(news)
        conn = self._conn
        drawn = conn.execute(
            "SELECT nextval(pg_get_serial_sequence('versions', 'seq')) FROM generate_series(1, %s)",
            (len(news),),
        ).fetchall()
        seqs = sorted(int(row[0]) for row in drawn)
        self.insert_rows(
            "versions",
            _VERSION_COPY_COLUMNS,
            [
                (seq, *new_version_params(new, new.deleted))
                for seq, new in zip(seqs, news, strict=True)
            ],
        )
        conn.execute(
            _UPSERT_CURRENT_MANY,
            (
                [n.rtype for n in news],
                [n.rid for n in news],
                [n.version for n in news],
                seqs,
                [n.deleted for n in news],
                [n.last_updated for n in news],
                [n.compartment for n in news],
            ),
        )
        for new in news:
            if new.version > 1:
                for stmt, params in self._q.index_deletes(new.rtype, new.rid):
                    conn.execute(stmt, params)
        index: dict[str, list[tuple[Any, ...]]] = {}
        for new in news:
            if not new.deleted:
                for kind, rows in index_params(new.rtype, new.rid, new.index).items():
                    index.setdefault(kind, []).extend(rows)
        for kind, rows in index.items():
            copied = blind_bytes(rows) if kind == BLIND else rows
            self.insert_rows(INDEX_TABLES[kind][0], row_columns(kind), copied)
        return [
            VersionRecord(
                rtype=new.rtype,
                rid=new.rid,
                version=new.version,
                last_updated=new.last_updated,
                deleted=new.deleted,
                body=new.body,
                seq=seq,
                compartment=new.compartment,
                method=new.method,
            )
            for seq, new in zip(seqs, news, strict=True)
        ]

    def audit_claim(self) -> int:
        # The lock and the size in one round trip (with the BEGIN, if this transaction
        # has not started yet). Two statements: under READ COMMITTED the size query's
        # snapshot is taken after the lock is held, so it sees the last appender's rows.
        with self._conn.pipeline():
            self.lock_audit()
            cur = self._conn.execute(self._q.audit_size)
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def audit_claim_append(
        self,
        expected: int,
        entries: Sequence[bytes],
        nodes: dict[tuple[int, int], bytes],
        index: Sequence[AuditIndexRow] = (),
        seal: tuple[int, bytes] | None = None,
        *,
        commit: bool = False,
    ) -> int:
        # Lock, size and the whole append in one round trip. Rows at taken indexes fail
        # (another appender got there first): the size is then unknown, and the caller
        # abandons this transaction anyway.
        if commit:
            return self._claim_append_commit(expected, entries, nodes, index, seal)
        try:
            with self._conn.pipeline():
                self.lock_audit()
                cur = self._conn.execute(self._q.audit_size)
                self.audit_append(expected, entries, nodes, index, seal)
        except pg_errors.UniqueViolation:
            return -1
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _claim_append_commit(
        self,
        expected: int,
        entries: Sequence[bytes],
        nodes: dict[tuple[int, int], bytes],
        index: Sequence[AuditIndexRow],
        seal: tuple[int, bytes] | None,
    ) -> int:
        # Lock, size check, append and commit in one statement and one round trip
        # (audit_sql.PG_CLAIM_APPEND), run as its own transaction on the connection
        # switched to autocommit for the purpose: where BEGIN, the lock, the check, the
        # append and COMMIT took five statements of a pipeline (the appender's Python
        # work for each, per group commit). A log of another size fails the check (a
        # division by zero) or a row's key, the statement commits nothing, and -1 tells
        # the caller to start again.
        conn = self._conn
        if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise StoreError("a committing audit append must open its transaction")
        params = [expected, *_append_params(expected, entries, nodes, index)]
        conn.autocommit = True
        try:
            if seal is None:
                conn.execute(_CLAIM_APPEND, params)
            else:
                conn.execute(_CLAIM_APPEND_SEALED, [*params, *seal])
        except (pg_errors.UniqueViolation, pg_errors.DivisionByZero):
            return -1
        finally:
            _end_autocommit(conn)
        return expected

    def audit_append(
        self,
        start: int,
        entries: Sequence[bytes],
        nodes: dict[tuple[int, int], bytes],
        index: Sequence[AuditIndexRow] = (),
        seal: tuple[int, bytes] | None = None,
    ) -> None:
        params = _append_params(start, entries, nodes, index)
        if seal is None:
            self._conn.execute(audit_sql.PG_APPEND.encode(), params)
        else:
            self._conn.execute(audit_sql.PG_APPEND_SEALED.encode(), [*params, *seal])

    def lock_resource(self, rtype: str, rid: str) -> None:
        # Transaction-scoped advisory lock on the resource's identity: concurrent writers
        # of one resource queue here instead of racing to the same version number.
        # Keyed by schema too, so instances in other schemas of one database never queue.
        self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || %s, 0))",
            (f"{rtype}/{rid}",),
        )

    def lock_audit(self) -> None:
        # One appender at a time: the tree's right edge is read, extended and written in
        # this transaction, and a second appender must see the first one's nodes.
        # Keyed by schema: every appender of this log (one schema) uses the same key, and
        # logs in other schemas of the same database append without waiting on this one.
        self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '?audit', 0))"
        )


_SELECT_NODES = audit_sql.PG_SELECT_NODES.encode()
_CLAIM_APPEND = audit_sql.PG_CLAIM_APPEND.encode()
_CLAIM_APPEND_SEALED = audit_sql.PG_CLAIM_APPEND_SEALED.encode()


def _append_params(
    start: int,
    entries: Sequence[bytes],
    nodes: dict[tuple[int, int], bytes],
    index: Sequence[AuditIndexRow],
) -> list[Any]:
    """The column arrays of an append (audit_sql.PG_APPEND): entries from `start`, their
    index columns, then the nodes'."""
    if index and len(index) != len(entries):
        raise ValueError("one index row per entry")
    count = len(entries)
    columns: list[list[Any]] = (
        [list(c) for c in zip(*index, strict=True)] if index else [[None] * count] * 7
    )
    params: list[Any] = [list(range(start, start + count)), list(entries), *columns]
    params += [[lv for lv, _ in nodes], [ix for _, ix in nodes], list(nodes.values())]
    return params


def _end_autocommit(conn: psycopg.Connection[Any]) -> None:
    """Back to a transaction connection (the write pool's kind), ending the explicit
    transaction an error left open. A connection that cannot be put back is closed, so
    the pool never lends an autocommit connection to a write.

    `rollback()`, not a ROLLBACK statement: psycopg registers a statement as prepared
    when it sends it, and the server skipped the rest of a failed pipeline, so names it
    counts as prepared may not exist; `rollback()` also forgets them all (DEALLOCATE ALL),
    where an executed ROLLBACK does so only the first time the connection runs one."""
    try:
        conn.rollback()
        conn.autocommit = False
    except psycopg.Error:
        conn.close()


_VERSION_COPY_COLUMNS = (
    "seq", "rtype", "rid", "version", "last_updated", "deleted", "body", "compartment", "method",
)  # fmt: skip
_UPSERT_CURRENT_MANY = (
    "INSERT INTO resources (rtype, rid, version, seq, deleted, last_updated, compartment) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::bigint[], "
    "%s::boolean[], %s::text[], %s::text[]) "
    "ON CONFLICT (rtype, rid) DO UPDATE SET version = excluded.version, seq = excluded.seq, "
    "deleted = excluded.deleted, last_updated = excluded.last_updated, "
    "compartment = excluded.compartment"
)
