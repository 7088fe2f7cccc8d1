"""Ciphertext that fails authentication, through the API on both backends: a moved body,
a flipped bit, a swapped wrapped key, a wrong KEK. Each fails cleanly: a 500
OperationOutcome for that request, a security log event, an audit entry with a failure
outcome, never garbage data; every other record keeps working."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from phivault.crypto.kek import create_key_file
from phivault.errors import KeyMaterialError
from phivault.vault import Vault
from tests.keys_support import open_with, raw_sql

FAMILY = "Tamperova"
PATIENT = {"resourceType": "Patient", "name": [{"family": FAMILY, "given": ["Zoe"]}]}


@pytest.fixture
def two(client: TestClient) -> tuple[str, str]:
    a = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    b = client.post("/fhir/Patient", json={**PATIENT, "name": [{"family": "Other"}]}).json()["id"]
    res = client.put(f"/fhir/Patient/{b}", json={**PATIENT, "id": b, "name": [{"family": "Next"}]})
    assert res.status_code == 200
    return a, b


def assert_clean_500(res: object, caplog: pytest.LogCaptureFixture) -> None:
    status = getattr(res, "status_code", None)
    text = getattr(res, "text", "")
    assert status == 500, text
    outcome = json.loads(text)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "security"
    assert "integrity" in outcome["issue"][0]["diagnostics"]
    assert FAMILY not in text and "Traceback" not in text
    events = [r for r in caplog.records if r.name == "phivault.security"]
    assert events, "no security log event"
    assert all(FAMILY not in r.getMessage() for r in events)
    caplog.clear()


def failure_entries(vault: Vault, start: int) -> list[dict[str, object]]:
    entries = [json.loads(e) for _, e in vault.store.audit_entries(start, vault.store.audit_size())]
    return [e for e in entries if e.get("detail") == "DecryptionError"]


def test_moved_and_flipped_ciphertext_fail_cleanly(
    vault: Vault, client: TestClient, two: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="phivault.security")
    a, b = two
    start = vault.store.audit_size()
    # a's body pasted over b's current version (another key, another AAD).
    raw_sql(
        vault,
        "UPDATE versions SET body = (SELECT body FROM versions WHERE rid = ? AND version = 1) "
        "WHERE rid = ? AND version = 2",
        (a, b),
    )
    assert_clean_500(client.get(f"/fhir/Patient/{b}"), caplog)
    assert client.get(f"/fhir/Patient/{b}/_history/1").status_code == 200  # other versions
    assert client.get(f"/fhir/Patient/{a}").json()["name"][0]["family"] == FAMILY
    # History and search holding it fail too, rather than pass over tampering silently.
    assert_clean_500(client.get(f"/fhir/Patient/{b}/_history"), caplog)

    # One flipped bit in a's stored body.
    body = bytearray(raw_sql(vault, "SELECT body FROM versions WHERE rid = ?", (a,))[0][0])
    body[len(body) // 2] ^= 0x01
    raw_sql(vault, "UPDATE versions SET body = ? WHERE rid = ?", (bytes(body), a))
    assert_clean_500(client.get(f"/fhir/Patient/{a}"), caplog)
    assert client.get(f"/fhir/Patient/{b}/_history/1").status_code == 200

    failures = failure_entries(vault, start)
    assert len(failures) == 3
    assert {f["outcome"] for f in failures} == {"8"}  # serious failure
    assert {f["id"] for f in failures} == {a, b}


def test_a_wrapped_key_moved_to_another_patient_fails_cleanly(
    vault: Vault, client: TestClient, two: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="phivault.security")
    a, b = two
    raw_sql(
        vault,
        "UPDATE wrapped_keys SET blob = (SELECT blob FROM wrapped_keys WHERE key_id = ?) "
        "WHERE key_id = ?",
        (f"patient:{a}", f"patient:{b}"),
    )
    vault.keyring.forget_cached()
    assert_clean_500(client.get(f"/fhir/Patient/{b}"), caplog)
    assert client.get(f"/fhir/Patient/{a}").status_code == 200


def test_a_wrong_kek_opens_nothing(data_dir: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    create_key_file(wrong)
    with pytest.raises(KeyMaterialError, match="does not open this data directory"):
        open_with(data_dir, wrong)
