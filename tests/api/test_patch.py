"""PATCH with JSON Patch: versioned, validated and audited like an update."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from starlette.testclient import TestClient

from phivault.store.base import HistoryQuery
from phivault.vault import Vault

CT = {"content-type": "application/fhir+json"}
PATCH = {"content-type": "application/json-patch+json"}
MRN = "http://hospital.example/mrn"


def create(client: TestClient, family: str = "Haddad", **extra: Any) -> str:
    body = {"resourceType": "Patient", "name": [{"family": family}], **extra}
    res = client.post("/fhir/Patient", content=json.dumps(body), headers=CT)
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    return rid


def patch(client: TestClient, path: str, ops: Any, **headers: str) -> httpx.Response:
    return client.patch(f"/fhir/{path}", content=json.dumps(ops), headers={**PATCH, **headers})


def outcome(res: httpx.Response, status: int) -> dict[str, Any]:
    assert res.status_code == status, res.text
    body: dict[str, Any] = res.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def versions(vault: Vault) -> int:
    return vault.store.history_total(HistoryQuery())


def test_patch_makes_a_new_version_recorded_as_patch(client: TestClient, vault: Vault) -> None:
    rid = create(client)
    res = patch(
        client,
        f"Patient/{rid}",
        [
            {"op": "replace", "path": "/name/0/family", "value": "Mansour"},
            {"op": "add", "path": "/birthDate", "value": "1980-02-03"},
        ],
    )
    assert res.status_code == 200, res.text
    assert res.headers["etag"] == 'W/"2"'
    body = res.json()
    assert body["name"][0]["family"] == "Mansour"
    assert body["birthDate"] == "1980-02-03"
    assert body["meta"]["versionId"] == "2"
    history = client.get(f"/fhir/Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["PATCH", "POST"]
    size = vault.store.audit_size()
    actions = [json.loads(e)["action"] for _, e in vault.store.audit_entries(0, size)]
    assert "patch" in actions


def test_if_match(client: TestClient, vault: Vault) -> None:
    rid = create(client)
    op = [{"op": "replace", "path": "/name/0/family", "value": "Saleh"}]
    outcome(patch(client, f"Patient/{rid}", op, **{"if-match": 'W/"2"'}), 412)
    assert patch(client, f"Patient/{rid}", op, **{"if-match": 'W/"1"'}).status_code == 200
    outcome(patch(client, f"Patient/{rid}", op, **{"if-match": 'W/"1"'}), 412)


def test_failed_test_operation_is_a_conflict_and_changes_nothing(
    client: TestClient, vault: Vault
) -> None:
    rid = create(client, "Qasim")
    before = versions(vault)
    res = patch(
        client,
        f"Patient/{rid}",
        [
            {"op": "test", "path": "/name/0/family", "value": "Someone-else"},
            {"op": "replace", "path": "/name/0/family", "value": "Other"},
        ],
    )
    body = outcome(res, 409)
    assert body["issue"][0]["expression"] == ["operation[0] /name/0/family"]
    assert "Qasim" not in res.text and "Someone-else" not in res.text
    assert versions(vault) == before


def test_path_that_does_not_exist(client: TestClient) -> None:
    rid = create(client)
    outcome(patch(client, f"Patient/{rid}", [{"op": "remove", "path": "/telecom/0"}]), 409)


def test_patch_may_not_change_id_or_type(client: TestClient) -> None:
    rid = create(client)
    outcome(patch(client, f"Patient/{rid}", [{"op": "replace", "path": "/id", "value": "x"}]), 422)
    body = outcome(
        patch(
            client,
            f"Patient/{rid}",
            [{"op": "replace", "path": "/resourceType", "value": "Person"}],
        ),
        422,
    )
    assert body["issue"][0]["expression"] == ["resourceType"]


def test_invalid_result_names_the_element(client: TestClient, vault: Vault) -> None:
    rid = create(client)
    before = versions(vault)
    res = patch(client, f"Patient/{rid}", [{"op": "add", "path": "/birthDate", "value": "soon"}])
    body = outcome(res, 422)
    assert "Patient.birthDate" in body["issue"][0]["expression"]
    assert versions(vault) == before


def test_malformed_patch_documents(client: TestClient) -> None:
    rid = create(client)
    outcome(patch(client, f"Patient/{rid}", {"op": "add"}), 400)
    outcome(patch(client, f"Patient/{rid}", []), 400)
    outcome(patch(client, f"Patient/{rid}", [{"op": "frobnicate", "path": "/a"}]), 400)
    outcome(patch(client, f"Patient/{rid}", [{"op": "add", "path": "name"}]), 400)
    outcome(patch(client, f"Patient/{rid}", [{"op": "move", "path": "/a"}]), 400)


def test_fhirpath_patch_is_not_supported(client: TestClient) -> None:
    rid = create(client)
    res = client.patch(
        f"/fhir/Patient/{rid}",
        content=json.dumps({"resourceType": "Parameters"}),
        headers=CT,
    )
    outcome(res, 415)


def test_missing_and_deleted(client: TestClient) -> None:
    op = [{"op": "add", "path": "/active", "value": True}]
    outcome(patch(client, "Patient/nope", op), 404)
    rid = create(client)
    assert client.delete(f"/fhir/Patient/{rid}").status_code == 204
    outcome(patch(client, f"Patient/{rid}", op), 410)


def test_conditional_patch(client: TestClient) -> None:
    rid = create(client, identifier=[{"system": MRN, "value": "p-1"}])
    op = [{"op": "add", "path": "/active", "value": False}]
    res = patch(client, f"Patient?identifier={MRN}|p-1", op)
    assert res.status_code == 200, res.text
    assert res.json()["id"] == rid and res.json()["active"] is False
    outcome(patch(client, f"Patient?identifier={MRN}|none", op), 404)


def test_patch_keeps_decimal_precision(client: TestClient) -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": 70.10, "unit": "kg"},
    }
    raw = json.dumps(obs).replace("70.1", "70.10")
    res = client.post("/fhir/Observation", content=raw, headers=CT)
    rid = res.json()["id"]
    patched = patch(
        client, f"Observation/{rid}", [{"op": "replace", "path": "/status", "value": "amended"}]
    )
    assert patched.status_code == 200, patched.text
    assert b'"value":70.10' in patched.content


def test_concurrent_patches_are_all_applied(client: TestClient) -> None:
    """Without If-Match, a patch that loses the race is applied again to the newer
    version, not lost and not failed."""
    rid = create(client)
    barrier = threading.Barrier(4)

    def add(n: int) -> int:
        barrier.wait()
        op = [{"op": "add", "path": "/identifier/-", "value": {"system": MRN, "value": str(n)}}]
        return patch(client, f"Patient/{rid}", op).status_code

    first = patch(client, f"Patient/{rid}", [{"op": "add", "path": "/identifier", "value": []}])
    assert first.status_code == 200
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(add, range(1, 5)))
    assert codes == [200] * 4
    final = client.get(f"/fhir/Patient/{rid}").json()
    assert sorted(i["value"] for i in final["identifier"]) == ["1", "2", "3", "4"]
    assert final["meta"]["versionId"] == "6"
