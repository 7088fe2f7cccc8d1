"""KEK rotation and data-key generations on an in-memory key store: the races, step by
step (the same rotation against real servers is in test_online_rotation.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pytest

from phivault.crypto.codec import KeyRingCodec
from phivault.crypto.kek import KekParams, LocalKek, make_key_check
from phivault.crypto.keyring import KeyRing, KeyTx, MemoryWrappedKeyStore, patient_key_id
from phivault.crypto.keystate import STATE_ID, TRANSITION_ID, KeyState, seal_transition
from phivault.crypto.rotation import rotate_data_keys, rotate_kek
from phivault.errors import ConfigError, DecryptionError, KeyMaterialError, KeyShredded

T = TypeVar("T")
OLD, NEW, OTHER = (LocalKek(bytes([i]) * 32) for i in (1, 2, 3))
PARAMS = KekParams("key-file", {"format": 1})
A, B, C, D = (patient_key_id(x) for x in "abcd")


class HookedStore(MemoryWrappedKeyStore):
    """Runs `hook` once, just before the next key transaction: another process acting
    between a key ring's decision and its transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None

    def transact(self, fn: Callable[[KeyTx], T], **options: Any) -> T:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().transact(fn, **options)


def ring(kek: LocalKek, store: MemoryWrappedKeyStore, interval: float = 0.0) -> KeyRing:
    return KeyRing(kek, store, refresh_interval=interval)


@pytest.fixture
def store() -> HookedStore:
    found = HookedStore()
    ring(OLD, found).update_state(lambda _tx, _s: KeyState(kek=OLD.key_id).bumped())
    return found


def rotate(rotator: KeyRing, during_grace: Callable[[], None] = lambda: None) -> Any:
    commits: list[KekParams] = []
    result = rotate_kek(
        rotator,
        NEW,
        PARAMS,
        make_key_check(NEW),
        commit=lambda p, _c: commits.append(p),
        grace=1.0,
        sleep=lambda _s: during_grace(),
    )
    assert commits == [PARAMS]
    return result


def begin_rotation_elsewhere(store: MemoryWrappedKeyStore) -> None:
    """What `rotate_kek` commits first, done by another process."""
    record = seal_transition(OLD, NEW, PARAMS, make_key_check(NEW))
    state = KeyState.from_bytes(store.blobs[STATE_ID])
    store.blobs[TRANSITION_ID] = record.to_bytes()
    store.blobs[STATE_ID] = state.bumped(transition_to=NEW.key_id).to_bytes()


def test_a_key_created_mid_rotation_by_an_old_kek_server_is_not_lost(store: HookedStore) -> None:
    server = ring(OLD, store, interval=1e9)
    blob_a = server.encrypt_body(A, b"a", b"1")
    # The server has chosen the old KEK for C's new key; the rotation begins before its
    # key transaction runs. The transaction sees the state moved, and the server follows
    # the transition record and wraps with the new KEK instead.
    store.hook = lambda: begin_rotation_elsewhere(store)
    blob_c = server.encrypt_body(C, b"c", b"1")
    assert server.kek_id == NEW.key_id
    NEW.unwrap(store.blobs[C], b"phivault/data-key/v1\x00" + C.encode())
    made: dict[str, bytes] = {}
    result = rotate(
        ring(OLD, store), during_grace=lambda: made.update(b=server.encrypt_body(B, b"b", b"1"))
    )
    assert result.resumed and result.new_kek == NEW.key_id
    assert TRANSITION_ID not in store.blobs  # the old KEK no longer unwraps the new one
    state = KeyState.from_bytes(store.blobs[STATE_ID])
    assert state.kek == NEW.key_id and state.transition_to is None
    # A restart with the new KEK opens every key, including those the server made.
    restarted = ring(NEW, store)
    restarted.check_current()
    assert restarted.decrypt_body(A, blob_a, b"1") == b"a"
    assert restarted.decrypt_body(B, made["b"], b"1") == b"b"
    assert restarted.decrypt_body(C, blob_c, b"1") == b"c"
    with pytest.raises(KeyMaterialError, match="rotated"):
        ring(OLD, store).check_current()


def test_rotation_from_scratch_follows_servers(store: HookedStore) -> None:
    server = ring(OLD, store)
    blob_a = server.encrypt_body(A, b"a", b"1")
    result = rotate(ring(OLD, store), during_grace=lambda: server.data_key(B))
    assert not result.resumed and result.rewrapped == 1  # A (B is created after, under NEW)
    assert server.kek_id == NEW.key_id
    assert ring(NEW, store).decrypt_body(A, blob_a, b"1") == b"a"
    ring(NEW, store).data_key(B, create=False)


def test_a_server_that_missed_the_rotation_refuses_to_create_keys(store: HookedStore) -> None:
    laggard = ring(OLD, store, interval=1e9)  # never re-reads the state on its own
    blob_a = laggard.encrypt_body(A, b"a", b"1")
    rotate(ring(OLD, store))
    # Cached keys keep working; creating a key under the rotated-out KEK is refused with a
    # clear message, and nothing is written that a restart could not open.
    assert laggard.decrypt_body(A, blob_a, b"1") == b"a"
    before = dict(store.blobs)
    with pytest.raises(KeyMaterialError, match="restart with the new"):
        laggard.data_key(D)
    assert store.blobs == before
    laggard.forget_cached()
    with pytest.raises(KeyMaterialError, match="rotated"):
        laggard.decrypt_body(A, blob_a, b"1")
    assert ring(NEW, store).decrypt_body(A, blob_a, b"1") == b"a"


