"""Each parameter type, modifier and prefix, against expectations worked out by hand from
FHIR R4 search.html for the clinic in search_data.py. Both backends, encryption on: the
Patient parameters (names, identifiers, birth dates, telecom, address) are blind indexes.
"""

from __future__ import annotations

import time

import pytest

from phivault.errors import BadRequest, UnsupportedSearchParameter
from phivault.fhir.search.index import date_range
from phivault.vault import Vault
from tests.service.search_data import BASE, ids

OBS = "Observation"


def obs(*numbers: int) -> set[str]:
    return {f"obs-{n}" for n in numbers}


def pats(*letters: str) -> set[str]:
    return {f"pat-{x}" for x in letters}


# Observation.effective of the clinic, as UTC ranges:
#   obs-1 2021-03-01T10:00:00Z (a second)   obs-2 2021-06-15 (a day)
#   obs-3 Period 2022-01-01T00:00:00Z .. 2022-01-31T00:00:00Z
#   obs-4 2019 (a year)   obs-5 2023-05-05T12:30:00+02:00 = 10:30Z   obs-6, obs-7 none
DATES = [
    # eq: the target's range lies inside the searched range
    ("date=2021", obs(1, 2)),
    ("date=eq2021", obs(1, 2)),
    ("date=2021-03-01", obs(1)),
    ("date=2021-03-01T10:00Z", obs(1)),  # the second lies within the minute
    ("date=2022-01", obs(3)),  # the whole period lies within January
    ("date=2022-01-15", set()),  # the period is wider than the day
    ("date=2023-05-05T10:30:00Z", obs(5)),  # a +02:00 time compared in UTC
    # ne: the target's range is not inside the searched range
    ("date=ne2021", obs(3, 4, 5)),
    # gt / lt: the range above / below the searched range overlaps the target
    ("date=gt2021", obs(3, 5)),
    ("date=lt2021", obs(4)),
    ("date=gt2022-01-15", obs(3, 5)),  # the period goes on after the 15th
    ("date=lt2022-01-15", obs(1, 2, 3, 4)),
    # ge / le: gt / lt, or eq
    ("date=ge2021", obs(1, 2, 3, 5)),
    ("date=le2021", obs(1, 2, 4)),
    ("date=ge2022-01-15", obs(3, 5)),
    # sa / eb: starts after / ends before the searched range
    ("date=sa2021-06-15", obs(3, 5)),
    ("date=eb2021-06-15", obs(1, 4)),
    ("date=sa2022-01-15", obs(5)),  # the period started before
    # AND by repetition, OR by comma
    ("date=ge2021&date=lt2022", obs(1, 2)),
    ("date=2019,2023", obs(4, 5)),
    ("date:missing=true", obs(6, 7)),
    ("date:missing=false", obs(1, 2, 3, 4, 5)),
]

# Observation.valueQuantity: obs-1 180 cm, obs-2 80.5 kg, obs-3 165 cm, obs-4 100 kg,
# obs-6 5.4 mg (UCUM); obs-5, obs-7 have none. A number without prefix matches values in
# its implicit precision range ("100" is [99.5, 100.5)); gt/lt compare with the exact number.
QUANTITIES = [
    ("value-quantity=180", obs(1)),
    ("value-quantity=180.0", obs(1)),
    ("value-quantity=5.4", obs(6)),
    ("value-quantity=5", obs(6)),  # [4.5, 5.5) holds 5.4
    ("value-quantity=5.40", obs(6)),  # [5.395, 5.405) holds 5.4
    ("value-quantity=gt100", obs(1, 3)),
    ("value-quantity=ge100", obs(1, 3, 4)),
    ("value-quantity=lt80.5", obs(6)),
    ("value-quantity=le80.5", obs(2, 6)),
    ("value-quantity=ne180", obs(2, 3, 4, 6)),
    ("value-quantity=sa100", obs(1, 3)),
    ("value-quantity=eb100", obs(2, 6)),
    ("value-quantity=ap100", obs(4)),  # within 10%: [90, 110]
    ("value-quantity=ap85", obs(2)),  # [76.5, 93.5]
    ("value-quantity=80.5||kg", obs(2)),
    ("value-quantity=100|http://unitsofmeasure.org|kg", obs(4)),
    ("value-quantity=180||kg", set()),
    ("value-quantity=gt50|http://unitsofmeasure.org|cm", obs(1, 3)),
    ("value-quantity=gt50|http://other.org|cm", set()),
    ("value-quantity:missing=true", obs(5, 7)),
]

