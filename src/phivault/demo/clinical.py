"""One synthetic patient's clinical records, in the order a server must load them.

Encounters, then Observations, Conditions, AllergyIntolerances, MedicationRequests and
Appointments; a record only refers to resources yielded before it (a MedicationRequest
to the Condition it treats, both to the Encounter where that was diagnosed).
"""

from __future__ import annotations

import random
from itertools import accumulate
from typing import NamedTuple

from phivault.demo.codes import (
    ALLERGENS,
    CHECK_UP,
    CONDITIONS,
    FOLLOW_UP,
    FOR_PROBLEM,
    FOR_SYMPTOM,
    MEDICATIONS,
    REACTIONS,
    WELL_CHILD,
    Condition,
)
from phivault.demo.common import (
    ICD10CM,
    REFERENCE_ORDINAL,
    RXNORM,
    SNOMED,
    ClinicContext,
    concept,
    day,
    instant,
    new_id,
    plain,
    quantity,
    weekday_ordinal,
)
from phivault.demo.observations import Visit, observation_resources
from phivault.demo.patients import Person
from phivault.demo.plan import PatientPlan
from phivault.demo.scheduling import appointment_resources
from phivault.types import Resource

_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
_ACT_CODE = _TERMINOLOGY + "v3-ActCode"
_CONDITION_CLINICAL = _TERMINOLOGY + "condition-clinical"
_CONDITION_CATEGORY = _TERMINOLOGY + "condition-category"
_ALLERGY_CLINICAL = _TERMINOLOGY + "allergyintolerance-clinical"
_ALLERGY_VERIFICATION = _TERMINOLOGY + "allergyintolerance-verification"
_ALLERGEN_POSITIONS = tuple(range(len(ALLERGENS)))
_ALLERGEN_CUMULATIVE = tuple(accumulate(allergen.weight for allergen in ALLERGENS))
_ANAPHYLAXIS = "39579001"
_VISIT_WINDOW_DAYS = 3 * 365
_OPENING_MINUTE, _SLOTS = 8 * 60, 36  # 15-minute slots from 08:00 to 16:45
_CHRONIC_DIAGNOSED_HERE = 0.6  # the rest were already on the problem list


class _Diagnosis(NamedTuple):
    """Where and when a condition was recorded, for the prescriptions that treat it."""

    condition: str
    """Reference string of the Condition."""
    ordinal: int
    recorded: str
    recorder: str
    encounter: str | None


def clinical_records(
    ctx: ClinicContext, plan: PatientPlan, person: Person, rng: random.Random
) -> list[Resource]:
    conditions = [CONDITIONS[choice] for choice in plan.conditions]
    # Decided before the visits are written, so that a visit can carry its reason.
    visit_count = len(plan.visits)
    diagnosed_at = [
        int(rng.random() * visit_count)
        if visit_count and (not c.chronic or rng.random() < _CHRONIC_DIAGNOSED_HERE)
        else None
        for c in conditions
    ]
    records, visits = _encounters(ctx, person, conditions, diagnosed_at, visit_count, rng)
    records += observation_resources(ctx, plan, person, conditions, visits, rng)
    diagnoses = []
    for condition, at in zip(conditions, diagnosed_at, strict=True):
        resource, diagnosis = _condition(condition, None if at is None else visits[at], person, rng)
        records.append(resource)
        diagnoses.append(diagnosis)
    records += _allergies(plan, person, rng)
    for position, medication_index in plan.medications:
        records.append(_medication_request(medication_index, diagnoses[position], person, rng))
    records += appointment_resources(ctx, plan, person, rng)
    return records


