"""`backup verify`: every manifest signed and every chunk it needs present; with `--full`
(and the backup private key) every chunk also opened, decompressed and re-hashed.

Problems are collected, not raised one by one, so the operator sees everything that is
wrong at once; they name snapshot ids and counts, never content.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from phivault.backup.create import Progress, _NoProgress
from phivault.backup.keys import BackupPrivateKey, unb64
from phivault.backup.keysets import KEYSETS
from phivault.backup.repository import Repository, chunk_id_of
from phivault.backup.restore import check_key
from phivault.errors import BackupIntegrityError, PhivaultError

READERS = 4


@dataclass(slots=True)
class VerifyResult:
    snapshots: int = 0
    chunks: int = 0
    chunks_opened: int = 0
    full: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_repository(
    repo: Repository,
    key: BackupPrivateKey | None = None,
    *,
    full: bool = False,
    progress: Progress | None = None,
) -> VerifyResult:
    progress = progress or _NoProgress()
    result = VerifyResult(full=full)
    if full:
        if key is None:
            raise BackupIntegrityError("a full verify needs the backup private key")
        check_key(repo, key)
    present = repo.chunk_ids()
    needed: set[str] = set()
    chunk_id_key: bytes | None = None
    ids = repo.snapshot_ids()
    result.snapshots = len(ids)
    for snapshot_id in ids:
        try:
            header = repo.read_header(snapshot_id)
            if full and key is not None:
                _, body = repo.read_manifest(snapshot_id, key.private_key)
                chunk_id_key = chunk_id_key or unb64(body["chunk_id_key"], 32)
        except PhivaultError as exc:
            result.problems.append(f"snapshot {snapshot_id}: {exc.message}")
            continue
        missing = set(header.chunks) - present
        if missing:
            result.problems.append(f"snapshot {snapshot_id}: {len(missing)} chunk(s) missing")
        needed |= set(header.chunks) & present
    result.chunks = len(needed)
    _check_newest_keyset(repo, ids, result)
    if full and key is not None and chunk_id_key is not None:
        progress.start(len(needed))
        for chunk_id, problem in _open_all(repo, key, chunk_id_key, sorted(needed)):
            result.chunks_opened += 1
            progress.advance(1)
            if problem:
                result.problems.append(f"chunk {chunk_id[:16]}: {problem}")
    return result


def _check_newest_keyset(repo: Repository, ids: list[str], result: VerifyResult) -> None:
    """Restores take their keys from the newest key-set (backup/keysets.py): it must be
    there and be the one its signed manifest names."""
    for snapshot_id in reversed(ids):
        try:
            header = repo.read_header(snapshot_id)
        except PhivaultError:
            continue  # reported above
        if not header.keyset:
            return  # written before key-sets: its keys are inside it
        blob = repo.backend.read(KEYSETS + snapshot_id)
        if blob is None or hashlib.sha256(blob).hexdigest() != header.keyset:
            result.problems.append(f"snapshot {snapshot_id}: its key-set is missing or altered")
        return


def _open_all(
    repo: Repository, key: BackupPrivateKey, chunk_id_key: bytes, ids: list[str]
) -> Iterator[tuple[str, str | None]]:
    def check(chunk_id: str) -> tuple[str, str | None]:
        try:
            data = repo.open_chunk(key.private_key, chunk_id)
        except PhivaultError as exc:
            return chunk_id, exc.message
        if not hmac.compare_digest(chunk_id_of(chunk_id_key, data), chunk_id):
            return chunk_id, "content does not match its name"
        return chunk_id, None

    with ThreadPoolExecutor(READERS, thread_name_prefix="phivault-verify") as pool:
        yield from pool.map(check, ids, chunksize=4)
