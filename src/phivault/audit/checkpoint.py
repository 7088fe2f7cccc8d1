"""Signed checkpoints (signed tree heads) of the audit log.

A checkpoint commits to the whole log up to a size: whoever holds one can later demand a
consistency proof and so catch any rewrite, deletion or reordering of those entries, even
one made by someone who can also write the database. It is compact canonical JSON::

    {"log_id":"<32 hex>","root":"<base64>","signature":"<base64>","size":N,
     "time":"<FHIR instant>","v":1}

`log_id` names the signing key (the first 16 bytes of SHA-256 of the Ed25519 public key),
so a witness that pinned a key notices at once when another one signs. The signature is
Ed25519 over a domain prefix and the canonical JSON of every other field; the prefix keeps
the key from ever signing anything that could be mistaken for a checkpoint by accident.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from phivault.audit.merkle import HASH_SIZE, GetNodes, fold, perfect_subtrees, read_nodes
from phivault.crypto import primitives
from phivault.errors import CheckpointError, DecryptionError
from phivault.fhir.resources import now_instant
from phivault.store.base import ReadView, Store

CHECKPOINT_FORMAT = 1
PUBLIC_KEY_SIZE = 32
_SIGNED_PREFIX = b"phivault-checkpoint/v1\n"
_FIELDS = frozenset({"v", "log_id", "size", "root", "time", "signature"})
MAX_CHECKPOINT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Checkpoint:
    size: int
    root: bytes
    time: str
    log_id: str
    blob: bytes  # the signed canonical JSON, as stored and published

    def to_json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.blob)
        return parsed


def log_id_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:16].hex()


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise CheckpointError()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError() from None


def _signed_message(body: dict[str, Any]) -> bytes:
    return _SIGNED_PREFIX + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class CheckpointSigner:
    """Signs checkpoints with the log's Ed25519 key (a seed protected by the KEK)."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self.public_key = primitives.public_key_of(seed)
        self.log_id = log_id_of(self.public_key)

    def derive_key(self, info: bytes) -> bytes:
        """A secret key derived from the signing seed (HKDF): as protected as the seed."""
        return primitives.hkdf_sha256(self._seed, info)

    def sign(self, size: int, root: bytes, when: str | None = None) -> Checkpoint:
        if size < 1 or len(root) != HASH_SIZE:
            raise ValueError("a checkpoint needs a non-empty tree and a 32-byte root")
        body: dict[str, Any] = {
            "v": CHECKPOINT_FORMAT,
            "log_id": self.log_id,
            "size": size,
            "root": _b64(root),
            "time": when or now_instant(),
        }
        signature = primitives.sign(self._seed, _signed_message(body))
        blob = orjson.dumps({**body, "signature": _b64(signature)}, option=orjson.OPT_SORT_KEYS)
        return Checkpoint(size, root, body["time"], self.log_id, blob)


def parse_checkpoint(blob: bytes) -> tuple[Checkpoint, dict[str, Any], bytes]:
    """Structure only, no signature check: (checkpoint, signed fields, signature)."""
    if not isinstance(blob, bytes) or len(blob) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError()
    try:
        data = orjson.loads(blob)
    except orjson.JSONDecodeError:
        raise CheckpointError() from None
    if not isinstance(data, dict) or set(data) != _FIELDS:
        raise CheckpointError()
    if type(data["v"]) is not int or data["v"] != CHECKPOINT_FORMAT:
        raise CheckpointError()
    size, when, log_id = data["size"], data["time"], data["log_id"]
    if type(size) is not int or size < 1 or not isinstance(when, str):
        raise CheckpointError()
    if not isinstance(log_id, str) or len(log_id) != 32:
        raise CheckpointError()
    root = _unb64(data["root"])
    signature = _unb64(data.pop("signature"))
    if len(root) != HASH_SIZE:
        raise CheckpointError()
    canonical = orjson.dumps({**data, "signature": _b64(signature)}, option=orjson.OPT_SORT_KEYS)
    return Checkpoint(size, root, when, log_id, canonical), data, signature


def verify_checkpoint(public_key: bytes, blob: bytes) -> Checkpoint:
    """The checkpoint in `blob` if `public_key` signed it; `CheckpointError` otherwise.

    The error never says whether the format, the key id or the signature was wrong.
    """
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise CheckpointError("the public key is not a 32-byte Ed25519 key")
    checkpoint, signed, signature = parse_checkpoint(blob)
    if checkpoint.log_id != log_id_of(public_key):
        raise CheckpointError()
    try:
        primitives.verify_signature(public_key, _signed_message(signed), signature)
    except DecryptionError:
        raise CheckpointError() from None
    return checkpoint


def tree_root(get_nodes: GetNodes, size: int) -> bytes:
    keys = perfect_subtrees(0, size)
    nodes = read_nodes(get_nodes, keys)
    return fold([nodes[key] for key in keys])


def latest_stored(view: ReadView) -> bytes | None:
    found = view.audit_checkpoints(1)
    return found[0] if found else None


def make_checkpoint(store: Store, signer: CheckpointSigner) -> bytes | None:
    """Sign the current tree head and store it; None while the log is empty.

    Runs under the audit lock so that the size and the root belong to the same tree. When
    the newest stored checkpoint already covers the current size it is returned as it is:
    one checkpoint is kept per size. The log's seal is checked first: a tail appended
    behind the server's back is never signed in (AuditUnavailable instead).
    """
    from phivault.audit.seal import LogSeal  # seal.py builds on this module

    with store.write() as tx:
        tx.lock_audit()
        size = tx.audit_size()
        if size == 0:
            return None
        latest = tx.audit_checkpoints(1)
        if latest:
            stored, _, _ = parse_checkpoint(latest[0])
            if stored.size >= size:
                return latest[0]
        keys = perfect_subtrees(0, size)
        edge = read_nodes(tx.audit_nodes, keys)
        seal = LogSeal.of(signer)
        assert seal is not None
        seal.check(tx, size, edge)
        checkpoint = signer.sign(size, fold([edge[k] for k in keys]))
        tx.audit_put_checkpoint(size, checkpoint.blob)
        return checkpoint.blob


def public_key_document(public_key: bytes) -> dict[str, str]:
    """What /audit/public-key and `phivault audit public-key` publish for witnesses to pin."""
    return {
        "algorithm": "Ed25519",
        "public_key": _b64(public_key),
        "log_id": log_id_of(public_key),
    }


def decode_public_key(text: str) -> bytes:
    """A public key as printed by phivault (base64) or as 64 hex digits."""
    value = text.strip()
    raw: bytes
    if len(value) == 2 * PUBLIC_KEY_SIZE and all(c in "0123456789abcdefABCDEF" for c in value):
        raw = bytes.fromhex(value)
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError("the public key is not base64 or hex") from None
    if len(raw) != PUBLIC_KEY_SIZE:
        raise CheckpointError("the public key is not a 32-byte Ed25519 key")
    return raw
