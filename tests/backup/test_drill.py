"""The ransomware drill, on SQLite and on PostgreSQL: load the demo clinic, back up, let
"ransomware" overwrite the live data directory (and wipe the database), see phivault
refuse to start, restore, and get every resource and a verifying audit log back, with the
restored log consistent with the checkpoint taken before the attack."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from phivault.audit.checkpoint import parse_checkpoint, tree_root
from phivault.audit.verify import verify_log
from phivault.backup.audit_check import audit_public_key
from phivault.backup.drill import run_drill
from phivault.backup.keys import read_private_key
from phivault.backup.operations import backup_now
from phivault.backup.restore import restore_snapshot
from phivault.crypto.kek import KeyFileKeySource
from phivault.errors import DataDirDamaged, PhivaultError
from phivault.store.pg_pool import split_schema
from tests.backup.support import (
    clinic,
    load,
    open_with,
    ransomware,
    repository,
    setup_repo,
    snapshot_of,
)
from tests.keys_support import run_cli


def _wipe_postgres(db_url: str) -> None:
    url, schema = split_schema(db_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


def _fresh_schema(db_url: str) -> str:
    url, schema = split_schema(db_url)
    return f"{url}?schema={schema}_restored"


def test_ransomware_drill(
    data_dir: Path, key_file: Path, db_url: str | None, tmp_path: Path
) -> None:
    vault = open_with(data_dir, key_file)
    try:
        load(vault, clinic(15))
        before = snapshot_of(vault)
        checkpoint = vault.audit.checkpoint()  # the tree head a witness saw before the attack
        assert checkpoint is not None
        key = setup_repo(vault, str(tmp_path / "repo"), tmp_path / "backup.key")
        backup_now(vault)
    finally:
        vault.close()
    repo_dir = tmp_path / "repo"

    # The attack: every file of the data directory overwritten, the database wiped.
    assert ransomware(data_dir) >= 2
    if db_url:
        _wipe_postgres(db_url)
    with pytest.raises(DataDirDamaged) as refused:
        open_with(data_dir, key_file)
    assert "backup restore" in refused.value.message
    served = run_cli("serve", "--data", str(data_dir), "--key-file", str(key_file))
    assert served.exit_code == DataDirDamaged.exit_code
    assert "backup restore" in served.output

    # Recovery, from the repository and the offline backup key alone.
    from phivault.backup.backends import open_backend
    from phivault.backup.repository import Repository

    repo = Repository.open(open_backend(str(repo_dir)), key.repo_id)
    restored_dir = tmp_path / "restored"
    target_db = _fresh_schema(db_url) if db_url else None
    try:
        result = restore_snapshot(repo, key, restored_dir, db_url=target_db)
        assert result.facts["resources"] == len(before)
        vault = open_with(restored_dir, key_file)
        try:
            assert snapshot_of(vault) == before
            report = verify_log(vault.store, audit_public_key(vault))
            assert report.ok, report.findings
            old = parse_checkpoint(checkpoint)[0]
            assert report.size >= old.size
            assert tree_root(vault.store.audit_nodes, old.size) == old.root
        finally:
            vault.close()
    finally:
        if target_db:
            _wipe_postgres(target_db)


def test_drill_command_reports_recovery(
    data_dir: Path, key_file: Path, db_url: str | None, tmp_path: Path
) -> None:
    vault = open_with(data_dir, key_file)
    try:
        load(vault, clinic(4))
        setup_repo(vault, str(tmp_path / "repo"), tmp_path / "backup.key")
        backup_now(vault)
    finally:
        vault.close()
    scratch_db = _fresh_schema(db_url) if db_url else None
    try:
        report = run_drill(
            repository(data_dir),
            read_private_key(tmp_path / "backup.key"),
            KeyFileKeySource(key_file),
            db_url=scratch_db,
        )
    finally:
        if scratch_db:
            try:
                _wipe_postgres(scratch_db)
            except (psycopg.Error, PhivaultError):
                pass
    assert report.ok, (report.problems, report.audit.problems)
    assert report.resources_found == report.resources_expected > 0
    assert report.audit.checkpoint_size > 0
    assert report.recovery_seconds > 0
