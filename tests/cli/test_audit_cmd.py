"""`phivault audit ...`: verify, checkpoint, public-key, witness, leaves, proof, consistency."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from phivault.audit.checkpoint import verify_checkpoint
from phivault.audit.merkle import leaf_hash, verify_tree
from phivault.audit.proofs import verify_consistency, verify_inclusion
from phivault.crypto.kek import KeyFileKeySource
from phivault.errors import AuditVerifyFailed, WitnessAlarm
from phivault.vault import Vault, open_vault
from tests.audit.support import edit_entry, rebuild_tree, resign, workload
from tests.cli.audit_support import cli


@pytest.fixture
def logged(data_dir: Path, key_file: Path) -> Path:
    vault = open_vault(data_dir, KeyFileKeySource(key_file))
    try:
        workload(vault)
    finally:
        vault.close()  # signs a last checkpoint on the way out
    return data_dir


def audit(data_dir: Path, *args: str, key_file: Path | None = None) -> tuple[int, str]:
    key = ["--key-file", str(key_file)] if key_file else []
    result = cli("audit", args[0], "--data", str(data_dir), *key, *args[1:])
    return result.exit_code, result.output


def test_verify_passes_and_prints_a_summary(logged: Path, key_file: Path) -> None:
    # The appender signs a checkpoint at most once a second, so a slow machine may have
    # signed more than the one made at close: the summary must count what is stored.
    vault = open_vault(logged, KeyFileKeySource(key_file))
    try:
        stored = len(vault.store.audit_all_checkpoints())
    finally:
        vault.close()
    assert stored >= 1
    code, out = audit(logged, "verify", key_file=key_file)
    assert code == 0, out
    assert "OK (" in out and "entries: 11" in out and f"checkpoints: {stored} " in out


def test_verify_names_the_first_bad_entry(logged: Path, key_file: Path) -> None:
    vault = open_vault(logged, KeyFileKeySource(key_file))
    try:
        edit_entry(vault, 6, actor="nobody")
        edit_entry(vault, 9, outcome="8")
    finally:
        vault.close()
    code, out = audit(logged, "verify", key_file=key_file)
    assert code == AuditVerifyFailed.exit_code == 65
    assert "FAILED, first bad entry: 6" in out
    assert "entry 9" in out


def test_checkpoint_and_public_key_then_verify_without_the_key(
    logged: Path, key_file: Path
) -> None:
    code, out = audit(logged, "public-key", key_file=key_file)
    assert code == 0
    key = base64.b64decode(json.loads(out)["public_key"])
    code, out = audit(logged, "checkpoint", key_file=key_file)
    assert code == 0
    checkpoint = verify_checkpoint(key, out.strip().encode())
    assert checkpoint.size == 11
    # A pinned key replaces the key file: an auditor can verify without the KEK.
    code, out = audit(logged, "verify", "--public-key", key.hex())
    assert code == 0, out
    code, _ = audit(logged, "verify")
    assert code == 77  # no key at all: refused, never a default


def test_leaves_and_proofs_verify_against_the_checkpoint(logged: Path, key_file: Path) -> None:
    _, out = audit(logged, "checkpoint", key_file=key_file)
    fields = json.loads(out)
    size, root = fields["size"], base64.b64decode(fields["root"])
    _, out = audit(logged, "leaves", "--from", "0", "--to", str(size))
    leaves = [base64.b64decode(line) for line in out.splitlines()]
    assert len(leaves) == size
    _, out = audit(logged, "proof", "--index", "4", "--size", str(size))
    proof = json.loads(out)
    path = [base64.b64decode(p) for p in proof["proof"]]
    verify_inclusion(leaf_hash(leaves[4]), 4, size, path, root)
    _, out = audit(logged, "consistency", "--first", "8", "--second", str(size))
    consistency = [base64.b64decode(p) for p in json.loads(out)["proof"]]
    root8 = verify_tree(iter([leaf_hash(x) for x in leaves[:8]]), 8)
    verify_consistency(8, size, consistency, root8, root)
    code, out = audit(logged, "leaves", "--from", "0", "--to", str(size + 5))
    assert code == 2 and "not reached" in out


def test_witness_catches_a_resigned_rewrite(logged: Path, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    code, out = audit(logged, "witness", "--state", str(state), key_file=key_file)
    assert code == 0 and "pinned" in out
    code, out = audit(logged, "witness", "--state", str(state))  # no key needed any more
    assert code == 0 and "unchanged" in out

    vault: Vault = open_vault(logged, KeyFileKeySource(key_file))
    try:
        workload(vault)
        vault.audit.checkpoint()
    finally:
        vault.close()
    code, out = audit(logged, "witness", "--state", str(state))
    assert code == 0 and "consistent: extended from 11" in out

    vault = open_vault(logged, KeyFileKeySource(key_file))
    try:
        edit_entry(vault, 1, actor="nobody")
        rebuild_tree(vault)
        resign(vault)  # with the stolen key
    finally:
        vault.close()
    code, out = audit(logged, "verify", key_file=key_file)
    assert code == 0  # locally consistent ...
    code, out = audit(logged, "witness", "--state", str(state))
    assert code == WitnessAlarm.exit_code  # ... but not to a witness
    assert "AUDIT LOG ALARM" in out and "fork" in out  # same size, another root
