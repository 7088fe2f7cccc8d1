"""`visible`: a body handed over as text is still decided on its data when a Consent
restricts a data category ($everything and Bulk Data exports leave the record out)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from phivault.service import Context
from phivault.service.access_guard import visible
from phivault.vault import Vault
from tests.access.clinic import (
    Clinic,
    category_denial_consent,
    labelled_observation,
    open_clinic,
)

SETUP = Context(actor="test-setup")


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


def test_a_consent_hides_the_labelled_body_given_as_text(clinic: Clinic) -> None:
    patient = clinic.related
    service = clinic.vault.service
    made = {
        name: service.create(
            SETUP, "Observation", labelled_observation(patient, labels=labels)
        ).version
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
    service.create(SETUP, "Consent", category_denial_consent(patient, "PSY"))
    clinic.access.refresh()
    assert not shown("psych")
    assert shown("plain")
