"""Extraction rules of FHIR R4 search.html on small hand-made resources."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from phivault.errors import InvalidResource, UnknownResourceType
from phivault.fhir.search.extract import extract
from phivault.fhir.search.index import IndexEntry

UCUM = "http://unitsofmeasure.org"


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[arg-type,misc]


def of(resource: dict[str, Any], param: str) -> set[IndexEntry]:
    return {e for e in extract(resource) if e.param == param}


def test_common_parameters_from_meta() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {
            "lastUpdated": "2024-01-02T03:04:05Z",
            "tag": [{"system": "http://t", "code": "a", "display": "A"}],
            "security": [{"system": "http://s", "code": "R"}],
            "profile": ["http://p/StructureDefinition/x"],
        },
    }
    assert of(patient, "_id") == {IndexEntry("_id", "token", "", "p1")}
    assert of(patient, "_lastUpdated") == {
        IndexEntry("_lastUpdated", "date", lo=ts(2024, 1, 2, 3, 4, 5), hi=ts(2024, 1, 2, 3, 4, 6))
    }
    assert of(patient, "_tag") == {IndexEntry("_tag", "token", "http://t", "a", "A")}
    assert of(patient, "_security") == {IndexEntry("_security", "token", "http://s", "R")}
    assert of(patient, "_profile") == {
        IndexEntry("_profile", "uri", None, "http://p/StructureDefinition/x")
    }


def test_period_open_ends_and_timing() -> None:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "effectivePeriod": {"start": "2021-01-01T10:00:00Z"},
    }
    assert of(obs, "date") == {IndexEntry("date", "date", lo=ts(2021, 1, 1, 10), hi=None)}
    obs["effectivePeriod"] = {"start": "2020", "end": "2021-06"}
    assert of(obs, "date") == {IndexEntry("date", "date", lo=ts(2020, 1, 1), hi=ts(2021, 7, 1))}
    del obs["effectivePeriod"]
    obs["effectiveTiming"] = {
        "event": ["2020-01-01"],
        "repeat": {"boundsPeriod": {"end": "2020-12"}},
    }
    assert of(obs, "date") == {
        IndexEntry("date", "date", lo=ts(2020, 1, 1), hi=ts(2020, 1, 2)),
        IndexEntry("date", "date", lo=None, hi=ts(2021, 1, 1)),
    }


def test_references() -> None:
    patient = {
        "resourceType": "Patient",
        "generalPractitioner": [
            {"reference": "Practitioner/9/_history/2"},
            {"reference": "http://other.org/fhir/Practitioner/9"},
            {"reference": "#contained"},
            {"identifier": {"system": "urn:x", "value": "42"}, "type": "Practitioner"},
            {"reference": "Organization/o", "identifier": {"system": "urn:y", "value": "7"}},
        ],
    }
    assert of(patient, "general-practitioner") == {
        IndexEntry("general-practitioner", "reference", "Practitioner", "9"),
        IndexEntry(
            "general-practitioner", "reference", None, "http://other.org/fhir/Practitioner/9"
        ),
        IndexEntry("general-practitioner", "reference", "Practitioner", None, "urn:x|42"),
        IndexEntry("general-practitioner", "reference", "Organization", "o", "urn:y|7"),
    }


def test_where_resolve_keeps_only_that_type() -> None:
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": "Location/l"}, "status": "accepted"},
            {"actor": {"reference": "https://x.org/fhir/Patient/p2"}, "status": "accepted"},
        ],
    }
    assert of(appointment, "patient") == {
        IndexEntry("patient", "reference", "Patient", "p1"),
        IndexEntry("patient", "reference", None, "https://x.org/fhir/Patient/p2"),
    }
    assert of(appointment, "location") == {IndexEntry("location", "reference", "Location", "l")}
    assert len(of(appointment, "actor")) == 3


def test_contact_points_and_deceased() -> None:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "telecom": [{"system": "email", "value": "a@b.c"}, {"value": "123"}],
        "deceasedDateTime": "2020-02",
    }
    assert of(patient, "email") == {IndexEntry("email", "token", "email", "a@b.c")}
    assert of(patient, "phone") == set()
    assert of(patient, "telecom") == {
        IndexEntry("telecom", "token", "email", "a@b.c"),
        IndexEntry("telecom", "token", "", "123"),
    }
    assert of(patient, "deceased") == {IndexEntry("deceased", "token", "", "true")}
    assert of(patient, "death-date") == {
        IndexEntry("death-date", "date", lo=ts(2020, 2, 1), hi=ts(2020, 3, 1))
    }
    patient.pop("deceasedDateTime")
    assert of(patient, "deceased") == {IndexEntry("deceased", "token", "", "false")}


def test_name_parts_are_normalised() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {
                "family": "Müller",
                "given": ["José", None],
                "prefix": ["Dr."],
                "text": "Dr.  José Müller",
            }
        ],
        "_name": None,
    }
    assert {e.value for e in of(patient, "name")} == {"muller", "jose", "dr.", "dr. jose muller"}
    assert of(patient, "family") == {IndexEntry("family", "string", None, "muller", "Müller")}


def test_quantities_ranges_money_and_comparators() -> None:
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p"},
        "onsetAge": {"value": 42, "unit": "a", "system": UCUM, "code": "a"},
        "abatementRange": {
            "low": {"value": 1, "unit": "a", "system": UCUM, "code": "a"},
            "high": {"value": 2.25},
        },
    }
    assert of(condition, "onset-age") == {
        IndexEntry("onset-age", "quantity", UCUM, "a", "a", 41.5, 42.5)
    }
    (abatement,) = of(condition, "abatement-age")
    assert (abatement.lo, abatement.hi) == pytest.approx((0.5, 2.255))
    invoice = {
        "resourceType": "Invoice",
        "status": "issued",
        "totalNet": {"value": 10.5, "currency": "EUR"},
    }
    (net,) = of(invoice, "totalnet")
    assert (net.system, net.value) == ("urn:iso:std:iso:4217", "EUR")
    assert (net.lo, net.hi) == pytest.approx((10.45, 10.55))
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": 80, "comparator": "<", "unit": "mmHg"},
    }
    assert of(obs, "value-quantity") == {
        IndexEntry("value-quantity", "quantity", None, "mmHg", "mmHg", None, 80.5)
    }


def test_composites_pair_components_of_the_same_element() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    }
    assert of(obs, "component-code-value-quantity") == {
        IndexEntry(
            "component-code-value-quantity",
            "composite",
            None,
            f"http://loinc.org|8480-6${UCUM}|mm[Hg]",
            None,
            119.5,
            120.5,
        ),
        IndexEntry(
            "component-code-value-quantity",
            "composite",
            None,
            f"http://loinc.org|8462-4${UCUM}|mm[Hg]",
            None,
            79.5,
            80.5,
        ),
    }
    # the panel code has no value of its own: no code-value-quantity at all
    assert of(obs, "code-value-quantity") == set()
    assert {e.value for e in of(obs, "combo-code-value-quantity")} == {
        f"http://loinc.org|8480-6${UCUM}|mm[Hg]",
        f"http://loinc.org|8462-4${UCUM}|mm[Hg]",
    }


def test_string_value_composite_and_relative_component_paths() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"code": "c"}]},
        "valueString": "Hello  World",
    }
    assert of(obs, "code-value-string") == {
        IndexEntry("code-value-string", "composite", None, "|c$hello world")
    }
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"url": "http://x/y"}}],
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/old"}}],
    }
    assert of(doc, "relationship") == {
        IndexEntry("relationship", "composite", None, "DocumentReference/old$|replaces")
    }


def test_extract_does_not_modify_the_resource() -> None:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": 2.5},
    }
    before = copy.deepcopy(obs)
    extract(obs)
    assert obs == before and type(obs["valueQuantity"]["value"]) is float


def test_bad_input() -> None:
    with pytest.raises(UnknownResourceType):
        extract({"resourceType": "NoSuchType"})
    with pytest.raises(InvalidResource):
        extract({"id": "x"})
    # wrongly typed values are skipped, never raised on
    weird = {
        "resourceType": "Patient",
        "name": [{"family": 5, "given": "x"}, 3],
        "birthDate": 1980,
        "telecom": {"value": {}},
    }
    assert {e.param for e in extract(weird)} == {"name", "given", "phonetic", "deceased"}