def _encounters(
    ctx: ClinicContext,
    person: Person,
    conditions: list[Condition],
    diagnosed_at: list[int | None],
    count: int,
    rng: random.Random,
) -> tuple[list[Resource], list[Visit]]:
    """Visits oldest first, on weekdays, after registration, before the reference date."""
    draw = rng.random
    tz = ctx.region.utc_offset
    earliest = max(person.registered, REFERENCE_ORDINAL - _VISIT_WINDOW_DAYS)
    window = max(1, REFERENCE_ORDINAL - earliest)
    days = sorted(REFERENCE_ORDINAL - rng.randrange(1, window + 1) for _ in range(count))
    encounters: list[Resource] = []
    visits: list[Visit] = []
    for position, planned_day in enumerate(days):
        ordinal = weekday_ordinal(planned_day)
        if ordinal >= REFERENCE_ORDINAL:
            ordinal -= 3  # a Sunday just before the reference date: the Friday before
        ordinal = max(ordinal, person.birth)
        minute = _OPENING_MINUTE + 15 * int(draw() * _SLOTS)
        start = instant(ordinal, minute, tz)
        clinician = (
            person.gp if draw() < 0.85 else ctx.clinicians[int(draw() * len(ctx.clinicians))]
        )
        reasons = [c for c, at in zip(conditions, diagnosed_at, strict=True) if at == position]
        if reasons:
            kind = FOR_PROBLEM if reasons[0].chronic else FOR_SYMPTOM
        elif person.years < 18:
            kind = WELL_CHILD
        else:
            kind = CHECK_UP if draw() < 0.6 else FOLLOW_UP
        virtual = kind in (FOR_PROBLEM, FOLLOW_UP) and draw() < 0.15
        encounter_id = new_id(rng)
        encounter: Resource = {
            "resourceType": "Encounter",
            "id": encounter_id,
            "status": "finished",
            "class": (
                {"system": _ACT_CODE, "code": "VR", "display": "virtual"}
                if virtual
                else {"system": _ACT_CODE, "code": "AMB", "display": "ambulatory"}
            ),
            "type": [concept(SNOMED, kind[0], kind[1], plain(kind[1]))],
            "subject": {"reference": person.reference},
            "participant": [
                {
                    "type": [
                        concept(_TERMINOLOGY + "v3-ParticipationType", "PPRF", "primary performer")
                    ],
                    "individual": {"reference": clinician},
                }
            ],
            "period": {
                "start": start,
                "end": instant(ordinal, minute + 15 + 5 * int(draw() * 7), tz),
            },
        }
        if reasons:
            encounter["reasonCode"] = [
                concept(SNOMED, c.snomed, c.display, plain(c.display)) for c in reasons
            ]
        if not virtual:
            location = (
                ctx.locations[0]
                if draw() < 0.7
                else ctx.locations[int(draw() * len(ctx.locations))]
            )
            encounter["location"] = [{"location": {"reference": location}}]
        encounter["serviceProvider"] = {"reference": ctx.organization}
        encounters.append(encounter)
        visits.append(Visit(f"Encounter/{encounter_id}", ordinal, start, clinician))
    return encounters, visits


def _day_since_registration(person: Person, rng: random.Random) -> int:
    """A day from the patient's registration to the day before the reference date."""
    return REFERENCE_ORDINAL - rng.randrange(1, REFERENCE_ORDINAL - person.registered + 1)


def _condition(
    condition: Condition, visit: Visit | None, person: Person, rng: random.Random
) -> tuple[Resource, _Diagnosis]:
    if visit is not None:
        ordinal, recorded, recorder = visit.ordinal, visit.start, visit.clinician
    else:
        ordinal = _day_since_registration(person, rng)
        recorded, recorder = day(ordinal), person.gp
    if condition.chronic:
        onset = ordinal - rng.randrange(0, min(ordinal - person.birth, 3_650) + 1)
    else:
        onset = max(person.birth, ordinal - rng.randrange(0, 8))
    category = (
        ("problem-list-item", "Problem List Item")
        if condition.chronic
        else ("encounter-diagnosis", "Encounter Diagnosis")
    )
    condition_id = new_id(rng)
    resource: Resource = {
        "resourceType": "Condition",
        "id": condition_id,
        "clinicalStatus": concept(_CONDITION_CLINICAL, "active", "Active"),
        "verificationStatus": concept(
            _TERMINOLOGY + "condition-ver-status", "confirmed", "Confirmed"
        ),
        "category": [concept(_CONDITION_CATEGORY, *category)],
        "code": {
            "coding": [
                {"system": SNOMED, "code": condition.snomed, "display": condition.display},
                {"system": ICD10CM, "code": condition.icd10, "display": condition.icd10_display},
            ],
            "text": plain(condition.display),
        },
        "subject": {"reference": person.reference},
    }
    if visit is not None:
        resource["encounter"] = {"reference": visit.encounter}
    resource["onsetDateTime"] = day(onset)
    if not condition.chronic:
        abated = onset + rng.randrange(5, 22)
        if abated < REFERENCE_ORDINAL:
            resource["clinicalStatus"] = concept(_CONDITION_CLINICAL, "resolved", "Resolved")
            resource["abatementDateTime"] = day(abated)
    resource["recordedDate"] = recorded
    resource["recorder"] = {"reference": recorder}
    diagnosis = _Diagnosis(
        f"Condition/{condition_id}",
        ordinal,
        recorded,
        recorder,
        None if visit is None else visit.encounter,
    )
    return resource, diagnosis