# Observation.code: obs-1, obs-3, obs-6 8302-2 "Body height"; obs-2, obs-4 29463-7
# "Body weight"; obs-5 72166-2 "Tobacco smoking status"; obs-7 8867-4 "Heart rate", all
# LOINC. status: 1 2 5 7 final, 3 preliminary, 4 amended, 6 cancelled.
TOKENS = [
    ("code=8302-2", obs(1, 3, 6)),
    ("code=http://loinc.org|8302-2", obs(1, 3, 6)),
    ("code=http://snomed.info/sct|8302-2", set()),
    ("code=|8302-2", set()),  # only codes without a system
    ("code=http://loinc.org|", obs(1, 2, 3, 4, 5, 6, 7)),
    ("code=8302-2,29463-7", obs(1, 2, 3, 4, 6)),
    ("code:not=8302-2", obs(2, 4, 5, 7)),
    ("code:text=body h", obs(1, 3, 6)),
    ("code:text=BODY", obs(1, 2, 3, 4, 6)),
    ("code:text=height", set()),  # the text starts with "Body"
    ("status=final,amended", obs(1, 2, 4, 5, 7)),
    ("status:not=final", obs(3, 4, 6)),
    ("status=final&code=8302-2", obs(1)),
    ("category=vital-signs", obs(1, 3)),
    ("category:missing=true", obs(2, 4, 6, 7)),
    ("value-concept=http://snomed.info/sct|266919005", obs(5)),
    ("_id=obs-1,obs-3", obs(1, 3)),
    ("_id:not=obs-1", obs(2, 3, 4, 5, 6, 7)),
    ("_tag=urn:tags|research", obs(6)),
    ("_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", obs(6)),
    ("_profile=http://example.org/StructureDefinition/x", obs(6)),
]

# References: obs-1, obs-2 -> Patient/pat-a; obs-3, obs-5 -> pat-b; obs-4 -> pat-c and
# performer Practitioner/prac-1; obs-6 has no subject; obs-7 a logical reference
# (identifier urn:mrn|X9) only.
REFERENCES = [
    ("subject=Patient/pat-a", obs(1, 2)),
    ("subject=pat-a", obs(1, 2)),
    ("subject:Patient=pat-a", obs(1, 2)),
    ("patient=pat-a", obs(1, 2)),
    (f"subject={BASE}/Patient/pat-a", obs(1, 2)),  # this server's own absolute URL
    ("subject=http://elsewhere.example/fhir/Patient/pat-a", set()),
    ("subject=Patient/pat-a,Patient/pat-c", obs(1, 2, 4)),
    ("subject=Patient/pat-a/_history/1", obs(1, 2)),
    ("subject:identifier=urn:mrn|X9", obs(7)),
    ("subject:missing=true", obs(6)),
    ("performer=Practitioner/prac-1", obs(4)),
    ("performer:Practitioner=prac-1", obs(4)),
    ("subject=Group/pat-a", set()),
]

COMPOSITES = [
    ("code-value-quantity=http://loinc.org|8302-2$gt170|http://unitsofmeasure.org|cm", obs(1)),
    ("code-value-quantity=8302-2$gt100", obs(1, 3)),
    ("code-value-quantity=8302-2$lt10", obs(6)),
    ("code-value-quantity=29463-7$100||kg", obs(4)),
    ("code-value-quantity=29463-7$100||cm", set()),
    ("code-value-concept=72166-2$http://snomed.info/sct|266919005", obs(5)),
    ("code-value-concept=72166-2$http://snomed.info/sct|1", set()),
]


@pytest.mark.parametrize(
    ("query", "expected"), DATES + QUANTITIES + TOKENS + REFERENCES + COMPOSITES
)
def test_observation(search_vault: Vault, query: str, expected: set[str]) -> None:
    assert ids(search_vault, OBS, query) == expected


