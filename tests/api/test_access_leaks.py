"""A record the policy hides must look exactly like one that does not exist, on every path
that could tell them apart: bundle entries (read, delete), PATCH, deleted records and
conditional interactions. Type-level refusals come before any lookup, so a 403 never
depends on what is stored. Every refusal is audited with who, what and why."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from phivault.service import Context
from phivault.vault import Vault
from tests.access.clinic import Clinic, open_clinic
from tests.conftest import system_token

SETUP = Context(actor="test-setup")
ABSENT = "0" * 8


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


@pytest.fixture
def doctor(clinic: Clinic) -> dict[str, str]:
    user = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    return clinic.headers(clinic.token(user))


def _audit(clinic: Clinic, since: int) -> list[dict[str, Any]]:
    store = clinic.vault.store
    return [orjson.loads(raw) for _, raw in store.audit_entries(since, store.audit_size())]


def _refusals(clinic: Clinic, since: int) -> list[dict[str, Any]]:
    return [e for e in _audit(clinic, since) if e.get("detail") == "Forbidden"]


def _bundle(client: TestClient, headers: dict[str, str], kind: str, entries: list[Any]) -> Any:
    body = {"resourceType": "Bundle", "type": kind, "entry": entries}
    return client.post("/fhir", content=orjson.dumps(body), headers=headers)


def _same(hidden: Any, absent: Any, hidden_id: str) -> None:
    """Same status and the same body, but for the id the caller sent (and a response
    Bundle's own id and time)."""
    assert hidden.status_code == absent.status_code
    shown = [orjson.loads(r.text.replace(hidden_id, ABSENT)) for r in (hidden, absent)]
    for body in shown:
        if body.get("resourceType") == "Bundle":
            body.pop("id", None)
            body.pop("meta", None)
    assert shown[0] == shown[1]


def _exists(clinic: Clinic, rtype: str, rid: str) -> bool:
    record = clinic.vault.store.current(rtype, rid)
    return record is not None and not record.deleted


def test_bundle_read_and_delete_of_a_hidden_record_answer_as_absent(
    clinic: Clinic, doctor: dict[str, str]
) -> None:
    theirs = clinic.first("Condition", clinic.unrelated)["id"]
    since = clinic.vault.store.audit_size()
    for kind in ("batch", "transaction"):
        for method in ("GET", "DELETE"):
            answers = [
                _bundle(
                    clinic.client,
                    doctor,
                    kind,
                    [{"request": {"method": method, "url": f"Condition/{rid}"}}],
                )
                for rid in (theirs, ABSENT)
            ]
            _same(*answers, theirs)
    assert _exists(clinic, "Condition", theirs)  # the hidden DELETE deleted nothing
    refused = _refusals(clinic, since)
    assert {e["action"] for e in refused} >= {"read", "delete"}
    assert all(e["extra"]["reason"] == "care-relationship" for e in refused)
    assert all(e["extra"]["decision"] == "hide" for e in refused)
    assert all(e["outcome"] == "4" and e["id"] == theirs for e in refused)


def test_type_level_refusals_do_not_depend_on_existence(clinic: Clinic) -> None:
    clerk = clinic.add_user("front-desk")
    headers = clinic.headers(clinic.token(clerk))
    mine = clinic.first("Condition", clinic.related)["id"]
    patch = orjson.dumps([{"op": "replace", "path": "/clinicalStatus/text", "value": "x"}])
    patch_headers = {**headers, "Content-Type": "application/json-patch+json"}
    since = clinic.vault.store.audit_size()
    for rid in (mine, ABSENT):
        resp = clinic.client.patch(f"/fhir/Condition/{rid}", content=patch, headers=patch_headers)
        assert resp.status_code == 403, resp.text
        for method in ("GET", "DELETE"):
            entry = {"request": {"method": method, "url": f"Condition/{rid}"}}
            got = _bundle(clinic.client, headers, "transaction", [entry])
            assert got.status_code == 403, got.text
    refused = _refusals(clinic, since)
    assert len(refused) == 6
    assert all(e["extra"] == {"decision": "deny", "reason": "role"} for e in refused)
    assert all(e["actor"] == clerk.user_id for e in refused)


def test_patch_of_a_hidden_record_answers_as_absent(clinic: Clinic, doctor: dict[str, str]) -> None:
    theirs = clinic.first("Condition", clinic.unrelated)["id"]
    patch = orjson.dumps([{"op": "add", "path": "/note", "value": [{"text": "seen"}]}])
    headers = {**doctor, "Content-Type": "application/json-patch+json"}
    since = clinic.vault.store.audit_size()
    answers = [
        clinic.client.patch(f"/fhir/Condition/{rid}", content=patch, headers=headers)
        for rid in (theirs, ABSENT)
    ]
    assert answers[0].status_code == 404
    _same(*answers, theirs)
    refused = _refusals(clinic, since)
    assert [e["action"] for e in refused] == ["patch"]
    # Audited once, by the policy's refusal (not again as a failed write).
    assert not [e for e in _audit(clinic, since) if e.get("detail") == "Hidden"]


def test_deleted_records_of_a_hidden_patient_answer_as_absent(
    clinic: Clinic, doctor: dict[str, str]
) -> None:
    theirs = clinic.first("Condition", clinic.unrelated)["id"]
    mine = clinic.first("Condition", clinic.related)["id"]
    clinic.vault.service.delete(SETUP, "Condition", theirs)
    clinic.vault.service.delete(SETUP, "Condition", mine)
    assert clinic.client.get(f"/fhir/Condition/{mine}", headers=doctor).status_code == 410
    for verb in ("get", "delete"):
        call = getattr(clinic.client, verb)
        answers = [call(f"/fhir/Condition/{rid}", headers=doctor) for rid in (theirs, ABSENT)]
        assert answers[0].status_code == 404
        _same(*answers, theirs)
    body = orjson.dumps({**clinic.first("Condition", clinic.related), "id": theirs})
    put = clinic.client.put(f"/fhir/Condition/{theirs}", content=body, headers=doctor)
    assert put.status_code == 404  # never revived into another patient's record


def test_conditional_interactions_never_match_a_hidden_record(
    clinic: Clinic, doctor: dict[str, str]
) -> None:
    """A hidden match is treated as absent: If-None-Exist creates, conditional PATCH is
    404 exactly as with no match, conditional DELETE deletes nothing."""
    theirs = clinic.first("Condition", clinic.unrelated)
    mine = clinic.first("Condition", clinic.related)
    query = f"_id={theirs['id']}"
    absent_query = f"_id={ABSENT}"
    # If-None-Exist: the hidden record does not count, so the answer is the one an unknown
    # criterion gets (201), never 200 with it, or 412.
    new = {k: v for k, v in mine.items() if k not in ("id", "meta")}
    for criteria in (query, absent_query):
        resp = clinic.client.post(
            "/fhir/Condition",
            content=orjson.dumps(new),
            headers={**doctor, "If-None-Exist": criteria},
        )
        assert resp.status_code == 201, resp.text
        assert theirs["id"] not in resp.text
    patch = orjson.dumps([{"op": "add", "path": "/note", "value": [{"text": "x"}]}])
    headers = {**doctor, "Content-Type": "application/json-patch+json"}
    answers = [
        clinic.client.patch(f"/fhir/Condition?{q}", content=patch, headers=headers)
        for q in (query, absent_query)
    ]
    assert answers[0].status_code == 404
    _same(*answers, theirs["id"])
    deleted = [
        clinic.client.delete(f"/fhir/Condition?{q}", headers=doctor) for q in (query, absent_query)
    ]
    assert deleted[0].status_code == deleted[1].status_code
    assert _exists(clinic, "Condition", theirs["id"])
    # In a transaction: a conditional update on the hidden match creates a new record.
    entry = {
        "resource": {k: v for k, v in mine.items() if k not in ("id", "meta")},
        "request": {"method": "PUT", "url": f"Condition?{query}"},
    }
    got = _bundle(clinic.client, doctor, "transaction", [entry])
    assert got.status_code == 200, got.text
    assert got.json()["entry"][0]["response"]["status"].startswith("201")
    assert _exists(clinic, "Condition", theirs["id"])


def test_conditional_matching_needs_the_right_to_search(clinic: Clinic) -> None:
    """A write-only token could otherwise probe for records with If-None-Exist."""
    user = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    headers = clinic.headers(clinic.token(user, "user/Condition.c"))
    mine = clinic.first("Condition", clinic.related)
    new = {k: v for k, v in mine.items() if k not in ("id", "meta")}
    for rid in (mine["id"], ABSENT):
        resp = clinic.client.post(
            "/fhir/Condition",
            content=orjson.dumps(new),
            headers={**headers, "If-None-Exist": f"_id={rid}"},
        )
        assert resp.status_code == 403, resp.text
    plain = clinic.client.post("/fhir/Condition", content=orjson.dumps(new), headers=headers)
    assert plain.status_code == 201


def test_every_allowed_access_is_audited_too(clinic: Clinic, doctor: dict[str, str]) -> None:
    mine = clinic.first("Condition", clinic.related)["id"]
    since = clinic.vault.store.audit_size()
    assert clinic.client.get(f"/fhir/Condition/{mine}", headers=doctor).status_code == 200
    entry = {"request": {"method": "GET", "url": f"Condition/{mine}"}}
    assert _bundle(clinic.client, doctor, "batch", [entry]).status_code == 200
    reads = [e for e in _audit(clinic, since) if e["action"] == "read" and e["outcome"] == "0"]
    assert len(reads) == 2 and all(e["id"] == mine for e in reads)


def test_hidden_and_unknown_ids_in_one_transaction_fail_alike(
    clinic: Clinic, doctor: dict[str, str]
) -> None:
    """A failing transaction still leaves the refusal in the audit log (recorded after the
    rollback), and the whole transaction fails exactly as for an unknown id."""
    theirs = clinic.first("Condition", clinic.unrelated)["id"]
    mine = clinic.first("Patient", None)
    since = clinic.vault.store.audit_size()
    answers = []
    for rid in (theirs, ABSENT):
        entries = [
            {"request": {"method": "GET", "url": f"Condition/{rid}"}},
            {
                "resource": {"resourceType": "Basic", "code": {"text": str(uuid.uuid4())}},
                "request": {"method": "POST", "url": "Basic"},
            },
        ]
        answers.append(_bundle(clinic.client, doctor, "transaction", entries))
    _same(*answers, theirs)
    assert answers[0].status_code == 404
    assert [e["id"] for e in _refusals(clinic, since)] == [theirs]
    assert mine  # the clinic is intact


def test_put_to_a_hidden_id_and_to_an_unknown_id_answer_alike(
    clinic: Clinic, doctor: dict[str, str]
) -> None:
    """Update as create would answer an unknown id with 201 and a hidden one with 404; a
    caller limited to some patients therefore creates with POST, and gets the same 404
    for both. A backend client (reaching every patient) keeps update as create."""
    theirs = clinic.first("Condition", clinic.unrelated)["id"]
    mine = clinic.first("Condition", clinic.related)
    fresh = str(uuid.uuid4())
    since = clinic.vault.store.audit_size()
    answers = []
    for rid in (theirs, fresh):
        body = orjson.dumps({**mine, "id": rid})
        answers.append(clinic.client.put(f"/fhir/Condition/{rid}", content=body, headers=doctor))
    assert answers[0].status_code == 404
    assert answers[0].text.replace(theirs, "X") == answers[1].text.replace(fresh, "X")
    for rid in (theirs, fresh):
        entry = {
            "resource": {**mine, "id": rid},
            "request": {"method": "PUT", "url": f"Condition/{rid}"},
        }
        got = _bundle(clinic.client, doctor, "transaction", [entry])
        assert got.status_code == 404, got.text
    reasons = {e["extra"]["reason"] for e in _refusals(clinic, since)}
    assert reasons == {"care-relationship", "update-as-create"}
    assert not _exists(clinic, "Condition", fresh)
    script = clinic.headers(system_token(clinic.access))
    body = orjson.dumps({**mine, "id": fresh})
    created = clinic.client.put(f"/fhir/Condition/{fresh}", content=body, headers=script)
    assert created.status_code == 201, created.text
