"""Key rotation while servers keep serving.

KEK rotation (`rotate_kek`) rewraps the data keys only; bodies are untouched. The danger
is a server that still holds the old KEK and creates a new patient's data key during or
after the rotation: wrapped under the old KEK, that key could not be opened after a
restart with the new one, and the patient's data would be lost. The steps:

1. `begin`: in one key transaction, write the transition record (the new KEK wrapped
   under the old one, crypto/keystate.py) and set `transition_to` in the shared state.
   Every key creation re-checks the state inside its own key transaction, serialized with
   this one, so from here on no key can be created under the old KEK: a server that still
   wraps with it reads the record, switches to the new KEK, and tries again.
2. `KeyRing.rewrap_all`: rewrap every key; a last pass inside one locked transaction
   catches keys created just before step 1 committed; the state then names the new KEK.
3. The caller writes the new keys.json (atomic replace): from now on only the new key
   opens the data directory.
4. Wait `grace` seconds, so that every running server re-reads the state and follows.
5. `end`: delete the transition record (left behind, it would let the old KEK unwrap the
   new one). A server that missed the whole window holds a KEK that no longer opens any
   key: it refuses to create keys and asks for a restart with the new key. Nothing is lost.

Every step is resumable: run the rotation again with the same new key.

Data-key rotation (`rotate_data_keys`) starts a new generation: servers seal new bodies
with it as soon as they re-read the state, and this process re-encrypts every stored
version in place, then sweeps again after `grace` for bodies sealed by servers that had
not yet followed. Older generations stay, decrypt-only: backups hold ciphertext under them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from phivault.crypto.codec import KeyRingCodec
from phivault.crypto.kek import Kek, KekParams, KeySource, initialize_kek, unlock_kek
from phivault.crypto.keyring import KeyRing, KeyTx
from phivault.crypto.keystate import TRANSITION_ID, KeyState, Transition, seal_transition
from phivault.errors import ConfigError, DecryptionError, KeyMaterialError, KeyShredded

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "BodyRow",
    "KekRotation",
    "RekeyReport",
    "VersionBodies",
    "finish_pending",
    "new_kek_for_rotation",
    "pending_transition",
    "rotate_data_keys",
    "rotate_kek",
]

# Longer than a server's state refresh (1 s by default) plus a slow request.
DEFAULT_GRACE_SECONDS = 10.0

security_log = logging.getLogger("phivault.security")

Progress = Callable[[int, int], None]  # (versions done, versions in total)


@dataclass(frozen=True, slots=True)
class KekRotation:
    old_kek: str
    new_kek: str
    rewrapped: int
    resumed: bool


def pending_transition(ring: KeyRing) -> Transition | None:
    """The record of a KEK rotation that has begun and not ended, if any."""
    raw = ring.store.get_wrapped(TRANSITION_ID)
    return Transition.from_bytes(raw) if raw is not None else None


def new_kek_for_rotation(ring: KeyRing, source: KeySource) -> tuple[Kek, KekParams, bytes]:
    """The new KEK, its parameters and key check. If a rotation was interrupted, the new
    source must be the one it was rotating to (same passphrase and salt, same key file)."""
    pending = pending_transition(ring)
    if pending is None:
        kek, params, check = initialize_kek(source)
    else:
        try:
            kek = unlock_kek(source, pending.kek_params, pending.check)
        except KeyMaterialError:
            raise ConfigError(
                "a rotation to another key is under way: run `keys rotate` again with "
                "that new key to finish it"
            ) from None
        params, check = pending.kek_params, pending.check
    if kek.key_id == _old_kek(ring, pending).key_id:
        raise ConfigError("the new key is the key in use: give another one")
    return kek, params, check


def _old_kek(ring: KeyRing, pending: Transition | None) -> Kek:
    if pending is None:
        return ring.kek
    for kek in ring.keks:
        if kek.key_id == pending.from_kek:
            return kek
    raise KeyMaterialError("the rotation under way did not start from this key")


def rotate_kek(
    ring: KeyRing,
    new_kek: Kek,
    params: KekParams,
    check: bytes,
    *,
    commit: Callable[[KekParams, bytes], None],
    grace: float = DEFAULT_GRACE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> KekRotation:
    """Rotate the KEK online (see the module docstring); `commit` writes the new keys.json."""
    pending = pending_transition(ring)
    old = _old_kek(ring, pending)
    transition = seal_transition(old, new_kek, params, check)

    def begin(tx: KeyTx, state: KeyState) -> KeyState | None:
        if state.transition_to is not None:
            if state.transition_to != new_kek.key_id:
                raise ConfigError("a rotation to another key is under way")
            if tx.get(TRANSITION_ID) is None:
                tx.put(TRANSITION_ID, transition.to_bytes())
            return None
        if state.kek is not None and state.kek != old.key_id:
            raise KeyMaterialError("the key in use is not the store's current key")
        tx.put(TRANSITION_ID, transition.to_bytes())
        return state.bumped(transition_to=new_kek.key_id)

    ring.update_state(begin)
    ring.adopt(new_kek)
    rewrapped = ring.rewrap_all(new_kek)
    commit(params, check)
    sleep(grace)
    finish_pending(ring)
    return KekRotation(old.key_id, new_kek.key_id, rewrapped, pending is not None)


def finish_pending(ring: KeyRing) -> bool:
    """End a KEK rotation whose keys are all rewrapped: delete the transition record.
    Returns False if no rotation was under way."""

    def end(tx: KeyTx, state: KeyState) -> KeyState | None:
        if state.transition_to is None and tx.get(TRANSITION_ID) is None:
            return None
        if state.kek != state.transition_to and state.transition_to is not None:
            raise ConfigError("the rotation under way has not rewrapped every key yet")
        tx.delete(TRANSITION_ID)
        return state.bumped(transition_to=None)

    before = ring.refresh(force=True)
    after = ring.update_state(end)
    return after.epoch != before.epoch


# --- data keys --------------------------------------------------------------------------------


class BodyRow(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def rtype(self) -> str: ...

    @property
    def rid(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def compartment(self) -> str | None: ...

    @property
    def body(self) -> bytes | None: ...


class VersionBodies(Protocol):
    """The stored bodies, as the data-key rotation walks and rewrites them."""

    def count(self) -> int: ...

    def after(self, seq: int, limit: int) -> Sequence[BodyRow]: ...

    def replace(self, changes: Sequence[tuple[int, bytes, bytes]]) -> int:
        """Swap (seq, old body, new body) where the body is still the old one."""
        ...


@dataclass(slots=True)
class RekeyReport:
    generation: int
    total: int = 0
    resealed: int = 0
    shredded: int = 0  # left alone: their key is gone
    failed: int = 0  # failed authentication: left as they are, logged


def rotate_data_keys(
    ring: KeyRing,
    codec: KeyRingCodec,
    bodies: VersionBodies,
    *,
    grace: float = DEFAULT_GRACE_SECONDS,
    progress: Progress | None = None,
    batch: int = 500,
    sleep: Callable[[float], None] = time.sleep,
) -> RekeyReport:
    """Re-encrypt every stored body under a new data-key generation (resumable)."""

    def begin(tx: KeyTx, state: KeyState) -> KeyState | None:
        if state.rekey:
            return None  # an interrupted run: carry on with its generation
        return state.bumped(generation=state.generation + 1, rekey=True)

    generation = ring.update_state(begin).generation
    report = RekeyReport(generation, total=bodies.count())
    _sweep(codec, bodies, report, batch, progress)
    sleep(grace)
    # Bodies sealed meanwhile by servers that had not yet re-read the state.
    straggling = RekeyReport(generation)
    _sweep(codec, bodies, straggling, batch, None)
    report.resealed += straggling.resealed
    report.shredded, report.failed = straggling.shredded, straggling.failed

    def end(tx: KeyTx, state: KeyState) -> KeyState | None:
        if not state.rekey or state.generation != generation:
            return None
        return state.bumped(rekey=False)

    ring.update_state(end)
    return report


def _sweep(
    codec: KeyRingCodec,
    bodies: VersionBodies,
    report: RekeyReport,
    batch: int,
    progress: Progress | None,
) -> None:
    after, done = 0, 0
    while rows := bodies.after(after, batch):
        changes: list[tuple[int, bytes, bytes]] = []
        for row in rows:
            if row.body is None:
                continue
            try:
                new = codec.reseal(row.rtype, row.rid, row.version, row.compartment, row.body)
            except KeyShredded:
                report.shredded += 1
                continue
            except DecryptionError:
                report.failed += 1
                security_log.warning(
                    "stored version failed authentication during re-encryption: type=%s seq=%d",
                    row.rtype,
                    row.seq,
                )
                continue
            if new is not None:
                changes.append((row.seq, row.body, new))
        report.resealed += bodies.replace(changes) if changes else 0
        after = rows[-1].seq
        done += len(rows)
        if progress is not None:
            progress(done, max(report.total, done))
