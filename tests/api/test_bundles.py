"""Batch and transaction Bundles (POST [base]): atomicity, reference rewriting,
conditional references and creates, the processing order, and the response shapes."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from phivault.store.base import HistoryQuery
from phivault.vault import Vault

FHIR = "application/fhir+json"
CT = {"content-type": FHIR}
MRN = "http://hospital.example/mrn"


def post_bundle(client: TestClient, bundle: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/fhir", content=json.dumps(bundle), headers={**CT, **headers})


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(
    method: str,
    url: str,
    resource: dict[str, Any] | None = None,
    full_url: str | None = None,
    **request: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        out["resource"] = resource
    if full_url is not None:
        out["fullUrl"] = full_url
    return out


def patient(family: str = "Okafor", mrn: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if mrn is not None:
        body["identifier"] = [{"system": MRN, "value": mrn}]
    return body


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "heart rate"},
        "subject": {"reference": subject},
        **extra,
    }


def create(client: TestClient, body: dict[str, Any]) -> str:
    res = client.post(f"/fhir/{body['resourceType']}", content=json.dumps(body), headers=CT)
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    return rid


def versions(vault: Vault) -> int:
    return vault.store.history_total(HistoryQuery())


def id_of(response_entry: dict[str, Any]) -> str:
    # location: <base>/<Type>/<id>/_history/<n>
    location: str = response_entry["response"]["location"]
    return location.rsplit("/", 3)[-3]


def outcome(res: httpx.Response, status: int) -> dict[str, Any]:
    assert res.status_code == status, res.text
    body: dict[str, Any] = res.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


# -- transactions ---------------------------------------------------------------------------


def test_transaction_rewrites_urn_uuid_references(client: TestClient, vault: Vault) -> None:
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient(), "urn:uuid:7f0c5b7e-0000-4000-8000-000000000001"),
            entry(
                "POST",
                "Observation",
                observation(
                    "urn:uuid:7f0c5b7e-0000-4000-8000-000000000001",
                    performer=[{"reference": "urn:oid:1.2.3.4"}],
                    text={
                        "status": "generated",
                        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><a '
                        'href="urn:uuid:7f0c5b7e-0000-4000-8000-000000000001">p</a></div>',
                    },
                ),
            ),
            entry("POST", "Practitioner", {"resourceType": "Practitioner"}, "urn:oid:1.2.3.4"),
        ),
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created"] * 3
    pid, oid, prid = (id_of(e) for e in body["entry"])
    stored = client.get(f"/fhir/Observation/{oid}").json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert stored["performer"][0]["reference"] == f"Practitioner/{prid}"
    assert f'href="Patient/{pid}"' in stored["text"]["div"]
    # The rewritten reference decides the compartment (and so the data key).
    record = vault.store.current("Observation", oid)
    assert record is not None and record.compartment == f"Patient/{pid}"


def test_transaction_with_one_invalid_entry_stores_nothing(
    client: TestClient, vault: Vault
) -> None:
    before = versions(vault)
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient(), "urn:uuid:a"),
            entry("POST", "Observation", observation("urn:uuid:a", valueQuantity="high")),
        ),
    )
    body = outcome(res, 422)
    issue = body["issue"][0]
    assert "Bundle.entry[1]" in issue["diagnostics"]
    assert issue["expression"][0] == "Bundle.entry[1]"
    assert "high" not in res.text  # the offending value is never echoed
    assert versions(vault) == before


def test_failed_transaction_leaves_no_audit_entry_for_its_writes(
    client: TestClient, vault: Vault
) -> None:
    pid = create(client, patient())
    audit_before = vault.store.audit_size()
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("Nwosu")),
            entry("DELETE", f"Patient/{pid}"),
            entry("PUT", "Patient/fresh", {**patient("Eze"), "id": "fresh"}, ifMatch='W/"1"'),
        ),
    )
    outcome(res, 412)
    # The writes' audit entries were in the rolled-back transaction.
    assert vault.store.audit_size() == audit_before
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


def test_transaction_failure_inside_the_write_rolls_back(client: TestClient, vault: Vault) -> None:
    pid = create(client, patient())
    before = versions(vault)
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("Nwosu")),
            # Wrong version: found only inside the write transaction, after the POST.
            entry("PUT", f"Patient/{pid}", {**patient("Eze"), "id": pid}, ifMatch='W/"9"'),
        ),
    )
    body = outcome(res, 412)
    assert body["issue"][0]["expression"][0] == "Bundle.entry[1]"
    assert versions(vault) == before
    assert client.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Okafor"


def test_conditional_references(client: TestClient) -> None:
    pid = create(client, patient(mrn="12345"))
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry("POST", "Observation", observation(f"Patient?identifier={MRN}|12345")),
        ),
    )
    assert res.status_code == 200, res.text
    oid = id_of(res.json()["entry"][0])
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == (
        f"Patient/{pid}"
    )

    missing = post_bundle(
        client,
        bundle("transaction", entry("POST", "Observation", observation("Patient?identifier=x|0"))),
    )
    body = outcome(missing, 412)
    assert body["issue"][0]["code"] == "not-found"
    assert "Observation.subject.reference" in body["issue"][0]["expression"]

    create(client, patient(mrn="twin"))
    create(client, patient(mrn="twin"))
    ambiguous = post_bundle(
        client,
        bundle(
            "transaction",
            entry("POST", "Observation", observation(f"Patient?identifier={MRN}|twin")),
        ),
    )
    outcome(ambiguous, 412)


def test_conditional_create_and_update_in_a_transaction(client: TestClient, vault: Vault) -> None:
    pid = create(client, patient(mrn="777"))
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry(
                "POST",
                "Patient",
                patient(mrn="777"),
                "urn:uuid:p",
                ifNoneExist=f"identifier={MRN}|777",
            ),
            entry("POST", "Observation", observation("urn:uuid:p")),
            entry("PUT", f"Patient?identifier={MRN}|888", patient("Adeyemi", mrn="888")),
        ),
    )
    assert res.status_code == 200, res.text
    first, second, third = res.json()["entry"]
    assert first["response"]["status"] == "200 OK"  # matched, not created
    assert id_of(first) == pid
    assert vault.store.count_current("Patient") == 2  # the existing one and the PUT's
    oid = id_of(second)
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == (
        f"Patient/{pid}"
    )
    assert third["response"]["status"] == "201 Created"

    again = post_bundle(
        client,
        bundle(
            "transaction",
            entry("PUT", f"Patient?identifier={MRN}|888", patient("Bello", mrn="888")),
        ),
    )
    assert again.json()["entry"][0]["response"]["status"] == "200 OK"
    assert again.json()["entry"][0]["response"]["etag"] == 'W/"2"'


def test_processing_order(client: TestClient, vault: Vault) -> None:
    keep = create(client, patient("Keep"))
    gone = create(client, patient("Gone"))
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry("GET", f"Patient/{keep}"),
            entry("PUT", f"Patient/{keep}", {**patient("Kept"), "id": keep}),
            entry("POST", "Patient", patient("New")),
            entry("DELETE", f"Patient/{gone}"),
        ),
    )
    assert res.status_code == 200, res.text
    read, put, post, delete = res.json()["entry"]  # in request order
    # GET runs last: it sees the PUT of the same transaction.
    assert read["resource"]["name"][0]["family"] == "Kept"
    assert read["response"]["etag"] == 'W/"2"'
    assert put["response"]["status"] == "200 OK"
    assert post["response"]["status"] == "201 Created"
    assert delete["response"]["status"] == "204 No Content"
    # Write order: DELETE, then POST, then PUT.
    newest_first = vault.store.history(HistoryQuery(rtype="Patient", count=3))
    assert [r.method for r in reversed(newest_first)] == ["DELETE", "POST", "PUT"]


def test_transaction_refuses_two_entries_for_one_resource(client: TestClient) -> None:
    pid = create(client, patient())
    res = post_bundle(
        client,
        bundle(
            "transaction",
            entry("PUT", f"Patient/{pid}", {**patient("A"), "id": pid}),
            entry("DELETE", f"Patient/{pid}"),
        ),
    )
    outcome(res, 400)


def test_patch_entry_in_a_transaction(client: TestClient) -> None:
    pid = create(client, patient())
    ops = [{"op": "replace", "path": "/name/0/family", "value": "Obi"}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(ops).encode()).decode(),
    }
    res = post_bundle(client, bundle("transaction", entry("PATCH", f"Patient/{pid}", binary)))
    assert res.status_code == 200, res.text
    assert res.json()["entry"][0]["resource"]["name"][0]["family"] == "Obi"
    history = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


def test_prefer_minimal_leaves_resources_out(client: TestClient) -> None:
    res = post_bundle(
        client, bundle("transaction", entry("POST", "Patient", patient())), prefer="return=minimal"
    )
    item = res.json()["entry"][0]
    assert "resource" not in item
    response = item["response"]
    assert response["status"] == "201 Created"
    assert response["etag"] == 'W/"1"'
    assert response["lastModified"]
    assert response["location"].endswith("/_history/1")


def test_not_a_batch_or_transaction(client: TestClient) -> None:
    outcome(post_bundle(client, {"resourceType": "Bundle", "type": "collection"}), 400)
    outcome(post_bundle(client, patient()), 400)


# -- batches --------------------------------------------------------------------------------


def test_batch_entries_succeed_or_fail_on_their_own(client: TestClient, vault: Vault) -> None:
    res = post_bundle(
        client,
        bundle(
            "batch",
            entry("POST", "Patient", patient("Fine")),
            entry("POST", "Patient", {"resourceType": "Patient", "birthDate": "yesterday"}),
            entry("GET", "Patient/does-not-exist"),
            {"request": {"method": "FETCH", "url": "Patient"}},
            entry("GET", f"Patient?identifier={MRN}|none"),
        ),
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["type"] == "batch-response"
    created, invalid, missing, malformed, search = body["entry"]
    assert created["response"]["status"] == "201 Created"
    assert invalid["response"]["status"] == "422 Unprocessable Entity"
    assert invalid["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert "Patient.birthDate" in invalid["response"]["outcome"]["issue"][0]["expression"]
    assert missing["response"]["status"] == "404 Not Found"
    assert malformed["response"]["status"] == "400 Bad Request"
    assert search["response"]["status"] == "200 OK"
    assert search["resource"]["type"] == "searchset"
    assert search["resource"]["total"] == 0
    assert vault.store.count_current("Patient") == 1


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_read_and_vread_entries(client: TestClient, kind: str) -> None:
    pid = create(client, patient())
    res = post_bundle(
        client,
        bundle(kind, entry("GET", f"Patient/{pid}"), entry("GET", f"Patient/{pid}/_history/1")),
    )
    assert res.status_code == 200, res.text
    for item in res.json()["entry"]:
        assert item["response"]["status"] == "200 OK"
        assert item["resource"]["id"] == pid
        assert item["fullUrl"].endswith(f"/Patient/{pid}")


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize("entries", [{}, {"request": {"method": "DELETE"}}, None, "x"])
def test_entry_that_is_not_an_array_is_refused(client: TestClient, kind: str, entries: Any) -> None:
    before = client.get("/fhir/Patient/_history").json().get("total")
    res = post_bundle(client, {"resourceType": "Bundle", "type": kind, "entry": entries})
    assert res.status_code == 400
    outcome = res.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry must be an array" in outcome["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/_history").json().get("total") == before
