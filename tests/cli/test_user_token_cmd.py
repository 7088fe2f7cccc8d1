"""phivault user ..., token issue, init --self-signed-cert and serve's transport rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from phivault.access.runtime import AccessControl
from phivault.cli.main import cli
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.vault import open_vault

PASSWORD = "correct horse battery staple"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "kek.key"
    create_key_file(key)
    data = tmp_path / "data"
    result = CliRunner().invoke(
        cli, ["init", "--data", str(data), "--key-file", str(key), "--self-signed-cert", "localhost",
              "--self-signed-cert", "192.168.1.20"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return data, key


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env or {})
    return result.exit_code, result.output


def test_self_signed_certificate_is_written(setup: tuple[Path, Path]) -> None:
    data, _ = setup
    assert (data / "tls-cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (data / "tls-key.pem").stat().st_mode & 0o777 == 0o600


def test_user_lifecycle(setup: tuple[Path, Path]) -> None:
    data, key = setup
    common = ["--data", str(data), "--key-file", str(key)]
    code, out = _run("user", "add", "drkim", "--role", "clinician", *common,
                     env={"PHIVAULT_NEW_PASSWORD": PASSWORD})  # fmt: skip
    assert code == 0, out
    assert "otpauth://totp/phivault:drkim?" in out and PASSWORD not in out
    code, out = _run("user", "add", "weak", "--role", "nurse", *common,
                     env={"PHIVAULT_NEW_PASSWORD": "password1234"})  # fmt: skip
    assert code != 0 and "password1234" not in out
    code, out = _run("user", "set-roles", "drkim", "--role", "nurse", "--role", "billing", *common)
    assert code == 0 and "billing nurse" in out
    code, out = _run("user", "reset-mfa", "drkim", *common)
    assert code == 0 and "otpauth://" in out
    code, out = _run("user", "disable", "drkim", *common)
    assert code == 0
    code, out = _run("user", "list", *common)
    assert "drkim" in out and "disabled" in out
    code, out = _run("user", "disable", "nobody", *common)
    assert code == 3


def test_token_issue(setup: tuple[Path, Path]) -> None:
    data, key = setup
    code, out = _run("token", "issue", "--data", str(data), "--key-file", str(key),
                     "--client", "nightly", "--scope", "system/*.rs")  # fmt: skip
    assert code == 0, out
    token = out.strip()
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        access = AccessControl.for_service(vault.service, vault.keyring)
        principal = access.principal(token)
        assert principal.kind == "system" and str(principal.scopes[0]) == "system/*.rs"
        last = vault.store.audit_entries(vault.store.audit_size() - 1, vault.store.audit_size())
        assert b"token-issue" in last[0][1]
    finally:
        vault.close()
    code, out = _run(
        "token", "issue", "--data", str(data), "--client", "x", "--scope", "system/*.rs"
    )
    assert code != 0  # no key: refused
    code, out = _run("token", "issue", "--data", str(data), "--key-file", str(key),
                     "--client", "x", "--scope", "user/*.cruds")  # fmt: skip
    assert code != 0


def test_serve_refuses_network_address_without_tls(setup: tuple[Path, Path]) -> None:
    data, key = setup
    code, out = _run("serve", "--data", str(data), "--key-file", str(key), "--host", "0.0.0.0")
    assert code != 0 and "--tls-cert" in out  # plain HTTP beyond loopback: refused
    code, out = _run("serve", "--data", str(data), "--key-file", str(key),
                     "--tls-cert", str(data / "tls-cert.pem"))  # fmt: skip
    assert code != 0
