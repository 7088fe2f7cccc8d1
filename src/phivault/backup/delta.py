"""Incremental snapshots: what changed since the previous snapshot, found by sequence.

A full snapshot copies the whole database. An incremental (delta) snapshot reads only:

- the append-only rows past the previous snapshot's marks: `versions` by `seq`,
  `audit_entries` by index, `audit_nodes` completed since (index >= size >> level),
  `audit_checkpoints` by size;
- the resources those new versions touched: their `resources` row and their rows of every
  derived index table (`idx_*`), so a restore replaces exactly those resources' index
  rows (index tables are backed up by resource range, never re-read whole);
- every other table whole (keys, access control, export jobs, the audit seal...: small).

Chunks of earlier snapshots are reused by reference (the new manifest lists them), never
re-read or re-chunked, so an incremental costs what changed plus the small tables.

Marks are recorded in each snapshot's signed header. A delta is refused (the caller takes
a full snapshot instead) when the database is not the one the marks describe (another
schema version, a shorter log, another audit root at the marked size: a restored or
replaced database), or when the audit log shows an action that rewrites rows in place
since then: a crypto-shred (it must reach backups: the next snapshot is full and holds no
trace of the key), a KEK or data-key rotation, or a reindex.

PostgreSQL hands out `seq` before commit, so a transaction in flight when a snapshot was
taken can commit a lower `seq` later. The marks keep the missing `seq` values below the
highest one (`pending`, from the last PENDING_WINDOW values) and the next delta takes
them too. SQLite has one writer: a missing `seq` there is a rolled-back one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phivault.audit.merkle import EMPTY_ROOT, fold, perfect_subtrees
from phivault.errors import BackupError

KEYS_TABLE = "wrapped_keys"
APPEND_TABLES = ("versions", "audit_entries", "audit_nodes", "audit_checkpoints")
RESOURCES = "resources"
# Derived from the log and rebuilt behind it (audit/terms.py): a restored delta's entries
# are indexed on the first search, from where the full snapshot's terms end.
# Wrapped keys go into the snapshot's key-set, never into its database (backup/keysets.py).
# The SQLite space reserve is zeros the store puts back by itself (store/sqlite.py).
SKIPPED = frozenset(
    {"schema_migrations", "audit_terms", "audit_terms_state", KEYS_TABLE, "space_reserve"}
)
REWRITING_ACTIONS = ("shred", "rotate-kek", "rotate-data-keys", "reindex")
MAX_CHAIN = 24  # deltas after one full snapshot before the next full one
PENDING_WINDOW = 10_000
NODE_LEVELS = 48  # tree levels a delta looks at: logs of up to 2**47 entries
DELTA_FILE = "delta.sqlite"
RESTORE_CACHE_KIB = 256 * 1024
PG_DELTA_DIR = "pg-delta"

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class NeedFull(Exception):
    """This snapshot must be a full one (the reason is for the log, never PHI)."""


@dataclass(frozen=True, slots=True)
class Marks:
    """How far a snapshot reached; the next delta starts there."""

    seq: int
    pending: tuple[int, ...]
    audit: int
    checkpoint: int
    audit_root: str  # hex: identifies the log the marks belong to
    schema: int

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "pending": list(self.pending),
            "audit": self.audit,
            "checkpoint": self.checkpoint,
            "audit_root": self.audit_root,
            "schema": self.schema,
        }

    @classmethod
    def from_json(cls, data: Any) -> Marks | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                seq=int(data["seq"]),
                pending=tuple(int(s) for s in data["pending"]),
                audit=int(data["audit"]),
                checkpoint=int(data["checkpoint"]),
                audit_root=str(data["audit_root"]),
                schema=int(data["schema"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _one(query: Query, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = query(sql, params)
    return rows[0][0] if rows and rows[0][0] is not None else None


def audit_root(query: Query, size: int) -> str:
    """The audit tree's root at `size`, from the stored perfect subtrees."""
    keys = perfect_subtrees(0, size)
    if not keys:
        return EMPTY_ROOT.hex()
    terms = " OR ".join("(level = ? AND idx = ?)" for _ in keys)
    rows = query(
        f"SELECT level, idx, hash FROM audit_nodes WHERE {terms}", [v for k in keys for v in k]
    )
    found = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
    if any(k not in found for k in keys):
        raise NeedFull("audit nodes missing at the marked size")
    return fold([found[k] for k in keys]).hex()


