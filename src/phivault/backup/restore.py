"""Restore a snapshot into a new directory (and, for PostgreSQL, into an empty schema).

Needs the backup private key. Every chunk is opened (AEAD), its name re-derived from its
content with the chunk-id key carried in the sealed manifest, and every file's SHA-256
compared with the manifest before the file gets its final name: a restore either yields
exactly what was backed up or fails loudly. It never writes over an existing file.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phivault.backup.create import Progress, _NoProgress
from phivault.backup.delta import DELTA_FILE, PG_DELTA_DIR, apply_sqlite, install_keys_sqlite
from phivault.backup.keys import BackupPrivateKey, unb64
from phivault.backup.keysets import KEYS_FILE, newest_keyset
from phivault.backup.repository import Repository, chunk_id_of
from phivault.backup.snapshot import PG_DIR, PG_SCHEMA_FILE
from phivault.config import CONFIG_FILE
from phivault.errors import (
    BackupError,
    BackupIntegrityError,
    BackupKeyError,
    ConfigError,
    SnapshotNotFound,
)
from phivault.store.factory import SQLITE_FILE

READERS = 4
_LOOKAHEAD = 8
SYNC_EVERY = 128 * 1024 * 1024  # bytes written between background flushes to disk


@dataclass(frozen=True, slots=True)
class RestoreResult:
    snapshot_id: str
    time: str
    backend: str
    files: int
    bytes: int
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)


def check_key(repo: Repository, key: BackupPrivateKey) -> None:
    """The key file must belong to this repository, and pin the same signing key."""
    config = repo.config
    if key.repo_id != config.repo_id or not hmac.compare_digest(key.public_key, config.public_key):
        raise BackupKeyError()
    if not hmac.compare_digest(key.signing_public_key, config.signing_public_key):
        # The repository config names another signer than the one recorded at init.
        raise BackupIntegrityError("the repository's signing key is not the one the key file pins")


def parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError("give the time as ISO 8601, e.g. 2025-01-31T18:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def choose_snapshot(repo: Repository, snapshot_id: str | None, at: datetime | None) -> str:
    ids = repo.snapshot_ids()
    if snapshot_id is not None:
        if snapshot_id not in ids:
            raise SnapshotNotFound()
        return snapshot_id
    if at is not None:
        ids = [i for i in ids if _id_time(i) <= at]
    for candidate in reversed(ids):
        header = repo.read_header(candidate)
        if at is None or parse_time(header.time) <= at:
            return candidate
    raise SnapshotNotFound("no backup snapshot at or before that time")


def _id_time(snapshot_id: str) -> datetime:
    stamp = snapshot_id.split("-", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y%m%dt%H%M%S%fz").replace(tzinfo=UTC)
    except ValueError:
        raise BackupIntegrityError("a snapshot id is not one phivault writes") from None


def read_chunks(
    repo: Repository, key: BackupPrivateKey, chunk_id_key: bytes, ids: list[str]
) -> Iterator[bytes]:
    """The contents of `ids` in order, fetched and opened on worker threads, each checked
    against its keyed name."""

    def fetch(chunk_id: str) -> bytes:
        data = repo.open_chunk(key.private_key, chunk_id)
        if not hmac.compare_digest(chunk_id_of(chunk_id_key, data), chunk_id):
            raise BackupIntegrityError("a chunk's content does not match its name")
        return data

    with ThreadPoolExecutor(READERS, thread_name_prefix="phivault-restore") as pool:
        window: collections.deque[Future[bytes]] = collections.deque()
        pending = iter(ids)
        for chunk_id in pending:
            window.append(pool.submit(fetch, chunk_id))
            if len(window) >= _LOOKAHEAD:
                break
        while window:
            data = window.popleft().result()
            nxt = next(pending, None)
            if nxt is not None:
                window.append(pool.submit(fetch, nxt))
            yield data


def _write_file(
    repo: Repository,
    key: BackupPrivateKey,
    chunk_id_key: bytes,
    entry: dict[str, Any],
    target: Path,
    progress: Progress,
) -> int:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, ThreadPoolExecutor(1) as syncer:
            # Written data is flushed to disk in the background as the file grows, so the
            # disk works while chunks are opened and the final fsync has little left.
            flushing: Future[None] | None = None
            unsynced = 0
            for data in read_chunks(repo, key, chunk_id_key, list(entry["chunks"])):
                if "sha256" in entry:
                    digest.update(data)
                out.write(data)
                size += len(data)
                unsynced += len(data)
                if unsynced >= SYNC_EVERY and (flushing is None or flushing.done()):
                    out.flush()
                    flushing = syncer.submit(os.fdatasync, out.fileno())
                    unsynced = 0
                progress.advance(len(data))
            out.flush()
            if flushing is not None:
                flushing.result()
            os.fsync(out.fileno())
        # Each chunk's keyed name was checked against its content (read_chunks); older
        # manifests also carry a whole-file SHA-256.
        whole = entry.get("sha256")
        if size != int(entry["size"]) or (whole is not None and digest.hexdigest() != whole):
            raise BackupIntegrityError("a restored file does not match its manifest")
        os.chmod(partial, int(entry.get("mode", 0o600)) & 0o777)
        os.link(partial, target)  # never replaces an existing file
    finally:
        partial.unlink(missing_ok=True)
    return size


def _safe_path(root: Path, name: str) -> Path:
    # A manifest is signed, but a path must still never leave the restore directory.
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?", name) or ".." in name:
        raise BackupIntegrityError("a snapshot names a file outside the data directory")
    return root / name


def _is_database(path: str) -> bool:
    return path == SQLITE_FILE or path.startswith(PG_DIR + "/")


def _is_delta(path: str) -> bool:
    return path == DELTA_FILE or path.startswith(PG_DELTA_DIR + "/")


def restore_snapshot(
    repo: Repository,
    key: BackupPrivateKey,
    to_dir: Path,
    *,
    snapshot_id: str | None = None,
    at: datetime | None = None,
    db_url: str | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore a snapshot. An incremental one restores its full snapshot's database and
    applies each delta of its chain in order (all signed, all opened with the key); the
    configuration files come from the chosen snapshot itself."""
    progress = progress or _NoProgress()
    started = time.monotonic()
    check_key(repo, key)
    chosen = choose_snapshot(repo, snapshot_id, at)
    header, body = repo.read_manifest(chosen, key.private_key)
    chain = list(header.chain) or [chosen]
    if chain[-1] != chosen:
        raise BackupIntegrityError("a snapshot manifest does not verify")
    bodies = [repo.read_manifest(sid, key.private_key)[1] for sid in chain[:-1]] + [body]
    backend = str(body.get("backend", "sqlite"))
    if any(str(b.get("backend", "sqlite")) != backend for b in bodies):
        raise BackupIntegrityError("a snapshot chain mixes database kinds")
    if backend == "postgresql" and not db_url:
        raise ConfigError("this snapshot is of a PostgreSQL database: give --db-url for it")
    if to_dir.exists() and any(to_dir.iterdir()):
        raise ConfigError("the restore directory must be empty or not exist yet")
    to_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(to_dir, 0o700)
    # The keys: from the newest key-set (backup/keysets.py), with its keys.json; none for
    # snapshots written before key-sets, which carry their keys in their database.
    keyset = newest_keyset(repo, key.private_key)
    if keyset is None and header.keyset:
        raise BackupIntegrityError("the key-sets of this repository are gone: no key opens it")
    # (folder, file entries, chunk-id key): the base's database, the chosen snapshot's
    # configuration files, then each delta into a scratch folder of its own.
    plan: list[tuple[Path, list[dict[str, Any]], bytes]] = []
    base = bodies[0]
    plan.append((to_dir, [f for f in base["files"] if _is_database(str(f["path"]))], _idk(base)))
    plain = [f for f in body["files"] if not _is_database(str(f["path"]))]
    if keyset is not None:
        # keys.json comes with the key-set; the snapshot's own copy is still read and
        # checked (a damaged chunk must fail the restore), into a scratch folder.
        own_keys = [f for f in plain if f["path"] == KEYS_FILE]
        plain = [f for f in plain if f["path"] != KEYS_FILE]
        plan.append((to_dir / ".restore-keys", own_keys, _idk(body)))
    plan.append((to_dir, [f for f in plain if not _is_delta(str(f["path"]))], _idk(body)))
    deltas: list[Path] = []
    for number, delta_body in enumerate(bodies[1:]):
        scratch = to_dir / f".restore-delta-{number:03d}"
        wanted = [f for f in delta_body["files"] if _is_delta(str(f["path"]))]
        plan.append((scratch, wanted, _idk(delta_body)))
        deltas.append(scratch)
    progress.start(sum(int(f["size"]) for _, entries, _ in plan for f in entries))
    total = 0
    try:
        for folder, entries, chunk_id_key in plan:
            for entry in entries:
                target = _safe_path(folder, str(entry["path"]))
                total += _write_file(repo, key, chunk_id_key, entry, target, progress)
        if keyset is not None:
            _write_new(to_dir / KEYS_FILE, keyset.keys_json)
        if backend == "sqlite":
            for scratch in deltas:
                apply_sqlite(to_dir / SQLITE_FILE, scratch / DELTA_FILE)
            if keyset is not None:
                install_keys_sqlite(to_dir / SQLITE_FILE, keyset.rows)
            if deltas or keyset is not None:
                _fsync(to_dir / SQLITE_FILE)  # the changes above skip SQLite's syncs
        elif db_url:
            pg_dir = to_dir / PG_DIR
            meta = json.loads((to_dir / PG_SCHEMA_FILE).read_text(encoding="utf-8"))
            from phivault.backup.pg_load import load_postgres

            steps = [
                (d / PG_DELTA_DIR, json.loads((d / PG_DELTA_DIR / "schema.json").read_text()))
                for d in deltas
            ]
            load_postgres(db_url, pg_dir, meta, steps, keyset.rows if keyset else None)
            shutil.rmtree(pg_dir)
            set_db_url(to_dir / CONFIG_FILE, db_url)
    finally:
        for scratch in [*deltas, to_dir / ".restore-keys"]:
            shutil.rmtree(scratch, ignore_errors=True)
    return RestoreResult(
        snapshot_id=chosen,
        time=header.time,
        backend=backend,
        files=sum(len(entries) for _, entries, _ in plan),
        bytes=total,
        seconds=time.monotonic() - started,
        facts=dict(body.get("facts", {})),
    )


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _idk(body: dict[str, Any]) -> bytes:
    return unb64(body["chunk_id_key"], 32)


def set_db_url(config: Path, db_url: str) -> None:
    """Point a restored phivault.toml at the database the snapshot was restored into."""
    lines = config.read_text(encoding="utf-8").splitlines() if config.exists() else []
    out: list[str] = []
    section = ""
    placed = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if section == "server" and not placed:
                out.append(f"db_url = {json.dumps(db_url)}")
                placed = True
            section = stripped.strip("[] ")
        if section == "server" and stripped.split("=", 1)[0].strip() == "db_url":
            if not placed:
                out.append(f"db_url = {json.dumps(db_url)}")
                placed = True
            continue
        out.append(line)
    if not placed:
        if section != "server":
            out.append("[server]")
        out.append(f"db_url = {json.dumps(db_url)}")
    if not config.parent.exists():
        raise BackupError("the restore directory vanished")
    config.write_text("\n".join(out) + "\n", encoding="utf-8")
