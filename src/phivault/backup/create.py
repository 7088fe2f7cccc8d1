"""Writing one snapshot: capture, chunk, deduplicate, seal, upload, sign.

Only chunks the repository does not hold yet are compressed, sealed and uploaded (worker
threads name, seal and upload while the main thread reads and cuts: see _Uploader). Chunks reused
from earlier snapshots get their retention extended when the backend has one, before the
manifest that needs them is written, so a prune running meanwhile cannot take them. The
manifest goes last; after it, the chunk list is read again and any chunk a concurrent
prune removed is uploaded anew (chunking is deterministic, so the same ids come back).

One backup at a time per data directory: an exclusive lock file, so that of several
server workers only one runs the schedule, and a manual `backup create` waits its turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from phivault.backup.delta import MAX_CHAIN, Marks, NeedFull
from phivault.backup.keys import ServerKeys, b64
from phivault.backup.keysets import KEYS_FILE, write_keyset
from phivault.backup.repository import (
    DEFAULT_ZSTD_LEVEL,
    Repository,
    SnapshotHeader,
    chunk_id_of,
    chunk_object_name,
    new_snapshot_id,
    utc_now,
)
from phivault.backup.snapshot import LOCK_FILE, Capture, capture, clean_stale_temp
from phivault.crypto.keystate import TOMBSTONE
from phivault.errors import BackupError

log = logging.getLogger("phivault.backup")

WORKERS = 4
IN_FLIGHT = 12  # chunks being named, sealed or uploaded at once (~12 x 4 MiB at most)


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None


@dataclass(frozen=True, slots=True)
class BackupResult:
    snapshot_id: str
    time: str
    files: int
    bytes: int
    chunks: int
    new_chunks: int
    new_bytes: int  # stored size of the new chunks
    seconds: float
    healed: int = 0
    kind: str = "full"  # or "incremental"


@contextlib.contextmanager
def backup_lock(data_dir: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the data directory's backup lock; BackupError if held elsewhere and not `wait`."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError("another backup of this data directory is running") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _Uploader:
    """Names, deduplicates, seals and uploads chunks on worker threads, a bounded number
    at a time: HMAC, zstd and AES-GCM release the GIL, and a local repository's fsync per
    chunk waits on the disk, so more threads than cores keep both cores and the disk busy
    while the main thread reads and cuts the next chunks.

    `wanted` None: upload every chunk not in the repository yet (`present`); a set: upload
    only the chunks named there (healing). Each id is claimed once, under a lock."""

    def __init__(
        self,
        repo: Repository,
        chunk_id_key: bytes,
        level: int,
        present: set[str],
        wanted: set[str] | None = None,
    ) -> None:
        self._repo = repo
        self._key = chunk_id_key
        self._level = level
        self._present = present
        self._wanted = wanted
        self._claim = threading.Lock()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="phivault-backup")
        self._slots = threading.BoundedSemaphore(IN_FLIGHT)
        self._pending: list[Future[str]] = []
        self.stored = 0
        self.submitted = 0

    def _needed(self, chunk_id: str) -> bool:
        with self._claim:
            if self._wanted is not None:
                if chunk_id not in self._wanted:
                    return False
                self._wanted.discard(chunk_id)
            elif chunk_id in self._present:
                return False
            self._present.add(chunk_id)
            self.submitted += 1
            return True

    def _run(self, data: bytes) -> str:
        try:
            chunk_id = chunk_id_of(self._key, data)
            if self._needed(chunk_id):
                blob = self._repo.seal_chunk(chunk_id, data, self._level)
                self._repo.put_chunk(chunk_id, blob)  # False: a concurrent writer added it
                with self._claim:
                    self.stored += len(blob)
            return chunk_id
        finally:
            self._slots.release()

    def submit(self, data: bytes) -> None:
        """Queue the next chunk of the current file."""
        self._slots.acquire()
        self._pending.append(self._pool.submit(self._run, data))

    def file_ids(self) -> list[str]:
        """The chunk ids of the current file, in order (re-raises a worker's error)."""
        pending, self._pending = self._pending, []
        return [future.result() for future in pending]

    def finish(self) -> None:
        try:
            self.file_ids()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


# A file is its list of chunk ids in the signed, sealed manifest, and each chunk id is a
# keyed MAC of the chunk's content (checked on restore): that authenticates every byte, so
# no second hash of the whole file is taken (it cost a quarter of a full backup).
def _scan(
    cap: Capture,
    repo: Repository,
    keys: ServerKeys,
    uploader: _Uploader,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Chunk every captured file and hand each chunk to the uploader."""
    chunker = repo.chunker(keys.chunk_id_key)
    files: list[dict[str, Any]] = []
    for item in cap.files:
        size = 0
        with open(item.source, "rb") as handle:
            for data in chunker.chunks(handle, item.align):
                uploader.submit(data)
                size += len(data)
                progress.advance(len(data))
        files.append(
            {
                "path": item.path,
                "size": size,
                "mode": item.mode,
                "chunks": uploader.file_ids(),
            }
        )
    return files


def _retention(repo: Repository) -> timedelta | None:
    days = getattr(getattr(repo.backend, "options", None), "retention_days", None)
    return timedelta(days=int(days)) if days else None


def _protect_reused(repo: Repository, reused: set[str], retention: timedelta | None) -> str | None:
    """Extend the retention of reused chunks; returns the new retain-until (or None)."""
    if retention is None:
        return None
    now = datetime.now(UTC)
    until = now + retention
    ids = repo.snapshot_ids()
    fresh: set[str] = set()
    if ids:
        latest = repo.read_header(ids[-1])
        if (
            latest.retain_until
            and datetime.fromisoformat(latest.retain_until) > now + retention / 2
        ):
            fresh = set(latest.chunks)  # protected long enough by the previous backup
    stale = sorted(reused - fresh)
    repo.backend.protect([chunk_object_name(c) for c in stale], until)
    return until.isoformat()


def _parent(repo: Repository, full: bool) -> SnapshotHeader | None:
    """The snapshot the next one can be a delta of, or None (then it is full)."""
    ids = repo.snapshot_ids()
    if full or not ids:
        return None
    latest = repo.read_header(ids[-1])  # signed by this server: its marks are its own
    if latest.marks is None or len(latest.chain or (latest.snapshot_id,)) > MAX_CHAIN:
        return None
    if not set(latest.chunks) <= repo.chunk_ids():
        return None  # something it needs is gone: start afresh rather than build on it
    return latest


@contextlib.contextmanager
def _capture(
    data_dir: Path, db_url: str | None, parent: SnapshotHeader | None
) -> Iterator[tuple[Capture, SnapshotHeader | None]]:
    """A delta of `parent` when it can be one, else a full capture."""
    since = Marks.from_json(parent.marks) if parent is not None else None
    if since is not None:
        try:
            with capture(data_dir, db_url, since) as cap:
                yield cap, parent
                return
        except NeedFull as why:
            log.info("backup: a full snapshot is needed (%s)", why)
    with capture(data_dir, db_url) as cap:
        yield cap, None


def create_backup(
    data_dir: Path,
    repo: Repository,
    keys: ServerKeys,
    db_url: str | None,
    *,
    progress: Progress | None = None,
    level: int = DEFAULT_ZSTD_LEVEL,
    lock: bool = True,
    full: bool = False,
) -> BackupResult:
    """`lock=False`: the caller already holds `backup_lock`. An incremental snapshot is
    taken when the newest one allows it (backup/delta.py); `full` forces a full one."""
    progress = progress or _NoProgress()
    started = time.monotonic()
    snapshot_id = new_snapshot_id()
    with backup_lock(data_dir) if lock else contextlib.nullcontext():
        clean_stale_temp(data_dir)
        with _capture(data_dir, db_url, _parent(repo, full)) as (cap, parent):
            progress.start(sum(f.source.stat().st_size for f in cap.files))
            uploader = _Uploader(repo, keys.chunk_id_key, level, repo.chunk_ids())
            try:
                files = _scan(cap, repo, keys, uploader, progress)
            finally:
                uploader.finish()
            own = {c for f in files for c in f["chunks"]}
            # A delta needs everything its parent needed: reused by name, never re-read.
            every = own | set(parent.chunks) if parent is not None else own
            chain = (*(parent.chain or (parent.snapshot_id,)), snapshot_id) if parent else ()
            retain_until = _protect_reused(repo, every, _retention(repo))
            # The keys go apart from the immutable objects, before the manifest needs them.
            keys_json = data_dir / KEYS_FILE
            keyset = write_keyset(
                repo,
                snapshot_id,
                cap.keys,
                keys_json.read_bytes() if keys_json.exists() else b"",
            )
            repo.backend.flush()
            header = SnapshotHeader(
                snapshot_id=snapshot_id,
                repo_id=repo.config.repo_id,
                time=utc_now(),
                chunks=tuple(sorted(every)),
                body_sha256="",
                retain_until=retain_until,
                stats={
                    "files": len(files),
                    "bytes": sum(int(f["size"]) for f in files),
                    "chunks": len(every),
                    "new_chunks": uploader.submitted,
                    "new_bytes": uploader.stored,
                },
                backend=cap.backend,
                chain=chain or (snapshot_id,),
                marks=cap.marks.to_json() if cap.marks is not None else None,
                keyset=keyset,
                shreds=sum(1 for _, blob in cap.keys if blob == TOMBSTONE),
            )
            body = {
                "files": files,
                "facts": cap.facts,
                "backend": cap.backend,
                "chunk_id_key": b64(keys.chunk_id_key),
                "kind": "delta" if parent is not None else "full",
            }
            header = repo.write_manifest(header, body, keys.signing_seed)
            healed = _heal(cap, repo, keys, own, level)
    return BackupResult(
        snapshot_id=snapshot_id,
        time=header.time,
        files=len(files),
        bytes=header.stats["bytes"],
        chunks=len(every),
        new_chunks=header.stats.get("new_chunks", 0),
        new_bytes=uploader.stored,
        seconds=time.monotonic() - started,
        healed=healed,
        kind="incremental" if len(header.chain) > 1 else "full",
    )


def _heal(cap: Capture, repo: Repository, keys: ServerKeys, every: set[str], level: int) -> int:
    missing = every - repo.chunk_ids()
    if not missing:
        return 0
    count = len(missing)
    uploader = _Uploader(repo, keys.chunk_id_key, level, set(), set(missing))
    try:
        _scan(cap, repo, keys, uploader, _NoProgress())
    finally:
        uploader.finish()
    repo.backend.flush()
    return count