def take_marks(query: Query, *, since: Marks | None, serialized: bool) -> Marks:
    """The marks of the state `query` sees (run inside the snapshot's read transaction)."""
    seq = int(_one(query, "SELECT MAX(seq) FROM versions") or 0)
    pending: tuple[int, ...] = ()
    if not serialized and seq:
        low = max(seq - PENDING_WINDOW, since.seq if since else 0) + 1
        present = {
            int(r[0])
            for r in query("SELECT seq FROM versions WHERE seq >= ? AND seq <= ?", (low, seq))
        }
        carried = set(since.pending) if since else set()
        if carried:
            marks = ", ".join("?" for _ in carried)
            seen = query(f"SELECT seq FROM versions WHERE seq IN ({marks})", sorted(carried))
            carried -= {int(r[0]) for r in seen}
        pending = tuple(sorted({s for s in range(low, seq) if s not in present} | carried))
        pending = pending[-PENDING_WINDOW:]
    size = int(_one(query, "SELECT MAX(idx) + 1 FROM audit_entries") or 0)
    return Marks(
        seq=seq,
        pending=pending,
        audit=size,
        checkpoint=int(_one(query, "SELECT MAX(size) FROM audit_checkpoints") or 0),
        audit_root=audit_root(query, size),
        schema=int(_one(query, "SELECT MAX(version) FROM schema_migrations") or 0),
    )


def check_base(query: Query, since: Marks) -> None:
    """NeedFull unless this database extends the one `since` describes, with no rewrite
    in between."""
    if int(_one(query, "SELECT MAX(version) FROM schema_migrations") or 0) != since.schema:
        raise NeedFull("schema changed")
    size = int(_one(query, "SELECT MAX(idx) + 1 FROM audit_entries") or 0)
    if size < since.audit or audit_root(query, since.audit) != since.audit_root:
        raise NeedFull("not the audit log of the previous snapshot")
    if int(_one(query, "SELECT MAX(seq) FROM versions") or 0) < since.seq:
        raise NeedFull("fewer versions than the previous snapshot")
    marks = ", ".join("?" for _ in REWRITING_ACTIONS)
    rewritten = query(
        f"SELECT idx FROM audit_entries WHERE action IN ({marks}) AND idx >= ? LIMIT 1",
        [*REWRITING_ACTIONS, since.audit],
    )
    if rewritten:
        raise NeedFull("keys shredded or rotated, or the index rebuilt, since")


def selections(since: Marks, tables: Sequence[str]) -> list[tuple[str, str, list[Any]]]:
    """(table, SELECT, parameters) of every table's delta rows."""
    new_seq = "seq > ?"
    seq_params: list[Any] = [since.seq]
    if since.pending:
        new_seq = f"(seq > ? OR seq IN ({', '.join('?' for _ in since.pending)}))"
        seq_params += list(since.pending)
    # The resources the new versions touched, through the versions' primary key (no scan
    # of `resources` or of any index table).
    touched = f"SELECT rtype, rid FROM versions WHERE {new_seq}"
    out: list[tuple[str, str, list[Any]]] = []
    for table in tables:
        if table in SKIPPED:
            continue
        if table == "versions":
            out.append((table, f"SELECT * FROM versions WHERE {new_seq}", list(seq_params)))
        elif table == RESOURCES:
            sql = f"SELECT * FROM resources WHERE (rtype, rid) IN ({touched})"
            out.append((table, sql, list(seq_params)))
        elif table == "audit_entries":
            out.append((table, "SELECT * FROM audit_entries WHERE idx >= ?", [since.audit]))
        elif table == "audit_nodes":
            # One primary-key range per level (an expression over `level` would scan).
            terms = " OR ".join("(level = ? AND idx >= ?)" for _ in range(NODE_LEVELS))
            params = [v for level in range(NODE_LEVELS) for v in (level, since.audit >> level)]
            out.append((table, f"SELECT * FROM audit_nodes WHERE {terms}", params))
        elif table == "audit_checkpoints":
            sql = "SELECT * FROM audit_checkpoints WHERE size > ?"
            out.append((table, sql, [since.checkpoint]))
        elif table.startswith("idx_"):
            sql = f"SELECT * FROM {table} WHERE (rtype, rid) IN ({touched})"
            out.append((table, sql, list(seq_params)))
        else:
            out.append((table, f"SELECT * FROM {table}", []))
    return out


# --- SQLite ---------------------------------------------------------------------------------


def sqlite_tables(conn: sqlite3.Connection, schema: str = "main") -> list[str]:
    """The tables a delta carries. Not a virtual table (the FTS5 index of the blind
    tokens) nor its shadow tables: they are derived from idx_blind_docs, whose triggers
    keep them in step when a delta's rows of it are applied."""
    rows = conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    virtual = [str(n) for n, sql in rows if str(sql or "").upper().startswith("CREATE VIRTUAL")]
    return [
        str(n) for n, _ in rows if not any(n == v or str(n).startswith(v + "_") for v in virtual)
    ]


