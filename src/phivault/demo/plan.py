"""The shape of one synthetic patient: age, sex and how many of each record they have.

Plans are drawn from their own random stream, separate from the stream that fills in
names, values and dates. So the exact number of resources in a clinic can be counted by
drawing plans alone, at a small fraction of the cost of generating, and the counts follow
age the way they do in a primary-care panel: infants and the elderly are seen more
often, chronic conditions accumulate with age.
"""

from __future__ import annotations

import math
import random
from itertools import accumulate
from typing import NamedTuple

from phivault.demo.codes import CONDITIONS, MEDICATION_INDEX

# (from age, to age (exclusive), share of patients), roughly a US primary-care panel
_AGE_BANDS = (
    (0, 5, 0.06),
    (5, 18, 0.16),
    (18, 35, 0.22),
    (35, 50, 0.19),
    (50, 65, 0.19),
    (65, 80, 0.13),
    (80, 96, 0.05),
)
_AGE_CUMULATIVE = tuple(accumulate(share for _, _, share in _AGE_BANDS))

# per stage of life: 0-4, 5-17, 18-44, 45-64, 65+
_ENCOUNTERS_MEAN = (2.4, 1.0, 1.0, 1.5, 2.3)
_LAB_VISIT_SHARE = (0.03, 0.08, 0.2, 0.35, 0.45)
_CONDITIONS_MEAN = (0.6, 0.8, 1.0, 1.7, 2.5)
_FUTURE_APPOINTMENTS_MEAN = (0.5, 0.3, 0.35, 0.45, 0.7)
_PAST_APPOINTMENTS_MEAN = 0.35
_MAX_CONDITIONS = 6

_CONDITION_CUMULATIVE = tuple(
    tuple(accumulate(condition.weights[column] for condition in CONDITIONS)) for column in range(4)
)
_CONDITION_POSITIONS = tuple(range(len(CONDITIONS)))


class PatientPlan(NamedTuple):
    age_days: int
    """Age on the reference date, in days (at least 30)."""
    gender: str
    visits: tuple[tuple[int, int], ...]
    """Per encounter: (vital-sign observations, lab observations)."""
    conditions: tuple[int, ...]
    """Indexes into CONDITIONS, no repeats."""
    medications: tuple[tuple[int, int], ...]
    """(position in `conditions` it treats, index into MEDICATIONS)."""
    allergies: int
    past_appointments: int
    future_appointments: int

    @property
    def resource_count(self) -> int:
        """Patient and CareTeam, plus every record the plan calls for."""
        observations = sum(vitals + labs for vitals, labs in self.visits)
        return (
            2
            + len(self.visits)
            + observations
            + len(self.conditions)
            + len(self.medications)
            + self.allergies
            + self.past_appointments
            + self.future_appointments
        )


def stage_of_life(age_years: int) -> int:
    """0: 0-4, 1: 5-17, 2: 18-44, 3: 45-64, 4: 65 and over."""
    if age_years < 5:
        return 0
    if age_years < 18:
        return 1
    if age_years < 45:
        return 2
    if age_years < 65:
        return 3
    return 4


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means used here.
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def draw_plan(rng: random.Random) -> PatientPlan:
    draw = rng.random
    band = 0
    point = draw()
    while band < len(_AGE_BANDS) - 1 and point >= _AGE_CUMULATIVE[band]:
        band += 1
    low, high, _ = _AGE_BANDS[band]
    age_days = rng.randrange(max(30, low * 365), high * 365)
    stage = stage_of_life(age_days // 365)

    point = draw()
    gender = (
        "female"
        if point < 0.495
        else "male"
        if point < 0.99
        else "other"
        if point < 0.995
        else "unknown"
    )

    visits = []
    for _ in range(_poisson(rng, _ENCOUNTERS_MEAN[stage])):
        point = draw()
        vitals = 1 if point < 0.45 else 2 if point < 0.95 else 3
        labs = 1 + int(draw() * 3) if draw() < _LAB_VISIT_SHARE[stage] else 0
        visits.append((vitals, labs))

    conditions: list[int] = []
    wanted = min(_poisson(rng, _CONDITIONS_MEAN[stage]), _MAX_CONDITIONS)
    cumulative = _CONDITION_CUMULATIVE[max(0, stage - 1)]
    for _ in range(4 * wanted):
        if len(conditions) == wanted:
            break
        choice = rng.choices(_CONDITION_POSITIONS, cum_weights=cumulative)[0]
        if choice not in conditions:
            conditions.append(choice)

    medications = []
    for position, choice in enumerate(conditions):
        condition = CONDITIONS[choice]
        if condition.medications and draw() < (0.8 if condition.chronic else 0.6):
            key = condition.medications[int(draw() * len(condition.medications))]
            medications.append((position, MEDICATION_INDEX[key]))

    point = draw()
    allergies = 0 if point < 0.75 else 1 if point < 0.94 else 2
    return PatientPlan(
        age_days=age_days,
        gender=gender,
        visits=tuple(visits),
        conditions=tuple(conditions),
        medications=tuple(medications),
        allergies=allergies,
        past_appointments=_poisson(rng, _PAST_APPOINTMENTS_MEAN),
        future_appointments=_poisson(rng, _FUTURE_APPOINTMENTS_MEAN[stage]),
    )
