"""A page's data keys in one store read (KeyRing.prefetch), and nothing weakened by it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from phivault.crypto.kek import LocalKek
from phivault.crypto.keyring import KeyRing, MemoryWrappedKeyStore, patient_key_id
from phivault.errors import DecryptionError, KeyShredded

KEK = LocalKek(b"\x07" * 32)


class CountingStore(MemoryWrappedKeyStore):
    """Counts the reads a key ring makes: one at a time, and many at once."""

    def __init__(self) -> None:
        super().__init__()
        self.single = 0
        self.many: list[int] = []

    def get_wrapped(self, key_id: str, within: object | None = None) -> bytes | None:
        self.single += 1
        return super().get_wrapped(key_id, within)

    def get_wrapped_many(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        self.many.append(len(key_ids))
        return super().get_wrapped_many(key_ids)


def page(patients: int, store: CountingStore) -> list[tuple[str, bytes, bytes]]:
    """(key id, body, aad) of one body per patient, sealed by another server."""
    writer = KeyRing(KEK, store)
    found = []
    for n in range(patients):
        key_id, aad = patient_key_id(f"p{n}"), f"Observation/o{n}/1".encode()
        found.append((key_id, writer.encrypt_body(key_id, f"body {n}".encode(), aad), aad))
    return found


def test_a_page_of_patients_costs_one_key_read() -> None:
    store = CountingStore()
    bodies = page(40, store)
    reader = KeyRing(KEK, store, refresh_interval=3600)  # no state re-read meanwhile
    reader.refresh()
    store.single, store.many = 0, []
    reader.prefetch((key_id, blob) for key_id, blob, _ in bodies)
    opened = [reader.decrypt_body(key_id, blob, aad) for key_id, blob, aad in bodies]
    assert opened == [f"body {n}".encode() for n in range(40)]
    assert store.many == [40] and store.single == 0
    # Everything cached now: a second prefetch reads nothing.
    reader.prefetch((key_id, blob) for key_id, blob, _ in bodies)
    assert store.many == [40]


def test_without_prefetch_each_patient_is_a_read() -> None:
    store = CountingStore()
    bodies = page(5, store)
    reader = KeyRing(KEK, store, refresh_interval=3600)  # no state re-read meanwhile
    reader.refresh()
    store.single = 0
    for key_id, blob, aad in bodies:
        reader.decrypt_body(key_id, blob, aad)
    assert store.single == 5  # what prefetch saves, one round trip each on PostgreSQL


def test_prefetch_leaves_shredded_and_damaged_keys_to_fail_as_before() -> None:
    store = CountingStore()
    bodies = page(4, store)
    KeyRing(KEK, store).shred(bodies[0][0])
    damaged = bodies[1][0]
    store.blobs[damaged] = store.blobs[damaged][:-1] + bytes([store.blobs[damaged][-1] ^ 1])
    reader = KeyRing(KEK, store)
    reader.prefetch((key_id, blob) for key_id, blob, _ in bodies)
    with pytest.raises(KeyShredded):
        reader.decrypt_body(*bodies[0])
    with pytest.raises(DecryptionError):
        reader.decrypt_body(*bodies[1])
    assert [reader.decrypt_body(*b) for b in bodies[2:]] == [b"body 2", b"body 3"]


def test_prefetch_stays_within_the_cache_bound() -> None:
    store = CountingStore()
    bodies = page(12, store)
    reader = KeyRing(KEK, store, cache_size=8)
    reader.prefetch((key_id, blob) for key_id, blob, _ in bodies)
    assert store.many == []  # more keys than the cache holds: nothing read ahead
    assert len(reader._cache) <= 8
    reader.prefetch((key_id, blob) for key_id, blob, _ in bodies[:6])
    assert store.many == [6] and len(reader._cache) <= 8


def test_a_key_offered_with_its_body_costs_no_read() -> None:
    store = CountingStore()
    (key_id, blob, aad), (other_id, other_blob, _) = page(2, store)
    reader = KeyRing(KEK, store, refresh_interval=3600)  # no state re-read meanwhile
    reader.refresh()
    store.single = 0
    assert reader.row_suffix() == ""  # generation 1: the bare key id names the row
    # Rows that do not open this body (another patient's) are ignored.
    reader.offer(key_id, blob, {other_id: store.blobs[other_id]})
    reader.offer(key_id, blob, {key_id: store.blobs[key_id], other_id: store.blobs[other_id]})
    assert reader.decrypt_body(key_id, blob, aad) == b"body 0"
    assert store.single == 0
    reader.decrypt_body(other_id, other_blob, b"Observation/o1/1")
    assert store.single == 1  # not taken from the offer made for the first body


def test_an_offered_row_opens_nothing_it_should_not() -> None:
    store = CountingStore()
    bodies = page(3, store)
    KeyRing(KEK, store).shred(bodies[0][0])
    reader = KeyRing(KEK, store)
    (shredded, blob0, aad0), (key_id, blob1, aad1), (other_id, _, _) = bodies
    # A shredded key's tombstone, or another key's row under this key's id, is not taken.
    reader.offer(shredded, blob0, {shredded: store.blobs[shredded]})
    reader.offer(key_id, blob1, {key_id: store.blobs[other_id]})
    with pytest.raises(KeyShredded):
        reader.decrypt_body(shredded, blob0, aad0)
    assert reader.decrypt_body(key_id, blob1, aad1) == b"body 1"  # read from the store
