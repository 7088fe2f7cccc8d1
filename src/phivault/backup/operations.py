"""The backup steps a data directory's owner runs, wired once for the CLI and the server:
set up a repository, open it, back up now and record the result in the audit log."""

from __future__ import annotations

import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phivault.audit.events import SERIOUS_FAILURE, SUCCESS, AccessEvent
from phivault.backup.backends import open_backend
from phivault.backup.chunker import DEFAULT_AVG_SIZE, ChunkerParams
from phivault.backup.create import BackupResult, Progress, create_backup
from phivault.backup.keys import (
    BackupPrivateKey,
    ServerBackupConfig,
    read_server_config,
    server_keys,
    write_private_key,
    write_server_config,
)
from phivault.backup.repository import DEFAULT_ZSTD_LEVEL, RepoConfig, Repository, utc_now
from phivault.config import CONFIG_FILE
from phivault.crypto import primitives
from phivault.crypto.keyring import KeyRing
from phivault.errors import ConfigError, PhivaultError
from phivault.vault import Vault

BACKUP_ACTOR = "system:backup"


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """The [backup] section of phivault.toml."""

    interval_minutes: int = 0  # 0: no scheduled backups
    overdue_minutes: int = 0  # 0: twice the interval
    repo: str | None = None  # overrides the repository named by backup.json
    zstd_level: int = DEFAULT_ZSTD_LEVEL  # negative: zstd fast levels

    @property
    def overdue_after_s(self) -> float:
        return 60.0 * (self.overdue_minutes or 2 * self.interval_minutes)


def load_backup_settings(data_dir: Path) -> BackupSettings:
    path = data_dir / CONFIG_FILE
    if not path.exists():
        return BackupSettings()
    try:
        section: Any = tomllib.loads(path.read_text(encoding="utf-8")).get("backup", {})
        return BackupSettings(
            interval_minutes=int(section.get("interval_minutes", 0)),
            overdue_minutes=int(section.get("overdue_minutes", 0)),
            repo=str(section["repo"]) if section.get("repo") else None,
            zstd_level=int(section.get("zstd_level", DEFAULT_ZSTD_LEVEL)),
        )
    except (tomllib.TOMLDecodeError, ValueError, TypeError, AttributeError):
        raise ConfigError(f"the [backup] section of {CONFIG_FILE} is not valid") from None


def init_repository(
    data_dir: Path,
    keyring: KeyRing,
    repo_url: str,
    key_out: Path,
    *,
    avg_chunk_size: int = DEFAULT_AVG_SIZE,
    **backend_options: Any,
) -> BackupPrivateKey:
    """Create the repository, the backup key pair, the operator key file and backup.json."""
    key_out = key_out.expanduser().resolve()
    if key_out.is_relative_to(data_dir.resolve()):
        raise ConfigError("the backup private key must not be kept in the data directory")
    ChunkerParams(avg_chunk_size)  # validates
    repo_id = secrets.token_hex(16)
    private, public = primitives.generate_x25519_keypair()
    keys = server_keys(keyring, repo_id)
    key = BackupPrivateKey(repo_id, private, public, keys.signing_public_key)
    write_private_key(key_out, key)  # first: no repository exists whose key was lost
    backend = open_backend(repo_url, **backend_options)
    try:
        Repository.initialize(
            backend,
            RepoConfig(repo_id, public, keys.signing_public_key, avg_chunk_size, utc_now()),
        )
    finally:
        backend.close()
    write_server_config(data_dir, ServerBackupConfig(repo_url, repo_id, public))
    return key


def open_repository(data_dir: Path, *, operator: bool = False, **options: Any) -> Repository:
    config = read_server_config(data_dir)
    url = load_backup_settings(data_dir).repo or config.repo
    return Repository.open(open_backend(url, operator=operator, **options), config.repo_id)


def backup_now(
    vault: Vault,
    *,
    progress: Progress | None = None,
    lock: bool = True,
    full: bool = False,
    **options: Any,
) -> BackupResult:
    """One backup of an open vault, its outcome recorded in the audit log either way:
    incremental when the newest snapshot allows it, full otherwise or with `full`."""
    data_dir = vault.settings.data_dir
    settings = load_backup_settings(data_dir)
    try:
        if vault.audit.signer is not None:
            # A fresh signed checkpoint goes into the snapshot: a restore is later proved
            # against it (the drill checks the restored log extends it).
            vault.audit.checkpoint()
        repo = open_repository(data_dir, **options)
        try:
            keys = server_keys(vault.keyring, repo.config.repo_id)
            result = create_backup(
                data_dir,
                repo,
                keys,
                vault.settings.db_url,
                progress=progress,
                level=settings.zstd_level,
                lock=lock,
                full=full,
            )
        finally:
            repo.backend.close()
    except PhivaultError as exc:
        vault.audit.record(
            AccessEvent(
                action="backup",
                outcome=SERIOUS_FAILURE,
                actor=BACKUP_ACTOR,
                detail=type(exc).__name__,
            )
        )
        raise
    vault.audit.record(
        AccessEvent(
            action="backup",
            outcome=SUCCESS,
            actor=BACKUP_ACTOR,
            extra={
                "snapshot": result.snapshot_id,
                "bytes": str(result.bytes),
                "new_chunks": str(result.new_chunks),
                "seconds": f"{result.seconds:.2f}",
            },
        )
    )
    return result
