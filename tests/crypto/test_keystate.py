"""The key ring's shared records: row ids of key generations, the state record, and the
record that hands a new KEK to running servers."""

from __future__ import annotations

import pytest

from phivault.crypto.kek import KekParams, LocalKek, make_key_check
from phivault.crypto.keystate import (
    KeyState,
    Transition,
    key_row_id,
    open_transition,
    parse_row_id,
    seal_transition,
)
from phivault.errors import ConfigError, DecryptionError, KeyMaterialError

OLD, NEW = LocalKek(b"\x01" * 32), LocalKek(b"\x02" * 32)


def test_row_ids_of_generations() -> None:
    assert key_row_id("patient:a", 1) == "patient:a"  # generation 1 keeps the bare id
    assert key_row_id("patient:a", 7) == "patient:a#7"
    assert parse_row_id("patient:a#7") == ("patient:a", 7)
    assert parse_row_id("system") == ("system", 1)
    for not_a_data_key in ["index", "keyring:state", "patient:a#1", "patient:a#07", "x#2"]:
        assert parse_row_id(not_a_data_key) is None
    with pytest.raises(ValueError):
        key_row_id("patient:a", 0)


def test_state_round_trip_and_damage() -> None:
    state = KeyState(kek="local:ab", generation=3, rekey=True, transition_to="local:cd")
    assert KeyState.from_bytes(state.to_bytes()) == state
    assert KeyState.from_bytes(None) == KeyState()
    assert state.bumped(rekey=False).epoch == state.epoch + 1
    for damaged in [
        b"{",
        b"{}",
        b'{"v":2}',
        state.to_bytes().replace(b'"generation":3', b'"generation":0'),
    ]:
        with pytest.raises(KeyMaterialError):
            KeyState.from_bytes(damaged)


def test_transition_hands_the_new_kek_to_old_kek_holders_only() -> None:
    params = KekParams("key-file", {"format": 1})
    record = seal_transition(OLD, NEW, params, make_key_check(NEW))
    again = Transition.from_bytes(record.to_bytes())
    assert again == record
    assert b"\x02" * 32 not in record.to_bytes()  # the new KEK is never in clear
    assert open_transition(OLD, again).key_id == NEW.key_id
    with pytest.raises(DecryptionError):
        open_transition(LocalKek(b"\x03" * 32), again)
    # Bound to its pair of KEKs: relabelled for another target, it does not open.
    with pytest.raises(DecryptionError):
        open_transition(
            OLD, Transition(OLD.key_id, "local:other", "local", "{}", b"", record.sealed)
        )
    with pytest.raises(KeyMaterialError):
        Transition.from_bytes(b"not json")


def test_a_kek_that_cannot_be_handed_over_is_refused() -> None:
    class RemoteKek:
        key_id = "remote:1"

        def wrap(self, key: bytes, aad: bytes) -> bytes:
            return key

        def unwrap(self, blob: bytes, aad: bytes) -> bytes:
            return blob

    with pytest.raises(ConfigError, match="stop the servers"):
        seal_transition(OLD, RemoteKek(), KekParams("remote"), b"")
