"""The access caches (care relationships, consents, verified tokens) never outlive the
writes that change a decision: a new or removed care relationship, a new or revoked
Consent and a revoked session take effect on the very next request, whether the write
happened in this process or in another one (a second vault on the same data directory,
as a second server worker would be), on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from phivault.access.runtime import AccessControl
from phivault.crypto.kek import KeyFileKeySource
from phivault.service import Context
from phivault.vault import Vault, open_vault
from tests.access.clinic import Clinic, open_clinic
from tests.conftest import system_token

SETUP = Context(actor="test-setup")
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


@pytest.fixture
def other(data_dir: Path, key_file: Path, clinic: Clinic) -> Iterator[Vault]:
    """Another process's view of the same data directory (its own caches)."""
    opened = open_vault(data_dir, KeyFileKeySource(key_file))
    yield opened
    opened.close()


def _care_team(patient: str, member: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": member}}],
    }


def _consent(patient: str, provision: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}
            ]
        },
        "provision": provision,
    }


def _new_patient(vault: Vault) -> tuple[str, str]:
    """(a new patient with nobody caring for them, one Condition of theirs)."""
    patient = vault.service.create(
        SETUP, "Patient", {"resourceType": "Patient", "name": [{"family": "Newcomer"}]}
    ).version.rid
    condition = vault.service.create(
        SETUP,
        "Condition",
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"text": "a condition"},
        },
    ).version.rid
    return patient, condition


def test_a_care_relationship_counts_from_the_next_request_until_removed(
    clinic: Clinic, other: Vault
) -> None:
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    headers = clinic.headers(clinic.token(doctor))
    patient, condition = _new_patient(clinic.vault)
    url = f"/fhir/Condition/{condition}"
    assert clinic.client.get(url, headers=headers).status_code == 404
    # Written by another worker: this one's cached relationships must not hide it.
    team = other.service.create(SETUP, "CareTeam", _care_team(patient, clinic.clinician_ref))
    assert clinic.client.get(url, headers=headers).status_code == 200
    listed = clinic.client.get(f"/fhir/Condition?subject=Patient/{patient}", headers=headers)
    assert listed.json()["total"] == 1
    ended = {**_care_team(patient, clinic.clinician_ref, "inactive"), "id": team.version.rid}
    other.service.update(SETUP, "CareTeam", team.version.rid, ended)
    assert clinic.client.get(url, headers=headers).status_code == 404
    listed = clinic.client.get(f"/fhir/Condition?subject=Patient/{patient}", headers=headers)
    assert listed.json().get("total", 0) == 0
    # And written in this process, through this worker's API (a backend client).
    script = clinic.headers(system_token(clinic.access))
    again = clinic.client.post(
        "/fhir/CareTeam",
        content=orjson.dumps(_care_team(patient, clinic.clinician_ref)),
        headers=script,
    )
    assert again.status_code == 201, again.text
    assert clinic.client.get(url, headers=headers).status_code == 200


def test_a_revoked_consent_stops_denying_at_once(clinic: Clinic, other: Vault) -> None:
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    headers = clinic.headers(clinic.token(doctor))
    mine = clinic.first("Condition", clinic.related)["id"]
    url = f"/fhir/Condition/{mine}"
    assert clinic.client.get(url, headers=headers).status_code == 200
    deny_me = {
        "type": "deny",
        "actor": [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "PRCP",
                        }
                    ]
                },
                "reference": {"reference": clinic.clinician_ref},
            }
        ],
    }
    consent = other.service.create(SETUP, "Consent", _consent(clinic.related, deny_me))
    assert clinic.client.get(url, headers=headers).status_code == 404
    revoked = {**_consent(clinic.related, deny_me, "inactive"), "id": consent.version.rid}
    other.service.update(SETUP, "Consent", consent.version.rid, revoked)
    assert clinic.client.get(url, headers=headers).status_code == 200


def test_a_session_revoked_by_another_worker_stops_its_cached_token(
    clinic: Clinic, other: Vault
) -> None:
    clerk = clinic.add_user("front-desk")
    token = clinic.token(clerk)
    url = f"/fhir/Patient/{clinic.related}"
    assert clinic.client.get(url, headers=clinic.headers(token)).status_code == 200
    assert len(clinic.access.tokens) == 1  # verified once, then answered from the cache
    elsewhere = AccessControl.for_service(other.service, other.keyring)
    assert elsewhere.sessions.revoke_user(clerk.user_id) == 1
    assert clinic.client.get(url, headers=clinic.headers(token)).status_code == 401


def test_a_cached_token_needs_no_signature_check_until_something_changes(
    clinic: Clinic, other: Vault
) -> None:
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(doctor)
    headers = clinic.headers(token)
    theirs = f"/fhir/Condition/{clinic.first('Condition', clinic.unrelated)['id']}"
    assert clinic.client.get(theirs, headers=headers).status_code == 404
    session_id = clinic.access.signer.verify(token)["sid"]
    signer = clinic.access.signer
    calls: list[str] = []
    real = signer.verify

    def counting(text: str) -> dict[str, Any]:
        calls.append(text)
        return real(text)

    signer.verify = counting  # type: ignore[method-assign]
    try:
        for _ in range(3):
            assert clinic.client.get(theirs, headers=headers).status_code == 404
        assert calls == []
        # Break-glass granted to this session by another worker: the cached principal
        # (without it) is dropped, the token checked in full again, and emergency access
        # applies on the next request.
        elsewhere = AccessControl.for_service(other.service, other.keyring)
        elsewhere.sessions.start_break_glass(session_id, "unconscious in the ER")
        assert clinic.client.get(theirs, headers=headers).status_code == 200
        assert calls == [token]
    finally:
        signer.verify = real  # type: ignore[method-assign]


def test_a_clinician_search_follows_consents_written_by_another_worker(
    clinic: Clinic, other: Vault
) -> None:
    """What a search may see is remembered per token (Policy.visible): a Consent given or
    revoked in another process still counts from the next search on, totals included."""
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    headers = clinic.headers(clinic.token(doctor))
    url = f"/fhir/Condition?subject=Patient/{clinic.related}&_total=accurate"
    before = clinic.client.get(url, headers=headers).json()["total"]
    assert before >= 1
    role = {"coding": [{"system": PARTICIPATION, "code": "PRCP"}]}
    deny_me = {
        "type": "deny",
        "actor": [{"role": role, "reference": {"reference": clinic.clinician_ref}}],
    }
    # A Consent elsewhere first, so that searches decide (and remember) Consents at all.
    other.service.create(SETUP, "Consent", _consent(clinic.unrelated, deny_me))
    for _ in range(2):
        assert clinic.client.get(url, headers=headers).json()["total"] == before
    consent = other.service.create(SETUP, "Consent", _consent(clinic.related, deny_me))
    for _ in range(2):
        assert clinic.client.get(url, headers=headers).json().get("total", 0) == 0
    revoked = {**_consent(clinic.related, deny_me, "inactive"), "id": consent.version.rid}
    other.service.update(SETUP, "Consent", consent.version.rid, revoked)
    assert clinic.client.get(url, headers=headers).json()["total"] == before
