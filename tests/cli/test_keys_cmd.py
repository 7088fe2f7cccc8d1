"""`phivault keys rotate | shred | status`, and start-up with a wrong key, through the CLI."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Imported before any test patches rotation.finish_pending: the command binds the real one.
import phivault.cli.keys_cmd  # noqa: F401
from phivault.crypto.kek import KeyFileKeySource, PassphraseKeySource, create_key_file
from phivault.crypto.keystate import TRANSITION_ID
from phivault.errors import KeyMaterialError, KeyShredded, StoreError
from phivault.vault import init_data_dir, open_vault
from tests.keys_support import CTX, clinic, load_clinic, open_with, patients_of, run_cli

NEW_PASSPHRASE = "correct horse battery staple, rotated"


@pytest.fixture
def loaded(data_dir: Path, key_file: Path) -> list[str]:
    vault = open_with(data_dir, key_file)
    try:
        resources = clinic(3)
        load_clinic(vault, resources)
    finally:
        vault.close()
    return [p["id"] for p in patients_of(resources)]


def keys_cmd(data_dir: Path, *args: str, key_file: Path | None = None, **env: str) -> object:
    key = ["--key-file", str(key_file)] if key_file else []
    return run_cli("keys", args[0], "--data", str(data_dir), *key, *args[1:], env=dict(env))


def reads_all(vault_source: object, data_dir: Path, ids: list[str]) -> None:
    vault = open_vault(data_dir, vault_source)  # type: ignore[arg-type]
    try:
        for rid in ids:
            assert vault.service.read(CTX, "Patient", rid).body
    finally:
        vault.close()


def test_rotate_to_a_passphrase_and_back_to_a_key_file(
    data_dir: Path, key_file: Path, loaded: list[str], tmp_path: Path
) -> None:
    out = keys_cmd(
        data_dir, "rotate", "--grace", "0", key_file=key_file,
        PHIVAULT_NEW_PASSPHRASE=NEW_PASSPHRASE,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "rotated the key-encryption key" in out.output
    assert json.loads((data_dir / "keys.json").read_text())["kek"]["source"] == "passphrase"
    with pytest.raises(KeyMaterialError):
        open_with(data_dir, key_file)
    reads_all(PassphraseKeySource(NEW_PASSPHRASE), data_dir, loaded)

    back = tmp_path / "keys" / "back.key"
    out = keys_cmd(
        data_dir, "rotate", "--generate-new-key-file", str(back), "--grace", "0",
        PHIVAULT_PASSPHRASE=NEW_PASSPHRASE,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert stat.S_IMODE(back.stat().st_mode) == 0o600
    reads_all(KeyFileKeySource(back), data_dir, loaded)
    status = keys_cmd(data_dir, "status", key_file=back)
    assert "data-key generation: 1" in status.output and "under way" not in status.output


def test_rotate_usage_and_key_errors(
    data_dir: Path, key_file: Path, loaded: list[str], tmp_path: Path
) -> None:
    out = keys_cmd(data_dir, "rotate", key_file=key_file)
    assert out.exit_code == 2 and "give the new key" in out.output
    new = tmp_path / "new.key"
    create_key_file(new)
    out = keys_cmd(
        data_dir, "rotate", "--new-key-file", str(new), key_file=key_file,
        PHIVAULT_NEW_PASSPHRASE=NEW_PASSPHRASE,
    )  # fmt: skip
    assert out.exit_code == 2 and "give one new key" in out.output
    out = keys_cmd(data_dir, "rotate", "--new-key-file", str(key_file), key_file=key_file)
    assert out.exit_code == 78 and "the key in use" in out.output
    # A wrong current key stops everything: no new key file is even created.
    generated = tmp_path / "never.key"
    out = keys_cmd(data_dir, "rotate", "--generate-new-key-file", str(generated), key_file=new)
    assert out.exit_code == 77 and not generated.exists()
    out = keys_cmd(data_dir, "rotate", "--generate-new-key-file", str(new), key_file=key_file)
    assert out.exit_code == 78 and "refusing to overwrite" in out.output
    reads_all(KeyFileKeySource(key_file), data_dir, loaded)


def test_an_interrupted_rotation_resumes_with_the_same_key_only(
    data_dir: Path,
    key_file: Path,
    loaded: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new, other = tmp_path / "new.key", tmp_path / "other.key"
    create_key_file(new)
    create_key_file(other)

    def power_cut(*_args: object) -> None:
        raise StoreError()

    with monkeypatch.context() as patch:
        patch.setattr("phivault.cli.keys_cmd.commit_kek", power_cut)
        out = keys_cmd(
            data_dir, "rotate", "--new-key-file", str(new), "--grace", "0", key_file=key_file
        )
    assert out.exit_code == 75
    assert "under way" in keys_cmd(data_dir, "status", key_file=key_file).output
    reads_all(KeyFileKeySource(key_file), data_dir, loaded)  # servers keep working meanwhile
    out = keys_cmd(data_dir, "rotate", "--new-key-file", str(other), key_file=key_file)
    assert out.exit_code == 78 and "another key" in out.output
    out = keys_cmd(
        data_dir, "rotate", "--new-key-file", str(new), "--grace", "0", key_file=key_file
    )
    assert out.exit_code == 0, out.output
    reads_all(KeyFileKeySource(new), data_dir, loaded)
    assert "under way" not in keys_cmd(data_dir, "status", key_file=new).output


def test_a_rotation_cut_after_keys_json_is_finished_with_the_new_key(
    data_dir: Path,
    key_file: Path,
    loaded: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = tmp_path / "new.key"
    create_key_file(new)

    def power_cut(*_args: object) -> None:
        raise StoreError()

    with monkeypatch.context() as patch:
        patch.setattr("phivault.crypto.rotation.finish_pending", power_cut)
        out = keys_cmd(
            data_dir, "rotate", "--new-key-file", str(new), "--grace", "0", key_file=key_file
        )
    assert out.exit_code == 75
    with pytest.raises(KeyMaterialError):
        open_with(data_dir, key_file)  # keys.json already names the new key
    vault = open_with(data_dir, new)
    try:
        assert vault.store.key_get(TRANSITION_ID) is not None  # the hand-over record lingers
    finally:
        vault.close()
    out = keys_cmd(data_dir, "rotate", key_file=new)
    assert out.exit_code == 0 and "finished the interrupted" in out.output
    vault = open_with(data_dir, new)
    try:
        assert vault.store.key_get(TRANSITION_ID) is None
    finally:
        vault.close()
    reads_all(KeyFileKeySource(new), data_dir, loaded)


def test_shred_command(data_dir: Path, key_file: Path, loaded: list[str]) -> None:
    victim, other = loaded[0], loaded[1]
    out = keys_cmd(data_dir, "shred", "--patient", "nobody-here", "--yes", key_file=key_file)
    assert out.exit_code == 3 and "no patient compartment" in out.output
    out = run_cli(
        "keys",
        "shred",
        "--data",
        str(data_dir),
        "--key-file",
        str(key_file),
        "--patient",
        victim,
    )  # fmt: skip  (no --yes, and click's runner answers nothing: aborted)
    assert out.exit_code == 1
    reads_all(KeyFileKeySource(key_file), data_dir, [victim])
    out = keys_cmd(data_dir, "shred", "--patient", victim, "--yes", key_file=key_file)
    assert out.exit_code == 0 and "shredded" in out.output
    vault = open_with(data_dir, key_file)
    try:
        with pytest.raises(KeyShredded):
            vault.service.read(CTX, "Patient", victim)
        assert vault.service.read(CTX, "Patient", other).body
    finally:
        vault.close()


def fingerprint(data_dir: Path, db_url: str | None) -> dict[str, str]:
    found = {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
    }
    if db_url is not None:
        url = urlsplit(db_url)
        schema = dict(q.split("=", 1) for q in url.query.split("&"))["schema"]
        dump = subprocess.run(
            ["pg_dump", "-h", url.hostname or "127.0.0.1", "-U", url.username or "postgres",
             "-n", schema, url.path.lstrip("/")],
            check=True, capture_output=True, timeout=120,
        ).stdout  # fmt: skip
        # pg_dump's \restrict lines carry a random token per run; the data is the rest.
        lines = [
            ln for ln in dump.splitlines() if not ln.startswith((b"\\restrict", b"\\unrestrict"))
        ]
        found["pg_dump"] = hashlib.sha256(b"\n".join(lines)).hexdigest()
    return found


def test_a_wrong_key_refuses_to_serve_and_changes_nothing(
    data_dir: Path, loaded: list[str], tmp_path: Path, db_url: str | None
) -> None:
    wrong = tmp_path / "wrong.key"
    create_key_file(wrong)
    before = fingerprint(data_dir, db_url)
    out = run_cli("serve", "--data", str(data_dir), "--key-file", str(wrong))
    assert out.exit_code == 77
    assert "the passphrase or key file does not open this data directory" in out.output
    out = run_cli("serve", "--data", str(data_dir), env={"PHIVAULT_PASSPHRASE": "guess"})
    assert out.exit_code == 77 and "key source" in out.output
    out = keys_cmd(data_dir, "rotate", "--data-keys", key_file=wrong)
    assert out.exit_code == 77
    assert fingerprint(data_dir, db_url) == before


def test_serve_refuses_a_plaintext_directory(tmp_path: Path, key_file: Path) -> None:
    plain = tmp_path / "plain"
    init_data_dir(plain, KeyFileKeySource(key_file), encryption=False)
    out = run_cli("serve", "--data", str(plain), "--key-file", str(key_file))
    assert out.exit_code == 78 and "encryption off" in out.output
