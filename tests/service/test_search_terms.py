"""Terminology-aware search on both backends, encryption on: `:in` / `:not-in` against
ValueSets stored in the server, `:of-type` on identifiers, and quantities compared across
UCUM units.

Expectations are worked out by hand: ValueSet composition from the R4 ValueSet rules
(valueset.html#compositions), unit factors from UCUM's own definitions (1 [lb_av] =
453.59237 g; Cel = K - 273.15; [degF] = 5/9 K offset by 459.67), and each value's
implicit precision range from search.html ("5.4" stands for [5.35, 5.45))."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.errors import InvalidSearchParameter
from phivault.vault import Vault, init_data_dir, open_vault
from tests.service.search_data import CTX, LOINC, SNOMED, UCUM, ids

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
VS = "http://example.org/fhir/ValueSet/"


def quantity(rid: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"text": "measured"},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def coded(rid: str, system: str | None, code: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": "coded"}
    if system is not None:
        concept["coding"] = [{"system": system, "code": code}]
    return {"resourceType": "Observation", "id": rid, "status": "final", "code": concept}


def valueset(rid: str, name: str, **content: Any) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "id": rid, "url": VS + name, "status": "active", **content}


def include(system: str, *codes: str) -> dict[str, Any]:
    part: dict[str, Any] = {"system": system}
    if codes:
        part["concept"] = [{"code": c} for c in codes]
    return part


def identified(rid: str, system: str, value: str, type_code: str | None) -> dict[str, Any]:
    ident: dict[str, Any] = {"system": system, "value": value}
    if type_code is not None:
        ident["type"] = {"coding": [{"system": V2, "code": type_code}]}
    return {"resourceType": "Patient", "id": rid, "identifier": [ident]}


def resources() -> list[dict[str, Any]]:
    return [
        quantity("q-a", 5400, "mg"),  # 5.4 g
        quantity("q-b", 5.4, "g"),
        quantity("q-c", 5.4, "kg"),  # 5400 g
        quantity("q-d", 37, "Cel"),  # 310.15 K
        quantity("q-e", 98.6, "[degF]"),  # (98.6 + 459.67) * 5/9 = 310.15 K
        quantity("q-f", 80, "kg"),
        quantity("q-g", 176.37, "[lb_av]"),  # 80,000.1 g
        quantity("q-h", 5.4, "mmol/L"),
        quantity("q-i", 5400, "umol/L"),  # 5.4 mmol/L
        quantity("q-j", 5.4, "xyz"),  # not a unit this server converts
        quantity("q-k", 45, "Cel"),  # 318.15 K
        coded("c-1", LOINC, "8302-2"),
        coded("c-2", LOINC, "29463-7"),
        coded("c-3", SNOMED, "27113001"),
        coded("c-4", LOINC, "8867-4"),
        coded("c-5", None, None),  # text only
        valueset("vs-vitals", "vitals", version="1", compose={"include": [
            include(LOINC, "8302-2", "29463-7")]}),
        valueset("vs-snomed", "snomed", compose={"include": [include(SNOMED)]}),
        valueset("vs-nested", "nested", compose={
            "include": [{"valueSet": [VS + "vitals"]}],
            "exclude": [include(LOINC, "29463-7")],
        }),
        valueset("vs-expanded", "expanded", expansion={
            "timestamp": "2024-01-01T00:00:00Z",
            "contains": [{"system": LOINC, "code": "8867-4"}],
        }),
        valueset("vs-filter", "filter", compose={"include": [{
            "system": SNOMED, "filter": [{"property": "concept", "op": "is-a", "value": "1"}]}]}),
        valueset("vs-whole-minus", "whole-minus", compose={
            "include": [include(SNOMED)], "exclude": [include(SNOMED, "27113001")]}),
        identified("p-1", "urn:mrn", "123", "MR"),
        identified("p-2", "urn:ssn", "123", "SS"),
        identified("p-3", "urn:other", "123", None),
    ]  # fmt: skip


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def terms_vault(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Vault]:
    tmp = tmp_path_factory.mktemp(f"terms-{request.param}")
    schema = "t_terms_" + uuid.uuid4().hex[:10]
    pg_url = str(request.getfixturevalue("pg_url")) if request.param == "postgresql" else ""
    key = tmp / "kek.key"
    create_key_file(key)
    db_url = f"{pg_url}?schema={schema}" if pg_url else None
    init_data_dir(tmp / "data", KeyFileKeySource(key), db_url=db_url)
    vault = open_vault(tmp / "data", KeyFileKeySource(key))
    for resource in resources():
        vault.service.update(CTX, resource["resourceType"], resource["id"], resource)
    yield vault
    vault.close()
    if pg_url:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


OBS = "Observation"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # 5.4 g: [5.35, 5.45) g; 5400 mg is 5.4 g, 5.4 kg is 5400 g
        (f"value-quantity=5.4|{UCUM}|g", {"q-a", "q-b"}),
        (f"value-quantity=5400|{UCUM}|mg", {"q-a", "q-b"}),
        (f"value-quantity=0.0054|{UCUM}|kg", {"q-a", "q-b"}),
        (f"value-quantity=5.4|{UCUM}|kg", {"q-c"}),
        # 37 Cel: [36.5, 37.5) Cel = [309.65, 310.65) K holds 37 Cel and 98.6 [degF]
        (f"value-quantity=37|{UCUM}|Cel", {"q-d", "q-e"}),
        (f"value-quantity=98.6|{UCUM}|[degF]", {"q-d", "q-e"}),
        (f"value-quantity=lt300|{UCUM}|K", set()),
        # ap: within 10% of 37 Cel (33.3 to 40.7 Cel), worked out in Cel, not in K
        (f"value-quantity=ap37|{UCUM}|Cel", {"q-d", "q-e"}),
        (f"value-quantity=gt40|{UCUM}|Cel", {"q-k"}),
        # 80 kg: [79.5, 80.5) kg; 176.37 [lb_av] is 80.0001 kg
        (f"value-quantity=80|{UCUM}|kg", {"q-f", "q-g"}),
        (f"value-quantity=176.37|{UCUM}|[lb_av]", {"q-f", "q-g"}),
        # prefixes compare converted values: every mass above 5 g, below 1 kg
        (f"value-quantity=gt5|{UCUM}|g", {"q-a", "q-b", "q-c", "q-f", "q-g"}),
        (f"value-quantity=lt1|{UCUM}|kg", {"q-a", "q-b"}),
        # 5 mmol/L: [4.5, 5.5) mmol/L; 5400 umol/L is 5.4 mmol/L
        (f"value-quantity=5|{UCUM}|mmol/L", {"q-h", "q-i"}),
        ("value-quantity=5.4||mmol/L", {"q-h", "q-i"}),  # a UCUM code without the system
        # without a unit the value alone counts, as stored: 5400 mg is not 5.4
        ("value-quantity=5.4", {"q-b", "q-c", "q-h", "q-j"}),
        # an unknown unit is compared as a code
        (f"value-quantity=5.4|{UCUM}|xyz", {"q-j"}),
        (f"value-quantity=5.4|{UCUM}|g,80|{UCUM}|kg", {"q-a", "q-b", "q-f", "q-g"}),
    ],
)
def test_quantities_compare_across_ucum_units(
    terms_vault: Vault, query: str, expected: set[str]
) -> None:
    assert ids(terms_vault, OBS, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"code:in={VS}vitals", {"c-1", "c-2"}),
        (f"code:in={VS}vitals|1", {"c-1", "c-2"}),
        ("code:in=ValueSet/vs-vitals", {"c-1", "c-2"}),
        (f"code:in={VS}snomed", {"c-3"}),  # a whole code system
        (f"code:in={VS}nested", {"c-1"}),  # vitals, minus 29463-7
        (f"code:in={VS}expanded", {"c-4"}),  # a stored expansion
        (f"code:in={VS}vitals,{VS}snomed", {"c-1", "c-2", "c-3"}),
        (f"code:in={VS}vitals&code:in={VS}nested", {"c-1"}),
        (f"code:not-in={VS}vitals", {"c-3", "c-4", "c-5"}),
        (f"code:not-in={VS}snomed&code:not-in={VS}expanded", {"c-1", "c-2", "c-5"}),
    ],
)
def test_in_and_not_in_a_stored_valueset(
    terms_vault: Vault, query: str, expected: set[str]
) -> None:
    found = ids(terms_vault, OBS, query + "&_id=c-1,c-2,c-3,c-4,c-5")
    assert found == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (f"code:in={VS}unknown", "is not known to this server"),
        (f"code:in={VS}vitals|9", "is not known to this server"),
        (f"code:in={VS}filter", "filters"),
        (f"code:not-in={VS}whole-minus", "excludes single codes"),
    ],
)
def test_valuesets_that_cannot_be_used_are_a_clear_400(
    terms_vault: Vault, query: str, message: str
) -> None:
    with pytest.raises(InvalidSearchParameter) as caught:
        ids(terms_vault, OBS, query)
    assert message in caught.value.message
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"identifier:of-type={V2}|MR|123", {"p-1"}),
        (f"identifier:of-type={V2}|SS|123", {"p-2"}),
        (f"identifier:of-type={V2}|MR|124", set()),
        (f"identifier:of-type={V2}|MR|123,{V2}|SS|123", {"p-1", "p-2"}),
        # the plain forms are unchanged by the typed rows
        ("identifier=123", {"p-1", "p-2", "p-3"}),
        ("identifier=urn:mrn|123", {"p-1"}),
        ("identifier:not=urn:mrn|123", {"p-2", "p-3"}),
    ],
)
def test_identifier_of_type(terms_vault: Vault, query: str, expected: set[str]) -> None:
    # Patient identifiers are blinded: the typed value goes through the index policy too.
    assert ids(terms_vault, "Patient", query) == expected