def test_an_interrupted_rotation_resumes_and_refuses_another_target(store: HookedStore) -> None:
    blob_a = ring(OLD, store).encrypt_body(A, b"a", b"1")

    def crash(_p: KekParams, _c: bytes) -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        rotate_kek(ring(OLD, store), NEW, PARAMS, make_key_check(NEW), commit=crash, grace=0)
    assert TRANSITION_ID in store.blobs
    # Meanwhile a server restarted with the old key follows the rotation record.
    restarted = ring(OLD, store)
    restarted.check_current()
    assert restarted.decrypt_body(A, blob_a, b"1") == b"a"
    with pytest.raises(ConfigError, match="another key"):
        rotate_kek(ring(OLD, store), OTHER, PARAMS, make_key_check(OTHER), commit=crash, grace=0)
    result = rotate(ring(OLD, store))
    assert result.resumed
    assert TRANSITION_ID not in store.blobs
    assert ring(NEW, store).decrypt_body(A, blob_a, b"1") == b"a"


def test_shred_during_rotation_stays_shredded(store: HookedStore) -> None:
    server = ring(OLD, store)
    blob_a = server.encrypt_body(A, b"a", b"1")
    server.encrypt_body(B, b"b", b"1")
    rotator = ring(OLD, store)
    store.hook = lambda: server.shred(A)  # lands between the key listing and the rewrap
    rotate(rotator)
    with pytest.raises(KeyShredded):
        ring(NEW, store).decrypt_body(A, blob_a, b"1")


# --- data-key generations ------------------------------------------------------------------


def test_generations_both_decrypt_and_shred_destroys_all(store: HookedStore) -> None:
    server = ring(OLD, store)
    gen1 = server.encrypt_body(A, b"first", b"Patient/a/1")
    assert gen1[0] == 1
    server.update_state(lambda _tx, s: s.bumped(generation=2, rekey=True))
    server.data_key(A)  # what codec.prepare does before a write
    gen2 = server.encrypt_body(A, b"second", b"Patient/a/2")
    assert gen2[0] == 2 and server.body_generation(gen2) == 2
    assert "patient:a#2" in store.blobs
    assert server.decrypt_body(A, gen1, b"Patient/a/1") == b"first"
    assert server.decrypt_body(A, gen2, b"Patient/a/2") == b"second"
    # The generation is authenticated: relabelled, the body does not open.
    relabelled = gen2[:1] + (1).to_bytes(4, "big") + gen2[5:]
    for bad in [relabelled, gen2[:1] + (9).to_bytes(4, "big") + gen2[5:], b"\x02\x00"]:
        with pytest.raises(DecryptionError):
            server.decrypt_body(A, bad, b"Patient/a/2")
    server.shred(A)
    assert not [k for k in store.blobs if k.startswith("patient:a#")]
    for blob, aad in [(gen1, b"Patient/a/1"), (gen2, b"Patient/a/2")]:
        with pytest.raises(KeyShredded):
            ring(OLD, store).decrypt_body(A, blob, aad)


@dataclass(frozen=True)
class Row:
    seq: int
    rtype: str
    rid: str
    version: int
    compartment: str | None
    body: bytes | None


class Bodies:
    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}

    def add(self, codec: KeyRingCodec, rid: str, compartment: str | None) -> None:
        seq = len(self.rows) + 1
        codec.prepare(compartment)
        body = codec.seal("Basic", rid, 1, compartment, rid.encode())
        self.rows[seq] = Row(seq, "Basic", rid, 1, compartment, body)

    def count(self) -> int:
        return len(self.rows)

    def after(self, seq: int, limit: int) -> Sequence[Row]:
        return [self.rows[s] for s in sorted(self.rows) if s > seq][:limit]

    def replace(self, changes: Sequence[tuple[int, bytes, bytes]]) -> int:
        done = 0
        for seq, old, new in changes:
            if self.rows[seq].body == old:
                self.rows[seq] = replace(self.rows[seq], body=new)
                done += 1
        return done


def test_data_key_rotation_reseals_everything_including_stragglers(store: HookedStore) -> None:
    rekeyer = KeyRingCodec(ring(OLD, store))
    laggard = KeyRingCodec(ring(OLD, store, interval=1e9))  # a server that has not looked yet
    bodies = Bodies()
    for i in range(7):
        bodies.add(rekeyer, f"p{i}", f"Patient/{i % 3}")
    bodies.add(rekeyer, "shared", None)
    bodies.add(rekeyer, "gone", "Patient/9")
    rekeyer.keyring.shred(patient_key_id("9"))
    laggard.keyring.refresh(force=True)
    seen: list[tuple[int, int]] = []

    def straggler(_s: float) -> None:
        bodies.add(laggard, "late", "Patient/1")  # sealed with generation 1, after the sweep

    report = rotate_data_keys(
        rekeyer.keyring,
        rekeyer,
        bodies,
        grace=1.0,
        progress=lambda done, total: seen.append((done, total)),
        batch=3,
        sleep=straggler,
    )
    assert report.generation == 2 and report.failed == 0 and report.shredded == 1
    assert report.resealed == 9  # 8 live bodies + the straggler
    assert seen[-1] == (9, 9)
    for row in bodies.rows.values():
        assert row.body is not None
        if row.rid != "gone":
            assert rekeyer.keyring.body_generation(row.body) == 2
            assert rekeyer.open("Basic", row.rid, 1, row.compartment, row.body) == row.rid.encode()
    assert not KeyState.from_bytes(store.blobs[STATE_ID]).rekey
    # Generation 1 keys stay (backups hold ciphertext under them), decrypt-only.
    assert patient_key_id("0") in store.blobs and "patient:0#2" in store.blobs
