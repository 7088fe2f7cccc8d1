"""Snooping on family, co-workers and VIPs.

- family: the patient shares the user's rare surname or address (compared through blind
  indexes only: the tokens search uses, never a name or address in clear);
- co-workers: the patient is on the staff (same surname, given name and address or
  contact point as a Practitioner, or labelled EMP in meta.security);
- VIPs: the patient is labelled CEL (celebrity) or VIP in meta.security.

Each is an alert (high) unless the record explains the access directly (the user is on
the patient's care team or has an appointment with them). Opening one's own record is
reported too (medium): it bypasses the clinic's release-of-information process.
"""

from __future__ import annotations

from collections.abc import Iterable

from phivault.detect.detectors.common import patient_access
from phivault.detect.facts import ClinicFacts
from phivault.detect.model import Entry, Finding, Severity
from phivault.detect.settings import DetectSettings

_TITLES = {
    "family-address": "User {user} opened the record of a patient living at the user's address",
    "family-surname": "User {user} opened the record of a patient with the user's uncommon surname",
    "co-worker": "User {user} opened the record of a co-worker who is a patient here",
    "own-record": "User {user} opened their own patient record",
    "vip": "User {user} opened the record of a VIP patient",
}


class Snooping:
    name = "snooping"
    description = "access to relatives', co-workers' and VIPs' records without a care reason"

    def __init__(self, settings: DetectSettings) -> None:
        self._settings = settings

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        user = patient_access(entry, facts)
        if user is None or entry.patient is None or facts.is_canary(entry.patient):
            return ()
        patient = entry.patient
        kinds: list[str] = []
        if user.practitioner:
            surname, address = facts.kin(user.practitioner)
            if patient in address:
                kinds.append("family-address")
            elif patient in surname:
                kinds.append("family-surname")
        owner = facts.staff_patient(patient)
        if owner is not None:
            kinds.append("own-record" if owner == user.practitioner else "co-worker")
        if facts.is_vip(patient):
            kinds.append("vip")
        if not kinds:
            return ()
        explanation = facts.explain(user, patient, entry.at, entry.purpose)
        direct = explanation.explained and explanation.score >= 1.0
        found: list[Finding] = []
        for kind in kinds:
            if direct and kind != "own-record":
                continue
            severity = Severity.MEDIUM if kind == "own-record" else Severity.HIGH
            found.append(
                Finding(
                    detector=self.name,
                    kind=kind,
                    severity=severity,
                    title=_TITLES[kind].format(user=user.label)
                    + (" (refused by the access policy)" if not entry.ok else ""),
                    group=f"{self.name}:{kind}:{user.user_id}:{patient}",
                    evidence=(entry.idx,),
                    at=entry.at,
                    actor=user.user_id,
                    patient=patient,
                    details={"explanation": explanation.reason},
                )
            )
        return found

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()
