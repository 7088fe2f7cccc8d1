"""Envelope encryption: per-patient data keys, shredding, KEK rotation, AAD binding."""

from __future__ import annotations

import pytest

from phivault.crypto.kek import LocalKek
from phivault.crypto.keyring import (
    INDEX_KEY_ID,
    SYSTEM_KEY_ID,
    KeyRing,
    MemoryWrappedKeyStore,
    patient_key_id,
)
from phivault.errors import DecryptionError, Gone, KeyMaterialError, KeyShredded

A, B = patient_key_id("a"), patient_key_id("b")


@pytest.fixture
def store() -> MemoryWrappedKeyStore:
    return MemoryWrappedKeyStore()


@pytest.fixture
def ring(store: MemoryWrappedKeyStore) -> KeyRing:
    return KeyRing(LocalKek(b"\x07" * 32), store)


def test_per_patient_keys_differ_and_are_stored_wrapped(
    ring: KeyRing, store: MemoryWrappedKeyStore
) -> None:
    ka, kb, ks = ring.data_key(A), ring.data_key(B), ring.data_key(SYSTEM_KEY_ID)
    assert len({ka, kb, ks}) == 3
    assert set(store.blobs) == {A, B, SYSTEM_KEY_ID}
    for key_id, key in [(A, ka), (B, kb)]:
        assert key not in store.blobs[key_id]
    # Reopened from the store by another ring with the same KEK: same keys.
    again = KeyRing(LocalKek(b"\x07" * 32), store)
    assert again.data_key(A, create=False) == ka


def test_missing_key_without_create(ring: KeyRing) -> None:
    with pytest.raises(KeyMaterialError):
        ring.data_key(A, create=False)
    with pytest.raises(KeyMaterialError):
        ring.decrypt_body(A, b"\x01" + bytes(40), b"")


@pytest.mark.parametrize(
    "bad", ["index", "patient:", "patient:a b", "patient:a\x00", "x", "Patient:a"]
)
def test_key_id_validation(ring: KeyRing, bad: str) -> None:
    with pytest.raises(ValueError):
        ring.data_key(bad)


def test_body_round_trip_and_format(ring: KeyRing) -> None:
    blob = ring.encrypt_body(A, b'{"resourceType":"Patient"}', b"Patient/a/1")
    assert blob[0] == 1
    assert ring.decrypt_body(A, blob, b"Patient/a/1") == b'{"resourceType":"Patient"}'


@pytest.mark.parametrize(
    ("key_id", "aad", "mutate"),
    [
        (B, b"Patient/a/1", None),  # moved to another patient's key id
        (SYSTEM_KEY_ID, b"Patient/a/1", None),
        (A, b"Patient/a/2", None),  # moved to another version
        (A, b"Patient/a/1", lambda b: b"\x02" + b[1:]),  # unknown format version
        (A, b"Patient/a/1", lambda b: b[:-1]),
        (A, b"Patient/a/1", lambda b: b""),
    ],
)
def test_moved_or_damaged_ciphertext_fails(
    ring: KeyRing, key_id: str, aad: bytes, mutate: object
) -> None:
    ring.data_key(B)
    ring.data_key(SYSTEM_KEY_ID)
    blob = ring.encrypt_body(A, b"secret", b"Patient/a/1")
    if callable(mutate):
        blob = mutate(blob)
    with pytest.raises(DecryptionError):
        ring.decrypt_body(key_id, blob, aad)


def test_same_key_bytes_under_other_id_still_fails(
    ring: KeyRing, store: MemoryWrappedKeyStore
) -> None:
    # An attacker copies A's wrapped key over B's: the wrap AAD binds the id, so it fails.
    ring.data_key(A)
    store.blobs[B] = store.blobs[A]
    fresh = KeyRing(LocalKek(b"\x07" * 32), store)
    with pytest.raises(DecryptionError):
        fresh.data_key(B, create=False)


