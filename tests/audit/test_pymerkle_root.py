"""An independent RFC 9162 implementation (pymerkle) gets the signed checkpoint's root
from the log's raw leaves, after a demo clinic load, read straight from the database and
through `phivault audit leaves`."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from phivault.audit.checkpoint import verify_checkpoint
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.vault import Vault
from tests.audit.support import CTX, sql, workload
from tests.cli.audit_support import cli

pymerkle = pytest.importorskip("pymerkle")


def pymerkle_root(leaves: list[bytes], size: int) -> bytes:
    tree = pymerkle.InmemoryTree(algorithm="sha256", disable_security=False)
    assert tree.leaf_prefix == b"\x00" and tree.node_prefix == b"\x01"  # RFC 9162 mode
    tree.append_entries(leaves)
    root: bytes = tree.get_root(size)
    return root


def test_pymerkle_root_equals_the_signed_checkpoint(
    vault: Vault, data_dir: Path, key_file: Path
) -> None:
    for stats in vault.service.import_resources(
        CTX, generate_clinic(ClinicSpec(patients=4, seed=3)), batch_size=50
    ):
        assert stats.failed == 0
    workload(vault)
    blob = vault.audit.checkpoint()
    assert blob is not None and vault.audit.signer is not None
    checkpoint = verify_checkpoint(vault.audit.signer.public_key, blob)
    assert checkpoint.size == vault.store.audit_size() > 50

    rows = sql(vault, "SELECT entry FROM audit_entries ORDER BY idx")
    leaves = [bytes(row[0]) for row in rows]
    assert pymerkle_root(leaves, checkpoint.size) == checkpoint.root

    # The same through the CLI's raw leaves (base64, one a line), as an outsider gets them.
    result = cli(
        "audit", "leaves", "--data", str(data_dir), "--from", "0", "--to", str(checkpoint.size)
    )
    assert result.exit_code == 0, result.output
    printed = [base64.b64decode(line) for line in result.output.splitlines()]
    assert printed == leaves[: checkpoint.size]
    assert pymerkle_root(printed, checkpoint.size) == checkpoint.root
