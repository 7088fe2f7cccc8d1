"""SQLite store: the embedded default.

WAL mode; one writer connection per process behind a lock (SQLite allows one writer at a
time anyway, and taking the lock in-process avoids busy-wait storms); one reader
connection per thread. `synchronous=FULL` by default so an acknowledged write survives a
power cut, not only a crash of the process.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from phivault.errors import StorageFull, StoreError, VersionConflict
from phivault.store.audit_scan import AuditScanSource
from phivault.store.base import VersionRecord
from phivault.store.common import SqlReadView, SqlWriteTx
from phivault.store.compartment_lists import SET_TABLE, CompartmentSets
from phivault.store.sql import VERSION_COLUMNS, Queries, load_migrations, row_to_version

log = logging.getLogger("phivault.store")

BUSY_TIMEOUT_MS = 30_000
# The writer's page cache. Blind-index tokens are random, so every index row lands on a
# random leaf page: with SQLite's default 2 MB cache most of them are read back from the
# OS on each write. Bounded memory (peak RSS counts it): one writer per process.
WRITER_CACHE_KIB = 64 * 1024
# Checkpoint the WAL every this many pages (SQLite's default: 1000). Pages written again
# and again between checkpoints (index interior pages, the audit tail) are copied into the
# database once per checkpoint instead of once per 4 MB of WAL.
WAL_AUTOCHECKPOINT_PAGES = 8000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint
# Space held back inside the database file for the audit log: when the disk is full,
# reads must still be audited (or they would be refused), so the log's appends get these
# pages; data writes are refused until the reserve can be put back.
SPACE_RESERVE_BYTES = 4 * 1024 * 1024
LOADED_SETS = 64  # compartment sets (search_sql.Compiler) kept per reader connection
# Page size of a connection's TEMP database, where the compartment sets live: a clinician's
# few hundred related patients fit one page, so the probe of each candidate row (a type-wide
# search and its total test every row of the type) is a search within that page instead of
# a descent through several (the main database keeps its own page size).
TEMP_PAGE_BYTES = 16384
MAX_BATCH = 512  # writes per group commit
MAX_BATCH_AGE_S = 0.05  # a batch never waits longer than this for more writers


class SqliteStore(SqlReadView):
    backend = "sqlite"

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._queries = Queries(lambda s: s, insert_returning=True, blind_docs=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._waiting_lock = threading.Lock()
        self._waiting = 0
        self._batch = _Batch()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._writer.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self._writer.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        self._reserve_missing = self._check_reserve()
        self._readers = _ThreadLocalConn(self)
        super().__init__(self._readers, self._queries)

    def _set_loader(self) -> Callable[[CompartmentSets], None] | None:
        return self._readers.load_sets

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            for suffix in ("", "-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    side.chmod(0o600)  # ciphertext, but still nobody else's business
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA temp.page_size={TEMP_PAGE_BYTES}")  # before any TEMP table
            # Deleted pages are zeroed so that removed index rows (e.g. after crypto-shredding)
            # do not linger in free pages of the file.
            conn.execute("PRAGMA secure_delete=ON")
            # Migration 012 decodes hex tokens; SQLite's own unhex() came in 3.41.
            conn.create_function("phivault_unhex", 1, _unhex, deterministic=True)
        except sqlite3.Error as exc:
            raise StoreError("cannot open the SQLite database") from exc
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    # -- writes ---------------------------------------------------------------------------
    # -- space held back for the audit log ---------------------------------------------------
    def _check_reserve(self) -> bool:
        """Whether the reserve must be (re)made; False before the migration that adds it."""
        try:
            row = self._writer.execute("SELECT count(*) FROM space_reserve").fetchone()
        except sqlite3.OperationalError:
            return False  # not migrated yet: migrate() checks again
        return int(row[0]) == 0

    def refresh_statistics(self) -> None:
        pass  # SQLite's plans are made (and tested) without statistics

    def release_space_reserve(self) -> bool:
        if self._reserve_missing:
            return False
        with self.write(spare=True):
            self._writer.execute("DELETE FROM space_reserve")  # its pages go to the free list
        self._reserve_missing = True
        log.warning("database full: the space reserved for the audit log is in use")
        return True

    def _restore_reserve(self, conn: sqlite3.Connection) -> None:
        # Inside the writer's savepoint: if the disk is still full this raises, and the
        # data write is refused (507) instead of eating the audit log's last pages.
        conn.execute(
            "INSERT INTO space_reserve (id, filler) VALUES (1, zeroblob(?))",
            (SPACE_RESERVE_BYTES,),
        )
        self._reserve_missing = False

    @contextmanager
    def write(self, *, spare: bool = False) -> Iterator[SqlWriteTx]:
        """One write transaction, group-committed.

        Each caller's block runs under the writer lock in a shared transaction; the last
        writer in line (or a full or old batch) commits, and every caller returns only
        once the commit that holds its work is durable. One fsync then covers many
        requests. A block that raises undoes only its own work: the block that began the
        transaction rolls it back (nothing else is in it yet), every later block runs
        inside a SAVEPOINT and rolls back to it. The first block needs no savepoint, and
        so no statement journal: SQLite copies every page a savepoint's block changes into
        one (a temporary file) before it changes it: for a lone transaction, such as a
        transaction bundle or an audit group commit, more page writes than its WAL frames.
        """
        with self._waiting_lock:
            self._waiting += 1
        self._write_lock.acquire()
        with self._waiting_lock:
            self._waiting -= 1
        try:
            conn = self._writer
            batch = self._batch
            first = not conn.in_transaction
            if first:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise _translate(exc) from None
                batch.started = time.monotonic()
            else:
                conn.execute("SAVEPOINT phivault_write")
            tx = _WriteTx(conn, self._queries, lambda sql, rows: _executemany(conn, sql, rows))
            try:
                if self._reserve_missing and not spare:
                    self._restore_reserve(conn)
                yield tx
            except BaseException as exc:
                self._undo_block(conn, batch, first)
                self._maybe_commit(conn, batch)
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc) from None
                raise
            if not first:
                conn.execute("RELEASE phivault_write")
            batch.count += 1
            batch.committed.extend(tx.committed)  # a block rolled back never gets here
            self._maybe_commit(conn, batch)
        finally:
            self._write_lock.release()
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _undo_block(self, conn: sqlite3.Connection, batch: _Batch, first: bool) -> None:
        try:
            if first:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                conn.execute("ROLLBACK TO phivault_write")
                conn.execute("RELEASE phivault_write")
        except sqlite3.Error:
            pass
        if not conn.in_transaction and batch.count:
            # SQLite rolled back the whole transaction (e.g. disk full): the batch is lost.
            self._finish(batch, StoreError())

    def _maybe_commit(self, conn: sqlite3.Connection, batch: _Batch) -> None:
        if batch.done.is_set():
            return
        with self._waiting_lock:
            waiting = self._waiting
        full = batch.count >= MAX_BATCH or time.monotonic() - batch.started > MAX_BATCH_AGE_S
        if waiting and not full:
            return  # the next writer in line continues this transaction
        error: Exception | None = None
        if conn.in_transaction:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                error = _translate(exc)
        self._finish(batch, error)

    def _finish(self, batch: _Batch, error: Exception | None) -> None:
        if error is None:
            for fn in batch.committed:  # the blocks that were released, in their order
                fn()
        batch.error = error
        batch.done.set()
        self._batch = _Batch()

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        conn = self._writer
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        with self._write_lock:
            self.schema_version()  # creates schema_migrations if needed
            applied = {
                int(r[0]) for r in self._writer.execute("SELECT version FROM schema_migrations")
            }
            current = max(applied, default=0)
            for version, script in load_migrations("sqlite"):
                # Every migration not yet applied, even one numbered below the newest:
                # migrations written in parallel may land out of order.
                if version in applied:
                    continue
                conn = self._writer
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(script):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                current = max(current, version)
            self._reserve_missing = self._check_reserve()
            return current

    # -- bulk reads -----------------------------------------------------------------------
    def count_current(self, rtype: str | None = None) -> int:
        q = self._queries
        if rtype is None:
            return int(self.reader().execute(q.count_all, (False,)).fetchone()[0])
        return int(self.reader().execute(q.count_type, (False, rtype)).fetchone()[0])

    def audit_scan_source(self) -> AuditScanSource:
        return AuditScanSource("sqlite", str(self.path))

    def iter_current(self, rtype: str | None = None) -> Iterator[VersionRecord]:
        sql = (
            f"SELECT {', '.join('v.' + c.strip() for c in VERSION_COLUMNS.split(','))} "
            "FROM resources r JOIN versions v ON v.seq = r.seq WHERE r.deleted = 0"
        )
        params: tuple[Any, ...] = ()
        if rtype is not None:
            sql += " AND r.rtype = ?"
            params = (rtype,)
        conn = self._connect()
        try:
            for row in conn.execute(sql + " ORDER BY r.seq", params):
                yield row_to_version(row)
        finally:
            self._forget(conn)

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._conns_lock:
            if conn in self._all_conns:
                self._all_conns.remove(conn)
        conn.close()

    def close(self) -> None:
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass


class _Batch:
    """Writers whose blocks share one transaction, and how that transaction ended."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: Exception | None = None
        self.count = 0
        self.started = time.monotonic()
        self.committed: list[Callable[[], None]] = []  # the released blocks' after_commit


