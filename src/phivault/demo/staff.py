"""The clinic itself: its Organization, Locations, and staff (Practitioner + PractitionerRole).

Each staff member has one role from a small local code system (clinician, nurse,
front-desk, billing), carried in PractitionerRole.code, and a username, so that the
access-control layer can turn the demo staff into users with matching permissions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from phivault.demo.common import (
    HL7_PRACTITIONER_ROLE,
    NPI_SYSTEM,
    SNOMED,
    STAFF_ROLE_SYSTEM,
    IndexPermutation,
    ascii_fold,
    concept,
    new_id,
    npi,
    ref,
    seeded_stream,
)
from phivault.demo.names import GROUP_CUMULATIVE, GROUPS
from phivault.demo.places import (
    CLINIC_KINDS,
    CLINIC_PREFIXES,
    REGIONS,
    STREET_SUFFIXES,
    STREETS,
    Region,
)
from phivault.types import Resource

CLINICIAN = "clinician"
NURSE = "nurse"
FRONT_DESK = "front-desk"
BILLING = "billing"
ROLE_DISPLAYS = {
    CLINICIAN: "Clinician",
    NURSE: "Nurse",
    FRONT_DESK: "Front desk",
    BILLING: "Billing",
}
STAFF_ID_SYSTEM = "http://phivault.example/staff"

_CREDENTIALS = {
    "MD": "Doctor of Medicine",
    "DO": "Doctor of Osteopathy",
    "NP": "Nurse Practitioner",
    "PA": "Physician Assistant",
    "RN": "Registered Nurse",
    "LPN": "Licensed Practical Nurse",
}
_SPECIALTIES = (
    ("419772000", "Family practice (qualifier value)"),
    ("419772000", "Family practice (qualifier value)"),
    ("419192003", "Internal medicine (qualifier value)"),
    ("394537008", "Pediatric specialty (qualifier value)"),
)


class Site(NamedTuple):
    organization: Resource
    locations: tuple[Resource, ...]
    region: Region
    domain: str
    """DNS name under example.org used for staff email addresses."""


class StaffMember(NamedTuple):
    username: str
    role: str
    display: str
    practitioner: Resource
    practitioner_role: Resource
    care_role: tuple[str, str] | None
    """HL7 practitioner-role (code, display), e.g. ("doctor", "Doctor"); None for
    front-desk and billing staff."""


def npi_permutation(seed: int) -> IndexPermutation:
    """Index 0 is the clinic's NPI; staff member i gets index i + 1."""
    return IndexPermutation(100_000_000, seeded_stream(seed, "npi"))


def phone(rng: random.Random, region: Region) -> str:
    # The 555 exchange: no generated number reaches a real person.
    area = region.area_codes[int(rng.random() * len(region.area_codes))]
    return f"{area}-555-{rng.randrange(10_000):04d}"


def street_line(rng: random.Random) -> str:
    street = STREETS[int(rng.random() * len(STREETS))]
    suffix = STREET_SUFFIXES[int(rng.random() * len(STREET_SUFFIXES))]
    return f"{rng.randrange(1, 9_900)} {street} {suffix}"


def build_site(seed: int, location_count: int) -> Site:
    rng = seeded_stream(seed, "site")
    region = REGIONS[rng.randrange(len(REGIONS))]
    name = f"{rng.choice(CLINIC_PREFIXES)} {rng.choice(CLINIC_KINDS)}"
    domain = ascii_fold(name.split()[0]) + "-clinic.example.org"
    org_id = new_id(rng)
    cities = rng.sample(region.cities, min(location_count, len(region.cities)))
    addresses = []
    for position in range(location_count):
        city = cities[position % len(cities)]
        addresses.append(
            {
                "use": "work",
                "type": "physical",
                "line": [street_line(rng)],
                "city": city.name,
                "state": region.state,
                "postalCode": f"{city.zip3}{rng.randrange(100):02d}",
                "country": "US",
            }
        )
    organization: Resource = {
        "resourceType": "Organization",
        "id": org_id,
        "identifier": [{"system": NPI_SYSTEM, "value": npi(npi_permutation(seed)(0))}],
        "active": True,
        "type": [
            concept(
                "http://terminology.hl7.org/CodeSystem/organization-type",
                "prov",
                "Healthcare Provider",
            )
        ],
        "name": name,
        "telecom": [
            {"system": "phone", "value": phone(rng, region), "use": "work"},
            {"system": "url", "value": f"https://{domain}", "use": "work"},
        ],
        "address": [{**addresses[0], "line": list(addresses[0]["line"])}],
    }
    locations = []
    for position, address in enumerate(addresses):
        locations.append(
            {
                "resourceType": "Location",
                "id": new_id(rng),
                "status": "active",
                "name": name if position == 0 else f"{name} - {address['city']}",
                "mode": "instance",
                "type": [
                    concept(
                        "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                        "FMC",
                        "Family Medicine Clinic",
                    )
                ],
                "telecom": [{"system": "phone", "value": phone(rng, region), "use": "work"}],
                "address": address,
                "physicalType": concept(
                    "http://terminology.hl7.org/CodeSystem/location-physical-type", "bu", "Building"
                ),
                "managingOrganization": {"reference": f"Organization/{org_id}"},
            }
        )
    return Site(organization, tuple(locations), region, domain)


