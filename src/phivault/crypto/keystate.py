"""The key ring's shared records: which KEK and data-key generation are current, and the
record that hands a new KEK to running servers during an online KEK rotation.

They are rows of the wrapped-key table beside the wrapped keys, under ids that can never
be data key ids (`keyring:` prefix), so every process that shares the store (several
workers, several hosts on PostgreSQL, the `phivault keys` CLI) sees the same state.

- `keyring:state` (`KeyState`, JSON, not secret): `epoch` is bumped by every change, so a
  key ring that re-reads this one small row notices a shred, a rotation or a new data-key
  generation and drops its cached keys; `kek` is the id of the KEK every data key is
  wrapped under; `generation` is the data-key generation new bodies are sealed with.
- `keyring:transition` (`Transition`): present only while a KEK rotation runs. It holds
  the new KEK wrapped under the old one, so a server still holding the old KEK switches to
  the new one instead of creating keys that a restart with the new KEK could not open.
  It is deleted when the rotation ends: left behind, anyone holding the old KEK and a copy
  of the database could unwrap the new KEK, which would make the rotation pointless.

Every key transaction locks the state row first (`WriteTx.key_lock`): shared to create a
key, exclusive to change the state (rotations, shreds). On PostgreSQL that row lock is what
keeps a key from being created under the old KEK while a rotation begins, across
processes; on SQLite the single write transaction already excludes every other writer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from phivault.crypto.kek import Kek, KekParams, kek_from_transfer, kek_transfer_state
from phivault.errors import DecryptionError, KeyMaterialError

if TYPE_CHECKING:
    from phivault.crypto.keystore import KeyTx

__all__ = [
    "INDEX_KEY_ID",
    "META_PREFIX",
    "STATE_ID",
    "SYSTEM_KEY_ID",
    "TOMBSTONE",
    "TRANSITION_ID",
    "KeyState",
    "Transition",
    "check_key_id",
    "key_row_id",
    "open_transition",
    "parse_row_id",
    "patient_key_id",
    "rewrap_rows",
    "seal_transition",
    "wrap_aad",
]

SYSTEM_KEY_ID = "system"
INDEX_KEY_ID = "index"
META_PREFIX = "keyring:"
STATE_ID = "keyring:state"
TRANSITION_ID = "keyring:transition"
# A tombstone is not a valid wrapped blob (LocalKek blobs start with 0x01).
TOMBSTONE = b"\x00shredded"

_PATIENT_PREFIX = "patient:"
# FHIR id: [A-Za-z0-9\-\.]{1,64}. Anything else in a key id (a NUL, a colon, a '#') could
# make two different ids, or an id and a generation row, encode to the same AAD bytes.
_KEY_ID_RE = re.compile(r"(?:system|patient:[A-Za-z0-9.\-]{1,64})")
_GENERATION_SEP = "#"
_TRANSITION_DOMAIN = b"phivault/kek-transition/v1\x00"
_DATA_KEY_WRAP_DOMAIN = b"phivault/data-key/v1\x00"
_INDEX_WRAP_AAD = b"phivault/index-root/v1"


def patient_key_id(patient_id: str) -> str:
    key_id = _PATIENT_PREFIX + patient_id
    check_key_id(key_id)
    return key_id


def check_key_id(key_id: str) -> None:
    if not _KEY_ID_RE.fullmatch(key_id):
        raise ValueError("a data key id is 'system' or 'patient:<FHIR id>'")


def key_row_id(key_id: str, generation: int) -> str:
    """Row of one generation of a data key. Generation 1 keeps the bare id, so data
    written before generations existed still finds its key."""
    if generation < 1:
        raise ValueError("generations start at 1")
    return key_id if generation == 1 else f"{key_id}{_GENERATION_SEP}{generation}"


def parse_row_id(row_id: str) -> tuple[str, int] | None:
    """(key id, generation) of a data key row; None for the index root and state rows."""
    key_id, sep, gen = row_id.partition(_GENERATION_SEP)
    if not _KEY_ID_RE.fullmatch(key_id):
        return None
    if not sep:
        return key_id, 1
    if not gen.isdigit() or gen.startswith("0") or int(gen) < 2:
        return None
    return key_id, int(gen)


@dataclass(frozen=True, slots=True)
class KeyState:
    epoch: int = 0
    kek: str | None = None  # None: a store from before this record existed
    generation: int = 1
    rekey: bool = False  # bodies are being re-encrypted to `generation`
    transition_to: str | None = None  # a KEK rotation to this KEK id is under way

    def to_bytes(self) -> bytes:
        data = {
            "v": 1,
            "epoch": self.epoch,
            "kek": self.kek,
            "generation": self.generation,
            "rekey": self.rekey,
            "transition_to": self.transition_to,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> KeyState:
        if raw is None:
            return cls()
        try:
            data: Any = json.loads(raw)
            state = cls(
                epoch=data["epoch"],
                kek=data["kek"],
                generation=data["generation"],
                rekey=data["rekey"],
                transition_to=data["transition_to"],
            )
            ok = data["v"] == 1 and isinstance(state.epoch, int) and state.generation >= 1
            ok = ok and isinstance(state.rekey, bool)
            ok = ok and all(isinstance(x, str | None) for x in (state.kek, state.transition_to))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise KeyMaterialError("the key ring's state record is damaged")
        return state

    def bumped(self, **changes: Any) -> KeyState:
        """The next state: every change bumps the epoch, which is what tells other
        processes to drop their cached keys."""
        return replace(self, epoch=self.epoch + 1, **changes)


@dataclass(frozen=True, slots=True)
class Transition:
    """A KEK rotation under way: the new KEK, wrapped by the old one."""

    from_kek: str
    to_kek: str
    kind: str  # the transfer kind of the new KEK (see kek.register_kek_loader)
    params: str  # the new KEK's KekParams as JSON: not secret (salt, costs)
    check: bytes  # the new KEK's key check
    sealed: bytes  # the new KEK's transfer state, wrapped by the old KEK

    def aad(self) -> bytes:
        # Binding both ids and the kind: the record cannot be replayed for another pair
        # of KEKs, or reinterpreted as another kind of KEK.
        parts = (self.from_kek, self.to_kek, self.kind)
        return _TRANSITION_DOMAIN + b"\x00".join(p.encode() for p in parts)

    def to_bytes(self) -> bytes:
        data = {
            "v": 1,
            "from": self.from_kek,
            "to": self.to_kek,
            "kind": self.kind,
            "params": self.params,
            "check": base64.b64encode(self.check).decode(),
            "sealed": base64.b64encode(self.sealed).decode(),
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Transition:
        try:
            data: Any = json.loads(raw)
            if data["v"] != 1:
                raise ValueError
            found = cls(
                from_kek=str(data["from"]),
                to_kek=str(data["to"]),
                kind=str(data["kind"]),
                params=str(data["params"]),
                check=base64.b64decode(data["check"], validate=True),
                sealed=base64.b64decode(data["sealed"], validate=True),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise KeyMaterialError("the key rotation record is damaged") from None
        return found

    @property
    def kek_params(self) -> KekParams:
        return KekParams.from_json(self.params)


def seal_transition(old: Kek, new: Kek, params: KekParams, check: bytes) -> Transition:
    kind, state = kek_transfer_state(new)
    draft = Transition(old.key_id, new.key_id, kind, params.to_json(), check, b"")
    return replace(draft, sealed=old.wrap(state, draft.aad()))


def open_transition(old: Kek, transition: Transition) -> Kek:
    """The new KEK of a transition record, opened with the old KEK."""
    state = old.unwrap(transition.sealed, transition.aad())
    new = kek_from_transfer(transition.kind, state)
    if new.key_id != transition.to_kek:
        raise DecryptionError()
    return new


def wrap_aad(row_id: str) -> bytes:
    # Binding the row id (key id and generation) means a wrapped key copied to another row
    # does not unwrap: without it, an attacker with write access to the key table could make
    # patient B's records decrypt under patient A's key id, or resurrect a shredded id.
    if row_id == INDEX_KEY_ID:
        return _INDEX_WRAP_AAD
    return _DATA_KEY_WRAP_DOMAIN + row_id.encode("ascii")


def rewrap_rows(tx: KeyTx, rows: list[str], old: list[Kek], new_kek: Kek) -> int:
    """Rewrap these key rows under `new_kek` in the caller's key transaction (KEK
    rotation); returns how many were rewrapped."""
    count = 0
    for row in rows:
        blob = tx.get(row)  # read again under the lock: a shred may have happened since
        if blob is None or blob == TOMBSTONE:
            continue
        aad = wrap_aad(row)
        try:
            new_kek.unwrap(blob, aad)
            continue  # already rewrapped (an interrupted run, or created after the switch)
        except DecryptionError:
            pass
        key: bytes | None = None
        for kek in old:
            try:
                key = kek.unwrap(blob, aad)
                break
            except DecryptionError:
                continue
        if key is None:
            raise DecryptionError()  # wrapped by neither KEK: not ours, stop the rotation
        tx.put(row, new_kek.wrap(key, aad))
        count += 1
    return count
