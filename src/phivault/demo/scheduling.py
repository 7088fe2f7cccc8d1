"""A synthetic patient's Appointments: some kept, missed or cancelled in the past year, some
booked for the next six months, all relative to the fixed reference date."""

from __future__ import annotations

import random

from phivault.demo.codes import APPOINTMENT_KINDS
from phivault.demo.common import (
    REFERENCE_ORDINAL,
    ClinicContext,
    concept,
    instant,
    new_id,
    weekday_ordinal,
)
from phivault.demo.patients import Person
from phivault.demo.plan import PatientPlan
from phivault.types import Resource

_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
_CANCELLED_BY = {"pat": "Patient", "prov": "Provider"}


def appointment_resources(
    ctx: ClinicContext, plan: PatientPlan, person: Person, rng: random.Random
) -> list[Resource]:
    draw = rng.random
    records: list[Resource] = []
    past_window = max(1, min(365, REFERENCE_ORDINAL - person.birth - 1))
    offsets = sorted(
        [-rng.randrange(1, past_window + 1) for _ in range(plan.past_appointments)]
        + [rng.randrange(1, 181) for _ in range(plan.future_appointments)]
    )
    for offset in offsets:
        ordinal = weekday_ordinal(REFERENCE_ORDINAL + offset)
        past = ordinal < REFERENCE_ORDINAL
        point = draw()
        if past:
            status = "fulfilled" if point < 0.82 else "noshow" if point < 0.89 else "cancelled"
            created = ordinal - rng.randrange(1, 60)
        else:
            status = "booked" if point < 0.88 else "pending" if point < 0.93 else "cancelled"
            created = REFERENCE_ORDINAL - rng.randrange(1, 60)
        code, display, description, minutes = APPOINTMENT_KINDS[
            int(draw() * len(APPOINTMENT_KINDS))
        ]
        start_minute = 8 * 60 + 15 * int(draw() * 36)
        tz = ctx.region.utc_offset
        clinician = (
            person.gp if draw() < 0.85 else ctx.clinicians[int(draw() * len(ctx.clinicians))]
        )
        location = (
            ctx.locations[0] if draw() < 0.7 else ctx.locations[int(draw() * len(ctx.locations))]
        )
        cancelled_by = ("pat" if draw() < 0.7 else "prov") if status == "cancelled" else ""
        patient_status = "declined" if cancelled_by == "pat" else "accepted"
        clinician_status = (
            "declined"
            if cancelled_by == "prov"
            else "needs-action"
            if status == "pending"
            else "accepted"
        )
        appointment: Resource = {"resourceType": "Appointment", "id": new_id(rng), "status": status}
        if cancelled_by:
            appointment["cancelationReason"] = concept(
                _TERMINOLOGY + "appointment-cancellation-reason",
                cancelled_by,
                _CANCELLED_BY[cancelled_by],
            )
        appointment.update(
            {
                "serviceCategory": [
                    concept(_TERMINOLOGY + "service-category", "17", "General Practice")
                ],
                "appointmentType": concept(_TERMINOLOGY + "v2-0276", code, display),
                "description": description,
                "start": instant(ordinal, start_minute, tz),
                "end": instant(ordinal, start_minute + minutes, tz),
                "minutesDuration": minutes,
                "created": instant(created, 7 * 60 + 15 * int(draw() * 44), tz),
                "participant": [
                    {
                        "actor": {"reference": person.reference},
                        "required": "required",
                        "status": patient_status,
                    },
                    {
                        "actor": {"reference": clinician},
                        "required": "required",
                        "status": clinician_status,
                    },
                    {
                        "actor": {"reference": location},
                        "required": "information-only",
                        "status": "accepted",
                    },
                ],
            }
        )
        records.append(appointment)
    return records
