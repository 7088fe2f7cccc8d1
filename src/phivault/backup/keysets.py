"""Key-sets: the wrapped data keys of a snapshot, kept apart from its immutable objects, so
that a crypto-shred reaches backups.

Snapshot databases hold no wrapped key: the `wrapped_keys` table is emptied in the copy
(SQLite, `secure_delete` on) or left out of the dump (PostgreSQL), and goes instead into
one key-set object per snapshot, `keysets/<snapshot id>`: the table (each key still
wrapped by the KEK) and keys.json, sealed to the backup public key like everything else.
The manifest's signed header records the key-set's SHA-256 and how many keys had been
shredded when it was taken.

A restore of any snapshot takes the keys from the NEWEST key-set of the repository (the
newest signed manifest whose key-set is present and matches): keys are only ever added,
rewrapped or shredded, so the newest table opens every older snapshot too, except the
data of patients shredded since. `backup prune` (operator credentials) deletes every
key-set the newest one supersedes; after a shred, the next backup plus a prune leave no
copy of the patient's key in the repository, and every snapshot, old or new, restores
with the patient's data unreadable (410) and everyone else's intact.

Key-set objects are written create-only like every object, but WITHOUT an Object Lock
retention: they must stay deletable by the operator (never by the server, whose S3
policy has no delete right). Do not give the bucket a default retention.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from phivault.backup.repository import Repository, SnapshotHeader
from phivault.crypto import primitives
from phivault.errors import BackupIntegrityError, DecryptionError

KEYSETS = "keysets/"
_AAD = b"phivault/backup-keyset/v1\x00"
KEYS_FILE = "keys.json"

KeyRows = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class KeySet:
    snapshot_id: str
    rows: KeyRows  # (key id, blob) of `wrapped_keys`, blobs still wrapped by the KEK
    keys_json: bytes  # the data directory's keys.json when the snapshot was taken


def _aad(repo: Repository, snapshot_id: str) -> bytes:
    return _AAD + repo.config.repo_id.encode() + b"\x00" + snapshot_id.encode()


def write_keyset(repo: Repository, snapshot_id: str, rows: KeyRows, keys_json: bytes) -> str:
    """Seal and store the key-set of a snapshot; returns its SHA-256 (for the header)."""
    body = json.dumps(
        {
            "v": 1,
            "rows": [[k, base64.b64encode(b).decode("ascii")] for k, b in sorted(rows)],
            "keys_json": keys_json.decode("utf-8"),
        },
        sort_keys=True,
    ).encode()
    blob = primitives.seal_to_public(repo.config.public_key, body, _aad(repo, snapshot_id))
    repo.backend.create(KEYSETS + snapshot_id, blob, retain=False)
    return hashlib.sha256(blob).hexdigest()


def read_keyset(repo: Repository, private_key: bytes, header: SnapshotHeader) -> KeySet | None:
    """The key-set of a snapshot if it is still there and matches its signed header."""
    if not header.keyset:
        return None
    blob = repo.backend.read(KEYSETS + header.snapshot_id)
    if blob is None:
        return None
    if not hmac.compare_digest(hashlib.sha256(blob).hexdigest(), header.keyset):
        raise BackupIntegrityError("a key-set does not match its snapshot manifest")
    try:
        data = json.loads(primitives.open_sealed(private_key, blob, _aad(repo, header.snapshot_id)))
        rows = [(str(k), base64.b64decode(v, validate=True)) for k, v in data["rows"]]
        return KeySet(header.snapshot_id, rows, str(data["keys_json"]).encode("utf-8"))
    except (DecryptionError, ValueError, KeyError, TypeError):
        raise BackupIntegrityError("a key-set does not open with this backup key") from None


def newest_keyset(repo: Repository, private_key: bytes) -> KeySet | None:
    """The newest key-set that is present and matches its manifest (None: the repository
    was written before key-sets, its snapshots carry their keys)."""
    for snapshot_id in reversed(repo.snapshot_ids()):
        try:
            found = read_keyset(repo, private_key, repo.read_header(snapshot_id))
        except BackupIntegrityError:
            continue  # a damaged manifest or key-set: the next older one may still serve
        if found is not None:
            return found
    return None


def superseded(headers: Sequence[SnapshotHeader], present: set[str]) -> list[str]:
    """Key-set objects `prune` deletes: all but the newest present one, and the one before
    it as a spare unless a key was shredded in between (then the spare would hold it)."""
    with_keys = [h for h in sorted(headers, key=lambda h: h.snapshot_id) if h.keyset]
    alive = [h for h in with_keys if h.snapshot_id in present]
    keep: set[str] = set()
    if alive:
        keep.add(alive[-1].snapshot_id)
        if len(alive) > 1 and alive[-2].shreds == alive[-1].shreds:
            keep.add(alive[-2].snapshot_id)
    return sorted(present - keep)
