"""A compartment's first data key, created with the data that needs it, on a real store:
a rolled-back write leaves no key that a later write would seal under, and a key made
ahead of its transaction (crypto/keyring.py) is bound to one key id and used at most
once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from phivault.crypto.kek import Kek
from phivault.crypto.keyring import KeyRing, patient_key_id
from phivault.crypto.keystate import STATE_ID, wrap_aad
from phivault.errors import DecryptionError, KeyMaterialError, KeyShredded
from phivault.store.keys import StoreWrappedKeys
from phivault.vault import Vault

T = TypeVar("T")


class Boom(Exception):
    pass


def fresh_ring(vault: Vault) -> KeyRing:
    """Another process's view: the same KEK and store, nothing cached."""
    return KeyRing(vault.keyring.kek, StoreWrappedKeys(vault.store))


def test_rolled_back_first_write_leaves_no_key_in_memory(vault: Vault) -> None:
    ring, key_id = vault.keyring, patient_key_id("rolled-back")
    ring.check_writable(key_id)
    with pytest.raises(Boom):
        with vault.store.write() as tx:
            ring.encrypt_body(key_id, b"first", b"Patient/rolled-back/1", within=tx)
            raise Boom()
    assert vault.store.key_get(key_id) is None
    # Written again, and committed: the key it is sealed with must be in the store, or
    # no other process (and no restart) could ever open it.
    ring.check_writable(key_id)
    with vault.store.write() as tx:
        blob = ring.encrypt_body(key_id, b"second", b"Patient/rolled-back/1", within=tx)
    assert vault.store.key_get(key_id) is not None
    assert fresh_ring(vault).decrypt_body(key_id, blob, b"Patient/rolled-back/1") == b"second"


def test_key_made_inside_a_transaction_opens_its_data_before_the_commit(vault: Vault) -> None:
    """Data written in a transaction is read back before it commits (a bundle's matched
    entry, another writer of SQLite's group commit): the key made with it must open it."""
    ring, key_id = vault.keyring, patient_key_id("in-tx")
    with vault.store.write() as tx:
        blob = ring.encrypt_body(key_id, b"body", b"aad", within=tx)
        again = ring.encrypt_body(key_id, b"more", b"aad", within=tx)  # the same key
        assert ring.decrypt_body(key_id, blob, b"aad") == b"body"
    assert ring.decrypt_body(key_id, again, b"aad") == b"more"
    assert fresh_ring(vault).decrypt_body(key_id, blob, b"aad") == b"body"


def test_pending_key_is_used_once_and_only_for_its_own_id(vault: Vault) -> None:
    ring = vault.keyring
    a, b = patient_key_id("pending-a"), patient_key_id("pending-b")
    ring.check_writable(a)
    ring.check_writable(b)
    with vault.store.write() as tx:
        blob_a = ring.encrypt_body(a, b"a", b"aad", within=tx)
        blob_b = ring.encrypt_body(b, b"b", b"aad", within=tx)
    key_a = fresh_ring(vault).data_key(a, create=False)
    key_b = fresh_ring(vault).data_key(b, create=False)
    assert key_a != key_b
    assert ring.data_key(a, create=False) == key_a
    # The wrapped blob of one id never opens under another (the row id is in its AAD).
    wrapped_a = vault.store.key_get(a)
    assert wrapped_a is not None and wrapped_a != vault.store.key_get(b)
    with pytest.raises(DecryptionError):
        ring.kek.unwrap(wrapped_a, wrap_aad(b))
    assert ring.kek.unwrap(wrapped_a, wrap_aad(a)) == key_a
    assert fresh_ring(vault).decrypt_body(a, blob_a, b"aad") == b"a"
    assert fresh_ring(vault).decrypt_body(b, blob_b, b"aad") == b"b"


def test_pending_key_of_a_compartment_created_elsewhere_is_not_used(vault: Vault) -> None:
    """Two processes prepare the same new compartment: the second one's transaction finds
    the first one's key and seals with it; its own pending key is dropped."""
    key_id = patient_key_id("raced")
    mine, theirs = vault.keyring, fresh_ring(vault)
    mine.check_writable(key_id)
    theirs.check_writable(key_id)
    with vault.store.write() as tx:
        first = theirs.encrypt_body(key_id, b"theirs", b"aad", within=tx)
    with vault.store.write() as tx:
        second = mine.encrypt_body(key_id, b"mine", b"aad", within=tx)
    reader = fresh_ring(vault)
    assert reader.decrypt_body(key_id, first, b"aad") == b"theirs"
    assert reader.decrypt_body(key_id, second, b"aad") == b"mine"


