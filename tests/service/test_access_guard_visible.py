"""`visible`: a body handed over as text is still decided on its data when a Consent
restricts a data category ($everything and Bulk Data exports leave the record out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from phivault.service import Context
from phivault.service.access_guard import visible
from phivault.vault import Vault
from tests.access.clinic import Clinic, open_clinic

SETUP = Context(actor="test-setup")
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SCOPES = "http://terminology.hl7.org/CodeSystem/consentscope"


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


def _observation(patient: str, labels: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "a score"},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if labels:
        found["meta"] = {"security": [{"system": ACT_CODE, "code": c} for c in labels]}
    return found


def _consent_denying(patient: str, label: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": SCOPES, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "provision": [{"type": "deny", "securityLabel": [{"system": ACT_CODE, "code": label}]}],
        },
    }


def test_a_consent_hides_the_labelled_body_given_as_text(clinic: Clinic) -> None:
    patient = clinic.related
    service = clinic.vault.service
    made = {
        name: service.create(SETUP, "Observation", _observation(patient, labels)).version
        for name, labels in (("psych", ["PSY"]), ("plain", []))
    }
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    principal = clinic.access.authenticate(clinic.token(doctor))
    ctx = Context(actor=principal.subject, principal=principal)

    def shown(name: str) -> bool:
        v = made[name]
        body = service.read(SETUP, "Observation", v.rid).body
        return visible(service, ctx, "read", "Observation", v.rid, f"Patient/{patient}", body)

    assert shown("psych") and shown("plain")
    service.create(SETUP, "Consent", _consent_denying(patient, "PSY"))
    clinic.access.refresh()
    assert not shown("psych")
    assert shown("plain")