def _credential(rng: random.Random, role: str) -> str | None:
    point = rng.random()
    if role == CLINICIAN:
        return "MD" if point < 0.6 else "DO" if point < 0.75 else "NP" if point < 0.95 else "PA"
    if role == NURSE:
        return "RN" if point < 0.8 else "LPN"
    return None


def iter_staff(seed: int, roles: Sequence[str], site: Site) -> Iterator[StaffMember]:
    """One StaffMember per entry of `roles`, in that order, lazily."""
    rng = seeded_stream(seed, "staff")
    npis = npi_permutation(seed)
    organization = ref(site.organization)
    taken: dict[str, int] = {}
    for position, role in enumerate(roles):
        group = rng.choices(GROUPS, cum_weights=GROUP_CUMULATIVE)[0]
        female = rng.random() < (0.85 if role == NURSE else 0.55)
        given_names = group.female if female else group.male
        given = given_names[int(rng.random() * len(given_names))]
        family = group.family[int(rng.random() * len(group.family))]
        credential = _credential(rng, role)

        base = (ascii_fold(given)[:1] + ascii_fold(family)) or "staff"
        taken[base] = taken.get(base, 0) + 1
        username = base if taken[base] == 1 else f"{base}{taken[base]}"

        doctor = credential in ("MD", "DO")
        display = f"{'Dr. ' if doctor else ''}{given} {family}"
        if credential and not doctor:
            display += f", {credential}"
        human_name: dict[str, object] = {"use": "official", "family": family, "given": [given]}
        if doctor:
            human_name["prefix"] = ["Dr."]
        if credential:
            human_name["suffix"] = [credential]
        identifiers = [{"system": STAFF_ID_SYSTEM, "value": username}]
        if credential:
            identifiers.insert(0, {"system": NPI_SYSTEM, "value": npi(npis(position + 1))})
        location = site.locations[position % len(site.locations)]
        work_phone = phone(rng, site.region)
        practitioner: Resource = {
            "resourceType": "Practitioner",
            "id": new_id(rng),
            "identifier": identifiers,
            "active": True,
            "name": [human_name],
            "telecom": [
                {"system": "phone", "value": work_phone, "use": "work"},
                {"system": "email", "value": f"{username}@{site.domain}", "use": "work"},
            ],
            "gender": "female" if female else "male",
        }
        if credential:
            practitioner["qualification"] = [
                {
                    "code": concept(
                        "http://terminology.hl7.org/CodeSystem/v2-0360",
                        credential,
                        _CREDENTIALS[credential],
                    )
                }
            ]
        role_code = concept(STAFF_ROLE_SYSTEM, role, ROLE_DISPLAYS[role])
        care_role = None
        if role in (CLINICIAN, NURSE):
            care_role = ("doctor", "Doctor") if doctor else ("nurse", "Nurse")
            role_code["coding"].append(
                {"system": HL7_PRACTITIONER_ROLE, "code": care_role[0], "display": care_role[1]}
            )
        practitioner_role: Resource = {
            "resourceType": "PractitionerRole",
            "id": new_id(rng),
            "active": True,
            "practitioner": ref(practitioner),
            "organization": dict(organization),
            "code": [role_code],
            "location": [ref(location)],
            "telecom": [{"system": "phone", "value": work_phone, "use": "work"}],
        }
        if role == CLINICIAN:
            code, text = _SPECIALTIES[int(rng.random() * len(_SPECIALTIES))]
            practitioner_role["specialty"] = [concept(SNOMED, code, text)]
        yield StaffMember(username, role, display, practitioner, practitioner_role, care_role)