class _WriteTx(SqlWriteTx):
    def audit_append(self, *args: Any, **kwargs: Any) -> None:
        # A data write's audit entry is appended in its own transaction: when the disk
        # fills up right there, the write is refused as out of space (507), like any
        # other statement of it, not as an audit failure.
        try:
            super().audit_append(*args, **kwargs)
        except sqlite3.Error as exc:
            raise _translate(exc) from None


class _ThreadLocalConn:
    """Routes `execute` to the calling thread's reader connection."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._sets = threading.local()  # the compartment sets loaded in this thread's reader

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self._store.reader().execute(sql, params)
        except sqlite3.Error as exc:
            raise _translate(exc) from None

    def load_sets(self, sets: CompartmentSets) -> None:
        """Load these compartment sets (search_sql.Compiler) into the calling thread's
        reader, one TEMP table each, unless it holds them already; the least recently
        used beyond LOADED_SETS are dropped. A TEMP table is the connection's own:
        nothing is written to the database, and a set id always names the same list
        (search_sql never reuses one), so a loaded set never goes stale."""
        conn = self._store.reader()
        held: tuple[sqlite3.Connection, OrderedDict[int, None]] | None
        held = getattr(self._sets, "held", None)
        try:
            if held is None or held[0] is not conn:
                held = (conn, OrderedDict())
                self._sets.held = held
                _drop_sets(conn)  # whatever an interrupted load left behind
            loaded = held[1]
            for set_id, compartments in sets.items():
                if set_id in loaded:
                    loaded.move_to_end(set_id)
                    continue
                table = f"temp.{SET_TABLE}{int(set_id)}"
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (compartment TEXT PRIMARY KEY) "
                    "WITHOUT ROWID"
                )
                conn.execute(f"DELETE FROM {table}")
                conn.executemany(
                    f"INSERT OR IGNORE INTO {table} (compartment) VALUES (?)",
                    [(c,) for c in compartments],
                )
                loaded[set_id] = None
            while len(loaded) > LOADED_SETS:
                old, _ = loaded.popitem(last=False)
                _drop(conn, f"{SET_TABLE}{int(old)}")
        except sqlite3.Error as exc:
            self._sets.held = None  # unknown state: start over next time
            raise _translate(exc) from None


def _drop_sets(conn: sqlite3.Connection) -> None:
    """Drop every compartment-set table of this connection."""
    names = conn.execute("SELECT name FROM sqlite_temp_master WHERE type = 'table'").fetchall()
    for (name,) in names:
        if name.startswith(SET_TABLE) and name[len(SET_TABLE) :].isdigit():
            _drop(conn, name)


def _drop(conn: sqlite3.Connection, name: str) -> None:
    """Drop one set's table; if SQLite refuses now (a statement still open on the
    connection), it stays: a later load of that id empties and refills it anyway."""
    try:
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    except sqlite3.OperationalError:
        log.debug("a compartment set table stays until later")


def _unhex(text: str | None) -> bytes | None:
    return bytes.fromhex(text) if text is not None else None


def _executemany(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(sql, rows)


def _translate(exc: sqlite3.Error) -> Exception:
    text = str(exc).lower()
    if not isinstance(exc, sqlite3.IntegrityError):
        # SQLite's messages name schema objects and conditions ("no such column", "disk is
        # full"), never row values, so operators get the cause without PHI.
        log.warning("sqlite error %s: %s", type(exc).__name__, str(exc)[:200])
    if isinstance(exc, sqlite3.IntegrityError) and "unique" in text:
        return VersionConflict()
    if "full" in text:
        return StorageFull()
    return StoreError()


def _split_sql(script: str) -> list[str]:
    """The statements of a migration script. A statement ends at the `;` that completes
    it (sqlite3.complete_statement), so a trigger body's inner `;` does not split it."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        pending += line + "\n"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip().rstrip(";").strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return [s for s in statements if s]
