"""Reads over HTTP release a body only once its audit entry is durable (the route awaits
the audit group commit instead of blocking a worker thread)."""

from __future__ import annotations

from starlette.testclient import TestClient

from phivault.vault import Vault
from tests.audit.test_log import failing_writes

PATIENT = {"resourceType": "Patient", "name": [{"family": "Quillfeather"}]}


def test_read_and_vread_are_audited_before_the_answer(client: TestClient, vault: Vault) -> None:
    created = client.post("/fhir/Patient", json=PATIENT)
    assert created.status_code == 201
    rid = created.json()["id"]
    size = vault.store.audit_size()
    assert client.get(f"/fhir/Patient/{rid}").json()["name"][0]["family"] == "Quillfeather"
    assert client.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200
    # Each answered read's entry was committed before the answer came back.
    assert vault.store.audit_size() == size + 2
    assert client.get("/fhir/Patient/no-such-patient").status_code == 404
    assert vault.store.audit_size() == size + 3


def test_no_body_is_released_when_the_audit_commit_fails(client: TestClient, vault: Vault) -> None:
    rid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    size = vault.store.audit_size()
    with failing_writes(vault, 1):
        refused = client.get(f"/fhir/Patient/{rid}")
    assert refused.status_code == 503
    assert "Quillfeather" not in refused.text
    assert vault.store.audit_size() == size
    assert client.get(f"/fhir/Patient/{rid}").status_code == 200  # and the log goes on


def test_searches_and_everything_are_audited_before_the_answer(
    client: TestClient, vault: Vault
) -> None:
    rid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    size = vault.store.audit_size()
    found = client.get("/fhir/Patient?family=Quillfeather")
    assert found.json()["entry"][0]["resource"]["id"] == rid
    assert vault.store.audit_size() == size + 1
    assert client.get("/fhir/?_type=Patient&family=Quillfeather").status_code == 200
    assert vault.store.audit_size() == size + 2
    assert client.get(f"/fhir/Patient/{rid}/$everything").json()["total"] == 1
    assert vault.store.audit_size() == size + 3


def test_no_search_result_is_released_when_the_audit_commit_fails(
    client: TestClient, vault: Vault
) -> None:
    rid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    size = vault.store.audit_size()
    for path in (
        "/fhir/Patient?family=Quillfeather",
        "/fhir/?_type=Patient&family=Quillfeather",
        f"/fhir/Patient/{rid}/$everything",
    ):
        with failing_writes(vault, 1):
            refused = client.get(path)
        assert refused.status_code == 503, path
        assert "Quillfeather" not in refused.text
    assert vault.store.audit_size() == size
    assert client.get("/fhir/Patient?family=Quillfeather").status_code == 200