def test_shred(ring: KeyRing, store: MemoryWrappedKeyStore) -> None:
    blob_a = ring.encrypt_body(A, b"a's record", b"Patient/a/1")
    blob_b = ring.encrypt_body(B, b"b's record", b"Patient/b/1")
    wrapped_a = store.blobs[A]
    index_key = ring.blind_index_key()
    pseudonym_key = ring.audit_pseudonym_key()

    ring.shred(A)

    assert wrapped_a not in store.blobs.values()
    assert ring.is_shredded(A) and not ring.has_key(A)
    with pytest.raises(KeyShredded) as excinfo:
        ring.decrypt_body(A, blob_a, b"Patient/a/1")
    assert isinstance(excinfo.value, Gone) and excinfo.value.http_status == 410
    assert "crypto-shredded" in excinfo.value.message
    # A shredded id stays shredded: no silent new key under it.
    with pytest.raises(KeyShredded):
        ring.encrypt_body(A, b"new", b"Patient/a/2")
    # Other patients, and index keys, are untouched.
    assert ring.decrypt_body(B, blob_b, b"Patient/b/1") == b"b's record"
    assert ring.blind_index_key() == index_key
    assert ring.audit_pseudonym_key() == pseudonym_key
    # Also after a restart (no cache).
    fresh = KeyRing(LocalKek(b"\x07" * 32), store)
    with pytest.raises(KeyShredded):
        fresh.decrypt_body(A, blob_a, b"Patient/a/1")
    assert fresh.blind_index_key() == index_key


def test_system_key_cannot_be_shredded(ring: KeyRing) -> None:
    with pytest.raises(ValueError):
        ring.shred(SYSTEM_KEY_ID)


def test_rewrap_all(ring: KeyRing, store: MemoryWrappedKeyStore) -> None:
    bodies = {
        k: ring.encrypt_body(k, k.encode(), b"v1")
        for k in [patient_key_id(str(i)) for i in range(5)] + [SYSTEM_KEY_ID]
    }
    index_key = ring.blind_index_key()
    ring.shred(patient_key_id("0"))
    old_kek, new_kek = LocalKek(b"\x07" * 32), LocalKek(b"\x08" * 32)
    old_blobs = dict(store.blobs)

    assert ring.rewrap_all(new_kek) == 6  # 4 patients + system + index; tombstone skipped
    assert ring.kek_id == new_kek.key_id

    after = KeyRing(new_kek, store)
    for k, blob in bodies.items():
        if k == patient_key_id("0"):
            with pytest.raises(KeyShredded):
                after.decrypt_body(k, blob, b"v1")
        else:
            assert after.decrypt_body(k, blob, b"v1") == k.encode()
    assert after.blind_index_key() == index_key
    # A ring left on the old KEK is told the KEK was rotated (not an integrity alarm).
    stale = KeyRing(old_kek, store)
    with pytest.raises(KeyMaterialError, match="rotated"):
        stale.decrypt_body(SYSTEM_KEY_ID, bodies[SYSTEM_KEY_ID], b"v1")
    with pytest.raises(KeyMaterialError, match="rotated"):
        stale.blind_index_key()
    with pytest.raises(KeyMaterialError, match="rotated"):
        stale.check_current()
    for key_id, blob in store.blobs.items():
        if key_id != patient_key_id("0"):
            assert blob != old_blobs[key_id]


def test_rewrap_is_resumable_and_refuses_foreign_keys(
    ring: KeyRing, store: MemoryWrappedKeyStore
) -> None:
    blob = ring.encrypt_body(A, b"x", b"")
    ring.data_key(B)
    new_kek = LocalKek(b"\x08" * 32)
    # Simulate an interrupted run: A already rewrapped, B not.
    store.blobs[A] = new_kek.wrap(ring.data_key(A), b"phivault/data-key/v1\x00" + A.encode())
    assert ring.rewrap_all(new_kek) == 1
    assert KeyRing(new_kek, store).decrypt_body(A, blob, b"") == b"x"
    # A key wrapped by neither KEK aborts the rotation.
    store.blobs[B] = LocalKek(b"\x09" * 32).wrap(bytes(32), b"x")
    with pytest.raises(DecryptionError):
        KeyRing(new_kek, store).rewrap_all(LocalKek(b"\x0a" * 32))


def test_index_keys_come_from_a_separate_root(ring: KeyRing, store: MemoryWrappedKeyStore) -> None:
    idx, pseud = ring.blind_index_key(), ring.audit_pseudonym_key()
    assert idx != pseud and len(idx) == len(pseud) == 32
    assert INDEX_KEY_ID in store.blobs
    assert idx not in {ring.data_key(A), ring.data_key(SYSTEM_KEY_ID)}
    assert KeyRing(LocalKek(b"\x07" * 32), store).blind_index_key() == idx


def test_cache_is_bounded(store: MemoryWrappedKeyStore) -> None:
    ring = KeyRing(LocalKek(b"\x07" * 32), store, cache_size=3)
    keys = {i: ring.data_key(patient_key_id(str(i))) for i in range(10)}
    assert len(ring._cache) == 3
    # Evicted keys are unwrapped again from the store, unchanged.
    assert ring.data_key(patient_key_id("0"), create=False) == keys[0]
    ring.forget_cached()
    assert len(ring._cache) == 0
    with pytest.raises(ValueError):
        KeyRing(LocalKek(b"\x07" * 32), store, cache_size=0)


