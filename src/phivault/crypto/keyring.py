"""Envelope encryption: one data key per patient compartment, wrapped by the KEK.

Key ids:

- ``patient:<id>``: the data key of one Patient compartment. Shredding it destroys every
  copy of that patient's data, because every copy is ciphertext (backups taken before a
  shred still hold the wrapped key: docs/ENCRYPTION.md).
- ``system``: the data key for resources outside any patient compartment.
- ``index``: the index root key, the source (via HKDF) of the blind-index key and the
  audit-pseudonym key (crypto/derived_keys.py). It is separate from the data keys on
  purpose, so that shredding a patient does not change how other patients are indexed or
  pseudonymized.

Data keys have generations (`phivault keys rotate --data-keys`): generation 1 is stored
under the bare id, generation n under ``<id>#<n>``. New bodies are sealed with the current
generation (in the shared state record, crypto/keystate.py); older generations are kept,
decrypt-only, because backups still hold ciphertext under them.

The wrapped keys live in a `WrappedKeyStore` (a table of the store). The key ring only
ever hands it wrapped blobs, and unwrapped keys are kept in a small bounded LRU cache
(crypto/key_cache.py), dropped whenever the shared state record's epoch moves (a shred or
rotation by another process); the ring re-reads that one row at most every
`refresh_interval` seconds.

A key created (or read) inside a caller's write transaction is cached *unconfirmed*: that
transaction may still roll back, and its key row with it. Reads may use it (data under it
exists only if the key does; on SQLite other writers of the same group commit see both
before they commit), but a write seals under it only after seeing, in its own
transaction, the very row it was made from; otherwise it is dropped and the key made
again. Without that check a write after a rollback (a retried bundle, a PUT with a client
id) would seal data under a key that no store holds: unreadable after a restart and by
every other process. `check_writable` confirms such a key against the committed store
before the next write, so the check costs one read per new compartment, not per write.

A compartment's first data key is made ahead of its write transaction and stored in it:
crypto/key_creation.py. A page's keys are read ahead of its bodies: crypto/key_prefetch.py.

A shredded key id is replaced by a tombstone, not just deleted, so that reading its old
ciphertext reports `KeyShredded` (410) instead of a missing key (an integrity alarm),
and so that a later write cannot silently create a new key under the same id.

Body blobs: crypto/body.py (format v1 for generation 1, v2 with the generation after).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from phivault.crypto.body import BODY_V1, BodyCipher, parse_body
from phivault.crypto.derived_keys import DerivedKeys
from phivault.crypto.kek import Kek
from phivault.crypto.key_cache import KeyCache
from phivault.crypto.key_creation import ROTATED_MESSAGE, KeyCreation, Pending
from phivault.crypto.key_prefetch import KeyPrefetch
from phivault.crypto.keystate import (
    INDEX_KEY_ID,
    STATE_ID,
    SYSTEM_KEY_ID,
    TOMBSTONE,
    TRANSITION_ID,
    KeyState,
    Transition,
    check_key_id,
    key_row_id,
    open_transition,
    parse_row_id,
    patient_key_id,
    rewrap_rows,
    wrap_aad,
)
from phivault.crypto.keystore import KeyTx, MemoryWrappedKeyStore, WrappedKeyStore
from phivault.errors import DecryptionError, KeyMaterialError, KeyShredded

__all__ = [
    "INDEX_KEY_ID",
    "SYSTEM_KEY_ID",
    "KeyRing",
    "KeyTx",
    "MemoryWrappedKeyStore",
    "WrappedKeyStore",
    "patient_key_id",
]

# Open data keys kept (crypto/key_cache.py): about 4 MB. A clinic's patients in use at once
# fit, so a read or a search page rarely pays a store read and an unwrap for its key (with
# 256, a 1,000-patient clinic missed on most reads). The bound stays: an open key is
# plaintext in memory, and with a KMS-held KEK the cache is all a memory dump would give.
DEFAULT_CACHE_SIZE = 16_384


class KeyRing(KeyCreation, KeyPrefetch, DerivedKeys):
    """Data keys per compartment, wrapped by a KEK, with a bounded cache of open keys.

    Locking rule: `self._lock` guards in-memory state only and is never held during store
    I/O or a KEK call. A writer holding the store's write lock may be waiting for it (to
    seal a body); holding it across store I/O would deadlock the two.
    """

    def __init__(
        self,
        kek: Kek,
        store: WrappedKeyStore,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        refresh_interval: float = 1.0,
    ) -> None:
        self._lock = threading.RLock()
        # Open keys (crypto/key_cache.py), guarded by this ring's lock.
        self._cache = KeyCache(cache_size, self._lock)
        # [0] wraps new keys; every entry may unwrap (during a KEK rotation: new, then old).
        self._keks: list[Kek] = [kek]
        self._store = store
        self._derived: dict[bytes, bytes] = {}
        self._pending: OrderedDict[str, Pending] = OrderedDict()
        # How stale a shred or rotation done by another process may look here, at most.
        self.refresh_interval = refresh_interval
        self._state = KeyState()
        self._state_raw: bytes | None = None
        self._loaded = False
        self._stale = False
        self._last_refresh = -float("inf")

    @property
    def kek_id(self) -> str:
        return self._keks[0].key_id

    @property
    def kek(self) -> Kek:
        """The KEK that wraps new keys."""
        return self._keks[0]

    @property
    def keks(self) -> tuple[Kek, ...]:
        """Every KEK this ring unwraps with (two while a KEK rotation is under way)."""
        return tuple(self._keks)

    @property
    def store(self) -> WrappedKeyStore:
        return self._store

    @property
    def state(self) -> KeyState:
        return self._state

    # --- shared state ---------------------------------------------------------------------

    def refresh(self, *, force: bool = False, within: object | None = None) -> KeyState:
        """Re-read the shared state row (at most every `refresh_interval` unless forced):
        drop cached keys if another process shredded or rotated, and follow a KEK rotation
        that another process started. `within`: read through the caller's transaction."""
        now = time.monotonic()
        with self._lock:
            if not force and now < self._last_refresh + self.refresh_interval:
                return self._state
            self._last_refresh = now  # claimed: concurrent callers keep the current state

        def get(key_id: str) -> bytes | None:
            return self._store.get_wrapped(key_id, within=within)

        return self._apply(get(STATE_ID), get)

    def _apply(self, raw: bytes | None, get: Callable[[str], bytes | None]) -> KeyState:
        """Make `raw` (the state row as just read) this ring's state."""
        with self._lock:
            if self._loaded and raw == self._state_raw:
                return self._state
            keks = list(self._keks)
        state = KeyState.from_bytes(raw)
        keks, stale = self._follow(state, keks, get)  # I/O and KEK calls: outside the lock
        with self._lock:
            if self._loaded and state.epoch < self._state.epoch:
                return self._state  # a concurrent refresh already applied a newer state
            if not self._loaded or state.epoch != self._state.epoch:
                self._cache.clear()
                self._pending.clear()
            self._state, self._state_raw, self._loaded = state, raw, True
            self._keks, self._stale = keks, stale
            return state

    def _follow(
        self, state: KeyState, keks: list[Kek], get: Callable[[str], bytes | None]
    ) -> tuple[list[Kek], bool]:
        """The KEKs this ring should use under `state`, and whether it is stale (holds a
        KEK that no longer wraps the store's keys and cannot follow the rotation)."""
        if state.kek is None:
            return keks, False  # no state record: nothing to follow
        wrapping = keks[0]
        to = state.transition_to
        if to is not None and wrapping.key_id != to:
            raw = get(TRANSITION_ID)
            found = Transition.from_bytes(raw) if raw is not None else None
            if found is not None and found.to_kek == to:
                for old in keks:
                    if old.key_id == found.from_kek:
                        return [open_transition(old, found), old], False
        if wrapping.key_id == to:
            return keks, False  # on the new KEK; keep the old one to unwrap until the end
        if wrapping.key_id == state.kek:
            return [wrapping], False
        return keks, True

    def check_current(self) -> None:
        """Raise `KeyMaterialError` if this ring's KEK is no longer the store's (a
        rotation finished while this process held the old key): refuse to start."""
        self.refresh(force=True)
        if self._stale:
            raise KeyMaterialError(ROTATED_MESSAGE)

    def adopt(self, new_kek: Kek) -> None:
        """Wrap with `new_kek` from now on, still unwrapping with the current KEKs."""
        with self._lock:
            self._keks = [new_kek, *(k for k in self._keks if k.key_id != new_kek.key_id)]

    def update_state(self, change: Callable[[KeyTx, KeyState], KeyState | None]) -> KeyState:
        """Change the shared state in one key transaction; `change` returns the new state
        (bumped) or None to leave it. Returns the state after the transaction."""

        def run(tx: KeyTx) -> KeyState:
            current = self._read_state(tx)
            new = change(tx, current)
            if new is None:
                return current
            tx.put(STATE_ID, new.to_bytes())
            return new

        result = self._store.transact(run)
        self.refresh(force=True)
        return result

    def _read_state(self, tx: KeyTx) -> KeyState:
        raw = tx.get(STATE_ID)
        # A store from before the state record: start one that names the KEK in use.
        return KeyState.from_bytes(raw) if raw is not None else KeyState(kek=self.kek_id)

    # --- data keys ------------------------------------------------------------------------

    def data_key(self, key_id: str, create: bool = True) -> bytes:
        """The unwrapped data key of `key_id` (current generation), creating it if asked
        and absent.

        Raises `KeyShredded` if the key was shredded, `KeyMaterialError` if it is absent
        and `create` is false, `DecryptionError` if the stored blob does not unwrap.
        """
        check_key_id(key_id)
        generation = self.refresh().generation
        self._settle(key_row_id(key_id, generation))  # callers may seal under it
        return self._key(key_id, generation, create)

    def _key(
        self, key_id: str, generation: int, create: bool, within: object | None = None
    ) -> bytes:
        row_id = key_row_id(key_id, generation) if key_id != INDEX_KEY_ID else key_id
        with self._lock:
            cached, unconfirmed = self._cache.get(row_id)
            if cached is not None and (within is None or unconfirmed is None):
                return cached
            if within is not None:
                seen = self._cache.in_tx(within).get(row_id)
                if seen is not None:
                    return seen
        if within is not None:
            # Inside the caller's transaction: read (or make) the row there, never through
            # a second connection (a pool of them could be exhausted by such waits).
            if cached is not None and unconfirmed is not None:
                # Made in a transaction that may have rolled back: seal under it only if
                # this transaction sees its row (module docstring).
                if self._store.get_wrapped(row_id, within=within) == unconfirmed:
                    with self._lock:
                        self._cache.in_tx(within)[row_id] = cached
                    return cached
                self._cache.forget(row_id)
            stored, made = self._create(key_id, row_id, within)
            key = made if made is not None else self._unwrap(row_id, stored)
            self._cache.remember(row_id, key, unconfirmed=stored)
            with self._lock:
                self._cache.in_tx(within)[row_id] = key
            return key
        blob = self._store.get_wrapped(row_id)
        if blob is None and row_id != key_id and self._is_tombstone(key_id):
            raise KeyShredded()
        if blob is None:
            if not create:
                raise KeyMaterialError("a data key is missing from the key store")
            # A transaction of its own, committed when this returns: safe to cache.
            blob, made = self._create(key_id, row_id, None)
        else:
            made = None
        if blob == TOMBSTONE:
            raise KeyShredded()
        key = made if made is not None else self._unwrap(row_id, blob)
        self._cache.remember(row_id, key, unconfirmed=None)
        return key

    def _settle(self, row_id: str) -> None:
        """Before sealing outside a transaction: keep a cached key only if it is known
        committed (else the committed store is read again)."""
        self._confirm(row_id)
        with self._lock:
            if self._cache.unconfirmed(row_id) is not None:
                self._cache.forget(row_id)

    def _confirm(self, row_id: str) -> None:
        """Mark an unconfirmed cached key committed if the store (outside any transaction)
        holds the blob it came from; drop it if the store holds a tombstone."""
        blob = self._cache.unconfirmed(row_id)
        if blob is None:
            return
        committed = self._store.get_wrapped(row_id)
        with self._lock:
            if self._cache.unconfirmed(row_id) != blob:
                return  # changed meanwhile
            if committed == blob:
                self._cache.confirmed(row_id, blob)
            elif committed == TOMBSTONE:
                self._cache.forget(row_id)

    def _is_tombstone(self, key_id: str) -> bool:
        return self._store.get_wrapped(key_id) == TOMBSTONE

    def _unwrap(self, row_id: str, blob: bytes) -> bytes:
        for attempt in range(2):
            for kek in list(self._keks):
                try:
                    return kek.unwrap(blob, wrap_aad(row_id))
                except DecryptionError:
                    continue
            if attempt == 0:
                self.refresh(force=True)  # a rotation may have begun elsewhere: follow it
        if self._stale:
            raise KeyMaterialError(ROTATED_MESSAGE)
        raise DecryptionError()

    def has_key(self, key_id: str) -> bool:
        if self.is_shredded(key_id):
            return False
        return any(
            (parsed := parse_row_id(row)) is not None and parsed[0] == key_id
            for row in self._store.iter_key_ids()
        )

    def is_shredded(self, key_id: str) -> bool:
        return self._store.get_wrapped(key_id) == TOMBSTONE

    def shred(self, key_id: str) -> None:
        """Destroy a data key, every generation: every ciphertext under it becomes
        unreadable, for good, here and in every backup."""
        check_key_id(key_id)
        if key_id == SYSTEM_KEY_ID:
            raise ValueError("the system data key cannot be shredded")

        def destroy(tx: KeyTx, state: KeyState) -> KeyState:
            # Delete, then tombstone: the wrapped key is gone even if a store implemented
            # put as insert-new-row-keep-old.
            for row in tx.ids():
                parsed = parse_row_id(row)
                if parsed is not None and parsed[0] == key_id:
                    tx.delete(row)
            tx.put(key_id, TOMBSTONE)
            return state.bumped()  # tells other processes to drop their cached copy

        self.update_state(destroy)
        for row in self._cache:
            parsed = parse_row_id(row)
            if parsed is not None and parsed[0] == key_id:
                self._cache.forget(row)

    def rewrap_all(self, new_kek: Kek) -> int:
        """Rewrap every wrapped key (every generation of every data key, and the index
        root) under `new_kek`, then record `new_kek` as the store's KEK and wrap with it.

        Returns how many keys were rewrapped. Resumable: a key already wrapped by
        `new_kek` (from an interrupted run) is left as is; a key that opens under neither
        KEK aborts with `DecryptionError`. Store the new key check only after this
        returns, and keep the old KEK source until then.
        """
        old = list(self._keks)
        rows = [r for r in self._store.iter_key_ids() if r == INDEX_KEY_ID or parse_row_id(r)]
        count = 0
        for start in range(0, len(rows), 200):
            batch = rows[start : start + 200]
            count += self._store.transact(
                functools.partial(rewrap_rows, rows=batch, old=old, new_kek=new_kek)
            )

        def finish(tx: KeyTx, state: KeyState) -> KeyState:
            nonlocal count
            # Again, in the locked transaction: a key created by a process that had not
            # yet followed the rotation when the first pass read its row.
            rows = [r for r in tx.ids() if r == INDEX_KEY_ID or parse_row_id(r)]
            count += rewrap_rows(tx, rows, old, new_kek)
            return state.bumped(kek=new_kek.key_id)

        self.adopt(new_kek)
        self.update_state(finish)
        return count

    def forget_cached(self) -> None:
        """Drop every cached key (e.g. on lock or idle timeout)."""
        with self._lock:
            self._cache.clear()
            self._derived.clear()
            self._pending.clear()

    # --- bodies ---------------------------------------------------------------------------

    def encrypt_body(
        self, key_id: str, plaintext: bytes, aad: bytes, *, within: object | None = None
    ) -> bytes:
        """Encrypt a resource body under `key_id`'s data key (current generation),
        creating the key if absent: inside `within`, the caller's open write transaction,
        when one is given.

        `aad` should name the version (type/id/version): a body copied onto another
        version then fails to decrypt instead of showing the wrong record.
        """
        check_key_id(key_id)
        generation, key = self._sealing_key(key_id, within)
        return self._cipher(key_id, generation, key).seal(plaintext, aad)

    def _cipher(self, key_id: str, generation: int, key: bytes) -> BodyCipher:
        """`key`'s cipher for that key row: the one kept beside the cached key when it is
        that key, else made here (and kept, if `key` is the one cached)."""
        row_id = key_row_id(key_id, generation)
        cipher = self._cache.cipher(row_id)
        if cipher is None or cipher.key is not key:
            cipher = BodyCipher(key, key_id, generation)
            self._cache.keep_cipher(row_id, cipher)
        return cipher

    def _sealing_key(self, key_id: str, within: object | None) -> tuple[int, bytes]:
        current = self.refresh(within=within).generation
        if within is not None:
            return current, self._key(key_id, current, create=True, within=within)
        self._settle(key_row_id(key_id, current))  # no transaction to check the row in
        try:
            return current, self._key(key_id, current, create=False)
        except KeyMaterialError:
            if self._stale:
                raise
        # Perhaps inside a write transaction that was not handed to us, where creating a
        # key would open a second one (SQLite's writer would wait on itself): seal with the
        # newest generation that exists; the data-key rotation's sweep re-encrypts it.
        for generation in range(current - 1, 0, -1):
            try:
                return generation, self._key(key_id, generation, create=False)
            except KeyMaterialError:
                if self._stale:
                    raise
        return current, self._key(key_id, current, create=True)

    def check_writable(self, key_id: str, *, new: bool = False) -> None:
        """Before a write transaction opens: raise `KeyShredded` for a shredded id (and
        `KeyMaterialError` for a rotated-out KEK). A missing key is fine: the write
        creates it inside its own transaction, from a key made ahead here.

        `new`: the id was just drawn at random by the server (a create), so no key and no
        tombstone can exist for it: nothing is read, the key is only made ahead. (Were
        the id taken after all, the write's key transaction finds the row and uses it, or
        refuses a tombstone, as for any other id.)"""
        check_key_id(key_id)
        generation = self.refresh().generation
        if new:
            with self._lock:
                if self._stale:
                    raise KeyMaterialError(ROTATED_MESSAGE)
            self._make_ahead(key_id, generation)
            return
        self._confirm(key_row_id(key_id, generation))
        try:
            self._key(key_id, generation, create=False)
        except KeyMaterialError:
            if self._stale:
                raise
            self._make_ahead(key_id, generation)

    def decrypt_body(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        """Raises `KeyShredded` for a shredded key id, `DecryptionError` for any other
        failure (wrong key id, wrong aad, tampering, unknown format)."""
        parsed = parse_body(blob)
        if parsed is not None and time.monotonic() < self._last_refresh + self.refresh_interval:
            # The state is fresh (`refresh` would return at once) and the key is cached:
            # open with the cipher kept beside it. A cipher kept for this key id is for a
            # valid one, and the row id names the generation given the key id.
            cipher = self._cache.cipher(key_row_id(key_id, parsed[1]))
            if cipher is not None and cipher.key_id == key_id:
                return cipher.open(parsed[2], aad)
        check_key_id(key_id)
        self.refresh()  # a shred by another process drops the cached key within the interval
        if parsed is None:
            if self.is_shredded(key_id):
                raise KeyShredded()
            raise DecryptionError()
        fmt, generation, payload = parsed
        key: bytes | None = None
        try:
            key = self._key(key_id, generation, create=False)
        except KeyMaterialError:
            if fmt == BODY_V1 or self._stale:
                raise
        if key is None:
            # The generation comes from an unauthenticated header: a missing key for it is
            # as likely tampering as loss, and must look like any other failed decrypt.
            raise DecryptionError()
        cipher = None
        try:
            cipher = self._cipher(key_id, generation, key)
        except ValueError:  # not a 32-byte key
            pass
        if cipher is None:  # raised outside the except block: no __context__
            raise DecryptionError()
        return cipher.open(payload, aad)

    def row_suffix(self) -> str:
        """What the current data-key generation appends to a key id to name its row
        (empty for generation 1): the row a body sealed now is opened with."""
        generation = self.refresh().generation
        return key_row_id(SYSTEM_KEY_ID, generation).removeprefix(SYSTEM_KEY_ID)

    def body_generation(self, blob: bytes) -> int | None:
        """The data-key generation a body was sealed with (None: not a body blob)."""
        parsed = parse_body(blob)
        return parsed[1] if parsed else None