def test_approximate_date_uses_ten_percent_of_the_gap_to_now(search_vault: Vault) -> None:
    # ap: the ranges overlap once the searched range is widened by 10% of |now - value|.
    lo, hi = date_range("2021-05-01")  # type: ignore[misc]
    gap = abs(time.time() - lo) * 0.1
    targets = {
        "obs-1": date_range("2021-03-01T10:00:00Z"),
        "obs-2": date_range("2021-06-15"),
        "obs-3": (date_range("2022-01-01T00:00:00Z")[0], date_range("2022-01-31T00:00:00Z")[1]),  # type: ignore[index]
        "obs-4": date_range("2019"),
        "obs-5": date_range("2023-05-05T10:30:00Z"),
    }
    expected = {
        rid
        for rid, (t_lo, t_hi) in targets.items()
        if t_lo < hi + gap and t_hi > lo - gap  # type: ignore[misc]
    }
    assert {"obs-1", "obs-2"} <= expected  # sanity: the widening reaches March and June
    assert ids(search_vault, OBS, "date=ap2021-05-01") == expected


# Patient: a Smith (John, A1 in urn:mrn, born 1980-05-17, Boston, male); b Smithson (Anna,
# B2, 1980-11, female); c Jones (Émile, C3, 1975-01-02, died 2020-03-04T10:00Z, female);
# d Müller-Lüdenscheidt (Hans, A1 in urn:other, 1990, male); e Müller-Lüdenscheidz (Karl,
# E5, 1991-02-03, male). Only a has `active`.
PATIENTS = [
    # identifiers are blind tokens; the system stays in clear
    ("identifier=A1", pats("a", "d")),
    ("identifier=urn:mrn|A1", pats("a")),
    ("identifier=urn:other|A1", pats("d")),
    ("identifier=urn:mrn|", pats("a", "b", "c", "e")),
    ("identifier:not=urn:mrn|A1", pats("b", "c", "d", "e")),
    ("identifier:missing=false", pats("a", "b", "c", "d", "e")),
    ("telecom=john@example.org", pats("a")),
    ("email=john@example.org", pats("a")),
    ("gender=female", pats("b", "c")),
    ("gender:not=female", pats("a", "d", "e")),
    ("active:missing=true", pats("b", "c", "d", "e")),
    # strings: case- and accent-insensitive starts-with; :exact is neither
    ("family=smith", pats("a", "b")),
    ("family=SMITH", pats("a", "b")),
    ("family=smiths", pats("b")),
    ("family:exact=Smith", pats("a")),
    ("family:exact=smith", set()),
    ("family:exact=Müller-Lüdenscheidt", pats("d")),
    ("given=emile", pats("c")),
    ("given=ÉMILE", pats("c")),
    ("name=john", pats("a")),
    ("name=smith,jones", pats("a", "b", "c")),
    ("family=smith&gender=female", pats("b")),
    ("address-city=bos", pats("a")),
    ("family:missing=true", set()),
    # longer than the indexed prefixes: candidates are re-checked after decryption
    ("family=muller-luden", pats("d", "e")),
    ("family=Müller-Lüdenscheidt", pats("d")),
    ("family=müller-lüdenscheid", pats("d", "e")),
    ("family=Müller-Lüdenscheidt,smith", pats("a", "b", "d")),
    # birth dates are tokens of the date as given: eq works at any coarser precision
    ("birthdate=1980", pats("a", "b")),
    ("birthdate=1980-11", pats("b")),
    ("birthdate=1980-05-17", pats("a")),
    ("birthdate=eq1991-02-03", pats("e")),
    ("birthdate=1990", pats("d")),
    ("birthdate=1990-01", set()),  # a birth "in 1990" is not inside January 1990
    ("birthdate=1975,1990", pats("c", "d")),
    ("death-date=2020-03-04", pats("c")),
    ("death-date=2020", pats("c")),
]


@pytest.mark.parametrize(("query", "expected"), PATIENTS)
def test_patient_encrypted(search_vault: Vault, query: str, expected: set[str]) -> None:
    assert ids(search_vault, "Patient", query) == expected


