"""The derived search-parameter registry against the official R4 definitions it comes from."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from phivault.errors import UnknownResourceType
from phivault.fhir.search.registry import Registry, default_registry, split_union
from tests.shared_data import shared_dir

R4 = shared_dir() / "fhir" / "r4"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bundle() -> list[dict[str, Any]]:
    data = json.loads((R4 / "search-parameters.json").read_text(encoding="utf-8"))
    return [entry["resource"] for entry in data["entry"]]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


def _derive_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "derive_search_parameters", REPO / "scripts" / "derive_search_parameters.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_data_is_derived_from_the_shared_definitions() -> None:
    # Re-derives both files in memory and compares them with the package data.
    assert _derive_script().main(["--shared", str(shared_dir()), "--check"]) == 0


def test_provenance_names_the_source_version_hash_and_licence(registry: Registry) -> None:
    source = registry.provenance["search-parameters"]
    digest = hashlib.sha256((R4 / "search-parameters.json").read_bytes()).hexdigest()
    assert source["sha256"] == digest
    assert source["fhirVersion"] == "4.0.1"
    assert source["license"] == "CC0-1.0"
    assert source["count"] == 1378
    compartment = registry.provenance["compartment-patient"]
    digest = hashlib.sha256((R4 / "compartmentdefinition-patient.json").read_bytes()).hexdigest()
    assert compartment["sha256"] == digest
    assert compartment["license"] == "CC0-1.0"


def test_every_definition_is_kept(registry: Registry, bundle: list[dict[str, Any]]) -> None:
    assert len(registry.definitions) == 1378
    assert {d.url for d in registry.definitions} == {r["url"] for r in bundle}
    by_type = Counter(d.type for d in registry.definitions)
    assert by_type == {
        "token": 539,
        "reference": 472,
        "string": 133,
        "date": 109,
        "composite": 46,
        "uri": 45,
        "quantity": 27,
        "number": 6,
        "special": 1,
    }
    assert sum(1 for d in registry.definitions if d.components) == 46
    assert sum(1 for d in registry.definitions if d.comparators) == 142


def test_every_resource_type_of_the_bundle_is_covered(
    registry: Registry, bundle: list[dict[str, Any]]
) -> None:
    bases = {b for r in bundle for b in r["base"]} - {"Resource", "DomainResource"}
    assert len(bases) == 133
    assert bases <= set(registry.resource_types())
    # 146 R4 resource types: the 133 with parameters, 12 more in the compartment
    # definition (Binary, OperationOutcome...) and Parameters.
    assert len(registry.resource_types()) == 146
    for resource_type in registry.resource_types():
        params = registry.params_for(resource_type)
        assert {"_id", "_lastUpdated", "_tag", "_security", "_profile"} <= set(params)
    for definition in bundle:
        for base in definition["base"]:
            if base in bases and "expression" in definition:
                assert registry.get(base, definition["code"]) is not None


def test_expected_counts_for_demo_types(registry: Registry) -> None:
    # The R4 search tables of each resource page (patient.html#search, ...).
    own = {
        "Patient": 23,
        "Observation": 38,
        "Encounter": 23,
        "Condition": 21,
        "MedicationRequest": 16,
        "AllergyIntolerance": 16,
        "Appointment": 17,
        "CareTeam": 8,
        "Practitioner": 17,
    }
    for resource_type, count in own.items():
        params = registry.params_for(resource_type)
        # 6 common parameters with an expression: _id _lastUpdated _profile _security
        # _source _tag; _text, _content and _query have none and cannot be indexed.
        assert len(params) == count + 6, resource_type
        assert not {"_text", "_content", "_query"} & set(params)


def test_patient_parameters(registry: Registry) -> None:
    params = registry.params_for("Patient")
    assert params["birthdate"].type == "date"
    assert params["birthdate"].expression == "Patient.birthDate"
    assert params["name"].type == "string"
    assert params["identifier"].type == "token"
    assert params["general-practitioner"].targets == (
        "Organization",
        "Practitioner",
        "PractitionerRole",
    )
    assert params["_lastUpdated"].expression == "Resource.meta.lastUpdated"
    assert params["_lastUpdated"].common
    assert not params["birthdate"].common


def test_shared_definitions_are_specialised_per_type(registry: Registry) -> None:
    code = registry.get("Observation", "code")
    assert code is not None
    assert code.url == "http://hl7.org/fhir/SearchParameter/clinical-code"
    assert code.expression == "Observation.code"
    assert len(code.base) == 14
    med = registry.get("MedicationRequest", "code")
    assert med is not None and med.expression == "(MedicationRequest.medication as CodeableConcept)"
    patient = registry.get("Encounter", "patient")
    assert patient is not None
    assert patient.expression == "Encounter.subject.where(resolve() is Patient)"


def test_composite_components(registry: Registry) -> None:
    cvq = registry.get("Observation", "code-value-quantity")
    assert cvq is not None and cvq.type == "composite"
    assert [(c.code, c.type, c.expression) for c in cvq.components] == [
        ("code", "token", "code"),
        ("value-quantity", "quantity", "value.as(Quantity)"),
    ]
    assert cvq.components[0].definition == "http://hl7.org/fhir/SearchParameter/clinical-code"


def test_corrections_are_recorded_and_applied(registry: Registry) -> None:
    corrected = {c["url"] for c in registry.provenance["corrections"]}
    assert corrected == {
        "http://hl7.org/fhir/SearchParameter/Observation-code-value-date",
        "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship",
    }
    relationship = registry.get("DocumentReference", "relationship")
    assert relationship is not None
    assert [c.expression for c in relationship.components] == ["target", "code"]


def test_patient_compartment(registry: Registry) -> None:
    assert registry.compartment_params("Observation") == ["subject", "performer"]
    assert registry.compartment_params("Patient") == ["link"]
    assert registry.compartment_params("AllergyIntolerance") == ["patient", "recorder", "asserter"]
    assert registry.compartment_params("Practitioner") == []
    assert registry.compartment_params("NoSuchType") == []


def test_unknown_resource_type(registry: Registry) -> None:
    with pytest.raises(UnknownResourceType):
        registry.params_for("NoSuchType")
    assert registry.get("NoSuchType", "_id") is None
    assert registry.get("Patient", "no-such-param") is None


def test_registry_is_loaded_once() -> None:
    assert default_registry() is default_registry()


def test_split_union_respects_parentheses_and_quotes() -> None:
    assert split_union("A.b | (A.c as Quantity) | A.d.where(x='p|q')") == [
        "A.b",
        "(A.c as Quantity)",
        "A.d.where(x='p|q')",
    ]
