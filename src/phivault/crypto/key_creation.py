"""Making a compartment's data key: ahead of its write transaction, stored inside it.

A compartment's first data key is made ahead of its write transaction: `check_writable`
(called before the transaction opens) finds the key absent, draws a fresh key and wraps
it for that key id, outside every lock (the KEK may be a KMS round trip). The write
transaction then only inserts the wrapped blob. Such a pending key is bound to its row id
by the wrap's AAD, handed out at most once (taken from the pending table under the lock),
used only if the shared state and the wrapping KEK are still those it was wrapped under,
and never stored anywhere but in the caller's transaction: a rollback or a crash loses
nothing but an unused random key. If the row exists by then (another process was first)
or is a tombstone, the stored key wins or the write is refused, as without it.

`KeyCreation` holds these steps for `KeyRing` (crypto/keyring.py), which it is mixed
into: they read and change the ring's state (its lock, the keys made ahead, the shared
state it holds, its KEKs) under the ring's locking rule, never holding the lock across
store I/O or a KEK call.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from phivault.crypto import primitives
from phivault.crypto.kek import Kek
from phivault.crypto.keystate import STATE_ID, TOMBSTONE, KeyState, key_row_id, wrap_aad
from phivault.crypto.keystore import KeyTx, WrappedKeyStore
from phivault.errors import KeyMaterialError, KeyShredded

__all__ = ["PENDING_KEYS", "ROTATED_MESSAGE", "KeyCreation", "Pending"]

# Keys made ahead for compartments about to be written (check_writable), at most. Each is
# plaintext key material in memory until its write takes it, like a cached key.
PENDING_KEYS = 64


class Pending(NamedTuple):
    """A fresh data key wrapped for one row id, waiting for the write that inserts it."""

    key: bytes
    blob: bytes
    state_raw: bytes | None  # the shared state it was wrapped under
    kek: Kek


ROTATED_MESSAGE = (
    "the key-encryption key of this data directory was rotated: "
    "restart with the new passphrase or key file"
)


class KeyCreation:
    """The key ring's key-making steps (mixed into `KeyRing`, whose state they use)."""

    _lock: threading.RLock
    _pending: OrderedDict[str, Pending]
    _state_raw: bytes | None
    _keks: list[Kek]
    _stale: bool
    _store: WrappedKeyStore

    def _apply(self, raw: bytes | None, get: Callable[[str], bytes | None]) -> KeyState:
        raise NotImplementedError  # KeyRing's

    def _create(
        self, key_id: str, row_id: str, within: object | None
    ) -> tuple[bytes, bytes | None]:
        """The stored blob of `row_id`, created if absent, and the plain key when this call
        made it (None: read back, unwrap it). In a key transaction (joining `within` if
        given) that holds the state row's shared lock: a key must never be wrapped under
        a KEK that a rotation is replacing, or a restart with the new KEK could not open
        it."""
        if within is not None:
            made = self._insert_made_ahead(key_id, row_id, within)
            if made is not None:
                return made
        insert = functools.partial(self._insert_key, key_id, row_id)
        for _ in range(8):
            stored = self._store.transact(insert, exclusive=False, within=within)
            if stored is not None:
                return stored
        raise KeyMaterialError("the key ring's state keeps changing; try again")

    def _insert_key(self, key_id: str, row_id: str, tx: KeyTx) -> tuple[bytes, bytes | None] | None:
        """Runs inside the key transaction. None: the state changed under us, try again."""
        raw = tx.get(STATE_ID)
        self._apply(raw, tx.get)  # follow a rotation that began, as this transaction sees it
        with self._lock:
            if self._stale:
                raise KeyMaterialError(ROTATED_MESSAGE)
            if raw != self._state_raw:
                return None  # a concurrent refresh applied another state meanwhile
            wrapping = self._keks[0]
            pending = self._pending.pop(row_id, None)  # handed out once, used or not
        if row_id != key_id and tx.get(key_id) == TOMBSTONE:
            raise KeyShredded()
        if pending is not None and pending.state_raw == raw and pending.kek is wrapping:
            key, fresh = pending.key, pending.blob  # made ahead, for this row id only
        else:
            existing = tx.get(row_id)
            if existing == TOMBSTONE:
                raise KeyShredded()
            if existing is not None:
                return existing, None
            key = primitives.random_key()
            fresh = wrapping.wrap(key, wrap_aad(row_id))
        stored = tx.add(row_id, fresh)  # another process may have created it first: use theirs
        if stored == TOMBSTONE:
            raise KeyShredded()
        return (stored, key) if stored == fresh else (stored, None)

    def _insert_made_ahead(
        self, key_id: str, row_id: str, within: object
    ) -> tuple[bytes, bytes] | None:
        """The usual first key, in one store step: a key made ahead for this row, wrapped
        under the state this ring holds, is stored if the state row (locked as `transact`
        locks it) still holds that state and the row is free. None: nothing stored, take
        the general path (`_insert_key`), which follows a changed state and finds a stored
        key or tombstone. Generation 1 only, where the row id is the key id (a later
        generation's row must also look for the key id's tombstone)."""
        if row_id != key_id:
            return None
        with self._lock:
            pending = self._pending.get(row_id)
            if (
                pending is None
                or self._stale
                or pending.state_raw != self._state_raw
                or pending.kek is not self._keks[0]
            ):
                return None
            del self._pending[row_id]  # handed out once, used or not
        if not self._store.add_if_state(pending.state_raw, row_id, pending.blob, within=within):
            return None
        return pending.blob, pending.key

    def _make_ahead(self, key_id: str, generation: int) -> None:
        """Draw and wrap the absent key of `key_id` now, before its write transaction
        opens, for that transaction to insert (module docstring, "made ahead")."""
        row_id = key_row_id(key_id, generation)
        with self._lock:
            if self._stale or row_id in self._pending:
                return
            state_raw, wrapping = self._state_raw, self._keks[0]
        key = primitives.random_key()
        blob = wrapping.wrap(key, wrap_aad(row_id))  # outside the lock: may be a KMS call
        with self._lock:
            if self._state_raw != state_raw or self._keks[0] is not wrapping:
                return  # the state moved meanwhile: the transaction wraps its own
            self._pending[row_id] = Pending(key, blob, state_raw, wrapping)
            self._pending.move_to_end(row_id)
            while len(self._pending) > PENDING_KEYS:
                self._pending.popitem(last=False)
