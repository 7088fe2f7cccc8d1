"""KEK rotation with several hosts on one database: the host that rotates publishes its
new keys.json in the database; another host takes it with `phivault keys sync` and the
new key (a wrong key changes nothing). Both backends (SQLite: a second data directory
pointing at the first one's database file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phivault.backup.restore import set_db_url
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.errors import KeyMaterialError
from phivault.store.factory import SQLITE_FILE
from phivault.vault import open_vault
from tests.cli.test_keys_cmd import keys_cmd


def test_another_host_syncs_keys_json_after_a_rotation(
    data_dir: Path, key_file: Path, db_url: str | None, tmp_path: Path
) -> None:
    other = tmp_path / "host-b"
    other.mkdir()
    for name in ("phivault.toml", "keys.json"):
        shutil.copy(data_dir / name, other / name)
    set_db_url(other / "phivault.toml", db_url or f"sqlite:///{data_dir / SQLITE_FILE}")
    open_vault(other, KeyFileKeySource(key_file)).close()  # host B serves the same data

    new, wrong = tmp_path / "new.key", tmp_path / "wrong.key"
    create_key_file(new)
    create_key_file(wrong)
    out = keys_cmd(
        data_dir, "rotate", "--new-key-file", str(new), "--grace", "0", key_file=key_file
    )
    assert out.exit_code == 0, out.output  # type: ignore[attr-defined]
    with pytest.raises(KeyMaterialError):
        open_vault(other, KeyFileKeySource(new))  # B's keys.json still names the old KEK

    before = (other / "keys.json").read_bytes()
    refused = keys_cmd(other, "sync", key_file=wrong)
    assert refused.exit_code != 0 and (other / "keys.json").read_bytes() == before  # type: ignore[attr-defined]
    out = keys_cmd(other, "sync", key_file=new)
    assert out.exit_code == 0, out.output  # type: ignore[attr-defined]
    assert (other / "keys.json").read_bytes() == (data_dir / "keys.json").read_bytes()
    open_vault(other, KeyFileKeySource(new)).close()
