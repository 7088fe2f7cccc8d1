"""A small demo clinic with access control on, for the role table and the attack tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient

from phivault.access.policy import PolicySettings
from phivault.access.runtime import AccessControl
from phivault.access.users import User
from phivault.api.app import create_app
from phivault.demo.clinic import ClinicSpec, demo_staff, generate_clinic
from phivault.service import Context
from phivault.vault import Vault

SPEC = ClinicSpec(patients=6, seed=2)
PASSWORD = "correct horse battery staple"


@dataclass
class Clinic:
    vault: Vault
    access: AccessControl
    client: TestClient
    resources: list[dict[str, Any]]
    clinician_ref: str  # Practitioner/<id> of the clinician the clinical users act as
    related: str  # a Patient id the clinician cares for
    unrelated: str  # a Patient id the clinician has no relationship with
    users: dict[str, User] = field(default_factory=dict)

    def first(self, rtype: str, patient: str | None = None) -> dict[str, Any]:
        for res in self.resources:
            if res["resourceType"] != rtype:
                continue
            if patient is None or res.get("subject", {}).get("reference") == f"Patient/{patient}":
                return res
        raise LookupError(rtype)

    def add_user(self, role: str, *, practitioner: str | None = None) -> User:
        user, _ = self.access.users.add(
            f"{role}-user", PASSWORD, [role], practitioner=practitioner, mfa_required=False
        )
        self.users[role] = user
        return user

    def token(self, user: User, scope: str = "user/*.cruds", patient: str | None = None) -> str:
        session = self.access.sessions.open(user.user_id, None, scope, patient)
        token, _ = self.access.user_token(session.session_id, user.user_id, None, scope)
        return token

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def _relationships(resources: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Practitioner -> patients, through CareTeams and Encounters (as the policy sees it)."""
    found: dict[str, set[str]] = {}
    for res in resources:
        patient = res.get("subject", {}).get("reference", "")
        if res["resourceType"] == "CareTeam" and res.get("status") == "active":
            people = [p.get("member", {}).get("reference") for p in res.get("participant", [])]
        elif res["resourceType"] == "Encounter":
            people = [p.get("individual", {}).get("reference") for p in res.get("participant", [])]
        else:
            continue
        for who in people:
            if who:
                found.setdefault(who, set()).add(patient.removeprefix("Patient/"))
    return found


def open_clinic(vault: Vault) -> Iterator[Clinic]:
    resources = list(generate_clinic(SPEC))
    for _ in vault.service.import_resources(Context(actor="test"), resources):
        pass
    patients = [r["id"] for r in resources if r["resourceType"] == "Patient"]
    relations = _relationships(resources)
    conditions = {
        r["subject"]["reference"][8:] for r in resources if r["resourceType"] == "Condition"
    }
    chosen = None
    for member in demo_staff(SPEC):
        mine = relations.get(member["practitioner"], set()) & conditions
        others = (set(patients) - relations.get(member["practitioner"], set())) & conditions
        if mine and others:
            chosen = (member["practitioner"], sorted(mine)[0], sorted(others)[0])
            break
    assert chosen is not None, "the demo clinic has no suitable clinician"
    access = AccessControl.for_service(
        vault.service, vault.keyring, policy_settings=PolicySettings(appointment_window=0)
    )
    app = create_app(vault.service, vault.settings, access)
    with TestClient(app, base_url="http://testserver") as client:
        yield Clinic(vault, access, client, resources, *chosen)


ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_SCOPES = "http://terminology.hl7.org/CodeSystem/consentscope"


def labelled_observation(
    patient: str, text: str = "a score", labels: list[str] | None = None
) -> dict[str, Any]:
    """An Observation of `patient`, with `labels` as v3-ActCode security labels."""
    found: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if labels:
        found["meta"] = {"security": [{"system": ACT_CODE, "code": c} for c in labels]}
    return found


def category_denial_consent(patient: str, label: str) -> dict[str, Any]:
    """An active Consent of `patient`: permit by default, deny data labelled `label`."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPES, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "provision": [{"type": "deny", "securityLabel": [{"system": ACT_CODE, "code": label}]}],
        },
    }