def key_rows(query: Query) -> list[tuple[str, bytes]]:
    """The wrapped-key table (for the snapshot's key-set), tombstones included."""
    return [(str(r[0]), bytes(r[1])) for r in query(f"SELECT key_id, blob FROM {KEYS_TABLE}", ())]


def capture_sqlite(source: Path, target: Path, since: Marks) -> tuple[Marks, dict[str, Any]]:
    """Write the delta since `since` into a new SQLite file `target`, in one read
    transaction of the live database; returns the new marks and the snapshot's facts
    (with its key rows under "keys")."""
    conn = sqlite3.connect(source, timeout=30, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS delta", (str(target),))
        conn.execute("PRAGMA delta.journal_mode=OFF")
        conn.execute("PRAGMA delta.synchronous=OFF")
        conn.execute("BEGIN")  # one snapshot of the live database for every read below
        try:

            def query(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                return conn.execute(sql, tuple(params)).fetchall()

            check_base(query, since)
            marks = take_marks(query, since=since, serialized=True)
            for table, select, params in selections(since, sqlite_tables(conn)):
                conn.execute(f"CREATE TABLE delta.{table} AS {select}", params)
            facts = facts_of(query)
            facts["keys"] = key_rows(query)
        finally:
            conn.execute("COMMIT")
        conn.execute("DETACH DATABASE delta")
    except sqlite3.Error as exc:
        raise BackupError("cannot read the changes from the SQLite database") from exc
    finally:
        conn.close()
    return marks, facts


def facts_of(query: Query) -> dict[str, Any]:
    """What a drill checks after restoring (read from the captured state itself)."""
    checkpoint = query("SELECT checkpoint FROM audit_checkpoints ORDER BY size DESC LIMIT 1", ())
    return {
        "schema_version": int(_one(query, "SELECT MAX(version) FROM schema_migrations") or 0),
        "resources": int(_one(query, "SELECT COUNT(*) FROM resources WHERE NOT deleted") or 0),
        "versions": int(_one(query, "SELECT COUNT(*) FROM versions") or 0),
        "audit_size": int(_one(query, "SELECT COUNT(*) FROM audit_entries") or 0),
        "checkpoint": bytes(checkpoint[0][0]).decode() if checkpoint else None,
    }


def restore_connection(database: Path) -> sqlite3.Connection:
    """A connection that changes a database being restored: the rollback journal kept in
    memory and no fsync per transaction (the restore syncs the file once, when every
    delta and the keys are in: an interrupted restore is repeated into an empty
    directory anyway), and a page cache large enough for a delta's index rows."""
    try:
        conn = sqlite3.connect(database, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError("cannot open the restored database") from exc
    try:
        conn.execute("PRAGMA journal_mode=MEMORY")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(f"PRAGMA cache_size=-{RESTORE_CACHE_KIB}")
    except sqlite3.Error as exc:
        conn.close()
        raise BackupError("cannot open the restored database") from exc
    return conn


def apply_sqlite(database: Path, delta: Path) -> None:
    """Apply one delta to a restored SQLite database, in one transaction."""
    conn = restore_connection(database)
    try:
        conn.execute("ATTACH DATABASE ? AS delta", (str(delta),))
        tables = sqlite_tables(conn, "delta")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in tables:
                if table in APPEND_TABLES:
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM delta.{table}")
                elif table.startswith("idx_"):
                    conn.execute(
                        f"DELETE FROM main.{table} WHERE (rtype, rid) IN "
                        "(SELECT rtype, rid FROM delta.resources)"
                    )
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM delta.{table}")
                elif table == RESOURCES:
                    conn.execute(
                        "INSERT OR REPLACE INTO main.resources SELECT * FROM delta.resources"
                    )
                else:
                    conn.execute(f"DELETE FROM main.{table}")
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM delta.{table}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("DETACH DATABASE delta")
    except sqlite3.Error as exc:
        raise BackupError("cannot apply an incremental snapshot to the restored database") from exc
    finally:
        conn.close()


def install_keys_sqlite(database: Path, rows: Sequence[tuple[str, bytes]]) -> None:
    """Replace a restored database's wrapped keys with a key-set's."""
    conn = restore_connection(database)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"DELETE FROM {KEYS_TABLE}")
        conn.executemany(f"INSERT INTO {KEYS_TABLE} (key_id, blob) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupError("cannot install the keys into the restored database") from exc
    finally:
        conn.close()
