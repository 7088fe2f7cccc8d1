"""`phivault backup ...` end to end through the command line."""

from __future__ import annotations

from pathlib import Path

from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.vault import init_data_dir
from tests.backup.support import clinic, load, open_with
from tests.keys_support import run_cli


def test_backup_commands(tmp_path: Path) -> None:
    kek = tmp_path / "kek.key"
    create_key_file(kek)
    data = tmp_path / "data"
    init_data_dir(data, KeyFileKeySource(kek))
    vault = open_with(data, kek)
    load(vault, clinic(3))
    vault.close()
    common = ["--data", str(data), "--key-file", str(kek)]
    repo, key = tmp_path / "repo", tmp_path / "offline" / "backup.key"
    key.parent.mkdir()

    inside = run_cli("backup", "init", *common, "--repo", str(repo), "--key-out", str(data / "k"))
    assert inside.exit_code != 0 and "must not be kept in the data directory" in inside.output

    out = run_cli(
        "backup", "init", *common, "--repo", str(repo), "--key-out", str(key), "--chunk-kib", "64"
    )
    assert out.exit_code == 0, out.output
    assert str(key) in out.output and "offline" in out.output
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    assert "private_key" not in (data / "backup.json").read_text()

    for _ in range(2):
        out = run_cli("backup", "create", *common, "--quiet")
        assert out.exit_code == 0, out.output and "snapshot" in out.output
    listed = run_cli("backup", "list", "--data", str(data))
    assert listed.exit_code == 0 and len(listed.output.strip().splitlines()) == 2
    first, second = listed.output.strip().splitlines()
    assert "  full  " in first and "incremental (1 since full)" in second
    out = run_cli("backup", "create", *common, "--quiet", "--full")
    assert out.exit_code == 0 and "(full)" in out.output, out.output

    assert run_cli("backup", "verify", "--data", str(data)).exit_code == 0
    full = run_cli("backup", "verify", "--data", str(data), "--full", "--backup-key", str(key))
    assert full.exit_code == 0 and "OK" in full.output

    # After a disaster only the repository and the key file are left.
    restored = tmp_path / "restored"
    out = run_cli(
        "backup", "restore", "--repo", str(repo), "--backup-key", str(key), "--to", str(restored)
    )
    assert out.exit_code == 0, out.output
    open_with(restored, kek).close()
    again = run_cli(
        "backup", "restore", "--repo", str(repo), "--backup-key", str(key), "--to", str(restored)
    )
    assert again.exit_code != 0  # never writes over anything

    out = run_cli(
        "backup", "drill", "--repo", str(repo), "--backup-key", str(key), "--key-file", str(kek)
    )
    assert out.exit_code == 0, out.output
    assert "DRILL OK" in out.output and "recovery time" in out.output

    refused = run_cli("backup", "prune", "--data", str(data), "--keep-last", "1")
    assert refused.exit_code != 0 and "--backup-key" in refused.output
    out = run_cli(
        "backup", "prune", "--data", str(data), "--backup-key", str(key), "--keep-last", "1"
    )
    assert out.exit_code == 0, out.output and "forgot 1" in out.output
