"""The repository format: a write-once config, sealed chunks and signed snapshot manifests.

    config                      JSON, written once by `backup init`
    chunks/<2 hex>/<64 hex>     one chunk: its name is HMAC-SHA256(chunk-id key, content)
    snapshots/<snapshot id>     one signed manifest

Chunk ids are keyed, so names reveal nothing about content, yet the server (which holds
the key) deduplicates across snapshots. A chunk object is `seal_to_public(backup public
key, flag || payload)` where flag 1 means zstd: every chunk gets a fresh ephemeral X25519
key, i.e. a random content key sealed to the backup public key, so writing never needs a
key that could read. The AAD binds the repository id and the chunk id: a chunk copied to
another name or repository does not open.

A manifest is JSON `{"v", "header", "body", "signature"}`. The header is clear so that
the server and `prune` can list snapshots and the chunks they need without the private
key (chunk ids leak nothing); the body is sealed to the backup public key (files, sizes,
hashes, audit checkpoint, counts and the chunk-id key that lets a restore re-check every
chunk name). The Ed25519 signature covers the header, which holds the body's SHA-256 and
the snapshot id: a swapped, renamed or edited manifest fails to verify.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import zstandard

from phivault.backup.backends.base import AppendOnlyBackend
from phivault.backup.chunker import DEFAULT_AVG_SIZE, Chunker, ChunkerParams
from phivault.backup.keys import b64, unb64
from phivault.crypto import primitives
from phivault.errors import (
    BackupError,
    BackupIntegrityError,
    BackupKeyError,
    DecryptionError,
    SnapshotNotFound,
)

FORMAT = "phivault-backup-repository"
FORMAT_VERSION = 1
CONFIG_NAME = "config"
SNAPSHOTS = "snapshots/"
CHUNKS = "chunks/"
_SIGNED_PREFIX = b"phivault-backup-snapshot/v1\n"
_CHUNK_AAD = b"phivault/backup-chunk/v1\x00"
_BODY_AAD = b"phivault/backup-snapshot-body/v1\x00"
_RAW, _ZSTD = 0, 1
# A fast level: zstd -3 compresses a phivault database to ~38% at ~2.5x the speed of level
# 1 (~31%); compression was the largest cost of a full backup (bench/bench_backup.py).
DEFAULT_ZSTD_LEVEL = -3


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_snapshot_id(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    # Sorts by time to the microsecond: the newest snapshot is the last id.
    return when.strftime("%Y%m%dt%H%M%S%fz-") + secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class RepoConfig:
    repo_id: str
    public_key: bytes  # backup X25519 public key: chunks and bodies are sealed to it
    signing_public_key: bytes  # the server's Ed25519 manifest key
    avg_chunk_size: int = DEFAULT_AVG_SIZE
    created: str = ""

    def to_bytes(self) -> bytes:
        return canonical(
            {
                "format": FORMAT,
                "v": FORMAT_VERSION,
                "repo_id": self.repo_id,
                "public_key": b64(self.public_key),
                "signing_public_key": b64(self.signing_public_key),
                "chunker": {"avg_size": self.avg_chunk_size},
                "compression": "zstd",
                "created": self.created,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> RepoConfig:
        try:
            data = json.loads(raw)
            if data["format"] != FORMAT or data["v"] != FORMAT_VERSION:
                raise ValueError
            return cls(
                repo_id=str(data["repo_id"]),
                public_key=unb64(data["public_key"], 32),
                signing_public_key=unb64(data["signing_public_key"], 32),
                avg_chunk_size=int(data["chunker"]["avg_size"]),
                created=str(data.get("created", "")),
            )
        # BackupKeyError: a damaged key field, which is not a wrong key (the message would
        # send the operator after their key file instead of the repository).
        except (ValueError, KeyError, TypeError, BackupKeyError):
            raise BackupError("the repository config is not a phivault repository") from None


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """The clear, signed part of a manifest."""

    snapshot_id: str
    repo_id: str
    time: str
    chunks: tuple[str, ...]
    body_sha256: str
    retain_until: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    backend: str = "sqlite"
    # The full snapshot and the deltas after it that this one builds on, ending with this
    # one (a full snapshot: itself only). `chunks` covers them all, so prune, which keeps
    # every chain member of what it keeps, never takes a chunk a delta still needs.
    chain: tuple[str, ...] = ()
    marks: dict[str, Any] | None = None  # where the next delta starts (backup/delta.py)
    keyset: str | None = None  # SHA-256 of keysets/<id> (backup/keysets.py)
    shreds: int = 0  # keys shredded when it was taken: prune keeps no key-set across one

    @property
    def is_delta(self) -> bool:
        return len(self.chain) > 1

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.snapshot_id,
            "repo_id": self.repo_id,
            "time": self.time,
            "chunks": list(self.chunks),
            "body_sha256": self.body_sha256,
            "retain_until": self.retain_until,
            "stats": self.stats,
            "backend": self.backend,
        }
        if self.chain:
            data["chain"] = list(self.chain)
        if self.marks is not None:
            data["marks"] = self.marks
        if self.keyset is not None:
            data["keyset"] = self.keyset
            data["shreds"] = self.shreds
        return data

    @classmethod
    def from_json(cls, data: Any) -> SnapshotHeader:
        """ValueError, KeyError or TypeError for anything that is not a header."""
        try:
            return cls(
                snapshot_id=str(data["id"]),
                repo_id=str(data["repo_id"]),
                time=str(data["time"]),
                chunks=tuple(str(c) for c in data["chunks"]),
                body_sha256=str(data["body_sha256"]),
                retain_until=data.get("retain_until"),
                stats={str(k): int(v) for k, v in data.get("stats", {}).items()},
                backend=str(data.get("backend", "sqlite")),
                chain=tuple(str(c) for c in data.get("chain", ())),
                marks=data.get("marks") if isinstance(data.get("marks"), dict) else None,
                keyset=str(data["keyset"]) if data.get("keyset") else None,
                shreds=int(data.get("shreds", 0)),
            )
        except AttributeError:  # e.g. "stats": null, or not an object at all
            raise TypeError("not a snapshot header") from None


def chunk_object_name(chunk_id: str) -> str:
    return f"{CHUNKS}{chunk_id[:2]}/{chunk_id}"


class Repository:
    """One repository over one backend, with its config read and checked."""

    def __init__(self, backend: AppendOnlyBackend, config: RepoConfig) -> None:
        self.backend = backend
        self.config = config

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def initialize(cls, backend: AppendOnlyBackend, config: RepoConfig) -> Repository:
        if not backend.create(CONFIG_NAME, config.to_bytes()):
            raise BackupError("the backup repository already exists; use another location")
        backend.flush()
        return cls(backend, config)

    @classmethod
    def open(cls, backend: AppendOnlyBackend, repo_id: str | None = None) -> Repository:
        raw = backend.read(CONFIG_NAME)
        if raw is None:
            raise BackupError("no phivault backup repository at this location")
        config = RepoConfig.from_bytes(raw)
        if repo_id is not None and config.repo_id != repo_id:
            raise BackupError("this repository is not the one this data directory backs up to")
        return cls(backend, config)

    def chunker(self, chunk_id_key: bytes) -> Chunker:
        seed = primitives.hkdf_sha256(chunk_id_key, b"phivault/backup-chunker-seed/v1")
        return Chunker(ChunkerParams(self.config.avg_chunk_size), seed=seed)

    # -- chunks -----------------------------------------------------------------------------
    def _chunk_aad(self, chunk_id: str) -> bytes:
        return _CHUNK_AAD + self.config.repo_id.encode() + b"\x00" + chunk_id.encode()

    def chunk_ids(self) -> set[str]:
        return {name.rsplit("/", 1)[-1] for name in self.backend.list(CHUNKS)}

    def seal_chunk(self, chunk_id: str, data: bytes, level: int = DEFAULT_ZSTD_LEVEL) -> bytes:
        """Compress and seal one chunk (thread-safe; zstd and AES release the GIL)."""
        packed = zstandard.ZstdCompressor(level=level).compress(data)
        payload = bytes([_ZSTD]) + packed if len(packed) < len(data) else bytes([_RAW]) + data
        return primitives.seal_to_public(self.config.public_key, payload, self._chunk_aad(chunk_id))

    def put_chunk(self, chunk_id: str, blob: bytes) -> bool:
        return self.backend.create(chunk_object_name(chunk_id), blob)

    def open_chunk(self, private_key: bytes, chunk_id: str, blob: bytes | None = None) -> bytes:
        """The content of one chunk; BackupIntegrityError if missing or altered."""
        if blob is None:
            blob = self.backend.read(chunk_object_name(chunk_id))
        if blob is None:
            raise BackupIntegrityError("a chunk the snapshot needs is missing from the repository")
        try:
            payload = primitives.open_sealed(private_key, blob, self._chunk_aad(chunk_id))
        except DecryptionError:
            raise BackupIntegrityError(
                "a chunk does not decrypt (altered, swapped or wrong key)"
            ) from None
        if payload[:1] == bytes([_ZSTD]):
            try:
                return zstandard.ZstdDecompressor().decompress(payload[1:])
            except zstandard.ZstdError:
                raise BackupIntegrityError() from None
        if payload[:1] == bytes([_RAW]):
            return payload[1:]
        raise BackupIntegrityError()

    # -- manifests --------------------------------------------------------------------------
    def _body_aad(self, snapshot_id: str) -> bytes:
        return _BODY_AAD + self.config.repo_id.encode() + b"\x00" + snapshot_id.encode()

    def write_manifest(
        self, header: SnapshotHeader, body: dict[str, Any], signing_seed: bytes
    ) -> SnapshotHeader:
        sealed = primitives.seal_to_public(
            self.config.public_key, canonical(body), self._body_aad(header.snapshot_id)
        )
        header = dataclasses.replace(header, body_sha256=hashlib.sha256(sealed).hexdigest())
        clear = header.to_json()
        signature = primitives.sign(signing_seed, _SIGNED_PREFIX + canonical(clear))
        record = {"v": 1, "header": clear, "body": b64(sealed), "signature": b64(signature)}
        if not self.backend.create(SNAPSHOTS + header.snapshot_id, canonical(record)):
            raise BackupError("a snapshot with this id already exists")
        self.backend.flush()
        return header

    def snapshot_ids(self) -> list[str]:
        return sorted(name.rsplit("/", 1)[-1] for name in self.backend.list(SNAPSHOTS))

    def _record(self, snapshot_id: str) -> tuple[SnapshotHeader, bytes]:
        raw = self.backend.read(SNAPSHOTS + snapshot_id)
        if raw is None:
            raise SnapshotNotFound()
        try:
            record = json.loads(raw)
            clear = record["header"]
            signature = unb64(record["signature"])
            sealed = unb64(record["body"])
            primitives.verify_signature(
                self.config.signing_public_key, _SIGNED_PREFIX + canonical(clear), signature
            )
            header = SnapshotHeader.from_json(clear)
        except (ValueError, KeyError, TypeError, DecryptionError, BackupKeyError):
            raise BackupIntegrityError("a snapshot manifest does not verify") from None
        # The signed header names its own id and repository: a manifest copied or renamed
        # to another snapshot id, or from another repository, is refused here.
        if header.snapshot_id != snapshot_id or header.repo_id != self.config.repo_id:
            raise BackupIntegrityError("a snapshot manifest does not verify")
        if not hmac.compare_digest(hashlib.sha256(sealed).hexdigest(), header.body_sha256):
            raise BackupIntegrityError("a snapshot manifest does not verify")
        return header, sealed

    def read_header(self, snapshot_id: str) -> SnapshotHeader:
        """The verified header of a snapshot (no private key needed)."""
        return self._record(snapshot_id)[0]

    def read_manifest(self, snapshot_id: str, private_key: bytes) -> tuple[SnapshotHeader, Any]:
        header, sealed = self._record(snapshot_id)
        try:
            body = json.loads(
                primitives.open_sealed(private_key, sealed, self._body_aad(snapshot_id))
            )
        except DecryptionError:
            raise BackupIntegrityError(
                "the snapshot does not open with this backup key (wrong key or altered)"
            ) from None
        return header, body


def chunk_id_of(chunk_id_key: bytes, data: bytes) -> str:
    return primitives.hmac_sha256(chunk_id_key, data).hex()
