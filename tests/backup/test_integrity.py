"""The start-up integrity check: a damaged data directory is refused, pointing at restore."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from phivault.backup.integrity import check_files, fingerprint, sqlite_path
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.errors import DataDirDamaged
from phivault.vault import init_data_dir
from tests.backup.support import clinic, load, open_with


@pytest.fixture
def clinic_dir(tmp_path: Path) -> tuple[Path, Path]:
    kek = tmp_path / "kek.key"
    create_key_file(kek)
    data = tmp_path / "data"
    init_data_dir(data, KeyFileKeySource(kek))
    vault = open_with(data, kek)
    load(vault, clinic(3))
    vault.audit.checkpoint()
    vault.close()
    return data, kek


def _refused(data: Path, kek: Path) -> str:
    with pytest.raises(DataDirDamaged) as raised:
        open_with(data, kek)
    assert "phivault backup restore" in raised.value.message
    return raised.value.message


def test_a_healthy_directory_opens(clinic_dir: tuple[Path, Path]) -> None:
    open_with(*clinic_dir).close()


def test_damaged_keys_file(clinic_dir: tuple[Path, Path]) -> None:
    data, kek = clinic_dir
    (data / "keys.json").write_bytes(b"\x8f\x00garbage")
    assert "keys.json" in _refused(data, kek)


def test_damaged_settings_file(clinic_dir: tuple[Path, Path]) -> None:
    data, kek = clinic_dir
    (data / "phivault.toml").write_bytes(b"[server\n\xff")
    assert "phivault.toml" in _refused(data, kek)


def test_not_a_database(clinic_dir: tuple[Path, Path]) -> None:
    data, kek = clinic_dir
    (data / "phivault.db").write_bytes(b"\x00" * 8192)
    _refused(data, kek)


def corrupt_page(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page * 3, page * 3 + 2000):  # a b-tree page, header intact
        raw[offset] = 0xA5
    path.write_bytes(bytes(raw))


def test_a_corrupted_page_fails_quick_check(clinic_dir: tuple[Path, Path]) -> None:
    data, kek = clinic_dir
    corrupt_page(data / "phivault.db")
    _refused(data, kek)


def test_audit_log_inconsistent_at_its_tip(clinic_dir: tuple[Path, Path]) -> None:
    data, kek = clinic_dir
    conn = sqlite3.connect(data / "phivault.db")
    conn.execute(
        "UPDATE audit_entries SET entry = X'00' WHERE idx = (SELECT MAX(idx) FROM audit_entries)"
    )
    conn.commit()
    conn.close()
    assert "audit" in _refused(data, kek)


def test_audit_log_truncated_below_its_checkpoint(clinic_dir: tuple[Path, Path]) -> None:
    data, kek = clinic_dir
    conn = sqlite3.connect(data / "phivault.db")
    conn.execute("DELETE FROM audit_entries WHERE idx = (SELECT MAX(idx) FROM audit_entries)")
    conn.commit()
    conn.close()
    _refused(data, kek)


def test_a_fingerprint_spares_workers_the_second_full_check(
    clinic_dir: tuple[Path, Path],
) -> None:
    """`serve` checks the file fully, then its workers open it: while the file is as it
    was checked, they skip PRAGMA quick_check; any change to it brings the check back."""
    data, _ = clinic_dir
    path = sqlite_path(data)
    assert path == data / "phivault.db"
    checked = fingerprint(path)
    corrupt_page(path)  # a damaged page that keeps the file's size
    assert fingerprint(path) != checked  # the write moved its mtime
    with pytest.raises(DataDirDamaged):
        check_files(data, checked=checked)
    os.utime(path, ns=(path.stat().st_atime_ns, int(checked.split("|")[0].split(":")[3])))
    assert fingerprint(path) == checked  # as it was when checked (a test-only forgery)
    check_files(data, checked=checked)  # trusted: no full read
    with pytest.raises(DataDirDamaged):
        check_files(data)  # without the fingerprint, the full check finds the damage