@pytest.mark.parametrize(
    ("query", "what"),
    [
        ("family:contains=mit", ":contains"),
        ("identifier:text=mrn", ":text"),
        ("birthdate=ge1980", "prefix ge"),
        ("birthdate=ne1980", "prefix ne"),
        ("birthdate=1980-05-17T10:00Z", "time of day"),
        ("_sort=family", "sorting"),
        ("_sort=-birthdate", "sorting"),
    ],
)
def test_encrypted_parameters_refuse_what_tokens_cannot_answer(
    search_vault: Vault, query: str, what: str
) -> None:
    with pytest.raises(UnsupportedSearchParameter) as caught:
        ids(search_vault, "Patient", query)
    assert "encrypted" in caught.value.message
    assert caught.value.http_status == 400


# Organization names are in clear: org-1 "Acme Health", org-2 "acme labs",
# org-3 "Général Hospital" (part of org-1).
ORGANIZATIONS = [
    ("name=acme", {"org-1", "org-2"}),
    ("name=ACME H", {"org-1"}),
    ("name=general", {"org-3"}),
    ("name:exact=Acme Health", {"org-1"}),
    ("name:exact=acme health", set()),
    ("name:exact=acme labs", {"org-2"}),
    ("name:contains=health", {"org-1"}),
    ("name:contains=OSPIT", {"org-3"}),
    ("name:contains=xyz", set()),
    ("type:text=healthcare", {"org-1"}),
    ("identifier=urn:org|O1", {"org-1"}),
    ("partof=Organization/org-1", {"org-3"}),
    ("partof:missing=true", {"org-1", "org-2"}),
    ("active=false", {"org-2"}),
]


@pytest.mark.parametrize(("query", "expected"), ORGANIZATIONS)
def test_organization_strings_in_clear(search_vault: Vault, query: str, expected: set[str]) -> None:
    assert ids(search_vault, "Organization", query) == expected


# RiskAssessment.prediction.probability (number): ra-1 0.2, ra-2 0.25, ra-3 0.8.
NUMBERS = [
    ("probability=0.2", {"ra-1"}),  # [0.15, 0.25): 0.25 is the excluded end
    ("probability=0.25", {"ra-2"}),
    ("probability=gt0.2", {"ra-2", "ra-3"}),
    ("probability=lt0.8", {"ra-1", "ra-2"}),
    ("probability=ge0.25", {"ra-2", "ra-3"}),
    ("probability=le0.2", {"ra-1"}),
    ("probability=ne0.2", {"ra-2", "ra-3"}),
    ("probability=sa0.2", {"ra-2", "ra-3"}),
    ("probability=eb0.25", {"ra-1"}),
    ("probability=ap0.8", {"ra-3"}),
    ("probability=0.2,0.8", {"ra-1", "ra-3"}),
    ("subject=http://other.example/fhir/Patient/ext-1", {"ra-3"}),
]


@pytest.mark.parametrize(("query", "expected"), NUMBERS)
def test_numbers(search_vault: Vault, query: str, expected: set[str]) -> None:
    assert ids(search_vault, "RiskAssessment", query) == expected


# ValueSet.url (uri): vs-1 .../ValueSet/abc, vs-2 .../ValueSet/abc/sub, vs-3 .../other.
URIS = [
    ("url=http://example.org/fhir/ValueSet/abc", {"vs-1"}),
    ("url:below=http://example.org/fhir/ValueSet/abc", {"vs-1", "vs-2"}),
    ("url:below=http://example.org", {"vs-1", "vs-2", "vs-3"}),
    ("url:above=http://example.org/fhir/ValueSet/abc/sub", {"vs-1", "vs-2"}),
    ("url:above=http://example.org/fhir/ValueSet/abc/sub/deeper", {"vs-1", "vs-2"}),
    ("url=http://example.org/fhir/ValueSet", set()),
]


@pytest.mark.parametrize(("query", "expected"), URIS)
def test_uris(search_vault: Vault, query: str, expected: set[str]) -> None:
    assert ids(search_vault, "ValueSet", query) == expected


def test_lenient_search_reports_what_it_ignored(search_vault: Vault) -> None:
    from tests.service.search_data import run

    result = run(search_vault, OBS, "code=8302-2&colour=blue&_text=x")
    assert {e.rid for e in result.matches} == obs(1, 3, 6)
    assert result.warnings == (
        f"unknown search parameter for {OBS}: colour",
        "unsupported search parameter: _text",
    )
    with pytest.raises(BadRequest):
        run(search_vault, OBS, "code=8302-2&colour=blue", strict=True)
