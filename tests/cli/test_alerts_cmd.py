"""phivault init (canaries), alerts scan / list / show / ack / resolve / eval."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from phivault.cli.main import cli
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.detect.sql import DetectSql
from phivault.service import Context
from phivault.vault import open_vault


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "kek.key"
    create_key_file(key)
    data = tmp_path / "data"
    done = CliRunner().invoke(cli, ["init", "--data", str(data), "--key-file", str(key)])
    assert done.exit_code == 0, done.output
    (data / "phivault.toml").write_text(
        (data / "phivault.toml").read_text() + '\n[alerts]\njsonl_path = "alerts.jsonl"\n'
    )
    return data, key


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _touch_canary(data: Path, key: Path) -> None:
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        canary = DetectSql(vault.store).patient_ids()[0]  # init seeded only canaries
        vault.service.read(Context(actor="script-x", client="10.9.9.9"), "Patient", canary)
    finally:
        vault.close()


def test_init_seeds_canaries_and_scan_catches_a_touch(setup: tuple[Path, Path]) -> None:
    data, key = setup
    common = ("--data", str(data), "--key-file", str(key))
    code, out = _run("alerts", "scan", *common)
    assert code == 0 and "0 new or raised" in out
    _touch_canary(data, key)
    code, out = _run("alerts", "scan", *common)
    assert code == 0 and "1 new or raised" in out and "honeytoken" in out
    sent = [json.loads(line) for line in (data / "alerts.jsonl").read_text().splitlines()]
    assert [a["detector"] for a in sent] == ["canary"] and sent[0]["actor"] == "script-x"
    code, out = _run("alerts", "list", *common, "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [a["id"] for a in listed] == [sent[0]["id"]]
    alert_id = listed[0]["id"]
    code, out = _run("alerts", "show", *common, alert_id)
    assert code == 0 and '"action": "read"' in out and "#" in out  # the evidence entry
    assert _run("alerts", "resolve", *common, alert_id)[0] != 0  # --note is required
    code, out = _run("alerts", "ack", *common, alert_id)
    assert code == 0 and "acknowledged" in out
    code, out = _run("alerts", "resolve", *common, alert_id, "--note", "pen test, agreed")
    assert code == 0 and "resolved" in out
    code, out = _run("alerts", "ack", *common, alert_id)
    assert code == 4 and "resolved" in out  # AlertStateError's exit code
    code, out = _run("alerts", "list", *common, "--status", "open")
    assert code == 0 and out == ""
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        actions = [
            orjson.loads(e)["action"]
            for _, e in vault.store.audit_entries(0, vault.store.audit_size())
        ]
    finally:
        vault.close()
    assert {"alert-raise", "alert-read", "alert-acknowledge", "alert-resolve"} <= set(actions)


def test_scan_since_and_bad_input(setup: tuple[Path, Path]) -> None:
    data, key = setup
    common = ("--data", str(data), "--key-file", str(key))
    _touch_canary(data, key)
    code, out = _run("alerts", "scan", *common, "--since", "1h")
    assert code == 0 and "1 new or raised" in out
    code, out = _run("alerts", "scan", *common, "--since", "last tuesday")
    assert code == 2 and "--since" in out
    code, out = _run("alerts", "show", *common, "no-such-alert")
    assert code == 3 and "no such alert" in out


def test_init_without_canaries(tmp_path: Path) -> None:
    key = tmp_path / "k"
    create_key_file(key)
    code, _ = _run("init", "--data", str(tmp_path / "d"), "--key-file", str(key), "--canaries", "0")
    assert code == 0
    vault = open_vault(tmp_path / "d", KeyFileKeySource(key))
    try:
        assert DetectSql(vault.store).canaries() == set()
    finally:
        vault.close()


def test_eval_command_prints_the_table(tmp_path: Path) -> None:
    code, out = _run("alerts", "eval", "--days", "7", "--staff", "6", "--patients", "20",
                     "--seed", "202", "--workdir", str(tmp_path))  # fmt: skip
    assert code == 0, out
    assert "| honeytoken-touch | 1/1 |" in out and "false alerts per 10 staff per week" in out
