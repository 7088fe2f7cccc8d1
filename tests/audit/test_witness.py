"""A witness holds earlier checkpoints and catches rollback, forks and rewritten history,
even when the intruder re-signs with the stolen key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phivault.audit.checkpoint import CheckpointSigner, parse_checkpoint, tree_root
from phivault.audit.witness import StoreSource, load_state, witness
from phivault.crypto import primitives
from phivault.errors import ConfigError, WitnessAlarm
from phivault.vault import Vault
from tests.audit.support import edit_entry, rebuild_tree, resign, sql, workload


def public_key(vault: Vault) -> bytes:
    assert vault.audit.signer is not None
    return vault.audit.signer.public_key


def watch(vault: Vault, state: Path, key: bytes | None = None) -> str:
    return witness(StoreSource(vault.store, key), state, key).status


@pytest.fixture
def witnessed(vault: Vault, tmp_path: Path) -> tuple[Vault, Path]:
    workload(vault)
    vault.audit.checkpoint()
    state = tmp_path / "witness.json"
    assert watch(vault, state, public_key(vault)) == "first"
    return vault, state


def test_consistent_growth_is_accepted(witnessed: tuple[Vault, Path]) -> None:
    vault, state = witnessed
    assert watch(vault, state) == "unchanged"
    workload(vault, patients=2)
    vault.audit.checkpoint()
    assert watch(vault, state) == "extended"
    assert watch(vault, state) == "unchanged"
    saved = json.loads(state.read_text())
    assert len(saved["seen"]) == 2
    assert (state.stat().st_mode & 0o777) == 0o600


def test_rollback_is_caught(witnessed: tuple[Vault, Path]) -> None:
    vault, state = witnessed
    size = vault.store.audit_size()
    sql(vault, "DELETE FROM audit_entries WHERE idx >= ?", size - 2)
    rebuild_tree(vault)
    resign(vault)  # a valid signature over the shorter log
    with pytest.raises(WitnessAlarm, match="rollback"):
        watch(vault, state)


def test_fork_at_the_same_size_is_caught(witnessed: tuple[Vault, Path]) -> None:
    vault, state = witnessed
    edit_entry(vault, 3, actor="nobody")
    rebuild_tree(vault)
    resign(vault)
    with pytest.raises(WitnessAlarm, match="fork"):
        watch(vault, state)


def test_rewritten_history_resigned_with_the_stolen_key_is_caught(
    witnessed: tuple[Vault, Path],
) -> None:
    vault, state = witnessed
    before = load_state(state).latest
    assert before is not None
    # The intruder edits an entry the witness already vouched for, lets the log grow, then
    # recomputes every node and signs the new head with the real (stolen) key.
    edit_entry(vault, 2, actor="nobody")
    workload(vault, 1)
    rebuild_tree(vault)
    blob = resign(vault)
    assert parse_checkpoint(blob)[0].size > before.size
    with pytest.raises(WitnessAlarm, match="rewritten"):
        watch(vault, state)
    # The state is not advanced: the alarm repeats until someone looks.
    assert load_state(state).latest == before
    with pytest.raises(WitnessAlarm):
        watch(vault, state)


def test_checkpoint_signed_by_another_key_is_caught(witnessed: tuple[Vault, Path]) -> None:
    vault, state = witnessed
    workload(vault, 1)
    other = CheckpointSigner(primitives.generate_signing_key())
    size = vault.store.audit_size()
    forged = other.sign(size, tree_root(vault.store.audit_nodes, size)).blob
    # Replacing one the appender may have signed at this size meanwhile (once a second).
    sql(
        vault,
        "INSERT INTO audit_checkpoints (size, checkpoint) VALUES (?, ?) "
        "ON CONFLICT (size) DO UPDATE SET checkpoint = excluded.checkpoint",
        size,
        forged,
    )
    with pytest.raises(WitnessAlarm, match="pinned key"):
        watch(vault, state)


def test_first_run_needs_a_key_to_pin(vault: Vault, tmp_path: Path) -> None:
    workload(vault, 1)
    vault.audit.checkpoint()
    with pytest.raises(ConfigError):
        watch(vault, tmp_path / "w.json")
    with pytest.raises(WitnessAlarm, match="pinned"):
        state = tmp_path / "w2.json"
        watch(vault, state, public_key(vault))
        watch(vault, state, b"\x01" * 32)
