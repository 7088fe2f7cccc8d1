"""A tampered chunk, a deleted chunk, a swapped manifest, a wrong key and the server's own
access trying to delete or overwrite: each fails loudly, and nothing is lost."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from phivault.backup.backends import open_backend
from phivault.backup.keys import read_private_key
from phivault.backup.operations import backup_now
from phivault.backup.prune import RetentionPolicy, prune
from phivault.backup.repository import CHUNKS, SNAPSHOTS, chunk_object_name
from phivault.backup.restore import restore_snapshot
from phivault.backup.verify import verify_repository
from phivault.errors import (
    AppendOnlyViolation,
    BackupIntegrityError,
    BackupKeyError,
    PruneRefused,
)
from tests.backup.conftest import Clinic
from tests.backup.support import repository


def _chunk_files(repo_dir: Path) -> list[Path]:
    return sorted(p for p in (repo_dir / CHUNKS).rglob("*") if p.is_file())


def _restores(clinic: Clinic, target: Path, snapshot: str | None = None) -> None:
    restore_snapshot(repository(clinic.vault), clinic.backup_key, target, snapshot_id=snapshot)


def test_untouched_repository_verifies_and_restores(backed_up: Clinic, tmp_path: Path) -> None:
    result = verify_repository(repository(backed_up.vault), backed_up.backup_key, full=True)
    assert result.ok and result.snapshots == 1 and result.chunks_opened == result.chunks > 5
    _restores(backed_up, tmp_path / "restored")
    live = (backed_up.data_dir / "keys.json").read_bytes()
    assert (tmp_path / "restored" / "keys.json").read_bytes() == live


def test_a_tampered_chunk_is_refused(backed_up: Clinic, tmp_path: Path) -> None:
    victim = _chunk_files(backed_up.repo_dir)[3]
    victim.chmod(0o600)  # the attacker owns the disk
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    repo = repository(backed_up.vault)
    assert verify_repository(repo).ok  # present and signed: only --full opens chunks
    full = verify_repository(repo, backed_up.backup_key, full=True)
    assert not full.ok and any("chunk" in p for p in full.problems)
    with pytest.raises(BackupIntegrityError):
        _restores(backed_up, tmp_path / "restored")
    assert not (tmp_path / "restored" / "phivault.db").exists()  # no half-restored file


def test_a_chunk_moved_to_another_name_is_refused(backed_up: Clinic, tmp_path: Path) -> None:
    first, second = _chunk_files(backed_up.repo_dir)[:2]
    second.chmod(0o600)
    shutil.copyfile(first, second)  # a valid chunk, under the wrong name
    full = verify_repository(repository(backed_up.vault), backed_up.backup_key, full=True)
    assert not full.ok


def test_a_deleted_chunk_is_reported(backed_up: Clinic, tmp_path: Path) -> None:
    _chunk_files(backed_up.repo_dir)[0].unlink()
    result = verify_repository(repository(backed_up.vault))
    assert not result.ok and "missing" in result.problems[0]
    with pytest.raises(BackupIntegrityError):
        _restores(backed_up, tmp_path / "restored")


def test_a_swapped_manifest_is_refused(backed_up: Clinic, tmp_path: Path) -> None:
    backup_now(backed_up.vault)
    repo = repository(backed_up.vault)
    old, new = repo.snapshot_ids()
    old_path, new_path = backed_up.repo_dir / SNAPSHOTS / old, backed_up.repo_dir / SNAPSHOTS / new
    new_path.chmod(0o600)
    new_path.write_bytes(old_path.read_bytes())  # "the newest backup" is now the old one
    with pytest.raises(BackupIntegrityError):
        repo.read_header(new)
    assert not verify_repository(repo).ok
    with pytest.raises(BackupIntegrityError):
        _restores(backed_up, tmp_path / "restored", new)
    _restores(backed_up, tmp_path / "old", old)  # the intact snapshot still restores


def test_an_edited_manifest_header_is_refused(backed_up: Clinic) -> None:
    repo = repository(backed_up.vault)
    (snapshot,) = repo.snapshot_ids()
    path = backed_up.repo_dir / SNAPSHOTS / snapshot
    path.chmod(0o600)
    path.write_bytes(path.read_bytes().replace(b'"backend":"sqlite"', b'"backend":"sqlitf"'))
    with pytest.raises(BackupIntegrityError):
        repo.read_header(snapshot)


def test_a_wrong_backup_key_opens_nothing(backed_up: Clinic, tmp_path: Path) -> None:
    other_vault_key = tmp_path / "other.key"
    from phivault.backup.operations import init_repository

    init_repository(
        backed_up.data_dir.parent / "data",
        backed_up.vault.keyring,
        str(tmp_path / "other-repo"),
        other_vault_key,
    )
    wrong = read_private_key(other_vault_key)
    repo = repository(backed_up.vault)  # backup.json now names the other repository
    repo = type(repo).open(open_backend(str(backed_up.repo_dir)))
    with pytest.raises(BackupKeyError):
        restore_snapshot(repo, wrong, tmp_path / "restored")
    # Even a key file edited to claim this repository's id does not open anything.
    forged = type(wrong)(
        repo.config.repo_id,
        wrong.private_key,
        repo.config.public_key,
        repo.config.signing_public_key,
    )
    with pytest.raises(BackupIntegrityError):
        restore_snapshot(repo, forged, tmp_path / "restored2")
    restore_snapshot(repo, backed_up.backup_key, tmp_path / "right")  # nothing was lost


def test_the_servers_access_cannot_delete_or_overwrite(backed_up: Clinic, tmp_path: Path) -> None:
    backend = open_backend(str(backed_up.repo_dir))  # what the server opens
    (snapshot,) = repository(backed_up.vault).snapshot_ids()
    name = SNAPSHOTS + snapshot
    before = backend.read(name)
    assert backend.create(name, b"ransom note") is False
    chunk = _chunk_files(backed_up.repo_dir)[0]
    chunk_name = chunk.relative_to(backed_up.repo_dir).as_posix()
    assert backend.create(chunk_name, os.urandom(100)) is False
    with pytest.raises(AppendOnlyViolation):
        backend.delete(name)  # type: ignore[attr-defined]
    with pytest.raises(PruneRefused):
        prune(repository(backed_up.vault), backed_up.backup_key, RetentionPolicy(keep_last=1))
    assert backend.read(name) == before
    assert oct(chunk.stat().st_mode & 0o777) == oct(0o444)
    _restores(backed_up, tmp_path / "restored")  # everything is still there


def test_chunk_names_reveal_nothing(backed_up: Clinic) -> None:
    import hashlib

    repo = repository(backed_up.vault)
    ids = repo.chunk_ids()
    db = (backed_up.data_dir / "phivault.db").read_bytes()
    plain_hashes = {hashlib.sha256(db[i : i + 4096]).hexdigest() for i in range(0, 65536, 4096)}
    assert not ids & plain_hashes
    assert chunk_object_name(next(iter(ids))).startswith(CHUNKS)


def test_restore_at_a_time_picks_the_snapshot_then(backed_up: Clinic) -> None:
    from phivault.backup.restore import choose_snapshot, parse_time

    backup_now(backed_up.vault)
    repo = repository(backed_up.vault)
    first, second = repo.snapshot_ids()
    at = parse_time(repo.read_header(first).time)
    assert choose_snapshot(repo, None, at) == first
    assert choose_snapshot(repo, None, None) == second
    from phivault.errors import SnapshotNotFound

    with pytest.raises(SnapshotNotFound):
        choose_snapshot(repo, None, parse_time("2000-01-01T00:00:00Z"))