def _medication_request(
    medication_index: int, diagnosis: _Diagnosis, person: Person, rng: random.Random
) -> Resource:
    medication = MEDICATIONS[medication_index]
    ongoing = medication.days is None or diagnosis.ordinal + medication.days >= REFERENCE_ORDINAL
    request: Resource = {
        "resourceType": "MedicationRequest",
        "id": new_id(rng),
        "status": "active" if ongoing else "completed",
        "intent": "order",
        "category": [
            concept(_TERMINOLOGY + "medicationrequest-category", "outpatient", "Outpatient")
        ],
        "medicationCodeableConcept": concept(RXNORM, medication.rxnorm, medication.display),
        "subject": {"reference": person.reference},
    }
    if diagnosis.encounter is not None:
        request["encounter"] = {"reference": diagnosis.encounter}
    request["authoredOn"] = diagnosis.recorded
    request["requester"] = {"reference": diagnosis.recorder}
    request["reasonReference"] = [{"reference": diagnosis.condition}]
    request["dosageInstruction"] = [
        {
            "sequence": 1,
            "text": medication.instructions,
            "timing": {"repeat": {"frequency": medication.per_day, "period": 1, "periodUnit": "d"}},
            "asNeededBoolean": medication.as_needed,
            "doseAndRate": [
                {
                    "doseQuantity": quantity(
                        medication.dose, medication.dose_unit, medication.dose_ucum
                    )
                }
            ],
        }
    ]
    request["dispenseRequest"] = {
        "numberOfRepeatsAllowed": 0 if medication.days else 3,
        "expectedSupplyDuration": quantity(medication.days or 90, "days", "d"),
    }
    return request


def _allergies(plan: PatientPlan, person: Person, rng: random.Random) -> list[Resource]:
    chosen: list[int] = []
    while len(chosen) < plan.allergies:
        candidate = rng.choices(_ALLERGEN_POSITIONS, cum_weights=_ALLERGEN_CUMULATIVE)[0]
        if candidate not in chosen:
            chosen.append(candidate)
    records: list[Resource] = []
    for position in chosen:
        allergen = ALLERGENS[position]
        code, display = REACTIONS[allergen.reactions[int(rng.random() * len(allergen.reactions))]]
        if code == _ANAPHYLAXIS:
            severity = "severe"
        else:
            severity = "moderate" if rng.random() < 0.4 else "mild"
        verification = (
            ("confirmed", "Confirmed") if rng.random() < 0.9 else ("unconfirmed", "Unconfirmed")
        )
        records.append(
            {
                "resourceType": "AllergyIntolerance",
                "id": new_id(rng),
                "clinicalStatus": concept(_ALLERGY_CLINICAL, "active", "Active"),
                "verificationStatus": concept(_ALLERGY_VERIFICATION, *verification),
                "type": allergen.type,
                "category": [allergen.category],
                "criticality": allergen.criticality,
                "code": concept(
                    allergen.system, allergen.code, allergen.display, plain(allergen.display)
                ),
                "patient": {"reference": person.reference},
                "recordedDate": day(_day_since_registration(person, rng)),
                "recorder": {"reference": person.gp},
                "reaction": [
                    {
                        "manifestation": [concept(SNOMED, code, display, plain(display))],
                        "severity": severity,
                    }
                ],
            }
        )
    return records
