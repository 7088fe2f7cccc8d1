"""Wrapped keys read many at once (a search page's data keys), on both backends."""

from __future__ import annotations

from phivault.crypto.keyring import KeyRing, patient_key_id
from phivault.store.keys import StoreWrappedKeys
from phivault.vault import Vault


def test_many_keys_in_one_call_across_statement_chunks(vault: Vault) -> None:
    rows = {f"test-key-{n:04d}": bytes([n % 256]) * 40 for n in range(1203)}
    with vault.store.write() as tx:
        for key_id, blob in rows.items():
            tx.key_put(key_id, blob, replace=True)
    asked = [*rows, "test-key-absent", "test-key-0007"]  # an absent id and a repeat
    assert vault.store.key_get_many(asked) == rows
    assert vault.store.key_get_many([]) == {}
    assert vault.store.key_get_many(["test-key-absent"]) == {}


def test_a_key_ring_opens_a_page_from_one_read(vault: Vault) -> None:
    kek = vault.keyring.kek
    writer = KeyRing(kek, StoreWrappedKeys(vault.store))
    bodies = []
    for n in range(6):
        key_id, aad = patient_key_id(f"page{n}"), f"Observation/page{n}/1".encode()
        bodies.append((key_id, writer.encrypt_body(key_id, b"x%d" % n, aad), aad))
    reader = KeyRing(kek, StoreWrappedKeys(vault.store), refresh_interval=3600)
    reader.prefetch((key_id, blob) for key_id, blob, _ in bodies)
    assert len(reader._cache) == 6  # every key of the page, unwrapped from one read
    assert [reader.decrypt_body(*b) for b in bodies] == [b"x%d" % n for n in range(6)]
