"""One synthetic patient's demographics: the Patient resource and its CareTeam.

MRN and SSN come from seeded permutations of the patient's index, so they are unique
within a clinic without keeping a set of the ones already used. SSNs are drawn from the
900-999 area numbers, which the SSA never issues: they look real to software but can
never be a real person's number.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from phivault.demo.codes import MARITAL_BY_AGE, MARITAL_STATUS
from phivault.demo.common import (
    IDENTIFIER_TYPE,
    MRN_SYSTEM,
    REFERENCE_ORDINAL,
    SSN_SYSTEM,
    ClinicContext,
    ascii_fold,
    day,
    new_id,
)
from phivault.demo.names import ALL_FAMILY, ALL_FEMALE, ALL_MALE, GROUP_CUMULATIVE, GROUPS
from phivault.demo.places import REGIONS
from phivault.demo.plan import PatientPlan
from phivault.demo.staff import phone, street_line
from phivault.types import Resource

MRN_SPACE = 90_000_000
"""8-digit MRNs from 10000000: the most patients one clinic can have."""
_SSN_GROUPS, _SSN_SERIALS = 99, 9_999
SSN_SPACE = 100 * _SSN_GROUPS * _SSN_SERIALS

_EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")
_MARITAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
_CARE_TEAM_CATEGORY = ("LA27976-2", "Longitudinal care-coordination focused care team")


class Person(NamedTuple):
    """What the clinical records need to know about their patient."""

    reference: str
    birth: int
    """Birth date as a proleptic Gregorian ordinal."""
    registered: int
    """The day the patient joined the clinic; records are never older."""
    years: int
    male: bool
    gp: str
    nurse: str


def mrn_value(ctx: ClinicContext, index: int) -> str:
    return f"{10_000_000 + ctx.mrn(index):08d}"


def ssn_value(ctx: ClinicContext, index: int) -> str:
    number = ctx.ssn(index)
    area, rest = divmod(number, _SSN_GROUPS * _SSN_SERIALS)
    group, serial = divmod(rest, _SSN_SERIALS)
    return f"{900 + area}-{group + 1:02d}-{serial + 1:04d}"


def _identifier_type(code: str, display: str, text: str) -> dict[str, object]:
    return {"coding": [{"system": IDENTIFIER_TYPE, "code": code, "display": display}], "text": text}


def patient_resource(
    ctx: ClinicContext, plan: PatientPlan, index: int, rng: random.Random
) -> tuple[Resource, Person]:
    draw = rng.random
    patient_id = new_id(rng)
    years = plan.age_days // 365
    male = plan.gender == "male" or (plan.gender in ("other", "unknown") and draw() < 0.5)

    group = rng.choices(GROUPS, cum_weights=GROUP_CUMULATIVE)[0]
    given_pool = (
        (group.male if male else group.female)
        if draw() < 0.85
        else (ALL_MALE if male else ALL_FEMALE)
    )
    given = [given_pool[int(draw() * len(given_pool))]]
    if draw() < 0.4:
        middle = given_pool[int(draw() * len(given_pool))]
        if middle != given[0]:
            given.append(middle)
    family_pool = group.family if draw() < 0.92 else ALL_FAMILY
    family = family_pool[int(draw() * len(family_pool))]

    identifiers: list[dict[str, object]] = [
        {
            "use": "usual",
            "type": _identifier_type("MR", "Medical record number", "MRN"),
            "system": MRN_SYSTEM,
            "value": mrn_value(ctx, index),
            "assigner": {"reference": ctx.organization},
        }
    ]
    if years >= 1 and draw() < 0.96:
        identifiers.append(
            {
                "use": "official",
                "type": _identifier_type("SS", "Social Security number", "SSN"),
                "system": SSN_SYSTEM,
                "value": ssn_value(ctx, index),
            }
        )

    region = ctx.region if draw() < 0.95 else REGIONS[int(draw() * len(REGIONS))]
    telecom: list[dict[str, object]] = [
        {
            "system": "phone",
            "value": phone(rng, region),
            "use": "mobile" if years >= 14 and draw() < 0.7 else "home",
            "rank": 1,
        }
    ]
    if draw() < 0.25:
        telecom.append({"system": "phone", "value": phone(rng, region), "use": "work"})
    if years >= 16 and draw() < 0.6:
        number = "" if draw() < 0.5 else str(rng.randrange(1, 100))
        domain = _EMAIL_DOMAINS[int(draw() * len(_EMAIL_DOMAINS))]
        telecom.append(
            {
                "system": "email",
                "use": "home",
                "value": f"{ascii_fold(given[0])}.{ascii_fold(family)}{number}@{domain}",
            }
        )

    city = region.cities[int(draw() * len(region.cities))]
    lines = [street_line(rng)]
    if draw() < 0.18:
        lines.append(f"Apt {rng.randrange(1, 40)}{'ABCDEF'[int(draw() * 6)]}")

    marital = _marital_status(years, draw())

    if draw() < group.non_english:
        language = group.languages[int(draw() * len(group.languages))]
    else:
        language = ("en-US", "English (United States)")

    birth = REFERENCE_ORDINAL - plan.age_days
    registered = max(birth, REFERENCE_ORDINAL - rng.randrange(400, 3_650))
    gp = ctx.clinicians[int(draw() * len(ctx.clinicians))]
    nurse = ctx.nurses[int(draw() * len(ctx.nurses))]
    patient: Resource = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": identifiers,
        "active": True,
        "name": [{"use": "official", "family": family, "given": given}],
        "telecom": telecom,
        "gender": plan.gender,
        "birthDate": day(birth),
        "address": [
            {
                "use": "home",
                "type": "both",
                "line": lines,
                "city": city.name,
                "state": region.state,
                "postalCode": f"{city.zip3}{rng.randrange(100):02d}",
                "country": "US",
            }
        ],
        "maritalStatus": {
            "coding": [
                {"system": _MARITAL_SYSTEM, "code": marital, "display": MARITAL_STATUS[marital]}
            ],
            "text": MARITAL_STATUS[marital],
        },
        "communication": [
            {
                "language": {
                    "coding": [
                        {"system": "urn:ietf:bcp:47", "code": language[0], "display": language[1]}
                    ],
                    "text": language[1],
                },
                "preferred": True,
            }
        ],
        "generalPractitioner": [{"reference": gp}],
        "managingOrganization": {"reference": ctx.organization},
    }
    reference = f"Patient/{patient_id}"
    return patient, Person(reference, birth, registered, years, male, gp, nurse)


def _marital_status(years: int, point: float) -> str:
    for up_to, codes, cumulative in MARITAL_BY_AGE:
        if years <= up_to:
            for code, edge in zip(codes, cumulative, strict=True):
                if point < edge:
                    return code
            return codes[-1]
    return "S"


def care_team_resource(ctx: ClinicContext, person: Person, rng: random.Random) -> Resource:
    """The patient's GP and nurse: the care relationship the access policy checks."""
    return {
        "resourceType": "CareTeam",
        "id": new_id(rng),
        "status": "active",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": _CARE_TEAM_CATEGORY[0],
                        "display": _CARE_TEAM_CATEGORY[1],
                    }
                ],
                "text": "Primary care team",
            }
        ],
        "subject": {"reference": person.reference},
        "period": {"start": day(person.registered)},
        "participant": [
            {
                "role": [_practitioner_role(*ctx.care_roles[person.gp])],
                "member": {"reference": person.gp},
                "onBehalfOf": {"reference": ctx.organization},
            },
            {
                "role": [_practitioner_role(*ctx.care_roles[person.nurse])],
                "member": {"reference": person.nurse},
                "onBehalfOf": {"reference": ctx.organization},
            },
        ],
        "managingOrganization": [{"reference": ctx.organization}],
    }


def _practitioner_role(code: str, display: str) -> dict[str, object]:
    return {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
                "code": code,
                "display": display,
            }
        ],
        "text": display,
    }
