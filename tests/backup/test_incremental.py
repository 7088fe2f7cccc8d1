"""Incremental snapshots (backup/delta.py), on SQLite and PostgreSQL: after a full one,
the next snapshots hold only what changed; a restore of any of them (full database, then
each delta of its chain) gives back exactly the live state, with working search and a
verifying audit log. Rewrites in place (a crypto-shred) force a full snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from phivault.audit.verify import verify_log
from phivault.backup.audit_check import audit_public_key
from phivault.backup.create import BackupResult
from phivault.backup.keys import read_private_key
from phivault.backup.operations import backup_now
from phivault.backup.prune import RetentionPolicy, prune
from phivault.backup.restore import restore_snapshot
from phivault.service import Context
from phivault.service.keys import shred_patient
from phivault.store.pg_pool import split_schema
from phivault.vault import Vault
from tests.backup.support import clinic, load, open_with, repository, setup_repo, snapshot_of
from tests.keys_support import raw_sql

CTX = Context(actor="backup-test")
_TARGET: dict[int, str] = {}  # the patient each vault's working days update


@pytest.fixture
def live(data_dir: Path, key_file: Path, tmp_path: Path) -> Iterator[Vault]:
    vault = open_with(data_dir, key_file)
    try:
        load(vault, clinic(10))
        setup_repo(vault, str(tmp_path / "repo"), tmp_path / "backup.key")
        yield vault
    finally:
        vault.close()


def change(vault: Vault, tag: str) -> str:
    """Create a patient, update another, delete an observation, read some: a working day."""
    patients = sorted(r.rid for r in vault.store.iter_current("Patient"))
    patients = [_TARGET.setdefault(id(vault), patients[0]), *patients]
    created = vault.service.create(
        CTX, "Patient", {"resourceType": "Patient", "name": [{"family": f"Zz{tag}"}]}
    ).version.rid
    vault.service.update(
        CTX,
        "Patient",
        patients[0],
        {"resourceType": "Patient", "id": patients[0], "name": [{"family": f"Yy{tag}"}]},
    )
    observation = next(iter(vault.store.iter_current("Observation")))
    vault.service.delete(CTX, "Observation", observation.rid)
    for rid in patients[:3]:
        vault.service.read(CTX, "Patient", rid)
    return created


def restored(
    vault: Vault, tmp_path: Path, key_file: Path, name: str, **kwargs: Any
) -> tuple[Vault, str | None]:
    db_url = None
    if vault.settings.db_url and vault.settings.db_url.startswith("postgresql"):
        url, schema = split_schema(vault.settings.db_url)
        db_url = f"{url}?schema={schema}_{name}"
    key = read_private_key(tmp_path / "backup.key")
    restore_snapshot(repository(vault), key, tmp_path / name, db_url=db_url, **kwargs)
    return open_with(tmp_path / name, key_file), db_url


def drop(db_url: str | None) -> None:
    if db_url:
        url, schema = split_schema(db_url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


def family_search(vault: Vault, family: str) -> set[str]:
    found = vault.service.search(CTX, "Patient", [("family", family)])
    return {m.rid for m in found.matches}


def same_state(live: Vault, copy: Vault) -> None:
    assert snapshot_of(copy) == snapshot_of(live)
    assert copy.store.audit_size() <= live.store.audit_size()
    report = verify_log(copy.store, audit_public_key(copy), seal=copy.audit.seal)
    assert report.ok, report.findings[:3]


def test_incremental_snapshots_restore_exactly(live: Vault, tmp_path: Path, key_file: Path) -> None:
    full = backup_now(live)
    assert full.kind == "full"
    first = change(live, "one")
    one = backup_now(live)
    second = change(live, "two")
    two = backup_now(live)
    assert (one.kind, two.kind) == ("incremental", "incremental")
    # Only what changed is read and stored: a small fraction of the full snapshot.
    assert two.bytes < full.bytes / 4 and two.new_bytes < full.new_bytes / 4
    repo = repository(live)
    headers = [repo.read_header(i) for i in repo.snapshot_ids()]
    assert [len(h.chain) for h in headers] == [1, 2, 3]
    assert set(headers[0].chunks) <= set(headers[2].chunks)  # reused by reference

    copy, db_url = restored(live, tmp_path, key_file, "latest")
    try:
        same_state(live, copy)
        # Index rows came back by resource: the new and updated names are searchable,
        # the old name of the updated patient is not.
        assert family_search(copy, "Zztwo") == {second}
        assert family_search(copy, "Zzone") == {first}
        assert family_search(copy, "Yytwo") and not family_search(copy, "Yyone")
        if copy.store.backend == "sqlite":  # the FTS5 index followed the delta's rows
            raw_sql(copy, "INSERT INTO blind_fts (blind_fts) VALUES ('integrity-check')")
            docs = "SELECT rtype, rid, tokens FROM idx_blind_docs ORDER BY rtype, rid"
            assert raw_sql(copy, docs) == raw_sql(live, docs)
        # The restored server keeps working: new writes and a new backup chain.
        copy.service.create(CTX, "Patient", {"resourceType": "Patient"})
    finally:
        copy.close()
        drop(db_url)

    middle, db_url = restored(live, tmp_path, key_file, "middle", snapshot_id=one.snapshot_id)
    try:
        assert family_search(middle, "Zzone") == {first}
        assert not family_search(middle, "Zztwo")
        assert verify_log(middle.store, audit_public_key(middle), seal=middle.audit.seal).ok
    finally:
        middle.close()
        drop(db_url)


def test_a_shred_forces_a_full_snapshot(live: Vault) -> None:
    backup_now(live)
    patient = next(iter(live.store.iter_current("Patient"))).rid
    shred_patient(live.store, live.keyring, live.audit, CTX, patient)
    after: BackupResult = backup_now(live)
    assert after.kind == "full"  # no chain back to a snapshot holding the patient's key
    change(live, "x")
    assert backup_now(live).kind == "incremental"
    assert backup_now(live, full=True).kind == "full"


def test_prune_keeps_the_chain_of_what_it_keeps(
    live: Vault, tmp_path: Path, key_file: Path
) -> None:
    backup_now(live)
    change(live, "a")
    backup_now(live)
    change(live, "b")
    newest = backup_now(live)
    repo = repository(live, operator=True)
    key = read_private_key(tmp_path / "backup.key")
    result = prune(repo, key, RetentionPolicy(keep_last=1))
    assert result.forgotten == [] and newest.snapshot_id in result.kept
    copy, db_url = restored(live, tmp_path, key_file, "pruned")
    try:
        same_state(live, copy)
    finally:
        copy.close()
        drop(db_url)


def test_postgres_version_committed_after_a_snapshot_with_a_lower_seq(
    pg_schema_url: str, key_file: Path, tmp_path: Path
) -> None:
    """PostgreSQL hands out seq before commit: a write in flight during a snapshot commits
    a seq below that snapshot's mark. The next delta must still take it."""
    from phivault.crypto.kek import KeyFileKeySource
    from phivault.vault import init_data_dir

    data_dir = tmp_path / "data"
    init_data_dir(data_dir, KeyFileKeySource(key_file), db_url=pg_schema_url)
    vault = open_with(data_dir, key_file)
    try:
        load(vault, clinic(4))
        setup_repo(vault, str(tmp_path / "repo"), tmp_path / "backup.key")
        backup_now(vault)
        url, schema = split_schema(pg_schema_url)
        with psycopg.connect(url) as slow:  # a writer that takes its seq, then stalls
            slow.execute(f'SET search_path TO "{schema}"'.encode())
            late = slow.execute(
                "INSERT INTO versions (rtype, rid, version, last_updated, deleted, body, "
                "compartment, method) VALUES ('Basic', 'late', 1, '2024-01-01T00:00:00Z', "
                "false, NULL, NULL, 'PUT') RETURNING seq"
            ).fetchone()
            change(vault, "during")  # commits higher seqs meanwhile
            during = backup_now(vault)
            assert during.kind == "incremental"
            marks = repository(vault).read_header(during.snapshot_id).marks
            assert marks is not None and late is not None and late[0] in marks["pending"]
            slow.commit()
        after = backup_now(vault)
        assert after.kind == "incremental"
        copy, db_url = restored(vault, tmp_path, key_file, "late")
        try:
            assert copy.store.version("Basic", "late", 1) is not None
        finally:
            copy.close()
            drop(db_url)
    finally:
        vault.close()
