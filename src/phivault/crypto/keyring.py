"""Envelope encryption: one data key per patient compartment, wrapped by the KEK.

Key ids:

- ``patient:<id>``: the data key of one Patient compartment. Shredding it destroys every
  copy of that patient's data, backups included, because backups hold only ciphertext.
- ``system``: the data key for resources outside any patient compartment.
- ``index``: the index root key, the source (via HKDF) of the blind-index key and the
  audit-pseudonym key. It is separate from the data keys on purpose, so that shredding a
  patient does not change how other patients are indexed or pseudonymized.

The wrapped keys live in a `WrappedKeyStore` (a table of the store). The key ring only
ever hands it wrapped blobs, and unwrapped keys are kept in a small bounded LRU cache.

A shredded key id is replaced by a tombstone, not just deleted, so that reading its old
ciphertext reports `KeyShredded` (410) instead of a missing key (an integrity alarm),
and so that a later write cannot silently create a new key under the same id.

Body blob format, version 1::

    0x01 || nonce(12) || ciphertext || tag(16)
    AAD = 0x01 || "phivault/body/v1" 0x00 || key_id 0x00 || caller's aad

The version byte is inside the AAD, so it cannot be swapped to select another format.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol

from phivault.crypto import primitives
from phivault.crypto.kek import Kek
from phivault.errors import DecryptionError, KeyMaterialError, KeyShredded

__all__ = [
    "INDEX_KEY_ID",
    "SYSTEM_KEY_ID",
    "KeyRing",
    "MemoryWrappedKeyStore",
    "WrappedKeyStore",
    "patient_key_id",
]

SYSTEM_KEY_ID = "system"
INDEX_KEY_ID = "index"
_PATIENT_PREFIX = "patient:"
# FHIR id: [A-Za-z0-9\-\.]{1,64}. Anything else in a key id (a NUL, a colon) could make two
# different ids encode to the same AAD bytes.
_KEY_ID_RE = re.compile(r"(?:system|patient:[A-Za-z0-9.\-]{1,64})")

BODY_V1 = 1
_BODY_DOMAIN = b"phivault/body/v1\x00"
_DATA_KEY_WRAP_DOMAIN = b"phivault/data-key/v1\x00"
_INDEX_WRAP_AAD = b"phivault/index-root/v1"
# A tombstone is not a valid wrapped blob (LocalKek blobs start with 0x01).
_TOMBSTONE = b"\x00shredded"

_BLIND_INDEX_INFO = b"phivault/blind-index/v1"
_AUDIT_PSEUDONYM_INFO = b"phivault/audit-pseudonym/v1"
_AUDIT_SIGNING_INFO = b"phivault/audit-signing/v1"


def patient_key_id(patient_id: str) -> str:
    key_id = _PATIENT_PREFIX + patient_id
    _check_key_id(key_id)
    return key_id


def _check_key_id(key_id: str) -> None:
    if not _KEY_ID_RE.fullmatch(key_id):
        raise ValueError("a data key id is 'system' or 'patient:<FHIR id>'")


def _wrap_aad(key_id: str) -> bytes:
    # Binding the key id means a wrapped key copied to another id does not unwrap: without
    # it, an attacker with write access to the key table could make patient B's records
    # decrypt under patient A's key id, or resurrect a shredded id with another key.
    return _DATA_KEY_WRAP_DOMAIN + key_id.encode("ascii")


class WrappedKeyStore(Protocol):
    """Persistent home of wrapped keys (a table of the store).

    `put_wrapped` both creates and replaces (rewrap, tombstone); it must be atomic. Key
    creation must be serialized with other writers of the same key id (the store's
    single writer does this): two processes creating the same patient's key at once
    would leave one of them with data under a key that is then overwritten.
    Deleting must really destroy the bytes (e.g. SQLite `PRAGMA secure_delete`).
    """

    def get_wrapped(self, key_id: str) -> bytes | None: ...

    def put_wrapped(self, key_id: str, blob: bytes) -> None: ...

    def add_wrapped(self, key_id: str, blob: bytes) -> bytes:
        """Insert unless a blob is already stored; return the blob that is stored.

        Key creation uses this, so that of two processes creating one patient's key at
        once, both end up using the same (first) key.
        """
        ...

    def delete_wrapped(self, key_id: str) -> None: ...

    def iter_key_ids(self) -> Iterator[str]: ...


class MemoryWrappedKeyStore:
    """A `WrappedKeyStore` in a dict, for tests and tools."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def get_wrapped(self, key_id: str) -> bytes | None:
        return self.blobs.get(key_id)

    def put_wrapped(self, key_id: str, blob: bytes) -> None:
        self.blobs[key_id] = blob

    def add_wrapped(self, key_id: str, blob: bytes) -> bytes:
        return self.blobs.setdefault(key_id, blob)

    def delete_wrapped(self, key_id: str) -> None:
        self.blobs.pop(key_id, None)

    def iter_key_ids(self) -> Iterator[str]:
        return iter(list(self.blobs))


