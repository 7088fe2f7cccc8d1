"""A deterministic synthetic clinic, streamed as FHIR R4 resources.

It feeds `phivault demo`, the tests and the benchmarks. `generate_clinic(spec)` yields
plain JSON-ready dicts in dependency order: the Organization and its Locations, the staff
(a Practitioner then its PractitionerRole for each), then for each patient their Patient,
CareTeam, Encounters, Observations, Conditions, AllergyIntolerances, MedicationRequests
and Appointments. Every reference points to a resource yielded earlier.

Same spec, same output, byte for byte: every value comes from random.Random streams
seeded from `spec.seed`, and "now" is the fixed REFERENCE_DATE, never the clock. It is
a stream: memory stays flat however many patients are asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from phivault.demo.clinical import clinical_records
from phivault.demo.common import (
    REFERENCE_DATE,
    STAFF_ROLE_SYSTEM,
    ClinicContext,
    IndexPermutation,
    seeded_stream,
)
from phivault.demo.patients import (
    MRN_SPACE,
    SSN_SPACE,
    care_team_resource,
    patient_resource,
)
from phivault.demo.plan import draw_plan
from phivault.demo.staff import (
    BILLING,
    CLINICIAN,
    FRONT_DESK,
    NURSE,
    build_site,
    iter_staff,
)

__all__ = [
    "REFERENCE_DATE",
    "STAFF_ROLE_SYSTEM",
    "ClinicSpec",
    "count_resources",
    "demo_staff",
    "generate_clinic",
    "staff_roles",
]

MAX_PATIENTS = MRN_SPACE


@dataclass(frozen=True)
class ClinicSpec:
    patients: int
    seed: int = 0
    practitioners: int | None = None
    """Clinicians (who can be a patient's GP); default max(3, patients // 200). Nurses,
    front-desk and billing staff are added in proportion (see `staff_roles`)."""

    def __post_init__(self) -> None:
        if not 0 <= self.patients <= MAX_PATIENTS:
            raise ValueError(f"patients must be between 0 and {MAX_PATIENTS}")
        if self.practitioners is not None and self.practitioners < 1:
            raise ValueError("practitioners must be at least 1")

    @property
    def clinicians(self) -> int:
        if self.practitioners is not None:
            return self.practitioners
        return max(3, self.patients // 200)

    @property
    def locations(self) -> int:
        """The main site, plus a satellite per 10,000 patients (at most 4)."""
        return 1 + min(4, self.patients // 10_000)


def staff_roles(spec: ClinicSpec) -> list[str]:
    """The role of each staff member, in the order they are generated."""
    clinicians = spec.clinicians
    return (
        [CLINICIAN] * clinicians
        + [NURSE] * max(1, clinicians // 2)
        + [FRONT_DESK] * max(1, clinicians // 4)
        + [BILLING] * max(1, clinicians // 6)
    )


def generate_clinic(spec: ClinicSpec) -> Iterator[dict[str, Any]]:
    """Yield the clinic's resources, each a JSON-ready dict with a client-assigned id."""
    site = build_site(spec.seed, spec.locations)
    yield site.organization
    yield from site.locations

    clinicians: list[str] = []
    nurses: list[str] = []
    care_roles: dict[str, tuple[str, str]] = {}
    for member in iter_staff(spec.seed, staff_roles(spec), site):
        yield member.practitioner
        yield member.practitioner_role
        reference = f"Practitioner/{member.practitioner['id']}"
        if member.role == CLINICIAN:
            clinicians.append(reference)
        elif member.role == NURSE:
            nurses.append(reference)
        if member.care_role:
            care_roles[reference] = member.care_role

    keys = seeded_stream(spec.seed, "identifiers")
    ctx = ClinicContext(
        organization=f"Organization/{site.organization['id']}",
        locations=tuple(f"Location/{location['id']}" for location in site.locations),
        clinicians=tuple(clinicians),
        nurses=tuple(nurses),
        care_roles=care_roles,
        region=site.region,
        mrn=IndexPermutation(MRN_SPACE, keys),
        ssn=IndexPermutation(SSN_SPACE, keys),
    )
    plans = seeded_stream(spec.seed, "plans")
    content = seeded_stream(spec.seed, "patients")
    for index in range(spec.patients):
        plan = draw_plan(plans)
        patient, person = patient_resource(ctx, plan, index, content)
        yield patient
        yield care_team_resource(ctx, person, content)
        yield from clinical_records(ctx, plan, person, content)


def count_resources(spec: ClinicSpec) -> int:
    """Exactly how many resources `generate_clinic(spec)` yields.

    Draws only the patients' plans, not their records: linear in patients, but about
    fifteen times cheaper than generating them.
    """
    total = 1 + spec.locations + 2 * len(staff_roles(spec))
    plans = seeded_stream(spec.seed, "plans")
    for _ in range(spec.patients):
        total += draw_plan(plans).resource_count
    return total


def demo_staff(spec: ClinicSpec) -> list[dict[str, str]]:
    """The clinic's staff as would-be users, matching the generated Practitioners.

    Each entry: username, role (clinician, nurse, front-desk or billing, the code in
    PractitionerRole.code under STAFF_ROLE_SYSTEM), display name, and the references
    of the member's Practitioner and PractitionerRole.
    """
    site = build_site(spec.seed, spec.locations)
    return [
        {
            "username": member.username,
            "role": member.role,
            "display": member.display,
            "practitioner": f"Practitioner/{member.practitioner['id']}",
            "practitioner_role": f"PractitionerRole/{member.practitioner_role['id']}",
        }
        for member in iter_staff(spec.seed, staff_roles(spec), site)
    ]
