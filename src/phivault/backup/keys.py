"""Backup keys: who can write, who can read, who signs.

- The backup key pair (X25519). `backup init` creates it; the server keeps only the
  public key (in `backup.json` in the data directory) and seals every chunk and snapshot
  to it, so a compromised server cannot read old backups. The private key goes to an
  operator file that `init` tells the operator to move offline; restore, `verify --full`
  and `drill` need it.
- The manifest signing key (Ed25519) and the chunk-id key (HMAC) are the server's: both
  are derived with HKDF from the audit signing seed, which the KEK protects, so they are
  never stored and come back with a restored data directory. The chunk-id key makes chunk
  names reveal nothing about content while letting the server deduplicate.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phivault.crypto import primitives
from phivault.crypto.keyring import KeyRing
from phivault.errors import BackupError, BackupKeyError, ConfigError

SERVER_FILE = "backup.json"
KEY_FILE_FORMAT = "phivault-backup-key"
_SIGNING_INFO = b"phivault/backup-manifest-signing/v1"
_CHUNK_ID_INFO = b"phivault/backup-chunk-id/v1"


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def unb64(value: object, length: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except ValueError:
        raise BackupKeyError() from None
    if length is not None and len(raw) != length:
        raise BackupKeyError()
    return raw


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """What the server holds to write a repository: never enough to read it."""

    signing_seed: bytes
    chunk_id_key: bytes

    @property
    def signing_public_key(self) -> bytes:
        return primitives.public_key_of(self.signing_seed)

    def __repr__(self) -> str:  # never print key material
        return "ServerKeys(...)"


def server_keys(keyring: KeyRing, repo_id: str) -> ServerKeys:
    seed = keyring.audit_signing_seed()
    return ServerKeys(
        signing_seed=primitives.hkdf_sha256(seed, _SIGNING_INFO),
        # Per repository: two repositories of one server share no chunk names.
        chunk_id_key=primitives.hkdf_sha256(seed, _CHUNK_ID_INFO, salt=repo_id.encode()),
    )


@dataclass(frozen=True, slots=True)
class BackupPrivateKey:
    """The operator's key file: opens every chunk and snapshot of one repository."""

    repo_id: str
    private_key: bytes
    public_key: bytes
    signing_public_key: bytes

    def __repr__(self) -> str:
        return f"BackupPrivateKey(repo_id={self.repo_id!r})"

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": KEY_FILE_FORMAT,
                "v": 1,
                "repo_id": self.repo_id,
                "private_key": b64(self.private_key),
                "public_key": b64(self.public_key),
                "signing_public_key": b64(self.signing_public_key),
            },
            indent=2,
        )


def write_private_key(path: Path, key: BackupPrivateKey) -> None:
    """Create the operator key file (0600); never overwrite one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError("the backup key file already exists; choose another path") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_private_key(path: Path) -> BackupPrivateKey:
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BackupKeyError("cannot read the backup key file") from None
    if not isinstance(data, dict) or data.get("format") != KEY_FILE_FORMAT:
        raise BackupKeyError("this is not a phivault backup key file")
    private = unb64(data.get("private_key"), 32)
    public = unb64(data.get("public_key"), 32)
    try:
        derived = primitives.x25519_public_key_of(private)
    except ValueError:
        raise BackupKeyError() from None
    if not primitives.constant_time_equal(derived, public):
        raise BackupKeyError("the backup key file is damaged")
    return BackupPrivateKey(
        repo_id=str(data.get("repo_id")),
        private_key=private,
        public_key=public,
        signing_public_key=unb64(data.get("signing_public_key"), 32),
    )


@dataclass(frozen=True, slots=True)
class ServerBackupConfig:
    """`backup.json` in the data directory: the repository and its public keys."""

    repo: str
    repo_id: str
    public_key: bytes


def write_server_config(data_dir: Path, config: ServerBackupConfig) -> None:
    record = {"repo": config.repo, "repo_id": config.repo_id, "public_key": b64(config.public_key)}
    path = data_dir / SERVER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_server_config(data_dir: Path) -> ServerBackupConfig:
    path = data_dir / SERVER_FILE
    if not path.exists():
        raise ConfigError("no backup repository: run `phivault backup init --repo REPO` first")
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return ServerBackupConfig(
            repo=str(data["repo"]),
            repo_id=str(data["repo_id"]),
            public_key=unb64(data["public_key"], 32),
        )
    except (OSError, ValueError, KeyError, TypeError, BackupKeyError):
        raise BackupError(f"{SERVER_FILE} in the data directory is damaged") from None
