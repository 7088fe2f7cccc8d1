"""`extract_params`: the entries of a few parameters, the same as `extract` gives for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phivault.fhir.search.extract import extract, extract_params
from phivault.fhir.search.registry import default_registry
from tests.shared_data import shared_dir

EXAMPLES = sorted((shared_dir() / "fhir" / "r4" / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_compartment_parameters_as_the_full_extraction_gives_them(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    codes = frozenset(default_registry().compartment_params(resource["resourceType"]))
    expected = [entry for entry in extract(resource) if entry.param in codes]
    assert extract_params(resource, codes) == expected


def test_only_the_parameters_asked_for() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/d1"}],
    }
    found = extract_params(observation, frozenset({"subject"}))
    assert [(e.param, e.value) for e in found] == [("subject", "p1")]
    assert extract_params(observation, frozenset()) == []
