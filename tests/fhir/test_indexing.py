"""`patient_compartment` without index rows (only the compartment parameters extracted)
answers as it does from a resource's full index rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.fhir.indexing import patient_compartment
from phivault.fhir.search.extract import extract
from tests.shared_data import shared_dir

EXAMPLES = sorted((shared_dir() / "fhir" / "r4" / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_official_examples(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    assert patient_compartment(resource) == patient_compartment(resource, extract(resource))


def test_demo_clinic() -> None:
    found: set[str | None] = set()
    for resource in generate_clinic(ClinicSpec(patients=20, seed=5)):
        compartment = patient_compartment(resource)
        assert compartment == patient_compartment(resource, extract(resource))
        found.add(compartment)
    assert None in found  # staff and places belong to no patient
    assert len(found) == 21


def test_first_compartment_parameter_decides() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "performer": [{"reference": "Patient/b"}],
        "subject": {"reference": "Patient/a"},
    }
    assert patient_compartment(observation) == "Patient/a"  # subject before performer
    del observation["subject"]
    assert patient_compartment(observation) == "Patient/b"
