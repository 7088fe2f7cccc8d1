"""Fixtures of the backup tests: a SQLite clinic with a local repository beside it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from phivault.backup.keys import BackupPrivateKey
from phivault.backup.operations import backup_now
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.types import Resource
from phivault.vault import Vault, init_data_dir
from tests.backup.support import clinic, load, open_with, setup_repo


@dataclass
class Clinic:
    data_dir: Path
    kek_file: Path
    repo_dir: Path
    backup_key_file: Path
    backup_key: BackupPrivateKey
    vault: Vault
    resources: list[Resource]


@pytest.fixture(scope="module")
def resources() -> list[Resource]:
    return clinic()


@pytest.fixture
def backed_up(tmp_path: Path, resources: list[Resource]) -> Iterator[Clinic]:
    """A SQLite clinic with one snapshot in a local repository."""
    kek_file = tmp_path / "kek.key"
    create_key_file(kek_file)
    data_dir = tmp_path / "data"
    init_data_dir(data_dir, KeyFileKeySource(kek_file))
    vault = open_with(data_dir, kek_file)
    load(vault, resources)
    key = setup_repo(vault, str(tmp_path / "repo"), tmp_path / "backup.key")
    backup_now(vault)
    try:
        yield Clinic(
            data_dir, kek_file, tmp_path / "repo", tmp_path / "backup.key", key, vault, resources
        )
    finally:
        vault.close()
