"""The bench's create workloads (phivault.benchmark.workloads) against a served vault."""

from __future__ import annotations

from collections import Counter

import orjson
from starlette.testclient import TestClient

from phivault.benchmark.workloads import CLINIC_SEED, create_clinic_mix
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.service import Context
from phivault.vault import Vault

PATIENTS = 4


def test_clinic_mix_creates_a_clinics_resources_in_its_proportions(
    vault: Vault, client: TestClient
) -> None:
    clinic = list(generate_clinic(ClinicSpec(patients=PATIENTS, seed=CLINIC_SEED)))
    for stats in vault.service.import_resources(Context(actor="test"), clinic):
        assert stats.failed == 0, stats.errors
    mix = create_clinic_mix(PATIENTS).requests

    # every resource of the clinic once, by type as the clinic has them, none with an id
    assert Counter(path.removeprefix("/fhir/") for _, path, _ in mix) == Counter(
        r["resourceType"] for r in clinic
    )
    bodies = [orjson.loads(body) for _, _, body in mix]
    assert all("id" not in b for b in bodies)
    # the Patients are new people, not copies of the loaded ones
    loaded = {orjson.dumps(r["name"]) for r in clinic if r["resourceType"] == "Patient"}
    assert not loaded & {orjson.dumps(b["name"]) for b in bodies if b["resourceType"] == "Patient"}

    # the server takes every one: its references name resources it holds
    for method, path, body in mix:
        response = client.request(
            method, path, content=body, headers={"Content-Type": "application/fhir+json"}
        )
        assert response.status_code == 201, (path, response.text)
