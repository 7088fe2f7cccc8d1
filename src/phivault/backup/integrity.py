"""The start-up integrity check: refuse to serve a damaged data directory.

Fast on purpose (no full audit verification): keys.json and phivault.toml must parse,
the SQLite file must be a database that passes `PRAGMA quick_check` (about 0.4 s for a
2,000-patient clinic, linear in size), and the audit log must be consistent at its tip:
the newest entry exists and matches its leaf node, and the newest checkpoint's root is
the root of the stored tree at its size (O(log n) node reads). Any failure raises
`DataDirDamaged`, whose message points at `phivault backup restore`; a full check is
`phivault audit verify`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

from phivault.audit.checkpoint import parse_checkpoint, tree_root, verify_checkpoint
from phivault.audit.merkle import leaf_hash, read_nodes
from phivault.config import CONFIG_FILE
from phivault.errors import CheckpointError, DataDirDamaged, IntegrityError, StoreError
from phivault.store.base import Store
from phivault.store.factory import SQLITE_FILE

KEYS_FILE = "keys.json"
# Set by `phivault serve` for its workers: the `fingerprint` of the file it just checked.
CHECKED_ENV = "PHIVAULT_CHECKED_DB"
SQLITE_MAGIC = b"SQLite format 3\x00"


def _configured_db_url(data_dir: Path) -> str | None:
    path = data_dir / CONFIG_FILE
    if not path.exists():
        return None
    try:
        loaded = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        raise DataDirDamaged(
            f"{CONFIG_FILE} is damaged. " + DataDirDamaged.default_message
        ) from None
    server = loaded.get("server", {})
    url = server.get("db_url") if isinstance(server, dict) else None
    return str(url) if url else None


def sqlite_path(data_dir: Path, db_url: str | None = None) -> Path | None:
    """The SQLite file of a data directory, or None when it is on PostgreSQL."""
    url = db_url or os.environ.get("PHIVAULT_DB") or _configured_db_url(data_dir)
    if url is None:
        return data_dir / SQLITE_FILE
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return data_dir / SQLITE_FILE if url.startswith("sqlite") else None


def fingerprint(path: Path) -> str:
    """What a checked SQLite file looked like (device, inode, size, mtime of it and of its
    WAL): `serve` checks the file, then its workers open it; if it is unchanged they need
    not read all of it again."""
    parts = []
    for file in (path, Path(f"{path}-wal")):
        try:
            st = file.stat()
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def check_files(data_dir: Path, db_url: str | None = None, checked: str | None = None) -> None:
    """keys.json, phivault.toml and the SQLite file (before anything opens them).
    `checked`: the `fingerprint` of the SQLite file when a full check of it passed; if it
    still matches, the file's PRAGMA quick_check (seconds for a large clinic) is not
    repeated."""
    keys = data_dir / KEYS_FILE
    database = data_dir / SQLITE_FILE
    if not keys.exists():
        if database.exists():
            raise DataDirDamaged(f"{KEYS_FILE} is missing. " + DataDirDamaged.default_message)
        return  # not a data directory at all: the caller says so in its own words
    try:
        record: Any = json.loads(keys.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not {"kek", "key_check"} <= set(record):
            raise ValueError
    except (ValueError, OSError, UnicodeDecodeError):
        raise DataDirDamaged(f"{KEYS_FILE} is damaged. " + DataDirDamaged.default_message) from None
    found = sqlite_path(data_dir, db_url)
    if found is not None:
        check_sqlite(found, quick_check=checked is None or checked != fingerprint(found))


def check_sqlite(path: Path, *, quick_check: bool = True) -> None:
    damaged = DataDirDamaged("the database is damaged. " + DataDirDamaged.default_message)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise DataDirDamaged(
            "the database file is missing. " + DataDirDamaged.default_message
        ) from None
    if magic != SQLITE_MAGIC:
        raise damaged
    if not quick_check:
        return
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        raise damaged from None
    if rows != [("ok",)]:
        raise damaged


def check_audit_tip(store: Store, public_key: bytes | None) -> None:
    """The audit log's newest entry, its tree and its newest checkpoint agree."""
    try:
        size = store.audit_size()
        if size == 0:
            return
        last = store.audit_entries(size - 1, size)
        if len(last) != 1 or last[0][0] != size - 1:
            raise IntegrityError()
        node = read_nodes(store.audit_nodes, [(0, size - 1)])[(0, size - 1)]
        if node != leaf_hash(last[0][1]):
            raise IntegrityError()
        tree_root(store.audit_nodes, size)  # every right-edge node is present
        newest = store.audit_checkpoints(1)
        if newest:
            if public_key is not None:
                checkpoint = verify_checkpoint(public_key, newest[0])
            else:
                checkpoint = parse_checkpoint(newest[0])[0]
            if checkpoint.size > size or tree_root(store.audit_nodes, checkpoint.size) != (
                checkpoint.root
            ):
                raise IntegrityError()
    except (IntegrityError, CheckpointError, StoreError):
        raise DataDirDamaged(
            "the audit log is inconsistent at its tip. " + DataDirDamaged.default_message
        ) from None