class KeyRing:
    """Data keys per compartment, wrapped by a KEK, with a bounded cache of open keys."""

    def __init__(self, kek: Kek, store: WrappedKeyStore, *, cache_size: int = 256) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._kek = kek
        self._store = store
        # Bounded: every cached key is plaintext key material in memory (Python cannot
        # wipe bytes); an unbounded cache would hold every patient's key after a scan.
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._derived: dict[bytes, bytes] = {}
        self._lock = threading.RLock()

    @property
    def kek_id(self) -> str:
        return self._kek.key_id

    # --- data keys ------------------------------------------------------------------------

    def data_key(self, key_id: str, create: bool = True) -> bytes:
        """The unwrapped data key of `key_id`, creating it if asked and absent.

        Raises `KeyShredded` if the key was shredded, `KeyMaterialError` if it is absent
        and `create` is false, `DecryptionError` if the stored blob does not unwrap.
        """
        _check_key_id(key_id)
        return self._key(key_id, create)

    def _key(self, key_id: str, create: bool) -> bytes:
        with self._lock:
            cached = self._cache.get(key_id)
            if cached is not None:
                self._cache.move_to_end(key_id)
                return cached
        # Store I/O happens outside the lock: creating a key is a write transaction, and a
        # writer that already holds the store's write lock may be waiting for this lock to
        # seal a body (lock-order deadlock). add_wrapped makes concurrent creation safe.
        blob = self._store.get_wrapped(key_id)
        if blob == _TOMBSTONE:
            raise KeyShredded()
        if blob is None:
            if not create:
                raise KeyMaterialError("a data key is missing from the key store")
            fresh = self._kek.wrap(primitives.random_key(), _wrap_aad(key_id))
            blob = self._store.add_wrapped(key_id, fresh)
            if blob == _TOMBSTONE:
                raise KeyShredded()
        key = self._kek.unwrap(blob, _wrap_aad(key_id))
        with self._lock:
            self._cache[key_id] = key
            self._cache.move_to_end(key_id)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return key

    def has_key(self, key_id: str) -> bool:
        blob = self._store.get_wrapped(key_id)
        return blob is not None and blob != _TOMBSTONE

    def is_shredded(self, key_id: str) -> bool:
        return self._store.get_wrapped(key_id) == _TOMBSTONE

    def shred(self, key_id: str) -> None:
        """Destroy a data key: every ciphertext under it becomes unreadable, for good."""
        _check_key_id(key_id)
        if key_id == SYSTEM_KEY_ID:
            raise ValueError("the system data key cannot be shredded")
        with self._lock:
            self._cache.pop(key_id, None)
        # Store writes outside the lock (see _key). Delete first, then tombstone: the
        # wrapped key is gone even if a store implements put as insert-new-row-keep-old.
        self._store.delete_wrapped(key_id)
        self._store.put_wrapped(key_id, _TOMBSTONE)
        with self._lock:
            self._cache.pop(key_id, None)  # a reader may have cached it meanwhile

    def rewrap_all(self, new_kek: Kek) -> int:
        """Rewrap every wrapped key (data keys and the index root) under `new_kek`.

        KEK rotation; returns how many keys were rewrapped.

        Resumable: a key already wrapped by `new_kek` (from an interrupted run) is left
        as is. Store the new key check only after this returns, and keep the old KEK
        source until then.
        """
        with self._lock:
            count = 0
            for key_id in list(self._store.iter_key_ids()):
                blob = self._store.get_wrapped(key_id)
                if blob is None or blob == _TOMBSTONE:
                    continue
                aad = _wrap_aad(key_id) if key_id != INDEX_KEY_ID else _INDEX_WRAP_AAD
                try:
                    key = self._kek.unwrap(blob, aad)
                except DecryptionError:
                    new_kek.unwrap(blob, aad)  # already rewrapped, or raises: not ours
                    continue
                self._store.put_wrapped(key_id, new_kek.wrap(key, aad))
                count += 1
            self._kek = new_kek
            return count

    def forget_cached(self) -> None:
        """Drop every cached key (e.g. on lock or idle timeout)."""
        with self._lock:
            self._cache.clear()
            self._derived.clear()

    # --- bodies ---------------------------------------------------------------------------

    def encrypt_body(self, key_id: str, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt a resource body under `key_id`'s data key (created if absent).

        `aad` should name the version (type/id/version): a body copied onto another
        version then fails to decrypt instead of showing the wrong record.
        """
        key = self.data_key(key_id, create=True)
        version = bytes([BODY_V1])
        return version + primitives.aead_encrypt(key, plaintext, _body_aad(key_id, aad))

    def decrypt_body(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        """Raises `KeyShredded` for a shredded key id, `DecryptionError` for any other
        failure (wrong key id, wrong aad, tampering, unknown format)."""
        key = self.data_key(key_id, create=False)
        if blob[:1] != bytes([BODY_V1]):
            raise DecryptionError()
        return primitives.aead_decrypt(key, blob[1:], _body_aad(key_id, aad))

    # --- keys derived from the index root -------------------------------------------------

    def blind_index_key(self) -> bytes:
        """Key of the blind indexes of identifying search values (see crypto.blind)."""
        return self._derive(_BLIND_INDEX_INFO)

    def audit_pseudonym_key(self) -> bytes:
        """Key of the keyed pseudonyms that name patients in the audit log."""
        return self._derive(_AUDIT_PSEUDONYM_INFO)

    def audit_signing_seed(self) -> bytes:
        """Ed25519 seed of the audit checkpoint signing key: made with the index root at
        init, so it is protected by the KEK like every other key."""
        return self._derive(_AUDIT_SIGNING_INFO)

    def _derive(self, info: bytes) -> bytes:
        with self._lock:
            derived = self._derived.get(info)
        if derived is None:
            derived = primitives.hkdf_sha256(self._index_root(), info)  # I/O outside the lock
            with self._lock:
                derived = self._derived.setdefault(info, derived)
        return derived

    def _index_root(self) -> bytes:
        blob = self._store.get_wrapped(INDEX_KEY_ID)
        if blob is None:
            fresh = self._kek.wrap(primitives.random_key(), _INDEX_WRAP_AAD)
            blob = self._store.add_wrapped(INDEX_KEY_ID, fresh)
        return self._kek.unwrap(blob, _INDEX_WRAP_AAD)


def _body_aad(key_id: str, aad: bytes) -> bytes:
    # Binding the key id: a body moved from patient A's rows to patient B's does not
    # decrypt, even if the store were tricked into using B's key for A's row.
    return bytes([BODY_V1]) + _BODY_DOMAIN + key_id.encode("ascii") + b"\x00" + aad
