"""Backups hold ciphertext only: no plaintext of a patient, and after a crypto-shred no
wrapped key of that patient in any later snapshot."""

from __future__ import annotations

from pathlib import Path

from phivault.backup.operations import backup_now
from phivault.backup.restore import restore_snapshot
from phivault.crypto.keyring import patient_key_id
from phivault.service.keys import shred_patient
from tests.backup.conftest import Clinic
from tests.backup.support import CTX, repository


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_backups_never_hold_plaintext_and_forget_shredded_keys(
    backed_up: Clinic, tmp_path: Path
) -> None:
    vault = backed_up.vault
    patient = next(r for r in backed_up.resources if r["resourceType"] == "Patient")
    family = str(patient["name"][0]["family"]).encode()
    key_id = patient_key_id(str(patient["id"]))
    wrapped = vault.store.key_get(key_id)
    assert wrapped is not None

    repo = repository(vault)
    restore_snapshot(repo, backed_up.backup_key, tmp_path / "before")
    before = _all_bytes(tmp_path / "before")
    assert family not in before
    assert wrapped in before  # the wrapped (never the clear) key is in the copy
    assert family not in _all_bytes(backed_up.repo_dir)

    shred_patient(
        vault.store,
        vault.service.codec.keyring,
        vault.audit,
        CTX,  # type: ignore[attr-defined]
        str(patient["id"]),
    )
    backup_now(vault)
    restore_snapshot(repo, backed_up.backup_key, tmp_path / "after")
    assert wrapped not in _all_bytes(tmp_path / "after")