def test_compartment_shredded_after_its_key_was_made_ahead_refuses_it(vault: Vault) -> None:
    key_id = patient_key_id("shredded-pending")
    ring = vault.keyring
    ring.check_writable(key_id)  # absent: a key is made ahead for the coming write
    fresh_ring(vault).shred(key_id)  # another process shreds the id meanwhile
    with pytest.raises(KeyShredded):
        with vault.store.write() as tx:
            ring.encrypt_body(key_id, b"after", b"aad", within=tx)
    with pytest.raises(KeyShredded):
        fresh_ring(vault).data_key(key_id, create=False)


def test_missing_key_is_not_created_by_check_writable(vault: Vault) -> None:
    key_id = patient_key_id("only-checked")
    vault.keyring.check_writable(key_id)
    assert vault.store.key_get(key_id) is None
    with pytest.raises(KeyMaterialError):
        fresh_ring(vault).data_key(key_id, create=False)


class CountingKek:
    """A KEK (the vault's own) that counts its calls: a KMS would make each one a round
    trip, which must not happen while the write transaction holds the writer."""

    def __init__(self, inner: Kek) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def key_id(self) -> str:
        return self.inner.key_id

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        self.calls += 1
        return self.inner.wrap(key, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        self.calls += 1
        return self.inner.unwrap(blob, aad)


def test_first_key_is_wrapped_before_the_transaction_opens(vault: Vault) -> None:
    kek = CountingKek(vault.keyring.kek)
    ring = KeyRing(kek, StoreWrappedKeys(vault.store))
    ring.check_current()
    key_id = patient_key_id("made-ahead")
    ring.check_writable(key_id)
    assert kek.calls == 1  # the wrap, done here
    assert vault.store.key_get(key_id) is None  # nothing stored before the write
    with vault.store.write() as tx:
        blob = ring.encrypt_body(key_id, b"body", b"aad", within=tx)
        ring.encrypt_body(key_id, b"more", b"aad", within=tx)
    assert kek.calls == 1  # no KEK call inside the transaction, none to unwrap it back
    assert fresh_ring(vault).decrypt_body(key_id, blob, b"aad") == b"body"
    # Made ahead once: a second transaction for the same id (the key now stored, the
    # ring's cache cold for it) reads the stored key; it never wraps a second one.
    other = patient_key_id("made-ahead-2")
    ring.check_writable(other)
    with pytest.raises(Boom):
        with vault.store.write() as tx:
            ring.encrypt_body(other, b"x", b"aad", within=tx)
            raise Boom()
    with vault.store.write() as tx:
        blob = ring.encrypt_body(other, b"y", b"aad", within=tx)
    assert kek.calls == 3  # the rolled-back key was not reused: a new one was wrapped
    assert fresh_ring(vault).decrypt_body(other, blob, b"aad") == b"y"


def test_seal_outside_a_transaction_never_uses_a_rolled_back_key(vault: Vault) -> None:
    """A body sealed with no transaction at hand (the data-key rotation's sweep) after a
    rolled-back first write: sealed under a key that the store holds."""
    ring, key_id = vault.keyring, patient_key_id("sweep")
    with pytest.raises(Boom):
        with vault.store.write() as tx:
            ring.encrypt_body(key_id, b"first", b"aad", within=tx)
            raise Boom()
    blob = ring.encrypt_body(key_id, b"swept", b"aad")
    assert fresh_ring(vault).decrypt_body(key_id, blob, b"aad") == b"swept"
    assert ring.data_key(key_id, create=False) == fresh_ring(vault).data_key(key_id, create=False)


class CountingKeys(StoreWrappedKeys):
    """The store's wrapped keys, counting reads outside a transaction."""

    reads = 0

    def get_wrapped(self, key_id: str, within: object | None = None) -> bytes | None:
        if within is None:
            self.reads += 1
        return super().get_wrapped(key_id, within=within)


def test_a_drawn_id_is_not_looked_up_and_its_key_is_stored_with_the_write(
    vault: Vault,
) -> None:
    """check_writable(new=True) (a Patient id the server just drew): no store read, the
    key made ahead, and stored by the write like any first key."""
    kek = CountingKek(vault.keyring.kek)
    keys = CountingKeys(vault.store)
    ring = KeyRing(kek, keys)
    ring.check_current()
    key_id = patient_key_id("drawn")
    before = keys.reads
    ring.check_writable(key_id, new=True)
    assert keys.reads == before and kek.calls == 1
    with vault.store.write() as tx:
        blob = ring.encrypt_body(key_id, b"body", b"aad", within=tx)
    assert kek.calls == 1
    assert fresh_ring(vault).decrypt_body(key_id, blob, b"aad") == b"body"


def test_a_drawn_id_that_exists_after_all_keeps_its_key_or_its_shred(vault: Vault) -> None:
    """Were a drawn id taken (it never is: 122 random bits), the write's key transaction
    still finds the stored key and seals under it, and refuses a shredded one."""
    ring = vault.keyring
    taken, shredded = patient_key_id("taken"), patient_key_id("shredded-drawn")
    with vault.store.write() as tx:
        first = ring.encrypt_body(taken, b"first", b"aad", within=tx)
    ring.check_writable(shredded)
    with vault.store.write() as tx:
        ring.encrypt_body(shredded, b"x", b"aad", within=tx)
    fresh_ring(vault).shred(shredded)
    other = fresh_ring(vault)
    other.check_writable(taken, new=True)
    with vault.store.write() as tx:
        second = other.encrypt_body(taken, b"second", b"aad", within=tx)
    for blob, plain in ((first, b"first"), (second, b"second")):
        assert fresh_ring(vault).decrypt_body(taken, blob, b"aad") == plain
    other.check_writable(shredded, new=True)
    with pytest.raises(KeyShredded):
        with vault.store.write() as tx:
            other.encrypt_body(shredded, b"after", b"aad", within=tx)


class CountingTransactions(StoreWrappedKeys):
    """The store's wrapped keys, counting key transactions and one-step inserts."""

    transactions = 0
    one_step = 0

    def transact(
        self, fn: Callable[..., T], *, exclusive: bool = True, within: object | None = None
    ) -> T:
        self.transactions += 1
        return super().transact(fn, exclusive=exclusive, within=within)

    def add_if_state(
        self, state: bytes | None, key_id: str, blob: bytes, *, within: object
    ) -> bool:
        self.one_step += 1
        return super().add_if_state(state, key_id, blob, within=within)


def test_a_key_made_ahead_is_stored_in_one_step(vault: Vault) -> None:
    """The usual first key (made ahead, the state unchanged): one conditional insert in
    the write's transaction, no key transaction; it opens from another process."""
    keys = CountingTransactions(vault.store)
    ring = KeyRing(vault.keyring.kek, keys)
    ring.check_current()
    key_id = patient_key_id("one-step")
    ring.check_writable(key_id, new=True)
    before = keys.transactions
    with vault.store.write() as tx:
        blob = ring.encrypt_body(key_id, b"body", b"aad", within=tx)
    assert (keys.transactions - before, keys.one_step) == (0, 1)
    assert fresh_ring(vault).decrypt_body(key_id, blob, b"aad") == b"body"


def test_a_key_made_ahead_under_a_state_since_changed_takes_the_general_path(
    vault: Vault,
) -> None:
    """The state row moved after the key was made ahead (here: rewritten by hand to an
    equal state in other bytes): the one-step insert stores nothing, and the key
    transaction reads the new state and makes the key."""
    keys = CountingTransactions(vault.store)
    ring = KeyRing(vault.keyring.kek, keys)
    ring.check_current()
    key_id = patient_key_id("state-moved")
    ring.check_writable(key_id, new=True)
    state = vault.store.key_get(STATE_ID)
    assert state is not None
    moved = state + b" "  # the same JSON state, other bytes
    with vault.store.write() as tx:
        tx.key_put(STATE_ID, moved, replace=True)
    before = keys.transactions
    with vault.store.write() as tx:
        blob = ring.encrypt_body(key_id, b"body", b"aad", within=tx)
    assert keys.one_step == 1 and keys.transactions - before >= 1
    assert fresh_ring(vault).decrypt_body(key_id, blob, b"aad") == b"body"
