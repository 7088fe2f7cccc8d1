"""HTTP: the AuditEvent view under /fhir and the verification endpoints under /audit."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from phivault.audit.checkpoint import verify_checkpoint
from phivault.audit.merkle import leaf_hash, verify_tree
from phivault.audit.proofs import verify_consistency, verify_inclusion
from phivault.fhir.validation import validate_resource
from phivault.vault import Vault

FHIR = {"content-type": "application/fhir+json"}


def b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def create_patient(client: TestClient, family: str = "Zzroutes") -> str:
    body = {"resourceType": "Patient", "name": [{"family": family}]}
    res = client.post("/fhir/Patient", content=orjson.dumps(body), headers=FHIR)
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    return rid


def events(client: TestClient, query: str) -> list[dict[str, Any]]:
    res = client.get(f"/fhir/AuditEvent?{query}")
    assert res.status_code == 200, res.text
    bundle = res.json()
    assert bundle["type"] == "searchset"
    return [e["resource"] for e in bundle.get("entry", [])]


def test_every_interaction_shows_up_as_an_audit_event(client: TestClient) -> None:
    rid = create_patient(client)
    assert client.get(f"/fhir/Patient/{rid}").status_code == 200
    assert client.get("/fhir/Patient/not-there").status_code == 404
    found = events(client, f"entity=Patient/{rid}")
    assert [e["subtype"][0]["code"] for e in found] == ["read", "create"]  # newest first
    for event in found:
        validate_resource(event)
        assert event["agent"][0]["network"]["address"] == "testclient"
    assert events(client, f"patient=Patient/{rid}&subtype=read")[0]["action"] == "R"
    failed = events(client, "outcome=4&entity=Patient/not-there")
    assert failed[0]["outcomeDesc"] == "NotFound"
    compartment = client.get(f"/fhir/Patient/{rid}/AuditEvent").json()
    assert len(compartment["entry"]) == 2


def test_reading_the_audit_log_is_audited_too(client: TestClient, vault: Vault) -> None:
    create_patient(client)
    first = events(client, "type=rest")
    event_id = first[0]["id"]
    res = client.get(f"/fhir/AuditEvent/{event_id}")
    assert res.status_code == 200 and res.json() == first[0]
    assert client.get(f"/fhir/AuditEvent/{event_id}/_history/1").json() == first[0]
    assert client.get(f"/fhir/AuditEvent/{event_id}/_history/2").status_code == 404
    assert client.get("/fhir/AuditEvent/999999").status_code == 404
    looks = events(client, "entity=AuditEvent/" + event_id)
    assert [e["subtype"][0]["code"] for e in looks] == ["read", "read"]  # the 404 too
    searches = events(client, "subtype=search-type")
    assert searches and searches[0]["entity"][0]["description"] == "AuditEvent"


def test_paging_newest_first(client: TestClient) -> None:
    for n in range(5):
        create_patient(client, f"Zz{n}")
    page = client.get("/fhir/AuditEvent?subtype=create&_count=2").json()
    ids = [int(e["resource"]["id"]) for e in page["entry"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2
    following = client.get(next(x["url"] for x in page["link"] if x["relation"] == "next"))
    more = [int(e["resource"]["id"]) for e in following.json()["entry"]]
    assert len(more) == 2 and max(more) < min(ids)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/fhir/AuditEvent"),
        ("PUT", "/fhir/AuditEvent/1"),
        ("DELETE", "/fhir/AuditEvent/1"),
        ("PATCH", "/fhir/AuditEvent/1"),
        ("PUT", "/fhir/AuditEvent?outcome=0"),
        ("DELETE", "/fhir/AuditEvent?outcome=0"),
    ],
)
def test_writes_of_audit_event_are_refused(
    client: TestClient, vault: Vault, method: str, path: str
) -> None:
    body = orjson.dumps({"resourceType": "AuditEvent", "id": "1"})
    res = client.request(method, path, content=body, headers=FHIR)
    assert res.status_code == 405, res.text
    assert res.json()["resourceType"] == "OperationOutcome"
    assert vault.store.count_current("AuditEvent") == 0


def test_unknown_search_parameters_are_refused(client: TestClient) -> None:
    res = client.get("/fhir/AuditEvent?name=smith")
    assert res.status_code == 400
    assert res.json()["resourceType"] == "OperationOutcome"


def test_checkpoint_key_and_proofs_verify(client: TestClient) -> None:
    for n in range(6):
        create_patient(client, f"Zz{n}")
    key = b64(client.get("/audit/public-key").json()["public_key"])
    res = client.get("/audit/checkpoint")
    assert res.status_code == 200 and res.headers["content-type"] == "application/json"
    checkpoint = verify_checkpoint(key, res.content)
    size = checkpoint.size
    assert size >= 6

    leaves = [b64(e) for e in client.get(f"/audit/leaves?from=0&to={size}").json()["entries"]]
    assert len(leaves) == size
    for index in (0, size // 2, size - 1):
        proof = client.get(f"/audit/proof/inclusion?index={index}&size={size}").json()
        assert b64(proof["leaf_hash"]) == leaf_hash(leaves[index])
        nodes = [b64(p) for p in proof["proof"]]
        verify_inclusion(leaf_hash(leaves[index]), index, size, nodes, checkpoint.root)

    create_patient(client, "later")  # the log grows past the checkpoint
    proof = client.get(f"/audit/proof/consistency?first=3&second={size}").json()
    # The client recomputes the tree of the first 3 leaves and checks it is a prefix.
    root3 = verify_tree(iter([leaf_hash(x) for x in leaves[:3]]), 3)
    verify_consistency(3, size, [b64(p) for p in proof["proof"]], root3, checkpoint.root)


@pytest.mark.parametrize(
    "path",
    [
        "/audit/proof/inclusion",
        "/audit/proof/inclusion?index=x",
        "/audit/proof/inclusion?index=5&size=3",
        "/audit/proof/inclusion?index=0&size=999999",
        "/audit/proof/consistency?first=0&second=2",
        "/audit/leaves?from=5&to=2",
        "/audit/leaves?from=0&to=5000",
    ],
)
def test_bad_proof_requests_are_400(client: TestClient, path: str) -> None:
    create_patient(client)
    res = client.get(path)
    assert res.status_code == 400, (path, res.text)
    assert res.json()["resourceType"] == "OperationOutcome"


def all_pages(client: TestClient, url: str | None) -> tuple[list[str], int]:
    found: list[str] = []
    pages = 0
    while url:
        bundle = client.get(url).json()
        found += [e["resource"]["subtype"][0]["code"] for e in bundle.get("entry", [])]
        url = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None)
        pages += 1
    return found, pages


def test_bounded_scan_pages_through_the_whole_log(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phivault.service.audit_view as audit_view

    rid = create_patient(client, "Zzfirst")
    for n in range(6):
        create_patient(client, f"Zz{n}")
    assert client.get(f"/fhir/Patient/{rid}").status_code == 200
    day = events(client, "_count=1")[0]["recorded"][:10]
    monkeypatch.setattr(audit_view, "SCAN_WINDOW", 3)  # each page looks at 3 entries only
    found, pages = all_pages(client, f"/fhir/AuditEvent?entity=Patient/{rid}&_count=5")
    assert found == ["read", "create"]  # indexed (migration 008): exact, one page
    assert pages == 1
    # Nothing indexed to walk (success is nearly every entry): a window per page, and
    # paging still reaches every match, newest first.
    found, pages = all_pages(client, "/fhir/AuditEvent?outcome=0&_count=50")
    assert found.count("create") == 7 and pages >= 3
    # A date range bounds the scan to the entries of that range.
    found, _ = all_pages(client, f"/fhir/AuditEvent?date={day}&entity=Patient/{rid}")
    assert found == ["read", "create"]
    assert all_pages(client, f"/fhir/AuditEvent?date=lt{day}&entity=Patient/{rid}") == ([], 1)


def test_with_access_control_only_auditors_read_the_log(vault: Vault) -> None:
    from tests.access.clinic import open_clinic

    for clinic in open_clinic(vault):
        http = clinic.client
        auditor = clinic.token(clinic.add_user("auditor"), scope="user/AuditEvent.rs")
        clinician = clinic.token(
            clinic.add_user("clinician", practitioner=clinic.clinician_ref), scope="user/*.rs"
        )
        assert http.get("/fhir/AuditEvent").status_code == 401
        found = http.get("/fhir/AuditEvent?_count=3", headers=clinic.headers(auditor))
        assert found.status_code == 200 and len(found.json()["entry"]) == 3
        refused = http.get("/fhir/AuditEvent", headers=clinic.headers(clinician))
        assert refused.status_code == 403
        # The refusal is itself in the log, and the auditor sees it.
        denied = http.get("/fhir/AuditEvent?outcome=4", headers=clinic.headers(auditor))
        entries = denied.json()["entry"]
        assert any(e["resource"].get("outcomeDesc") == "Forbidden" for e in entries)
        # Raw leaves need a principal once access control is on; proofs stay public.
        assert http.get("/audit/leaves?from=0&to=1").status_code == 401
        assert http.get("/audit/checkpoint").status_code == 200
