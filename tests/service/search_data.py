"""A small fixed clinic for the search suite, and helpers to search it.

Every value below is chosen so that the expected result of each search can be worked out
by hand from the FHIR R4 rules (search.html); the expectations live in the tests, next to
the rule they check, never computed by the implementation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from phivault.service import Context
from phivault.service.search import SearchResult
from phivault.vault import Vault

CTX = Context(actor="search-suite", client="127.0.0.1", purpose="TREAT")
BASE = "http://testserver/fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"


def coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def patient(
    rid: str, family: str, given: str, ident: tuple[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": rid,
        "identifier": [{"system": ident[0], "value": ident[1]}],
        "name": [{"family": family, "given": [given]}],
        **extra,
    }


def observation(
    rid: str, code: tuple[str, str], status: str = "final", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": coding(LOINC, code[0], code[1]),
        **extra,
    }


HEIGHT = ("8302-2", "Body height")
WEIGHT = ("29463-7", "Body weight")
SMOKING = ("72166-2", "Tobacco smoking status")
HEART = ("8867-4", "Heart rate")
VITALS = [
    coding(
        "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs"
    )
]


def clinic() -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Organization",
            "id": "org-1",
            "name": "Acme Health",
            "active": True,
            "identifier": [{"system": "urn:org", "value": "O1"}],
            "type": [
                coding(
                    "http://terminology.hl7.org/CodeSystem/organization-type",
                    "prov",
                    "Healthcare Provider",
                )
            ],
        },
        {"resourceType": "Organization", "id": "org-2", "name": "acme labs", "active": False},
        {
            "resourceType": "Organization",
            "id": "org-3",
            "name": "Général Hospital",
            "partOf": {"reference": "Organization/org-1"},
        },
        {
            "resourceType": "Practitioner",
            "id": "prac-1",
            "identifier": [{"system": "urn:npi", "value": "P1"}],
            "name": [{"family": "House", "given": ["Gregory"]}],
        },
        patient(
            "pat-a",
            "Smith",
            "John",
            ("urn:mrn", "A1"),
            gender="male",
            birthDate="1980-05-17",
            active=True,
            address=[{"city": "Boston"}],
            telecom=[{"system": "email", "value": "john@example.org"}],
            managingOrganization={"reference": "Organization/org-1"},
            generalPractitioner=[{"reference": "Practitioner/prac-1"}],
            maritalStatus=coding(
                "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"
            ),
            text={
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">John</div>',
            },
        ),
        patient(
            "pat-b",
            "Smithson",
            "Anna",
            ("urn:mrn", "B2"),
            gender="female",
            birthDate="1980-11",
            address=[{"city": "Cambridge"}],
        ),
        patient(
            "pat-c",
            "Jones",
            "Émile",
            ("urn:mrn", "C3"),
            gender="female",
            birthDate="1975-01-02",
            deceasedDateTime="2020-03-04T10:00:00Z",
        ),
        patient(
            "pat-d",
            "Müller-Lüdenscheidt",
            "Hans",
            ("urn:other", "A1"),
            gender="male",
            birthDate="1990",
        ),
        patient(
            "pat-e",
            "Müller-Lüdenscheidz",
            "Karl",
            ("urn:mrn", "E5"),
            gender="male",
            birthDate="1991-02-03",
        ),
        observation(
            "obs-1",
            HEIGHT,
            category=VITALS,
            subject={"reference": "Patient/pat-a"},
            effectiveDateTime="2021-03-01T10:00:00Z",
            valueQuantity=qty(180, "cm"),
        ),
        observation(
            "obs-2",
            WEIGHT,
            subject={"reference": "Patient/pat-a"},
            effectiveDateTime="2021-06-15",
            valueQuantity=qty(80.5, "kg"),
        ),
        observation(
            "obs-3",
            HEIGHT,
            status="preliminary",
            category=VITALS,
            subject={"reference": "Patient/pat-b"},
            effectivePeriod={"start": "2022-01-01T00:00:00Z", "end": "2022-01-31T00:00:00Z"},
            valueQuantity=qty(165, "cm"),
        ),
        observation(
            "obs-4",
            WEIGHT,
            status="amended",
            subject={"reference": "Patient/pat-c"},
            effectiveDateTime="2019",
            valueQuantity=qty(100, "kg"),
            performer=[{"reference": "Practitioner/prac-1"}],
        ),
        observation(
            "obs-5",
            SMOKING,
            category=[
                coding(
                    "http://terminology.hl7.org/CodeSystem/observation-category",
                    "social-history",
                    "Social History",
                )
            ],
            subject={"reference": "Patient/pat-b"},
            effectiveDateTime="2023-05-05T12:30:00+02:00",
            valueCodeableConcept=coding(SNOMED, "266919005", "Never smoked"),
        ),
        observation(
            "obs-6",
            HEIGHT,
            status="cancelled",
            valueQuantity=qty(5.4, "mg"),
            meta={
                "tag": [{"system": "urn:tags", "code": "research"}],
                "profile": ["http://example.org/StructureDefinition/x"],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
            },
        ),
        observation("obs-7", HEART, subject={"identifier": {"system": "urn:mrn", "value": "X9"}}),
        *[
            {
                "resourceType": "RiskAssessment",
                "id": rid,
                "status": "final",
                "subject": {"reference": subject},
                "prediction": [{"probabilityDecimal": probability}],
            }
            for rid, subject, probability in [
                ("ra-1", "Patient/pat-a", 0.2),
                ("ra-2", "Patient/pat-b", 0.25),
                ("ra-3", "http://other.example/fhir/Patient/ext-1", 0.8),
            ]
        ],
        *[
            {"resourceType": "ValueSet", "id": rid, "status": "active", "url": url}
            for rid, url in [
                ("vs-1", "http://example.org/fhir/ValueSet/abc"),
                ("vs-2", "http://example.org/fhir/ValueSet/abc/sub"),
                ("vs-3", "http://example.org/other"),
            ]
        ],
        *[
            {
                "resourceType": "Encounter",
                "id": rid,
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": f"Patient/{pid}"},
            }
            for rid, pid in [("enc-d", "pat-d"), ("enc-e", "pat-e")]
        ],
    ]


def run(vault: Vault, rtype: str, query: str, **options: Any) -> SearchResult:
    pairs = parse_qsl(query, keep_blank_values=True)
    return vault.service.search(CTX, rtype, pairs, base_url=BASE, **options)


def ids(vault: Vault, rtype: str, query: str, **options: Any) -> set[str]:
    result = run(vault, rtype, query, **options)
    assert result.next_cursor is None, "the suite's searches fit on one page"
    return {e.rid for e in result.matches}


def ordered(vault: Vault, rtype: str, query: str) -> list[str]:
    return [e.rid for e in run(vault, rtype, query).matches]
