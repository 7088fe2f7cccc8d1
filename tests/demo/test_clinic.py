"""The synthetic clinic: deterministic, valid R4, referentially sound, streaming."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from phivault.demo import names
from phivault.demo.clinic import (
    REFERENCE_DATE,
    STAFF_ROLE_SYSTEM,
    ClinicSpec,
    count_resources,
    demo_staff,
    generate_clinic,
    staff_roles,
)
from phivault.demo.common import IndexPermutation, luhn_check_digit, seeded_stream

Resource = dict[str, Any]

PATIENT_ORDER = (
    "Patient",
    "CareTeam",
    "Encounter",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "Appointment",
)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
SSN = re.compile(r"^9\d\d-(?!00)\d\d-(?!0000)\d{4}$")
MRN = re.compile(r"^\d{8}$")


def _dump(resources: list[Resource]) -> bytes:
    return json.dumps(resources, ensure_ascii=False, separators=(",", ":")).encode()


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _patient_blocks(resources: list[Resource]) -> list[list[Resource]]:
    blocks: list[list[Resource]] = []
    for resource in resources:
        if resource["resourceType"] == "Patient":
            blocks.append([])
        if blocks:
            blocks[-1].append(resource)
    return blocks


def _by_type(resources: list[Resource], resource_type: str) -> list[Resource]:
    return [r for r in resources if r["resourceType"] == resource_type]


def _codes(concept: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for c in concept.get("coding", []) if c.get("system") == system]


@pytest.fixture(scope="module")
def small() -> list[Resource]:
    return list(generate_clinic(ClinicSpec(patients=50, seed=11)))


@pytest.fixture(scope="module")
def medium() -> list[Resource]:
    return list(generate_clinic(ClinicSpec(patients=2_000, seed=5)))


# --- determinism -------------------------------------------------------------------------


def test_same_spec_gives_byte_identical_output() -> None:
    spec = ClinicSpec(patients=200, seed=3)
    assert _dump(list(generate_clinic(spec))) == _dump(list(generate_clinic(spec)))


def test_output_does_not_depend_on_the_interpreter_hash_seed() -> None:
    script = (
        "import hashlib, json\n"
        "from phivault.demo.clinic import ClinicSpec, generate_clinic\n"
        "data = list(generate_clinic(ClinicSpec(patients=100, seed=4)))\n"
        "print(hashlib.sha256(json.dumps(data, ensure_ascii=False,"
        " separators=(',', ':')).encode()).hexdigest())\n"
    )
    expected = hashlib.sha256(
        _dump(list(generate_clinic(ClinicSpec(patients=100, seed=4))))
    ).hexdigest()
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == expected


def test_different_seeds_give_different_clinics() -> None:
    first = list(generate_clinic(ClinicSpec(patients=100, seed=1)))
    second = list(generate_clinic(ClinicSpec(patients=100, seed=2)))
    assert _dump(first) != _dump(second)
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    names_first = [p["name"][0]["family"] for p in _by_type(first, "Patient")]
    names_second = [p["name"][0]["family"] for p in _by_type(second, "Patient")]
    assert names_first != names_second


def test_a_larger_clinic_starts_with_the_same_patients() -> None:
    # Staff size depends on the patient count, so compare from the first patient on.
    small = _patient_blocks(list(generate_clinic(ClinicSpec(patients=20, seed=9, practitioners=4))))
    large = _patient_blocks(list(generate_clinic(ClinicSpec(patients=40, seed=9, practitioners=4))))
    assert large[:20] == small


# --- validity and shape ------------------------------------------------------------------


def test_every_resource_is_valid_fhir_r4b(small: list[Resource]) -> None:
    failures = []
    for resource in small:
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except ValueError as error:  # pydantic's ValidationError; report them all
            failures.append(f"{resource['resourceType']}/{resource['id']}: {error}")
    assert not failures, "\n".join(failures[:5])


def test_every_resource_has_a_unique_client_assigned_id(medium: list[Resource]) -> None:
    ids = [(r["resourceType"], r["id"]) for r in medium]
    assert len(ids) == len(set(ids))
    assert all(FHIR_ID.match(rid) for _, rid in ids)
    assert all(uuid.UUID(rid).version == 4 for _, rid in ids)


def test_every_reference_points_to_an_earlier_resource(medium: list[Resource]) -> None:
    seen: set[str] = set()
    for resource in medium:
        for reference in _references(resource):
            assert reference in seen, f"{resource['resourceType']} -> {reference}"
        seen.add(f"{resource['resourceType']}/{resource['id']}")


def test_resources_come_in_dependency_order(medium: list[Resource]) -> None:
    spec = ClinicSpec(patients=2_000, seed=5)
    staff = len(staff_roles(spec))
    head = [r["resourceType"] for r in medium[: 1 + spec.locations + 2 * staff]]
    assert head == (
        ["Organization"]
        + ["Location"] * spec.locations
        + ["Practitioner", "PractitionerRole"] * staff
    )
    for block in _patient_blocks(medium):
        ranks = [PATIENT_ORDER.index(r["resourceType"]) for r in block]
        assert ranks == sorted(ranks)
        assert ranks.count(1) == 1  # exactly one CareTeam per patient


def test_resources_share_no_mutable_objects(small: list[Resource]) -> None:
    owner: dict[int, str] = {}

    def walk(node: Any, resource_id: str) -> None:
        if isinstance(node, dict | list):
            assert owner.setdefault(id(node), resource_id) == resource_id
            for child in node.values() if isinstance(node, dict) else node:
                walk(child, resource_id)

    for resource in small:
        walk(resource, f"{resource['resourceType']}/{resource['id']}")


# --- counts, ratios and content ----------------------------------------------------------


def test_counts_and_ratios(medium: list[Resource]) -> None:
    counts = Counter(r["resourceType"] for r in medium)
    assert counts["Organization"] == 1
    assert counts["Patient"] == counts["CareTeam"] == 2_000
    assert (
        counts["Practitioner"]
        == counts["PractitionerRole"]
        == len(staff_roles(ClinicSpec(patients=2_000)))
    )
    per_patient = sum(len(block) for block in _patient_blocks(medium)) / 2_000
    assert 9.0 <= per_patient <= 11.5
    for resource_type in PATIENT_ORDER:
        assert counts[resource_type] > 0, resource_type
    block_sizes = Counter(len(block) for block in _patient_blocks(medium))
    assert min(block_sizes) == 2 and max(block_sizes) >= 25  # natural variation


def test_default_and_explicit_practitioner_counts() -> None:
    assert staff_roles(ClinicSpec(patients=100)).count("clinician") == 3
    assert staff_roles(ClinicSpec(patients=10_000)).count("clinician") == 50
    roles = staff_roles(ClinicSpec(patients=10, practitioners=7))
    assert roles.count("clinician") == 7
    assert {"clinician", "nurse", "front-desk", "billing"} == set(roles)


def test_count_resources_is_exact() -> None:
    for spec in (
        ClinicSpec(patients=0),
        ClinicSpec(patients=1, seed=8),
        ClinicSpec(patients=300, seed=2, practitioners=5),
    ):
        assert count_resources(spec) == sum(1 for _ in generate_clinic(spec))


def test_clinical_records_use_standard_terminologies(medium: list[Resource]) -> None:
    categories: Counter[str] = Counter()
    for observation in _by_type(medium, "Observation"):
        assert _codes(observation["code"], "http://loinc.org")
        assert observation["effectiveDateTime"]
        quantities = [observation.get("valueQuantity")] + [
            c["valueQuantity"] for c in observation.get("component", [])
        ]
        for quantity in filter(None, quantities):
            assert quantity["system"] == "http://unitsofmeasure.org" and quantity["code"]
        categories[observation["category"][0]["coding"][0]["code"]] += 1
    assert categories["vital-signs"] > categories["laboratory"] > 0
    for condition in _by_type(medium, "Condition"):
        assert _codes(condition["code"], "http://snomed.info/sct")
        assert _codes(condition["code"], "http://hl7.org/fhir/sid/icd-10-cm")
    for request in _by_type(medium, "MedicationRequest"):
        assert _codes(
            request["medicationCodeableConcept"], "http://www.nlm.nih.gov/research/umls/rxnorm"
        )


def test_dates_are_relative_to_the_fixed_reference_date(medium: list[Resource]) -> None:
    assert date(2026, 1, 1) == REFERENCE_DATE
    today = REFERENCE_DATE.isoformat()
    for encounter in _by_type(medium, "Encounter"):
        assert encounter["period"]["start"] < today
    starts = [a["start"][:10] for a in _by_type(medium, "Appointment")]
    past = sum(start < today for start in starts)
    assert 0.2 < past / len(starts) < 0.8
    for patient in _by_type(medium, "Patient"):
        assert "1929-" <= patient["birthDate"] < today


def test_patients_look_real(medium: list[Resource]) -> None:
    patients = _by_type(medium, "Patient")
    clinicians = {
        m["practitioner"]
        for m in demo_staff(ClinicSpec(patients=2_000, seed=5))
        if m["role"] == "clinician"
    }
    for patient in patients:
        name = patient["name"][0]
        assert name["family"] and name["given"]
        assert patient["gender"] in ("male", "female", "other", "unknown")
        assert patient["telecom"][0]["system"] == "phone"
        address = patient["address"][0]
        assert address["line"] and address["city"] and address["country"] == "US"
        assert re.match(r"^[A-Z]{2}$", address["state"])
        assert re.match(r"^\d{5}$", address["postalCode"])
        assert patient["maritalStatus"]["coding"][0]["code"]
        assert patient["generalPractitioner"][0]["reference"] in clinicians
        types = {i["type"]["coding"][0]["code"]: i for i in patient["identifier"]}
        assert MRN.match(types["MR"]["value"])
        assert types["MR"]["type"]["coding"][0]["system"] == (
            "http://terminology.hl7.org/CodeSystem/v2-0203"
        )
        if "SS" in types:
            assert types["SS"]["system"] == "http://hl7.org/fhir/sid/us-ssn"
            assert SSN.match(types["SS"]["value"])
    assert sum(any(t["system"] == "email" for t in p["telecom"]) for p in patients) > 500
    assert len({p["name"][0]["family"] for p in patients}) > 250
    assert len({p["name"][0]["given"][0] for p in patients}) > 300
    genders = Counter(p["gender"] for p in patients)
    assert genders["female"] > 800 and genders["male"] > 800


def test_name_lists_are_sizeable() -> None:
    assert len(names.ALL_MALE) >= 300
    assert len(names.ALL_FEMALE) >= 300
    assert len(names.ALL_FAMILY) >= 300
    assert len(names.GROUPS) >= 6


def test_mrn_and_ssn_are_unique_per_patient() -> None:
    patients = [
        r
        for r in generate_clinic(ClinicSpec(patients=5_000, seed=21))
        if r["resourceType"] == "Patient"
    ]
    values: dict[str, list[str]] = {"MR": [], "SS": []}
    for patient in patients:
        for identifier in patient["identifier"]:
            values[identifier["type"]["coding"][0]["code"]].append(identifier["value"])
    assert len(values["MR"]) == 5_000 == len(set(values["MR"]))
    assert len(values["SS"]) > 4_500
    assert len(values["SS"]) == len(set(values["SS"]))


@pytest.mark.parametrize("size", [2, 3, 1_000, 4_097, 99_991])
def test_identifier_permutation_is_a_bijection(size: int) -> None:
    permutation = IndexPermutation(size, seeded_stream(0, "test"))
    assert sorted(permutation(i) for i in range(size)) == list(range(size))


def test_npis_carry_a_valid_check_digit(small: list[Resource]) -> None:
    assert luhn_check_digit("80840" + "123456789") == 3  # CMS example NPI 1234567893
    npis = [
        i["value"]
        for r in small
        for i in r.get("identifier", [])
        if i.get("system") == "http://hl7.org/fhir/sid/us-npi"
    ]
    assert npis and len(npis) == len(set(npis))
    for value in npis:
        assert len(value) == 10 and luhn_check_digit("80840" + value[:9]) == int(value[9])


# --- staff -------------------------------------------------------------------------------


def test_demo_staff_matches_the_generated_practitioners(small: list[Resource]) -> None:
    spec = ClinicSpec(patients=50, seed=11)
    staff = demo_staff(spec)
    assert staff == demo_staff(spec)
    assert [m["role"] for m in staff] == staff_roles(spec)
    assert len({m["username"] for m in staff}) == len(staff)
    assert all(re.match(r"^[a-z0-9]+$", m["username"]) for m in staff)
    roles = {f"PractitionerRole/{r['id']}": r for r in _by_type(small, "PractitionerRole")}
    practitioners = {f"Practitioner/{r['id']}" for r in _by_type(small, "Practitioner")}
    for member in staff:
        assert member["practitioner"] in practitioners
        role = roles[member["practitioner_role"]]
        assert role["practitioner"]["reference"] == member["practitioner"]
        assert _codes(role["code"][0], STAFF_ROLE_SYSTEM) == [member["role"]]


def test_care_teams_name_the_patients_clinician_and_nurse(small: list[Resource]) -> None:
    roles = {m["practitioner"]: m["role"] for m in demo_staff(ClinicSpec(patients=50, seed=11))}
    for block in _patient_blocks(small):
        patient, care_team = block[0], block[1]
        members = [p["member"]["reference"] for p in care_team["participant"]]
        assert care_team["subject"]["reference"] == f"Patient/{patient['id']}"
        assert members[0] == patient["generalPractitioner"][0]["reference"]
        assert [roles[m] for m in members] == ["clinician", "nurse"]


# --- streaming and validation of the spec ------------------------------------------------


def test_generation_streams_without_precomputing() -> None:
    started = time.perf_counter()
    stream = generate_clinic(ClinicSpec(patients=1_000_000, seed=1))
    first = next(stream)
    assert first["resourceType"] == "Organization"
    assert time.perf_counter() - started < 0.5
    # Through the ~19,000 staff resources and into the patients, still quickly.
    taken = list(itertools.islice(stream, 30_000))
    assert taken[-1]["resourceType"] != "PractitionerRole"
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    "kwargs", [{"patients": -1}, {"patients": 10, "practitioners": 0}, {"patients": 10**9}]
)
def test_spec_rejects_impossible_clinics(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ClinicSpec(**kwargs)


def test_an_empty_clinic_has_only_its_site_and_staff() -> None:
    resources = list(generate_clinic(ClinicSpec(patients=0)))
    assert {r["resourceType"] for r in resources} == {
        "Organization",
        "Location",
        "Practitioner",
        "PractitionerRole",
    }
