"""The attacks injected into the simulated clinic, each a scenario with a name.

Every request a scenario makes is ground truth: an alert whose evidence names one of its
audit entries caught it. Scenarios happen after the warm-up days, at realistic times.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from phivault.demo.common import MRN_SYSTEM
from phivault.detect.eval.behaviour import Planned, Task
from phivault.detect.eval.clinic import BILLING, CLINICIAN, DAY, FRONT_DESK, HOUR, SimPatient, Staff
from phivault.detect.eval.harness import TOKEN_REFRESH_S, USER_SCOPE, Harness, password_of

ATTACKER = "198.51.100.23"
SCENARIOS = (
    "family-snooping",
    "vip-snooping",
    "co-worker-snooping",
    "slow-snooping",
    "departing-employee-export",
    "credential-stuffing",
    "compromised-account-night",
    "ransomware-mass-modify",
    "honeytoken-touch",
)


def _first(h: Harness, role: str, index: int = 0) -> Staff:
    members = h.clinic.by_role(role)
    return members[index % len(members)]


def _patients(h: Harness, kind: str) -> list[SimPatient]:
    return [p for p in h.clinic.patients if p.kind == kind]


def _browse(h: Harness, rng: random.Random, member: Staff, p: SimPatient) -> Task:
    address = member.workstation
    h.as_user(member, address, "GET", f"Patient?identifier={MRN_SYSTEM}|{p.mrn}")
    yield rng.uniform(10, 40)
    h.as_user(member, address, "GET", f"Patient/{p.pid}")
    yield rng.uniform(20, 60)
    h.as_user(member, address, "GET", f"Observation?patient={p.pid}")


def plan_attacks(h: Harness, rng: random.Random, start: float, days: int) -> list[Planned]:
    """One of each scenario, spread over the last days of the period."""
    last = start + (days - 1) * DAY  # midnight of the last day
    desk = _first(h, FRONT_DESK)
    plans: list[Planned] = []

    relative = next(p for p in _patients(h, "relative") if p.of_staff == desk.key)
    plans.append(
        Planned(last - DAY + 11 * HOUR, _browse(h, rng, desk, relative), "family-snooping")
    )

    biller = _first(h, BILLING)
    vip = _patients(h, "vip")[0]
    plans.append(
        Planned(last - 2 * DAY + 10.5 * HOUR, _browse(h, rng, biller, vip), "vip-snooping")
    )

    co_worker = next(p for p in _patients(h, "co-worker") if p.of_staff != desk.key)
    plans.append(Planned(last + 14 * HOUR, _browse(h, rng, desk, co_worker), "co-worker-snooping"))

    # Slow snooping: one record a day that nothing explains, well under any volume limit.
    snooper = _first(h, FRONT_DESK, 1)
    booked = {v.patient.pid for v in h.clinic.visits}
    quiet = [p for p in h.clinic.patients if p.kind == "normal" and p.pid not in booked]
    for n, p in enumerate(rng.sample(quiet, min(3, len(quiet)))):
        at = last - (2 - n) * DAY + rng.uniform(9 * HOUR, 15 * HOUR)
        plans.append(Planned(at, _browse(h, rng, snooper, p), "slow-snooping"))

    leaver = _first(h, CLINICIAN, 1)
    plans.append(Planned(last + 16.5 * HOUR, _export(h, rng, leaver), "departing-employee-export"))

    victim = _first(h, CLINICIAN, 0)
    plans.append(Planned(last - DAY + 2.4 * HOUR, _stuffing(h, rng, victim), "credential-stuffing"))
    plans.append(
        Planned(last - DAY + 2.6 * HOUR, _night_use(h, rng, victim), "compromised-account-night")
    )

    plans.append(Planned(last + 3.5 * HOUR, _ransomware(h, rng), "ransomware-mass-modify"))

    browser = _first(h, BILLING, 1)  # a clinic-wide role: its searches reach every patient
    plans.append(Planned(last - DAY + 15 * HOUR, _honeytoken(h, rng, browser), "honeytoken-touch"))
    return plans


def _export(h: Harness, rng: random.Random, leaver: Staff) -> Task:
    """A departing clinician takes everything on their panel, in half an hour."""
    for p in h.clinic.panel(leaver):
        h.as_user(leaver, leaver.workstation, "GET", f"Patient/{p.pid}/$everything")
        yield rng.uniform(20, 60)


def _stuffing(h: Harness, rng: random.Random, victim: Staff) -> Task:
    """Leaked passwords tried against staff usernames (and guessed ones) from one address."""
    staff = [s.key for s in h.clinic.staff if s is not victim][:6]
    names = [*staff, "admin", "reception", "drsmith"]
    for round_ in range(2):
        for name in names:
            h.login(name, f"Spring2024!{round_}", ATTACKER)
            yield rng.uniform(2, 8)
    for attempt in range(2):
        h.login(victim.key, f"Welcome{attempt}!", ATTACKER)
        yield rng.uniform(2, 8)


def _night_use(h: Harness, rng: random.Random, victim: Staff) -> Task:
    """The stolen password works; the intruder reads the victim's patients at night."""
    session = h.login(victim.key, password_of(victim, h.seed), ATTACKER)
    if session is None:
        return
    for p in h.clinic.panel(victim)[:12]:
        yield rng.uniform(15, 45)
        if h.clock() - session.token_at > TOKEN_REFRESH_S:  # as its app would: a fresh token
            session.token, _ = h.access.user_token(
                session.session_id, session.user_id, None, USER_SCOPE
            )
            session.token_at = h.clock()
        h.request(session.token, ATTACKER, "GET", f"Patient/{p.pid}")
        yield rng.uniform(5, 15)
        h.request(session.token, ATTACKER, "GET", f"Observation?patient={p.pid}")


def _ransomware(h: Harness, rng: random.Random) -> Iterator[float]:
    """A stolen integration token rewrites records in bulk."""
    token = h.system_token("lab-interface")
    _, bundle = h.request(token, ATTACKER, "GET", "Observation?_count=200")
    entries = (bundle or {}).get("entry", [])
    for item in entries[:90]:
        resource = item["resource"]
        resource["status"] = "entered-in-error"
        resource["valueQuantity"] = {"value": 0, "unit": "/min"}
        h.request(token, ATTACKER, "PUT", f"Observation/{resource['id']}", resource)
        yield rng.uniform(1, 4)


def _honeytoken(h: Harness, rng: random.Random, member: Staff) -> Task:
    """Paging through the whole patient list (a scraper's first step)."""
    path: str | None = "Patient?_count=100"
    for _ in range(50):
        if path is None:
            return
        _, bundle = h.as_user(member, member.workstation, "GET", path)
        links = (bundle or {}).get("link", [])
        after = next((link["url"] for link in links if link.get("relation") == "next"), None)
        path = after.split("/fhir/", 1)[1] if after and "/fhir/" in after else None
        yield rng.uniform(5, 20)
