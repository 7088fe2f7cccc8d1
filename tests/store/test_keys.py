"""The key ring's table in the store (store/keys.py), on both backends: a first data key
stored in one step, only under the state it was wrapped for."""

from __future__ import annotations

from phivault.crypto.keystate import STATE_ID
from phivault.store.keys import StoreWrappedKeys
from phivault.vault import Vault


def test_add_if_state_stores_only_under_the_expected_state(vault: Vault) -> None:
    keys = StoreWrappedKeys(vault.store)
    state = vault.store.key_get(STATE_ID)
    with vault.store.write() as tx:
        assert keys.add_if_state(state, "test-key-new", b"blob-1", within=tx)
        # the row is taken now: kept, not replaced
        assert not keys.add_if_state(state, "test-key-new", b"blob-2", within=tx)
        # another state than the stored one: nothing stored
        assert not keys.add_if_state(b"not-the-state", "test-key-other", b"blob-3", within=tx)
    assert vault.store.key_get("test-key-new") == b"blob-1"
    assert vault.store.key_get("test-key-other") is None
    assert vault.store.key_get(STATE_ID) == state  # the state row itself untouched


def test_add_if_state_without_a_state_row(vault: Vault) -> None:
    """A store whose key ring never wrote a state row: None is the expected state."""
    with vault.store.write() as tx:
        tx.key_delete(STATE_ID)
        assert not tx.key_add_if(STATE_ID, b"some-state", "test-key-a", b"a")
        assert tx.key_add_if(STATE_ID, None, "test-key-b", b"b")
    assert vault.store.key_get("test-key-a") is None
    assert vault.store.key_get("test-key-b") == b"b"
