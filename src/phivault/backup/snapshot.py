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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class Capture:
    backend: str  # "sqlite" or "postgresql"
    files: list[SnapshotFile] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


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
def capture(data_dir: Path, db_url: str | None) -> Iterator[Capture]:
    """Take the snapshot; temporary copies are removed when the block ends."""
    temp = data_dir / f"{TEMP_PREFIX}{secrets.token_hex(6)}"
    temp.mkdir(mode=0o700)
    try:
        if db_url is None or db_url.startswith("sqlite"):
            source = data_dir / SQLITE_FILE
            if db_url and db_url.startswith("sqlite:///"):
                source = Path(db_url.removeprefix("sqlite:///"))
            result = Capture("sqlite", _plain_files(data_dir))
            _capture_sqlite(source, temp, result)
        else:
            result = Capture("postgresql", _plain_files(data_dir))
            _capture_postgres(db_url, temp, result)
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
        result.facts.update(_sqlite_facts(copy))
    except sqlite3.Error as exc:
        raise BackupError("cannot take a consistent copy of the SQLite database") from exc
    result.files.append(SnapshotFile(SQLITE_FILE, copy, 0o600))


def _sqlite_facts(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return _facts(lambda sql: conn.execute(sql).fetchone())
    finally:
        conn.close()


def _facts(one: Any) -> dict[str, Any]:
    checkpoint = one("SELECT checkpoint FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
    return {
        "schema_version": int(one("SELECT MAX(version) FROM schema_migrations")[0] or 0),
        "resources": int(one("SELECT COUNT(*) FROM resources WHERE NOT deleted")[0]),
        "versions": int(one("SELECT COUNT(*) FROM versions")[0]),
        "audit_size": int(one("SELECT COUNT(*) FROM audit_entries")[0]),
        "checkpoint": bytes(checkpoint[0]).decode() if checkpoint else None,
    }


# --- PostgreSQL ----------------------------------------------------------------------------


def _capture_postgres(db_url: str, temp: Path, result: Capture) -> None:
    import psycopg

    from phivault.store.postgres import split_schema

    url, schema = split_schema(db_url)
    (temp / PG_DIR).mkdir(mode=0o700)
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                conn.execute(f'SET LOCAL search_path TO "{schema}"')
                tables = [
                    str(row[0])
                    for row in conn.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                        " AND table_type = 'BASE TABLE' ORDER BY table_name",
                        (schema,),
                    ).fetchall()
                    if row[0] != "schema_migrations"
                ]
                serials = conn.execute(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND column_default LIKE 'nextval(%%'",
                    (schema,),
                ).fetchall()
                for table in tables:
                    target = temp / PG_DIR / f"{table}.copy"
                    with open(target, "wb") as out, conn.cursor() as cur:
                        query = f'COPY "{schema}"."{table}" TO STDOUT (FORMAT BINARY)'
                        with cur.copy(query.encode()) as copy:
                            for block in copy:
                                out.write(block)
                    result.files.append(SnapshotFile(f"{PG_DIR}/{table}.copy", target, 0o600))
                facts = _facts(lambda sql: conn.execute(sql.encode()).fetchone())
    except psycopg.Error as exc:
        raise BackupError("cannot take a consistent dump of the PostgreSQL schema") from exc
    result.facts.update(facts)
    meta = {
        "schema_version": facts["schema_version"],
        "tables": tables,
        "serials": [[str(t), str(c)] for t, c in serials],
    }
    schema_file = temp / PG_SCHEMA_FILE
    schema_file.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
    result.files.append(SnapshotFile(PG_SCHEMA_FILE, schema_file, 0o600))
