"""The compiled engine against fhirpathpy on every example: the same set of index entries."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from phivault.fhir.search.extract import Extractor, extract, extract_with_fhirpath
from phivault.fhir.search.index import IndexEntry
from phivault.fhir.search.registry import Registry, SearchParam, default_registry
from tests.shared_data import shared_dir

EXAMPLES = sorted((shared_dir() / "fhir" / "r4" / "examples").glob("*.json"))
EDGE_CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "edge_cases.json").read_text(encoding="utf-8")
)["resources"]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 50


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_compiled_equals_fhirpathpy_on_official_examples(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    compiled = extract(copy.deepcopy(resource))
    assert len(compiled) == len(set(compiled))
    assert set(compiled) == set(extract_with_fhirpath(copy.deepcopy(resource)))


@pytest.mark.parametrize(
    "resource", EDGE_CASES, ids=[f"{r['resourceType']}-{r['id']}" for r in EDGE_CASES]
)
def test_compiled_equals_fhirpathpy_on_edge_cases(resource: dict[str, Any]) -> None:
    compiled = set(extract(copy.deepcopy(resource)))
    assert compiled == set(extract_with_fhirpath(copy.deepcopy(resource)))


def test_the_differential_is_not_vacuous() -> None:
    kinds = set()
    for resource in EDGE_CASES:
        kinds |= {e.kind for e in extract(resource)}
    assert kinds == {
        "token",
        "string",
        "date",
        "reference",
        "quantity",
        "number",
        "uri",
        "composite",
    }


def test_all_but_one_definition_compile() -> None:
    report = Extractor().report()
    # DeviceDefinition-classification is an R5 definition (DeviceDefinition.classification
    # does not exist in R4) that slipped into the 4.0.1 bundle: fhirpathpy evaluates it.
    assert report.fallback == (
        "http://hl7.org/fhir/SearchParameter/DeviceDefinition-classification",
    )
    assert set(report.not_indexed) == {
        "http://hl7.org/fhir/SearchParameter/DomainResource-text",
        "http://hl7.org/fhir/SearchParameter/Resource-content",
        "http://hl7.org/fhir/SearchParameter/Resource-query",
        "http://hl7.org/fhir/SearchParameter/Location-near",
    }
    assert report.compiled == 1378 - 1 - 4


def test_uncompilable_expressions_fall_back_to_fhirpathpy() -> None:
    base = default_registry()
    initial = SearchParam(
        code="initial",
        type="string",
        base=("Patient",),
        expression="Patient.name.where(use='official').family.substring(0, 1)",
        url="urn:test:initial",
    )
    failing = SearchParam(
        code="failing",
        type="string",
        base=("Patient",),
        expression="Patient.name.given.substring(0, 1)",  # substring() of a collection
        url="urn:test:failing",
    )
    definitions = [*base.definitions, initial, failing]
    registry = Registry(definitions, {}, resource_types=base.resource_types())
    extractor = Extractor(registry)
    plan = extractor.plan("Patient")
    assert [p.code for p in plan.fallback] == ["failing", "initial"]
    patient = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
    }
    entries = extractor.extract(patient)
    assert {e for e in entries if e.param in ("initial", "failing")} == {
        IndexEntry("initial", "string", None, "c", "C"),
    }
    assert {e.param for e in entries} >= {"name", "family", "given"}


def test_fhirpathpy_works_on_a_copy() -> None:
    base = default_registry()
    absolute = SearchParam(
        code="absolute-value",
        type="number",
        base=("Observation",),
        expression="Observation.value.ofType(Quantity).value.abs()",
        url="urn:test:absolute-value",
    )
    registry = Registry([*base.definitions, absolute], {}, resource_types=base.resource_types())
    extractor = Extractor(registry)
    assert [p.code for p in extractor.plan("Observation").fallback] == ["absolute-value"]
    obs: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    obs["valueQuantity"] = {"value": -2.5}
    entries = [e for e in extractor.extract(obs) if e.param == "absolute-value"]
    assert [(e.lo, e.hi) for e in entries] == [(2.45, 2.55)]
    # fhirpathpy turns the numbers it visits into Decimal, in place: it had a copy
    assert type(obs["valueQuantity"]["value"]) is float