def test_wrong_kek_does_not_open_keys(ring: KeyRing, store: MemoryWrappedKeyStore) -> None:
    blob = ring.encrypt_body(A, b"x", b"")
    with pytest.raises(DecryptionError):
        KeyRing(LocalKek(b"\x08" * 32), store).decrypt_body(A, blob, b"")


class _CountingReads(MemoryWrappedKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_wrapped(self, key_id: str, within: object | None = None) -> bytes | None:
        self.reads += 1
        return super().get_wrapped(key_id, within)


def test_a_clinics_patients_in_use_stay_open_but_the_cache_is_bounded() -> None:
    store = _CountingReads()
    writer = KeyRing(LocalKek(b"\x07" * 32), store)
    sealed = []
    for n in range(2_000):  # a clinic's worth of patients, each under its own key
        key_id, aad = patient_key_id(f"p{n}"), f"Patient/p{n}/1".encode()
        sealed.append((key_id, writer.encrypt_body(key_id, b"{}", aad), aad))
    reader = KeyRing(LocalKek(b"\x07" * 32), store, refresh_interval=3600)
    for key_id, blob, aad in sealed:
        reader.decrypt_body(key_id, blob, aad)
    store.reads = 0
    for key_id, blob, aad in sealed:  # the same patients again: every key still open
        assert reader.decrypt_body(key_id, blob, aad) == b"{}"
    assert store.reads == 0
    # A small ring forgets the least recently used keys and reads them again.
    small = KeyRing(LocalKek(b"\x07" * 32), store, cache_size=100, refresh_interval=3600)
    for key_id, blob, aad in sealed[:200]:
        small.decrypt_body(key_id, blob, aad)
    store.reads = 0
    small.decrypt_body(*sealed[0])
    assert store.reads == 1


def test_a_cached_keys_cipher_is_made_once(ring: KeyRing, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = ring.encrypt_body(A, b"a's record", b"Patient/a/1")
    assert ring._cache.cipher(A) is not None

    def no_new_cipher(*args: object) -> None:
        raise AssertionError("a cipher was made again")

    monkeypatch.setattr("phivault.crypto.keyring.BodyCipher", no_new_cipher)
    for _ in range(3):
        assert ring.decrypt_body(A, blob, b"Patient/a/1") == b"a's record"
    assert (
        ring.decrypt_body(A, ring.encrypt_body(A, b"v2", b"Patient/a/2"), b"Patient/a/2") == b"v2"
    )


def test_a_cached_cipher_still_honours_a_shred_elsewhere(store: MemoryWrappedKeyStore) -> None:
    reader = KeyRing(LocalKek(b"\x07" * 32), store, refresh_interval=3600)
    blob = reader.encrypt_body(A, b"a's record", b"Patient/a/1")
    assert reader.decrypt_body(A, blob, b"Patient/a/1") == b"a's record"
    KeyRing(LocalKek(b"\x07" * 32), store).shred(A)  # another process
    # Within the refresh interval the reader may still open it, as before; once its
    # state is read again, the cached key and its cipher are gone.
    reader.refresh(force=True)
    with pytest.raises(KeyShredded):
        reader.decrypt_body(A, blob, b"Patient/a/1")
    eager = KeyRing(LocalKek(b"\x07" * 32), store, refresh_interval=0)
    blob_b = eager.encrypt_body(B, b"b's record", b"Patient/b/1")
    KeyRing(LocalKek(b"\x07" * 32), store).shred(B)
    with pytest.raises(KeyShredded):
        eager.decrypt_body(B, blob_b, b"Patient/b/1")


def test_a_cipher_is_never_used_for_another_key_id(ring: KeyRing) -> None:
    # Generation 2 of A is stored as row "patient:a#2", which is also what an (invalid)
    # key id "patient:a#2" would name at generation 1: its cipher must not answer it.
    ring.encrypt_body(A, b"earlier", b"Patient/a/0")  # generation 1 of A exists too
    ring.update_state(lambda _tx, s: s.bumped(generation=2, rekey=True))
    ring.data_key(A)  # what codec.prepare does before a write
    sealed = ring.encrypt_body(A, b"a's record", b"Patient/a/1")
    assert sealed[0] == 2 and ring._cache.cipher("patient:a#2") is not None
    relabelled = b"\x01" + sealed[5:]  # the same payload under a generation-1 header
    with pytest.raises(ValueError):
        ring.decrypt_body("patient:a#2", relabelled, b"Patient/a/1")
    with pytest.raises(DecryptionError):
        ring.decrypt_body(A, relabelled, b"Patient/a/1")
