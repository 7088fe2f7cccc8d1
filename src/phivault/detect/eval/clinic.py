"""The simulated clinic's people and records: staff with roles and shifts, patients with
care teams, appointments and past visits, and the people attacks are about (staff's
relatives, co-workers who are patients, VIPs).

Everything is drawn from one seeded random stream, so a seed gives the same clinic.
Names and addresses come from the demo generator's lists; phones are in the 555 exchange.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from phivault.demo.common import MRN_SYSTEM
from phivault.demo.names import GROUPS
from phivault.demo.places import REGIONS
from phivault.detect.facts import V3_ACTCODE
from phivault.detect.model import format_instant

CLINICIAN = "clinician"
NURSE = "nurse"
FRONT_DESK = "front-desk"
BILLING = "billing"
DAY = 86_400.0
HOUR = 3600.0


@dataclass
class Person:
    family: str
    given: str
    line: str
    city: str
    state: str
    postal: str
    phone: str
    gender: str
    birth: str

    def name(self) -> list[dict[str, Any]]:
        return [{"use": "official", "family": self.family, "given": [self.given]}]

    def address(self) -> list[dict[str, Any]]:
        return [
            {
                "use": "home",
                "line": [self.line],
                "city": self.city,
                "state": self.state,
                "postalCode": self.postal,
                "country": "US",
            }
        ]

    def telecom(self) -> list[dict[str, Any]]:
        return [{"system": "phone", "value": self.phone, "use": "home"}]


@dataclass
class Staff:
    key: str  # username
    role: str
    practitioner_id: str
    person: Person
    shift: str  # day, night, office
    workstation: str  # the address the user normally works from
    laptop: str  # a second address the user sometimes uses
    user_id: str = ""

    @property
    def practitioner(self) -> str:
        return f"Practitioner/{self.practitioner_id}"


@dataclass
class SimPatient:
    pid: str
    mrn: str
    person: Person
    clinician: Staff
    nurse: Staff
    kind: str = "normal"  # normal, relative, co-worker, vip
    of_staff: str | None = None  # relatives and co-workers: whose


@dataclass
class Visit:
    at: float
    patient: SimPatient
    clinician: Staff
    appointment_id: str


@dataclass
class Clinic:
    staff: list[Staff]
    patients: list[SimPatient]
    visits: list[Visit]
    resources: list[dict[str, Any]] = field(default_factory=list)

    def by_role(self, role: str) -> list[Staff]:
        return [s for s in self.staff if s.role == role]

    def panel(self, member: Staff) -> list[SimPatient]:
        return [p for p in self.patients if p.clinician is member or p.nurse is member]


def _roles(count: int) -> list[str]:
    clinicians = max(2, round(count * 0.35))
    nurses = max(2, round(count * 0.3))
    desk = max(1, round(count * 0.2))
    billing = max(1, count - clinicians - nurses - desk)
    roles = [CLINICIAN] * clinicians + [NURSE] * nurses + [FRONT_DESK] * desk + [BILLING] * billing
    return roles[: max(count, 6)]


_STREETS = ("Oak", "Maple", "Elm", "Cedar", "Pine", "Birch", "Walnut", "Spruce", "Willow", "Ash")
_SUFFIXES = ("St", "Ave", "Rd", "Ln", "Ct")


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.families = sorted({f for g in GROUPS for f in g.family})
        self.used: set[str] = set()
        self.lines: set[str] = set()

    def family(self) -> str:
        while True:
            name = self.rng.choice(self.families)
            if name not in self.used:
                self.used.add(name)
                return name

    def person(self, family: str | None = None, home: Person | None = None) -> Person:
        rng = self.rng
        group = rng.choice(GROUPS)
        gender = rng.choice(("female", "male"))
        given = rng.choice(group.female if gender == "female" else group.male)
        region = REGIONS[0]
        city = rng.choice(region.cities[:4])
        while True:
            line = f"{rng.randrange(1, 9900)} {rng.choice(_STREETS)} {rng.choice(_SUFFIXES)}"
            if line not in self.lines:
                self.lines.add(line)
                break
        birth = f"{rng.randrange(1940, 2010)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        person = Person(
            family=family or self.family(),
            given=given,
            line=line,
            city=city.name,
            state=region.state,
            postal=f"{city.zip3}{rng.randrange(100):02d}",
            phone=f"617-555-{rng.randrange(10_000):04d}",
            gender=gender,
            birth=birth,
        )
        if home is not None:  # a household member: same address and home phone
            person.line, person.city, person.state = home.line, home.city, home.state
            person.postal, person.phone = home.postal, home.phone
        return person


def build_clinic(
    staff_count: int, patient_count: int, days: int, seed: int, start: float
) -> Clinic:
    """A clinic whose simulated period starts at `start` (a midnight, UTC)."""
    rng = random.Random(seed)  # noqa: S311 (a simulation, not a secret)
    names = _Names(rng)
    staff: list[Staff] = []
    nurses_seen = 0
    for number, role in enumerate(_roles(staff_count)):
        shift = "office" if role in (FRONT_DESK, BILLING) else "day"
        if role == NURSE:
            nurses_seen += 1
            if nurses_seen == 2:
                shift = "night"
        staff.append(
            Staff(
                key=f"{role.replace('-', '')}{number:02d}",
                role=role,
                practitioner_id=f"sim-staff-{number:02d}",
                person=names.person(),
                shift=shift,
                workstation=f"10.20.{number // 200}.{10 + number % 200}",
                laptop=f"10.30.{number // 200}.{10 + number % 200}",
            )
        )
    clinicians = [s for s in staff if s.role == CLINICIAN]
    nurses = [s for s in staff if s.role == NURSE]
    patients: list[SimPatient] = []
    households: list[Person] = []
    for number in range(patient_count):
        home = rng.choice(households) if households and rng.random() < 0.15 else None
        person = names.person(family=home.family if home else None, home=home)
        if home is None:
            households.append(person)
        patients.append(
            SimPatient(
                pid=f"sim-patient-{number:04d}",
                mrn=f"SIM{seed % 1000:03d}{number:05d}",
                person=person,
                clinician=clinicians[number % len(clinicians)],
                nurse=nurses[number % len(nurses)],
            )
        )
    # Relatives of two staff members (same surname and address), cared for by others.
    for member in (clinicians[0], next(s for s in staff if s.role == FRONT_DESK)):
        relative = names.person(family=member.person.family, home=member.person)
        other = next(c for c in clinicians if c is not member)
        patients.append(_special(patients, relative, other, nurses, "relative", member.key))
    # Two co-workers who are patients here: their own name, address and phone.
    for member in (nurses[-1], next(s for s in staff if s.role == BILLING)):
        other = next(c for c in clinicians if c is not member)
        patients.append(_special(patients, member.person, other, nurses, "co-worker", member.key))
    # Two VIPs.
    for _ in range(2):
        patients.append(
            _special(patients, names.person(), rng.choice(clinicians), nurses, "vip", None)
        )
    clinic = Clinic(staff, patients, _visits(rng, clinicians, patients, days, start))
    clinic.resources = _resources(clinic, start)
    return clinic


def _special(
    patients: list[SimPatient],
    person: Person,
    clinician: Staff,
    nurses: list[Staff],
    kind: str,
    of_staff: str | None,
) -> SimPatient:
    number = len(patients)
    nurse = next(n for n in nurses if n.key != of_staff)
    return SimPatient(
        pid=f"sim-patient-{number:04d}",
        mrn=f"SIMX{number:05d}",
        person=person,
        clinician=clinician,
        nurse=nurse,
        kind=kind,
        of_staff=of_staff,
    )


def _visits(
    rng: random.Random,
    clinicians: list[Staff],
    patients: list[SimPatient],
    days: int,
    start: float,
) -> list[Visit]:
    visits: list[Visit] = []
    # Two in five patients have no visit in the period: their records have no reason to
    # be opened by the front desk (the slow snooper's targets).
    ordinary = [p for n, p in enumerate(patients) if p.kind == "normal" and n % 5 >= 2]
    for day in range(days + 14):
        midnight = start + day * DAY
        if _weekday(midnight) >= 5:
            continue
        for clinician in clinicians:
            panel = [p for p in ordinary if p.clinician is clinician]
            for slot in range(min(len(panel), rng.randrange(5, 9))):
                at = midnight + 8.5 * HOUR + slot * 50 * 60 + rng.randrange(0, 600)
                patient = rng.choice(panel)
                visits.append(Visit(at, patient, clinician, f"sim-appt-{len(visits):05d}"))
    return sorted(visits, key=lambda v: v.at)


def _weekday(moment: float) -> int:
    return (int(moment // DAY) + 3) % 7  # 1970-01-01 was a Thursday


def _resources(clinic: Clinic, start: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "sim-clinic", "name": "Simulated Family Clinic"}
    ]
    for member in clinic.staff:
        person = member.person
        out.append(
            {
                "resourceType": "Practitioner",
                "id": member.practitioner_id,
                "active": True,
                "name": person.name(),
                "telecom": person.telecom(),
                "address": person.address(),
                "gender": person.gender,
            }
        )
    rng = random.Random(len(clinic.patients))  # noqa: S311
    for patient in clinic.patients:
        person = patient.person
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": patient.pid,
            "identifier": [{"system": MRN_SYSTEM, "value": patient.mrn}],
            "active": True,
            "name": person.name(),
            "telecom": person.telecom(),
            "gender": person.gender,
            "birthDate": person.birth,
            "address": person.address(),
        }
        if patient.kind == "vip":
            resource["meta"] = {"security": [{"system": V3_ACTCODE, "code": "CEL"}]}
        out.append(resource)
        out.append(
            {
                "resourceType": "CareTeam",
                "id": f"sim-team-{patient.pid[12:]}",
                "status": "active",
                "subject": {"reference": f"Patient/{patient.pid}"},
                "participant": [
                    {"member": {"reference": patient.clinician.practitioner}},
                    {"member": {"reference": patient.nurse.practitioner}},
                ],
            }
        )
        if rng.random() < 0.7:
            seen = start - rng.randrange(1, 90) * DAY
            out.append(
                {
                    "resourceType": "Encounter",
                    "id": f"sim-enc-{patient.pid[12:]}",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "subject": {"reference": f"Patient/{patient.pid}"},
                    "participant": [{"individual": {"reference": patient.clinician.practitioner}}],
                    "period": {"start": format_instant(seen), "end": format_instant(seen + 1800)},
                }
            )
    for visit in clinic.visits:
        out.append(appointment(visit))
    return out


def appointment(visit: Visit) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": visit.appointment_id,
        "status": "booked",
        "start": format_instant(visit.at),
        "end": format_instant(visit.at + 1800),
        "participant": [
            {"actor": {"reference": f"Patient/{visit.patient.pid}"}, "status": "accepted"},
            {"actor": {"reference": visit.clinician.practitioner}, "status": "accepted"},
        ],
    }
