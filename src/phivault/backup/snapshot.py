"""A consistent picture of a data directory, taken while the server keeps serving.

- SQLite: the online backup API copies the database, as one read transaction, into a
  temporary file inside the data directory (same disk, same permissions); pages are
  copied as they are, so bodies stay encrypted under their patient keys and a shredded
  key's wrapped form (overwritten in place: `secure_delete`) is not there.
- PostgreSQL: one REPEATABLE READ, READ ONLY transaction dumps every table of
  phivault's schema with binary COPY; the transaction's snapshot makes the tables agree
  with each other (data, audit log, checkpoints, wrapped keys).
- Beside the database: the data directory's own files (phivault.toml, keys.json with the
  KEK parameters only, backup.json, ...). Never sidecar or temporary files, never
  bulk-export output.

The facts a drill checks later (resource count, audit size, newest checkpoint) are read
from the copy itself, so they describe exactly what was captured.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phivault.backup import delta
from phivault.backup.delta import DELTA_FILE, PG_DELTA_DIR, Marks
from phivault.errors import BackupError
from phivault.store.factory import SQLITE_FILE

TEMP_PREFIX = ".backup-"
LOCK_FILE = ".backup.lock"
STATE_FILE = "backup-state.json"
PG_DIR = "pg"
PG_SCHEMA_FILE = "pg/schema.json"
_EXCLUDED_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp", ".lock")
_EXCLUDED = {SQLITE_FILE, STATE_FILE, LOCK_FILE}


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    path: str  # name inside the snapshot (posix, relative)
    source: Path  # where to read it while capturing
    mode: int = 0o600
    align: int = 1  # a SQLite copy: its page size (chunks are cut at page boundaries)


@dataclass
class Capture:
    backend: str  # "sqlite" or "postgresql"
    files: list[SnapshotFile] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    marks: Marks | None = None  # how far this snapshot reaches (the next delta's start)
    keys: list[tuple[str, bytes]] = field(default_factory=list)  # for the key-set only
    since: Marks | None = None  # a delta: the previous snapshot's marks; None: full


def _plain_files(data_dir: Path) -> list[SnapshotFile]:
    found: list[SnapshotFile] = []
    for entry in sorted(data_dir.iterdir()):
        name = entry.name
        if name in _EXCLUDED or name.startswith(TEMP_PREFIX) or name.endswith(_EXCLUDED_SUFFIXES):
            continue
        info = entry.lstat()
        if stat.S_ISREG(info.st_mode):  # folders (export output) and links are not data
            found.append(SnapshotFile(name, entry, stat.S_IMODE(info.st_mode)))
    return found


def clean_stale_temp(data_dir: Path) -> None:
    """Remove temporary copies left by an interrupted backup (call under the backup lock)."""
    for entry in data_dir.glob(TEMP_PREFIX + "*"):
        if entry.is_dir() and entry.name != LOCK_FILE:
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def capture(data_dir: Path, db_url: str | None, since: Marks | None = None) -> Iterator[Capture]:
    """Take the snapshot (with `since`: only what changed since those marks, or raise
    NeedFull); temporary copies are removed when the block ends."""
    temp = data_dir / f"{TEMP_PREFIX}{secrets.token_hex(6)}"
    temp.mkdir(mode=0o700)
    try:
        if db_url is None or db_url.startswith("sqlite"):
            source = data_dir / SQLITE_FILE
            if db_url and db_url.startswith("sqlite:///"):
                source = Path(db_url.removeprefix("sqlite:///"))
            result = Capture("sqlite", _plain_files(data_dir), since=since)
            if since is None:
                _capture_sqlite(source, temp, result)
            else:
                _capture_sqlite_delta(source, temp, result, since)
        else:
            result = Capture("postgresql", _plain_files(data_dir), since=since)
            _capture_postgres(db_url, temp, result, since)
        yield result
    finally:
        shutil.rmtree(temp, ignore_errors=True)


# --- SQLite -------------------------------------------------------------------------------


def _capture_sqlite(source: Path, temp: Path, result: Capture) -> None:
    if not source.exists():
        raise BackupError("the SQLite database is missing from the data directory")
    copy = temp / SQLITE_FILE
    try:
        src = sqlite3.connect(source, timeout=30)
        try:
            dst = sqlite3.connect(copy)
            try:
                dst.execute("PRAGMA journal_mode=OFF")
                dst.execute("PRAGMA synchronous=OFF")
                # pages=-1: the whole database in one step, i.e. one read transaction, so
                # the copy is one consistent state even while writers commit.
                src.backup(dst, pages=-1)
            finally:
                dst.close()
        finally:
            src.close()
        os.chmod(copy, 0o600)
        result.keys = _take_keys(copy)
        facts = _sqlite_facts(copy)
        result.marks = facts.pop("marks")
        result.facts.update(facts)
    except sqlite3.Error as exc:
        raise BackupError("cannot take a consistent copy of the SQLite database") from exc
    result.files.append(SnapshotFile(SQLITE_FILE, copy, 0o600, page_size(copy)))


def _capture_sqlite_delta(source: Path, temp: Path, result: Capture, since: Marks) -> None:
    target = temp / DELTA_FILE
    result.marks, facts = delta.capture_sqlite(source, target, since)
    result.keys = facts.pop("keys")
    result.facts.update(facts)
    os.chmod(target, 0o600)
    result.files.append(SnapshotFile(DELTA_FILE, target, 0o600, page_size(target)))


def page_size(path: Path) -> int:
    """The page size a SQLite file's header states (1 when it is not a SQLite file)."""
    with open(path, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return 1
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size if size >= 512 and not size & (size - 1) else 1


def _take_keys(copy: Path) -> list[tuple[str, bytes]]:
    """Move the wrapped keys out of the copy (into the key-set): deleted with
    secure_delete, so the copy's pages hold no trace of them."""
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")  # the change lands in this file itself
        conn.execute("PRAGMA secure_delete=ON")
        rows = delta.key_rows(lambda sql, params: conn.execute(sql, tuple(params)).fetchall())
        conn.execute(f"DELETE FROM {delta.KEYS_TABLE}")
        return rows
    finally:
        conn.close()


def _sqlite_facts(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:

        def query(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(sql, tuple(params)).fetchall()

        facts = delta.facts_of(query)
        facts["marks"] = delta.take_marks(query, since=None, serialized=True)
        return facts
    finally:
        conn.close()


# --- PostgreSQL ----------------------------------------------------------------------------


def _capture_postgres(db_url: str, temp: Path, result: Capture, since: Marks | None) -> None:
    """Full: every table with binary COPY. Delta (`since`): the changed rows of each table
    (delta.selections) with COPY (SELECT ...), into pg-delta/. One REPEATABLE READ, READ
    ONLY transaction either way, so the tables agree with each other."""
    import psycopg

    from phivault.store.pg_pool import split_schema

    url, schema = split_schema(db_url)
    folder = PG_DIR if since is None else PG_DELTA_DIR
    (temp / folder).mkdir(mode=0o700)
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                conn.execute(f'SET LOCAL search_path TO "{schema}"')

                def query(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                    rows = conn.execute(sql.replace("?", "%s").encode(), tuple(params))
                    return rows.fetchall()

                tables = [
                    str(row[0])
                    for row in conn.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                        " AND table_type = 'BASE TABLE' ORDER BY table_name",
                        (schema,),
                    ).fetchall()
                    if row[0] not in ("schema_migrations", delta.KEYS_TABLE)
                ]
                serials = conn.execute(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND column_default LIKE 'nextval(%%'",
                    (schema,),
                ).fetchall()
                if since is None:
                    chosen: list[tuple[str, str, list[Any]]] = [
                        (t, f'SELECT * FROM "{schema}"."{t}"', []) for t in tables
                    ]
                else:
                    delta.check_base(query, since)
                    chosen = delta.selections(since, tables)
                result.marks = delta.take_marks(query, since=since, serialized=False)
                for table, select, params in chosen:
                    target = temp / folder / f"{table}.copy"
                    with open(target, "wb") as out, conn.cursor() as cur:
                        sql = psycopg.sql.SQL(
                            f"COPY ({select.replace('?', '{}')}) TO STDOUT (FORMAT BINARY)"
                        ).format(*[psycopg.sql.Literal(v) for v in params])
                        with cur.copy(sql) as copy:
                            for block in copy:
                                out.write(block)
                    result.files.append(SnapshotFile(f"{folder}/{table}.copy", target, 0o600))
                facts = delta.facts_of(query)
                result.keys = delta.key_rows(query)
    except psycopg.Error as exc:
        raise BackupError("cannot take a consistent dump of the PostgreSQL schema") from exc
    result.facts.update(facts)
    meta = {
        "schema_version": facts["schema_version"],
        "tables": [t for t, _, _ in chosen],
        "serials": [[str(t), str(c)] for t, c in serials],
    }
    schema_file = temp / folder / "schema.json"
    schema_file.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
    result.files.append(SnapshotFile(f"{folder}/schema.json", schema_file, 0o600))
