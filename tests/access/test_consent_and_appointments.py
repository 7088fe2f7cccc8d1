"""Consent by data category, and care relationships through Appointments in a window.

- A patient's active Consent that denies a sensitive category (here behavioral health,
  the PSY security label) hides exactly the labelled records from a clinician who
  otherwise cares for them: reads answer as if absent, searches leave them out of pages
  and totals, the refusal is audited with reason "consent", and break-glass overrides it.
- An Appointment relates a clinician to a patient only while its start lies within the
  configured window around now, and only if it is not cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from phivault.access.policy import PolicySettings
from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.service import Context
from phivault.vault import Vault
from tests.access.clinic import (
    ACT_CODE,
    PASSWORD,
    Clinic,
    category_denial_consent,
    labelled_observation,
    open_clinic,
)

SETUP = Context(actor="test-setup")
DAY = 86400.0


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


def _create(vault: Vault, resource: dict[str, Any]) -> str:
    return vault.service.create(SETUP, resource["resourceType"], resource).version.rid


def _audit(clinic: Clinic, since: int) -> list[dict[str, Any]]:
    store = clinic.vault.store
    return [orjson.loads(raw) for _, raw in store.audit_entries(since, store.audit_size())]


def test_consent_denying_a_category_hides_only_that_category(clinic: Clinic) -> None:
    patient = clinic.related
    psych = _create(clinic.vault, labelled_observation(patient, "PHQ-9 score", ["PSY"]))
    plain = _create(clinic.vault, labelled_observation(patient, "blood pressure"))
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(doctor)
    headers = clinic.headers(token)
    assert clinic.client.get(f"/fhir/Observation/{psych}", headers=headers).status_code == 200
    everything = clinic.client.get(
        f"/fhir/Observation?subject=Patient/{patient}&_total=accurate&_count=500", headers=headers
    ).json()

    _create(clinic.vault, category_denial_consent(patient, "PSY"))
    since = clinic.vault.store.audit_size()
    hidden = clinic.client.get(f"/fhir/Observation/{psych}", headers=headers)
    absent = clinic.client.get("/fhir/Observation/00000000", headers=headers)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.text.replace(psych, "00000000") == absent.text
    assert clinic.client.get(f"/fhir/Observation/{plain}", headers=headers).status_code == 200
    refused = [e for e in _audit(clinic, since) if e.get("detail") == "Forbidden"]
    assert [(e["id"], e["extra"]["reason"]) for e in refused] == [(psych, "consent")]

    # Searches: the labelled record is neither listed nor counted, on any page.
    listed = clinic.client.get(
        f"/fhir/Observation?subject=Patient/{patient}&_total=accurate&_count=500", headers=headers
    ).json()
    ids = {e["resource"]["id"] for e in listed.get("entry", [])}
    assert psych not in ids and plain in ids
    assert listed["total"] == everything["total"] - 1
    seen: set[str] = set()
    url: str | None = f"/fhir/Observation?subject=Patient/{patient}&_count=2"
    while url:
        page = clinic.client.get(url, headers=headers).json()
        seen |= {e["resource"]["id"] for e in page.get("entry", [])}
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert psych not in seen and seen == ids

    # Break-glass: the emergency overrides the consent, on the record.
    resp = clinic.client.post(
        "/oauth/break-glass",
        data={"reason": "acute psychiatric emergency in the ER"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200
    assert clinic.client.get(f"/fhir/Observation/{psych}", headers=headers).status_code == 200


def test_consent_denying_a_category_for_one_actor_leaves_others(clinic: Clinic) -> None:
    patient = clinic.related
    psych = _create(clinic.vault, labelled_observation(patient, "therapy note", ["PSY"]))
    consent = category_denial_consent(patient, "PSY")
    consent["provision"]["provision"][0]["actor"] = [
        {
            "role": {"coding": [{"system": ACT_CODE, "code": "PRCP"}]},
            "reference": {"reference": clinic.clinician_ref},
        }
    ]
    _create(clinic.vault, consent)
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    assert (
        clinic.client.get(
            f"/fhir/Observation/{psych}", headers=clinic.headers(clinic.token(doctor))
        ).status_code
        == 404
    )
    # A backend client (no practitioner) is not the actor the provision names.
    from tests.conftest import system_token

    system = clinic.headers(system_token(clinic.access))
    assert clinic.client.get(f"/fhir/Observation/{psych}", headers=system).status_code == 200


def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _appointment(patient: str, practitioner: str, start: float, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "start": _instant(start),
        "end": _instant(start + 1800),
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": practitioner}, "status": "accepted"},
        ],
    }


def test_an_appointment_relates_only_within_the_window(clinic: Clinic) -> None:
    vault = clinic.vault
    window = 7 * DAY
    now = time.time()
    access = AccessControl.for_service(
        vault.service, vault.keyring, policy_settings=PolicySettings(appointment_window=window)
    )
    app = create_app(vault.service, vault.settings, access)
    user, _ = access.users.add(
        "dr-appointments", PASSWORD, ["clinician"], practitioner=clinic.clinician_ref,
        mfa_required=False,
    )  # fmt: skip
    session = access.sessions.open(user.user_id, None, "user/*.rs", None)
    token, _ = access.user_token(session.session_id, user.user_id, None, "user/*.rs")
    headers = clinic.headers(token)

    def patient_with_condition(appointment_start: float | None, status: str = "booked") -> str:
        patient = _create(vault, {"resourceType": "Patient", "name": [{"family": "Booked"}]})
        condition = _create(
            vault,
            {
                "resourceType": "Condition",
                "subject": {"reference": f"Patient/{patient}"},
                "code": {"text": "x"},
            },
        )
        if appointment_start is not None:
            _create(vault, _appointment(patient, clinic.clinician_ref, appointment_start, status))
        return condition

    cases = {
        "in two days": (patient_with_condition(now + 2 * DAY), 200),
        "three days ago": (patient_with_condition(now - 3 * DAY), 200),
        "in thirty days": (patient_with_condition(now + 30 * DAY), 404),
        "ten days ago": (patient_with_condition(now - 10 * DAY), 404),
        "cancelled, tomorrow": (patient_with_condition(now + DAY, "cancelled"), 404),
        "no appointment": (patient_with_condition(None), 404),
    }
    with TestClient(app, base_url="http://testserver") as client:
        for name, (condition, want) in cases.items():
            got = client.get(f"/fhir/Condition/{condition}", headers=headers)
            assert got.status_code == want, name
        # Searches agree with reads.
        listed = client.get("/fhir/Condition?_count=1000", headers=headers).json()
        ids = {e["resource"]["id"] for e in listed.get("entry", [])}
        for name, (condition, want) in cases.items():
            assert (condition in ids) == (want == 200), name
        # Time passes: 25 days on, the appointment in two days is no longer within
        # the window, and the one in thirty days now is.
        access.policy.clock = lambda: now + 25 * DAY
        access.care.forget()  # the relationship cache holds "now" for at most its ttl
        assert (
            client.get(f"/fhir/Condition/{cases['in two days'][0]}", headers=headers).status_code
            == 404
        )
        assert (
            client.get(f"/fhir/Condition/{cases['in thirty days'][0]}", headers=headers).status_code
            == 200
        )
