"""A synthetic patient's Observations: vital signs and labs taken at their encounters.

Values follow the patient: height and weight from age and sex, blood pressure rising with
age and hypertension, HbA1c with diabetes, creatinine with kidney disease, and so on.
Labs carry reference ranges and a Low/Normal/High interpretation.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

from phivault.demo.codes import (
    DIASTOLIC,
    INTERPRETATIONS,
    LAB_INDEX,
    LABS,
    SYSTOLIC,
    VITALS,
    Condition,
    Vital,
)
from phivault.demo.common import LOINC, ClinicContext, concept, instant, new_id, quantity
from phivault.demo.patients import Person
from phivault.demo.plan import PatientPlan
from phivault.types import Resource

_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
_CATEGORY = _TERMINOLOGY + "observation-category"
_INTERPRETATION = _TERMINOLOGY + "v3-ObservationInterpretation"
_VITALS_WITHOUT_BP = VITALS[1:]  # not taken routinely before age 3
_FOLLOWED_LAB_SHARE = 0.7


class Visit(NamedTuple):
    """An encounter as the records made during it see it."""

    encounter: str
    """Reference string of the Encounter."""
    ordinal: int
    """Its day, as a proleptic Gregorian ordinal."""
    start: str
    """Its start, a FHIR dateTime."""
    clinician: str
    """Reference string of the Practitioner who saw the patient."""


class _Body:
    """The patient's measurements that vital signs are drawn around."""

    __slots__ = ("conditions", "height", "weight", "years")

    def __init__(self, rng: random.Random, person: Person, conditions: set[str]) -> None:
        self.years = person.years
        self.conditions = conditions
        adult_height = rng.gauss(176.0, 7.0) if person.male else rng.gauss(162.5, 6.5)
        if self.years >= 18:
            height = adult_height
            bmi = min(max(rng.gauss(27.0, 4.5), 17.5), 48.0)
        else:
            if self.years < 1:
                height = 50 + rng.gauss(0, 2)
            elif self.years < 2:
                height = 75 + rng.gauss(0, 3)
            else:
                height = 87 + (adult_height - 87) * (self.years - 2) / 16
            bmi = min(max(rng.gauss(17.0, 1.8), 13.5), 30.0)
        if "obesity" in conditions:
            bmi = max(bmi, 30.0 + abs(rng.gauss(0, 4)))
        self.height = height
        self.weight = bmi * (height / 100) ** 2


def observation_resources(
    ctx: ClinicContext,
    plan: PatientPlan,
    person: Person,
    conditions: list[Condition],
    visits: list[Visit],
    rng: random.Random,
) -> list[Resource]:
    body = _Body(rng, person, {condition.key for condition in conditions})
    followed: list[str] = []  # labs the patient's conditions are monitored with
    shifts: dict[str, float] = {}
    for condition in conditions:
        for lab_key, shift in condition.labs:
            shifts[lab_key] = shifts.get(lab_key, 0.0) + shift
            if lab_key not in followed:
                followed.append(lab_key)
    vital_choices = _VITALS_WITHOUT_BP if person.years < 3 else VITALS

    records: list[Resource] = []
    for (vital_count, lab_count), visit in zip(plan.visits, visits, strict=True):
        for vital in rng.sample(vital_choices, vital_count):
            records.append(_vital_sign(vital, body, person, visit, rng))
        for lab_position in _choose_labs(lab_count, followed, rng):
            records.append(_lab_result(lab_position, shifts, ctx, person, visit, rng))
    return records


def _vital_sign(
    vital: Vital, body: _Body, person: Person, visit: Visit, rng: random.Random
) -> Resource:
    gauss, years = rng.gauss, body.years
    observation: Resource = {
        "resourceType": "Observation",
        "id": new_id(rng),
        "status": "final",
        "category": [concept(_CATEGORY, "vital-signs", "Vital Signs")],
        "code": concept(LOINC, vital.loinc, vital.display),
        "subject": {"reference": person.reference},
        "encounter": {"reference": visit.encounter},
        "effectiveDateTime": visit.start,
        "performer": [{"reference": person.nurse}],
    }
    key = vital.key
    if key == "bp":
        mean = 96 + 1.2 * years if years < 18 else 110 + 0.45 * (years - 18)
        if "hypertension" in body.conditions:
            mean += 16
        systolic = round(gauss(mean, 9))
        diastolic = round(systolic * 0.63 + gauss(0, 5))
        observation["component"] = [
            {
                "code": concept(LOINC, *SYSTOLIC),
                "valueQuantity": quantity(systolic, "mm[Hg]", "mm[Hg]"),
            },
            {
                "code": concept(LOINC, *DIASTOLIC),
                "valueQuantity": quantity(diastolic, "mm[Hg]", "mm[Hg]"),
            },
        ]
        return observation
    value: float
    if key == "hr":
        value = round(gauss(max(74.0, 130 - 6 * years), 9))
    elif key == "weight":
        value = round(body.weight * (1 + gauss(0, 0.015)), 1)
    elif key == "temp":
        value = round(gauss(36.8, 0.25), 1)
    elif key == "spo2":
        value = min(100, round(gauss(95.5 if "copd" in body.conditions else 97.8, 1.2)))
    elif key == "rr":
        value = max(10, round(gauss(max(16.0, 32 - 1.5 * years), 2)))
    elif key == "height":
        value = round(body.height, 1)
    else:
        value = round(body.weight / (body.height / 100) ** 2, 1)
    observation["valueQuantity"] = quantity(value, vital.unit, vital.ucum)
    return observation


def _choose_labs(count: int, followed: list[str], rng: random.Random) -> list[int]:
    """`count` distinct labs, mostly the ones the patient's conditions call for."""
    chosen: list[int] = []
    while len(chosen) < count:
        if followed and rng.random() < _FOLLOWED_LAB_SHARE:
            candidate = LAB_INDEX[followed[int(rng.random() * len(followed))]]
        else:
            candidate = int(rng.random() * len(LABS))
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


def _lab_result(
    lab_position: int,
    shifts: dict[str, float],
    ctx: ClinicContext,
    person: Person,
    visit: Visit,
    rng: random.Random,
) -> Resource:
    lab = LABS[lab_position]
    raw = max(rng.gauss(lab.mean + shifts.get(lab.key, 0.0), lab.sd), lab.mean * 0.2)
    value: float = round(raw, lab.decimals) if lab.decimals else round(raw)
    flag = (
        "L"
        if lab.low is not None and value < lab.low
        else "H"
        if lab.high is not None and value > lab.high
        else "N"
    )
    reference_range: dict[str, Any] = {}
    if lab.low is not None:
        reference_range["low"] = quantity(lab.low, lab.ucum, lab.ucum)
    if lab.high is not None:
        reference_range["high"] = quantity(lab.high, lab.ucum, lab.ucum)
    resulted_minute = 17 * 60 + 15 * int(rng.random() * 12)  # the lab reports by evening
    return {
        "resourceType": "Observation",
        "id": new_id(rng),
        "status": "final",
        "category": [concept(_CATEGORY, "laboratory", "Laboratory")],
        "code": concept(LOINC, lab.loinc, lab.display),
        "subject": {"reference": person.reference},
        "encounter": {"reference": visit.encounter},
        "effectiveDateTime": visit.start,
        "issued": instant(visit.ordinal, resulted_minute, ctx.region.utc_offset),
        "performer": [{"reference": ctx.organization}],
        "valueQuantity": quantity(value, lab.ucum, lab.ucum),
        "interpretation": [concept(_INTERPRETATION, flag, INTERPRETATIONS[flag])],
        "referenceRange": [reference_range],
    }
