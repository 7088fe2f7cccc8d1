"""A crypto-shred reaches backups (backup/keysets.py), on SQLite and PostgreSQL: snapshot
databases hold no wrapped key; the keys live in key-sets that `backup prune` (operator)
deletes once superseded, so after shred + backup + prune no object of the repository
holds the patient's key, and every snapshot, even one taken before the shred, restores
with that patient's data unreadable and everyone else's intact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from phivault.backup.keys import read_private_key
from phivault.backup.keysets import KEYSETS, read_keyset
from phivault.backup.operations import backup_now
from phivault.backup.prune import RetentionPolicy, prune
from phivault.backup.restore import restore_snapshot
from phivault.crypto.keyring import patient_key_id
from phivault.errors import KeyShredded
from phivault.service.keys import shred_patient
from phivault.store.pg_pool import split_schema
from phivault.vault import Vault
from tests.backup.support import CTX, clinic, load, open_with, repository, setup_repo


@pytest.fixture
def live(data_dir: Path, key_file: Path, tmp_path: Path) -> Iterator[Vault]:
    vault = open_with(data_dir, key_file)
    try:
        load(vault, clinic(8))
        setup_repo(vault, str(tmp_path / "repo"), tmp_path / "backup.key")
        yield vault
    finally:
        vault.close()


def restore(vault: Vault, tmp_path: Path, name: str, snapshot_id: str) -> tuple[Path, str | None]:
    db_url = None
    if vault.settings.db_url and vault.settings.db_url.startswith("postgresql"):
        url, schema = split_schema(vault.settings.db_url)
        db_url = f"{url}?schema={schema}_{name}"
    key = read_private_key(tmp_path / "backup.key")
    restore_snapshot(
        repository(vault), key, tmp_path / name, snapshot_id=snapshot_id, db_url=db_url
    )
    return tmp_path / name, db_url


def drop(db_url: str | None) -> None:
    if db_url:
        url, schema = split_schema(db_url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


def test_shred_then_backup_then_prune_reaches_every_snapshot(
    live: Vault, tmp_path: Path, key_file: Path
) -> None:
    patients = sorted(r.rid for r in live.store.iter_current("Patient"))
    victim, other = patients[0], patients[1]
    wrapped = live.store.key_get(patient_key_id(victim))
    assert wrapped is not None
    old = backup_now(live)
    repo = repository(live)
    key = read_private_key(tmp_path / "backup.key")
    # The snapshot's chunks (its database) hold no wrapped key: only its key-set does.
    header = repo.read_header(old.snapshot_id)
    chunks = [repo.open_chunk(key.private_key, c) for c in header.chunks]
    assert not any(wrapped in chunk for chunk in chunks)
    found = read_keyset(repo, key.private_key, header)
    assert found is not None and (patient_key_id(victim), wrapped) in found.rows

    shred_patient(live.store, live.keyring, live.audit, CTX, victim)
    after = backup_now(live)
    assert after.kind == "full"
    # Until the operator prunes, the old key-set (not the server) still holds the key.
    assert read_keyset(repo, key.private_key, header) is not None
    operator = repository(live, operator=True)
    result = prune(operator, key, RetentionPolicy(keep_last=5))
    assert result.forgotten == [] and result.keysets_deleted == 1
    assert read_keyset(repo, key.private_key, header) is None
    assert [n.rsplit("/", 1)[-1] for n in repo.backend.list(KEYSETS)] == [after.snapshot_id]
    newest = read_keyset(repo, key.private_key, repo.read_header(after.snapshot_id))
    assert newest is not None and all(blob != wrapped for _, blob in newest.rows)

    # The snapshot taken BEFORE the shred: the patient's data is gone, others intact.
    folder, db_url = restore(live, tmp_path, "before", old.snapshot_id)
    copy = open_with(folder, key_file)
    try:
        victim_ids = [
            r.rid for r in copy.store.iter_current() if r.compartment == f"Patient/{victim}"
        ]
        assert victim_ids
        with pytest.raises(KeyShredded):
            copy.service.read(CTX, "Patient", victim)
        assert copy.service.read(CTX, "Patient", other).body
        assert copy.store.key_get(patient_key_id(victim)) != wrapped
    finally:
        copy.close()
        drop(db_url)


def test_verify_notices_a_missing_newest_keyset(live: Vault, tmp_path: Path) -> None:
    from phivault.backup.verify import verify_repository

    snapshot = backup_now(live).snapshot_id
    repo = repository(live)
    assert verify_repository(repo).ok
    path = tmp_path / "repo" / KEYSETS / snapshot
    path.chmod(0o600)
    path.write_bytes(b"gone")
    found = verify_repository(repo)
    assert not found.ok and any("key-set" in p for p in found.problems)
