"""Bulk Data downloads under access control: the manifest says a token is required, a
download needs the kick-off's caller's own token, and it applies the access policy again
as it is at download time (a care relationship that ended since the kick-off hides that
patient's records from the file)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from phivault.service import Context
from phivault.vault import Vault
from tests.access.clinic import Clinic, open_clinic

SETUP = Context(actor="test-setup")
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


def _wait(clinic: Clinic, url: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        res = clinic.client.get(url, headers=headers)
        if res.status_code == 200:
            manifest: dict[str, Any] = res.json()
            return manifest
        assert res.status_code == 202, res.text
        time.sleep(0.05)
    raise AssertionError("the export did not finish")


def _audit(clinic: Clinic, since: int) -> list[dict[str, Any]]:
    store = clinic.vault.store
    return [orjson.loads(raw) for _, raw in store.audit_entries(since, store.audit_size())]


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


def test_downloads_need_the_token_and_apply_the_policy_as_it_is_now(clinic: Clinic) -> None:
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    headers = clinic.headers(clinic.token(doctor))
    service = clinic.vault.service
    patient = service.create(
        SETUP, "Patient", {"resourceType": "Patient", "name": [{"family": "Export"}]}
    ).version.rid
    condition = service.create(
        SETUP,
        "Condition",
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"text": "exported"},
        },
    ).version.rid
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": clinic.clinician_ref}}],
    }
    team_id = service.create(SETUP, "CareTeam", team).version.rid

    res = clinic.client.get(
        "/fhir/$export", params={"_type": "Condition"}, headers={**headers, **ASYNC}
    )
    assert res.status_code == 202, res.text
    manifest = _wait(clinic, res.headers["content-location"], headers)
    assert manifest["requiresAccessToken"] is True
    [item] = [i for i in manifest["output"] if i["type"] == "Condition"]
    url = item["url"].replace("http://testserver", "")

    first = clinic.client.get(url, headers=headers)
    assert first.status_code == 200, first.text
    exported = {r["id"] for r in _lines(first.text)}
    assert condition in exported
    assert not {f"Condition/{c}" for c in exported} & {
        f"Condition/{r['id']}"
        for r in clinic.resources
        if r["resourceType"] == "Condition"
        and r["subject"]["reference"] == f"Patient/{clinic.unrelated}"
    }
    assert len(exported) == item["count"]

    # No token, or another user's token: never the file.
    assert clinic.client.get(url).status_code == 401
    nurse = clinic.add_user("nurse", practitioner=clinic.clinician_ref)
    since = clinic.vault.store.audit_size()
    stranger = clinic.client.get(url, headers=clinic.headers(clinic.token(nurse)))
    assert stranger.status_code == 404
    refused = [e for e in _audit(clinic, since) if e.get("detail") == "Forbidden"]
    assert [(e["actor"], e["extra"]["reason"]) for e in refused] == [
        (nurse.user_id, "not-job-owner")
    ]

    # The care relationship ends: the next download leaves that patient out.
    service.update(SETUP, "CareTeam", team_id, {**team, "id": team_id, "status": "inactive"})
    again = clinic.client.get(url, headers=headers)
    assert again.status_code == 200
    now = {r["id"] for r in _lines(again.text)}
    assert condition not in now
    assert now == exported - {condition}
    assert orjson.dumps(sorted(now))  # every remaining line is still whole JSON


def test_a_kick_off_for_a_type_the_caller_may_not_search_is_refused_and_audited(
    clinic: Clinic,
) -> None:
    clerk = clinic.add_user("front-desk")
    headers = {**clinic.headers(clinic.token(clerk)), **ASYNC}
    since = clinic.vault.store.audit_size()
    res = clinic.client.get("/fhir/$export", params={"_type": "Condition"}, headers=headers)
    assert res.status_code == 403
    refused = [e for e in _audit(clinic, since) if e.get("detail") == "Forbidden"]
    assert [(e["type"], e["extra"]["reason"]) for e in refused] == [("Condition", "role")]
