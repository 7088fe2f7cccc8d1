"""Every role against read, history, update, create and delete on a small demo clinic,
on both backends. A = allowed, F = 403 (the role or token may never do this), H = 404
exactly as if the record did not exist (no care relationship)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from phivault.vault import Vault
from tests.access.clinic import Clinic, open_clinic

INTERACTIONS = ("read", "history", "update", "create", "delete")
ALLOWED = {"read": 200, "history": 200, "update": 200, "create": 201, "delete": 204}
DENIED = {"F": 403, "H": 404}

TABLE: dict[str, dict[str, str]] = {
    #               read/history/update/create/delete
    "clinician": {
        "cond_rel": "AAAAA",
        "cond_unrel": "HHHHH",
        "patient": "AAAAA",
        "practitioner": "AAFFF",
    },
    "nurse": {
        "cond_rel": "AAAAF",
        "cond_unrel": "HHHHF",
        "patient": "AAAAF",
        "practitioner": "AAFFF",
    },
    "front-desk": {
        "cond_rel": "FFFFF",
        "cond_unrel": "FFFFF",
        "patient": "AAAAF",
        "practitioner": "AAFFF",
    },
    "billing": {
        "cond_rel": "FFFFF",
        "cond_unrel": "FFFFF",
        "patient": "AAFFF",
        "practitioner": "AAFFF",
    },
    "researcher": {
        "cond_rel": "FFFFF",
        "cond_unrel": "FFFFF",
        "patient": "FFFFF",
        "practitioner": "FFFFF",
    },
    "auditor": {
        "cond_rel": "FFFFF",
        "cond_unrel": "FFFFF",
        "patient": "FFFFF",
        "practitioner": "FFFFF",
    },
    "admin": {
        "cond_rel": "FFFFF",
        "cond_unrel": "FFFFF",
        "patient": "FFFFF",
        "practitioner": "AAAAA",
    },
}


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


def _targets(clinic: Clinic) -> dict[str, dict[str, Any]]:
    return {
        "cond_rel": clinic.first("Condition", clinic.related),
        "cond_unrel": clinic.first("Condition", clinic.unrelated),
        "patient": next(
            r
            for r in clinic.resources
            if r["resourceType"] == "Patient" and r["id"] == clinic.related
        ),
        "practitioner": clinic.first("Practitioner"),
    }


def _new(resource: dict[str, Any]) -> dict[str, Any]:
    fresh = copy.deepcopy(resource)
    fresh.pop("id", None)
    fresh.pop("meta", None)
    if fresh["resourceType"] in ("Patient", "Practitioner"):
        fresh.pop("identifier", None)
    return fresh


@pytest.mark.parametrize("role", sorted(TABLE))
def test_role_table(clinic: Clinic, role: str) -> None:
    practitioner = clinic.clinician_ref if role in ("clinician", "nurse") else None
    user = clinic.add_user(role, practitioner=practitioner)
    headers = clinic.headers(clinic.token(user))
    audit_before = clinic.vault.store.audit_size()
    for name, resource in _targets(clinic).items():
        rtype, rid = resource["resourceType"], resource["id"]
        for interaction, code in zip(INTERACTIONS, TABLE[role][name], strict=True):
            if interaction == "read":
                resp = clinic.client.get(f"/fhir/{rtype}/{rid}", headers=headers)
            elif interaction == "history":
                resp = clinic.client.get(f"/fhir/{rtype}/{rid}/_history", headers=headers)
            elif interaction == "update":
                body = clinic.vault.service.read(_ctx(), rtype, rid).body or b""
                resp = clinic.client.put(f"/fhir/{rtype}/{rid}", content=body, headers=headers)
            elif interaction == "create":
                resp = clinic.client.post(
                    f"/fhir/{rtype}", content=orjson.dumps(_new(resource)), headers=headers
                )
            else:
                resp = clinic.client.delete(f"/fhir/{rtype}/{rid}", headers=headers)
            want = ALLOWED[interaction] if code == "A" else DENIED[code]
            assert resp.status_code == want, (role, name, interaction, resp.text[:200])
            if code != "A":
                text = resp.text
                assert resp.json()["resourceType"] == "OperationOutcome"
                # A refusal names nothing about the record beyond what the caller sent.
                for word in ("Forbidden", "relationship", "consent", "Patient/"):
                    assert word not in text or word in f"{rtype}/{rid}"
    entries = [
        orjson.loads(raw)
        for _, raw in clinic.vault.store.audit_entries(
            audit_before, clinic.vault.store.audit_size()
        )
    ]
    denied = [e for e in entries if e.get("detail") == "Forbidden"]
    expected_denials = sum(c != "A" for row in TABLE[role].values() for c in row)
    assert len(denied) == expected_denials
    assert all(e["outcome"] == "4" and e["actor"] == user.user_id for e in denied)


def _ctx() -> Any:
    from phivault.service import Context

    return Context(actor="test-setup")


def test_not_found_and_hidden_look_the_same(clinic: Clinic) -> None:
    user = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    headers = clinic.headers(clinic.token(user))
    hidden = clinic.first("Condition", clinic.unrelated)["id"]
    a = clinic.client.get(f"/fhir/Condition/{hidden}", headers=headers)
    b = clinic.client.get(f"/fhir/Condition/{uuid.uuid4()}", headers=headers)
    assert a.status_code == b.status_code == 404
    assert a.json()["issue"][0]["code"] == b.json()["issue"][0]["code"]
    assert (
        a.json()["issue"][0]["diagnostics"].replace(hidden, "X")
        == b.json()["issue"][0]["diagnostics"].split("/")[0] + "/X is not known"
    )
