"""Required value-set bindings (FHIR R4 terminologies.html#required), expectations from the
R4 value sets: administrative-gender is male|female|other|unknown, name-use includes
official, quantity-comparator is < <= >= >, narrative-status includes generated."""

from __future__ import annotations

import json
from typing import Any

import pytest

from phivault.errors import InvalidResource
from phivault.fhir.bindings import bindings, wrong_codes
from phivault.fhir.validation import validate_resource
from tests.shared_data import shared_dir


def test_codes_in_their_value_sets_pass_at_every_level() -> None:
    patient = {
        "resourceType": "Patient",
        "gender": "female",
        "name": [{"use": "official", "family": "F"}],
        "contact": [{"gender": "other"}],
        "text": {"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'/>"},
        "extension": [{"url": "urn:x", "valueQuantity": {"value": 1, "comparator": "<="}}],
    }
    assert wrong_codes(patient) == []
    validate_resource(patient)


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ({"resourceType": "Patient", "gender": "M"}, "Patient.gender"),  # codes are exact
        ({"resourceType": "Patient", "contact": [{"gender": "x"}]}, "Patient.contact[0].gender"),
        ({"resourceType": "Patient", "name": [{"use": "nick"}]}, "Patient.name[0].use"),
        (
            {
                "resourceType": "Patient",
                "_birthDate": {"extension": [{"url": "u", "valueQuantity": {"comparator": "~"}}]},
            },
            "Patient._birthDate.extension[0].valueQuantity.comparator",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "contained": [{"resourceType": "Patient", "id": "p", "gender": "f"}],
            },
            "Observation.contained[0].gender",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Observation", "status": "done"}}],
            },
            "Bundle.entry[0].resource.status",
        ),
        ({"resourceType": "Bundle", "type": "pile"}, "Bundle.type"),
    ],
)
def test_a_code_outside_its_value_set_is_found(resource: dict[str, Any], path: str) -> None:
    assert wrong_codes(resource) == [path]


def test_validation_refuses_without_echoing_the_code() -> None:
    with pytest.raises(InvalidResource) as caught:
        validate_resource({"resourceType": "Patient", "gender": "Zzyzxcode"})
    assert caught.value.expression == ["Patient.gender"]
    assert "Zzyzxcode" not in caught.value.message


def test_every_official_example_passes() -> None:
    checked = 0
    for path in sorted((shared_dir() / "fhir" / "r4" / "examples").glob("*.json")):
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(resource, dict) and "resourceType" in resource:
            assert wrong_codes(resource) == [], path.name
            checked += 1
    assert checked > 50


def test_the_table_says_where_it_comes_from() -> None:
    table = bindings()
    assert table.source["fhirVersion"] == "4.0.1"
    assert set(table.source["sha256"]) == {"types.json", "valuesets.json"}
    gender = table.codes["http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1"]
    assert gender == {"male", "female", "other", "unknown"}
    status = table.codes["http://hl7.org/fhir/ValueSet/observation-status|4.0.1"]
    assert status == {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


@pytest.mark.parametrize(
    ("status", "wrong"),
    [
        ({"coding": [{"system": CLINICAL, "code": "active"}]}, False),
        # one coding from the set is enough; others may come along
        (
            {
                "coding": [
                    {"system": "urn:x", "code": "a"},
                    {"system": CLINICAL, "code": "resolved"},
                ]
            },
            False,
        ),
        ({"coding": [{"system": CLINICAL, "code": "cured"}]}, True),  # not an R4 code
        ({"coding": [{"system": "urn:x", "code": "active"}]}, True),  # right code, wrong system
        ({"text": "active"}, True),  # text alone does not meet a required binding
    ],
)
def test_codeable_concepts_need_a_coding_from_the_set(status: dict[str, Any], wrong: bool) -> None:
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p"},
        "clinicalStatus": status,
    }
    assert wrong_codes(condition) == (["Condition.clinicalStatus"] if wrong else [])
