"""Helpers for the backup tests: a small demo clinic in a data directory, a repository
beside it, and an attacker who writes random bytes over files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from phivault.backup.keys import BackupPrivateKey
from phivault.backup.operations import init_repository, open_repository
from phivault.backup.repository import Repository
from phivault.crypto.kek import KeyFileKeySource
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.service import Context
from phivault.types import Resource
from phivault.vault import Vault, open_vault

CTX = Context(actor="backup-test")
SMALL_CHUNKS = 16 * 1024  # many chunks even for a small clinic


def clinic(patients: int = 12, seed: int = 7) -> list[Resource]:
    return list(generate_clinic(ClinicSpec(patients=patients, seed=seed)))


def load(vault: Vault, resources: list[Resource]) -> None:
    for stats in vault.service.import_resources(CTX, resources, batch_size=500):
        assert stats.failed == 0, stats.errors


def open_with(data_dir: Path, key_file: Path, **kwargs: Any) -> Vault:
    return open_vault(data_dir, KeyFileKeySource(key_file), **kwargs)


def setup_repo(
    vault: Vault, repo: str, key_out: Path, avg_chunk_size: int = SMALL_CHUNKS, **options: Any
) -> BackupPrivateKey:
    return init_repository(
        vault.settings.data_dir,
        vault.keyring,
        repo,
        key_out,
        avg_chunk_size=avg_chunk_size,
        **options,
    )


def repository(vault_or_dir: Vault | Path, **options: Any) -> Repository:
    data_dir = vault_or_dir if isinstance(vault_or_dir, Path) else vault_or_dir.settings.data_dir
    return open_repository(data_dir, **options)


def ransomware(data_dir: Path) -> int:
    """Overwrite every file of the data directory with random bytes of the same size."""
    hit = 0
    for path in data_dir.rglob("*"):
        if path.is_file():
            size = max(path.stat().st_size, 64)
            path.chmod(0o600)
            path.write_bytes(os.urandom(size))
            hit += 1
    return hit


def snapshot_of(vault: Vault) -> dict[str, bytes]:
    """Every current resource's plaintext body, by Type/id."""
    out: dict[str, bytes] = {}
    for record in vault.store.iter_current():
        version = vault.service.read(CTX, record.rtype, record.rid)
        assert version.body is not None
        out[f"{record.rtype}/{record.rid}"] = version.body
    return out
