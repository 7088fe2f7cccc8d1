"""Normal work in the simulated clinic, by role, as tasks of timed requests.

A task is a generator: each step makes one request (through the harness) and yields the
seconds until its next step. Roles follow the clinic's rhythm: clinicians see their
booked patients and review their panel's charts (and sometimes stay late); nurses take
vitals for their care-team patients; one nurse covers nights by phone; the front desk
checks patients in, calls them about tomorrow's visits and books new appointments;
billing works through recent visits. Logins sometimes fail on a typo, and people
sometimes work from a second machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from phivault.demo.common import MRN_SYSTEM
from phivault.detect.eval.clinic import (
    BILLING,
    CLINICIAN,
    DAY,
    FRONT_DESK,
    HOUR,
    NURSE,
    Clinic,
    SimPatient,
    Staff,
    Visit,
    _weekday,
)
from phivault.detect.eval.harness import Harness, password_of
from phivault.detect.model import format_instant

Task = Iterator[float]


@dataclass
class Planned:
    at: float
    task: Task
    scenario: str | None = None


def _address(rng: random.Random, member: Staff) -> str:
    return member.laptop if rng.random() < 0.04 else member.workstation


def _maybe_typo(h: Harness, rng: random.Random, member: Staff, address: str) -> Task:
    if rng.random() < 0.05:
        h.login(member.key, password_of(member, h.seed) + "x", address)
        yield rng.uniform(5, 25)


def vitals(p: SimPatient, at: float) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{p.pid}"},
        "effectiveDateTime": format_instant(at),
        "valueQuantity": {"value": 60 + int(at) % 40, "unit": "/min"},
    }


def chart_review(
    h: Harness, rng: random.Random, member: Staff, p: SimPatient, address: str
) -> Task:
    h.as_user(member, address, "GET", f"Patient/{p.pid}")
    yield rng.uniform(20, 90)
    h.as_user(member, address, "GET", f"Observation?patient={p.pid}&_count=20")
    yield rng.uniform(20, 120)
    h.as_user(member, address, "GET", f"Condition?patient={p.pid}")


def clinician_day(
    h: Harness, rng: random.Random, member: Staff, day: float, visits: list[Visit]
) -> list[Planned]:
    plans: list[Planned] = []
    address = _address(rng, member)
    start = day + 7.5 * HOUR + rng.uniform(0, HOUR)

    def visit_task(v: Visit) -> Task:
        p = v.patient
        h.as_user(member, address, "GET", f"Patient?identifier={MRN_SYSTEM}|{p.mrn}")
        yield rng.uniform(10, 40)
        h.as_user(member, address, "GET", f"Patient/{p.pid}")
        yield rng.uniform(30, 120)
        h.as_user(member, address, "GET", f"Observation?patient={p.pid}&_count=20")
        if rng.random() < 0.5:
            yield rng.uniform(300, 900)
            h.as_user(member, address, "POST", "Observation", vitals(p, h.clock()))

    def first_login() -> Task:
        yield from _maybe_typo(h, rng, member, address)
        h.session(member, address)

    plans.append(Planned(start, first_login()))
    for v in visits:
        plans.append(Planned(max(v.at, start + 60), visit_task(v)))
    panel = h.clinic.panel(member)
    for _ in range(rng.randrange(2, 5)):
        at = start + rng.uniform(0.5 * HOUR, 8.5 * HOUR)
        plans.append(Planned(at, chart_review(h, rng, member, rng.choice(panel), address)))
    if rng.random() < 0.2:  # finishing notes after hours
        at = start + 9.5 * HOUR + rng.uniform(0, 1.5 * HOUR)
        plans.append(Planned(at, chart_review(h, rng, member, rng.choice(panel), address)))
    return plans


def nurse_shift(
    h: Harness, rng: random.Random, member: Staff, day: float, *, night: bool
) -> list[Planned]:
    address = _address(rng, member)
    start = day + (19 * HOUR if night else 7 * HOUR) + rng.uniform(0, 0.5 * HOUR)
    length = 11 * HOUR if night else 8.5 * HOUR
    panel = h.clinic.panel(member)
    plans: list[Planned] = []

    def first_login() -> Task:
        yield from _maybe_typo(h, rng, member, address)
        h.session(member, address)

    def vitals_task(p: SimPatient) -> Task:
        h.as_user(member, address, "GET", f"Patient/{p.pid}")
        yield rng.uniform(60, 300)
        h.as_user(member, address, "POST", "Observation", vitals(p, h.clock()))

    def triage_task(p: SimPatient) -> Task:
        h.as_user(member, address, "GET", f"Patient?identifier={MRN_SYSTEM}|{p.mrn}")
        yield rng.uniform(10, 40)
        if p not in panel:  # a caller outside the nurse's care teams: emergency access
            h.break_glass(member, address, "after-hours triage call, patient not on my team")
            yield rng.uniform(5, 20)
        yield from chart_review(h, rng, member, p, address)

    others = [p for p in h.clinic.patients if p.kind == "normal" and p not in panel]

    plans.append(Planned(start, first_login()))
    count = rng.randrange(3, 7) if night else rng.randrange(6, 11)
    for _ in range(count):
        at = start + rng.uniform(0.2 * HOUR, length - 0.5 * HOUR)
        if night and others and rng.random() < 0.05:
            plans.append(Planned(at, triage_task(rng.choice(others))))
            continue
        p = rng.choice(panel)
        plans.append(Planned(at, triage_task(p) if night else vitals_task(p)))
    return plans


def front_desk_day(
    h: Harness,
    rng: random.Random,
    member: Staff,
    day: float,
    today: list[Visit],
    tomorrow: list[Visit],
) -> list[Planned]:
    address = _address(rng, member)
    start = day + 7.5 * HOUR + rng.uniform(0, 0.5 * HOUR)
    plans: list[Planned] = []

    def first_login() -> Task:
        yield from _maybe_typo(h, rng, member, address)
        h.session(member, address)

    def check_in(v: Visit) -> Task:
        h.as_user(member, address, "GET", f"Patient?identifier={MRN_SYSTEM}|{v.patient.mrn}")
        yield rng.uniform(10, 60)
        h.as_user(member, address, "GET", f"Patient/{v.patient.pid}")

    def reminder(v: Visit) -> Task:
        h.as_user(member, address, "GET", f"Patient/{v.patient.pid}")
        yield 0.0

    def booking(p: SimPatient) -> Task:
        h.as_user(member, address, "GET", f"Patient?identifier={MRN_SYSTEM}|{p.mrn}")
        yield rng.uniform(30, 120)
        h.as_user(member, address, "POST", "Appointment", _booked(p, h.clock(), rng))
        yield rng.uniform(10, 60)
        h.as_user(member, address, "GET", f"Patient/{p.pid}")

    plans.append(Planned(start, first_login()))
    for v in today:
        plans.append(Planned(max(start + 60, v.at - 600), check_in(v)))
    for v in tomorrow:
        plans.append(Planned(day + rng.uniform(13 * HOUR, 16 * HOUR), reminder(v)))
    ordinary = [p for p in h.clinic.patients if p.kind == "normal"]
    for _ in range(rng.randrange(1, 4)):
        plans.append(
            Planned(start + rng.uniform(0.5 * HOUR, 8 * HOUR), booking(rng.choice(ordinary)))
        )
    return plans


def _booked(p: SimPatient, now: float, rng: random.Random) -> dict[str, object]:
    at = (now // DAY + rng.randrange(2, 14)) * DAY + 9 * HOUR + rng.randrange(0, 8) * HOUR
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": format_instant(at),
        "end": format_instant(at + 1800),
        "participant": [
            {"actor": {"reference": f"Patient/{p.pid}"}, "status": "accepted"},
            {"actor": {"reference": p.clinician.practitioner}, "status": "accepted"},
        ],
    }


def billing_day(
    h: Harness, rng: random.Random, member: Staff, day: float, recent: list[SimPatient]
) -> list[Planned]:
    address = _address(rng, member)
    start = day + 9 * HOUR + rng.uniform(0, 0.5 * HOUR)
    plans: list[Planned] = []

    def first_login() -> Task:
        yield from _maybe_typo(h, rng, member, address)
        h.session(member, address)

    def claim(p: SimPatient) -> Task:
        h.as_user(member, address, "GET", f"Patient/{p.pid}")
        yield rng.uniform(60, 240)
        h.as_user(member, address, "GET", f"Claim?patient={p.pid}")

    plans.append(Planned(start, first_login()))
    for p in rng.sample(recent, min(len(recent), rng.randrange(6, 12))):
        plans.append(Planned(start + rng.uniform(0.3 * HOUR, 7.5 * HOUR), claim(p)))
    return plans


def normal_day(h: Harness, rng: random.Random, day: float, visits: list[Visit]) -> list[Planned]:
    clinic: Clinic = h.clinic
    weekday = _weekday(day)
    today = [v for v in visits if day <= v.at < day + DAY]
    tomorrow = [v for v in visits if day + DAY <= v.at < day + 2 * DAY]
    plans: list[Planned] = []
    nurses = clinic.by_role(NURSE)
    for member in clinic.staff:
        if member.role == NURSE and member.shift == "night":
            plans += nurse_shift(h, rng, member, day, night=True)
            continue
        if weekday >= 5:
            if member.role == NURSE and member is nurses[0] and weekday == 5:
                plans += nurse_shift(h, rng, member, day, night=False)
            continue
        if member.role == CLINICIAN:
            plans += clinician_day(h, rng, member, day, [v for v in today if v.clinician is member])
        elif member.role == NURSE:
            if rng.random() < 0.03:  # a swapped shift: this day nurse covers an evening
                plans += nurse_shift(h, rng, member, day - 12 * HOUR + 10 * HOUR, night=True)
            else:
                plans += nurse_shift(h, rng, member, day, night=False)
        elif member.role == FRONT_DESK:
            desks = clinic.by_role(FRONT_DESK)
            mine = desks.index(member)
            share = [v for n, v in enumerate(today) if n % len(desks) == mine]
            later = [v for n, v in enumerate(tomorrow) if n % len(desks) == mine]
            plans += front_desk_day(h, rng, member, day, share, later)
        elif member.role == BILLING:
            seen = {v.patient.pid: v.patient for v in visits if day - 30 * DAY <= v.at < day}
            if not seen:  # the first days: bills for the visits now being booked
                seen = {v.patient.pid: v.patient for v in visits if day <= v.at < day + 30 * DAY}
            recent = list(seen.values())
            plans += billing_day(h, rng, member, day, recent)
    return plans
