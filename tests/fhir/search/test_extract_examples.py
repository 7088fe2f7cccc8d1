"""Index entries of official R4 examples, against expectations written by hand from the spec.

Each expectation reads the example JSON and FHIR R4 search.html: what a server must be able
to find the resource by. Dates are computed with datetime here, not with the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from phivault.fhir.search.extract import extract
from phivault.fhir.search.index import IndexEntry
from tests.shared_data import shared_dir

EXAMPLES = shared_dir() / "fhir" / "r4" / "examples"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
LB = 453.59237


def load(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return resource


def day(year: int, month: int, dd: int) -> tuple[float, float]:
    start = datetime(year, month, dd, tzinfo=UTC).timestamp()
    return start, start + 86400


def tok(param: str, system: str | None, value: str | None, text: str | None = None) -> IndexEntry:
    return IndexEntry(param, "token", system, value, text)


def s(param: str, raw: str, normalized: str) -> IndexEntry:
    return IndexEntry(param, "string", None, normalized, raw)


def ref(param: str, rtype: str | None, rid: str) -> IndexEntry:
    return IndexEntry(param, "reference", rtype, rid)


def dt(param: str, bounds: tuple[float, float]) -> IndexEntry:
    return IndexEntry(param, "date", lo=bounds[0], hi=bounds[1])


def by_param(entries: list[IndexEntry], param: str) -> set[IndexEntry]:
    return {e for e in entries if e.param == param}


def test_patient_example() -> None:
    entries = extract(load("patient-example.json"))
    assert len(entries) == len(set(entries)), "no duplicate rows"
    phones = ["(03) 5555 6473", "(03) 3410 5613", "(03) 5555 8834"]
    name_parts = [("Chalmers", "chalmers"), ("Peter", "peter"), ("James", "james")]
    name_parts += [("Jim", "jim"), ("Windsor", "windsor")]
    address = [
        (
            "534 Erewhon St PeasantVille, Rainbow, Vic  3999",
            "534 erewhon st peasantville, rainbow, vic 3999",
        ),
        ("534 Erewhon St", "534 erewhon st"),
        ("PleasantVille", "pleasantville"),
        ("Rainbow", "rainbow"),
        ("Vic", "vic"),
        ("3999", "3999"),
    ]
    expected = {
        tok("_id", "", "example"),
        tok("active", "", "true"),
        tok("gender", "", "male"),
        tok("deceased", "", "false"),  # deceasedBoolean false
        tok("identifier", "urn:oid:1.2.36.146.595.217.0.1", "12345"),
        # again under its type's system|code, for identifier:of-type
        tok("identifier", "http://terminology.hl7.org/CodeSystem/v2-0203|MR", "12345"),
        tok("address-use", "", "home"),
        *(tok("phone", "phone", p) for p in phones),
        *(tok("telecom", "phone", p) for p in phones),  # the bare {"use": "home"} has no value
        dt("birthdate", day(1974, 12, 25)),  # the whole day; the birthTime extension is not it
        s("family", "Chalmers", "chalmers"),
        s("family", "Windsor", "windsor"),
        s("given", "Peter", "peter"),
        s("given", "James", "james"),
        s("given", "Jim", "jim"),
        *(s("name", raw, norm) for raw, norm in name_parts),
        *(s("phonetic", raw, norm) for raw, norm in name_parts),
        *(s("address", raw, norm) for raw, norm in address),
        s("address-city", "PleasantVille", "pleasantville"),
        s("address-state", "Vic", "vic"),
        s("address-postalcode", "3999", "3999"),
        ref("organization", "Organization", "1"),
    }
    assert set(entries) == expected
    # Not there: no email, no death date, the contact's name and phone are not the patient's.
    assert not by_param(entries, "email") | by_param(entries, "death-date")


def test_observation_example() -> None:
    entries = extract(load("observation-example.json"))
    codes = [
        (LOINC, "29463-7", "Body Weight"),
        (LOINC, "3141-9", "Body weight Measured"),
        (SNOMED, "27113001", "Body weight"),
        ("http://acme.org/devices/clinical-codes", "body-weight", "Body Weight"),
    ]
    weight = IndexEntry("value-quantity", "quantity", UCUM, "[lb_av]", "lbs", 184.5, 185.5)
    expected = {
        tok("_id", "", "example"),
        tok("status", "", "final"),
        tok(
            "category",
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "vital-signs",
            "Vital Signs",
        ),
        *(tok("code", *c) for c in codes),
        *(tok("combo-code", *c) for c in codes),
        ref("subject", "Patient", "example"),
        ref("patient", "Patient", "example"),
        ref("encounter", "Encounter", "example"),
        dt("date", day(2016, 3, 28)),
        weight,
        IndexEntry("combo-value-quantity", "quantity", UCUM, "[lb_av]", "lbs", 184.5, 185.5),
        # the same in canonical UCUM units: 1 [lb_av] = 453.59237 g (UCUM's definition)
        *(
            IndexEntry(f"{name}:ucum", "quantity", UCUM, "g", None, 184.5 * LB, 185.5 * LB)
            for name in ("value-quantity", "combo-value-quantity")
        ),
        *(
            IndexEntry(name, "composite", None, f"{c[0]}|{c[1]}${UCUM}|[lb_av]", None, 184.5, 185.5)
            for c in codes
            for name in ("code-value-quantity", "combo-code-value-quantity")
        ),
    }
    assert set(entries) == expected


def test_encounter_example() -> None:
    entries = extract(load("encounter-example.json"))
    assert set(entries) == {
        tok("_id", "", "example"),
        tok("status", "", "in-progress"),
        # Encounter.class is a Coding: its display is the text
        tok(
            "class",
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "IMP",
            "inpatient encounter",
        ),
        ref("subject", "Patient", "example"),
        ref("patient", "Patient", "example"),
    }


def test_condition_example() -> None:
    entries = extract(load("condition-example.json"))
    assert by_param(entries, "code") == {
        tok("code", SNOMED, "39065001", "Burn of ear"),
        tok("code", None, None, "Burnt Ear"),  # CodeableConcept.text, for :text
    }
    assert by_param(entries, "onset-date") == {dt("onset-date", day(2012, 5, 24))}
    assert by_param(entries, "category") == {
        tok(
            "category",
            "http://terminology.hl7.org/CodeSystem/condition-category",
            "encounter-diagnosis",
            "Encounter Diagnosis",
        ),
        tok("category", SNOMED, "439401001", "Diagnosis"),
    }
    assert by_param(entries, "clinical-status") == {
        tok("clinical-status", "http://terminology.hl7.org/CodeSystem/condition-clinical", "active")
    }
    assert tok("severity", SNOMED, "24484000", "Severe") in entries
    assert tok("body-site", SNOMED, "49521004", "Left external ear structure") in entries
    assert by_param(entries, "patient") == {ref("patient", "Patient", "example")}
    assert by_param(entries, "subject") == {ref("subject", "Patient", "example")}
    assert not by_param(entries, "onset-info") | by_param(entries, "abatement-date")


def test_medicationrequest_example() -> None:
    entries = extract(load("medicationrequest0301.json"))
    assert by_param(entries, "identifier") == {
        tok("identifier", "http://www.bmc.nl/portal/prescriptions", "12345689")
    }
    assert by_param(entries, "authoredon") == {dt("authoredon", day(2015, 1, 15))}
    assert by_param(entries, "patient") == {ref("patient", "Patient", "pat1")}
    assert by_param(entries, "requester") == {ref("requester", "Practitioner", "f007")}
    assert by_param(entries, "intended-performer") == {
        ref("intended-performer", "Practitioner", "f204")
    }
    assert by_param(entries, "encounter") == {ref("encounter", "Encounter", "f201")}
    assert tok("intent", "", "order") in entries
    assert tok("status", "", "completed") in entries
    # medicationReference is "#med0310", a contained Medication: not addressable by search,
    # and not a CodeableConcept, so neither `medication` nor `code` has an entry.
    assert not by_param(entries, "medication") | by_param(entries, "code")
    # dosageInstruction.timing has a repeat but no event dates
    assert not by_param(entries, "date")


@pytest.mark.parametrize(
    ("value", "lo", "hi"),
    [(5.4, 5.35, 5.45), (185, 184.5, 185.5), (0.25, 0.245, 0.255), (120.0, 119.95, 120.05)],
)
def test_quantity_precision_in_an_observation(value: float, lo: float, hi: float) -> None:
    resource = load("observation-example.json")
    resource["valueQuantity"]["value"] = value
    (entry,) = by_param(extract(resource), "value-quantity")
    assert (entry.lo, entry.hi) == pytest.approx((lo, hi))
    assert (entry.system, entry.value, entry.text) == (UCUM, "[lb_av]", "lbs")
