"""Access with no explanation in the record (explanation-based auditing).

Fabbri and LeFevre found that the clinical record itself explains almost every legitimate
access: the user is on the patient's care team, saw them in an encounter, ordered for
them, has an appointment with them, or (clerical work) the patient has a visit the work is
for. An access none of these explains, and that is not a break-glass, needs a look. One
alert per user and day collects them; it turns high once `unexplained_high` patients are
involved, or when the policy had to refuse some of the attempts.

A patient the user registered (created) in the last week is explained by that.
"""

from __future__ import annotations

from collections.abc import Iterable

from phivault.detect.detectors.common import DAY, REFUSED, day_of, day_text, patient_access
from phivault.detect.facts import EXPLAIN_TYPES, ClinicFacts
from phivault.detect.model import Entry, Finding, Severity
from phivault.detect.settings import DetectSettings

REGISTERED_FOR = 7 * DAY


class UnexplainedAccess:
    name = "unexplained-access"
    description = (
        "patient records opened with no care relationship, appointment, order or break-glass"
    )

    def __init__(self, settings: DetectSettings) -> None:
        self.high = settings.unexplained_high
        self._registered: dict[tuple[str, str], float] = {}
        self._today: dict[tuple[str, int], set[str]] = {}
        self._refused: dict[tuple[str, int], int] = {}
        self._scores: dict[tuple[str, int], list[float]] = {}  # accesses, summed scores

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if (
            entry.patient
            and entry.ok
            and entry.rtype in EXPLAIN_TYPES
            and entry.action
            in (
                "create",
                "update",
                "patch",
            )
        ):
            facts.forget(entry.patient)  # a new appointment or care team explains what follows
        user = patient_access(entry, facts)
        if user is None or entry.patient is None or facts.is_canary(entry.patient):
            return ()
        patient = entry.patient
        if entry.ok and entry.action == "create" and entry.rtype == "Patient":
            self._registered[(user.user_id, patient)] = entry.at
            return ()
        registered = self._registered.get((user.user_id, patient))
        if registered is not None and entry.at - registered <= REGISTERED_FOR:
            return ()
        explanation = facts.explain(user, patient, entry.at, entry.purpose)
        key = (user.user_id, day_of(entry.at))
        score = self._scores.setdefault(key, [0, 0.0])
        score[0] += 1
        score[1] += explanation.score
        if explanation.explained:
            return ()
        if len(self._today) > 10_000:
            self._today.clear()
            self._refused.clear()
            self._scores.clear()
        seen = self._today.setdefault(key, set())
        refused = entry.detail == REFUSED
        if refused:
            self._refused[key] = self._refused.get(key, 0) + 1
        if patient in seen and not refused:
            return ()
        seen.add(patient)
        count = len(seen)
        severity = (
            Severity.HIGH if count >= self.high or self._refused.get(key, 0) else Severity.MEDIUM
        )
        title = (
            f"User {user.label} opened the records of {count} patient(s) on {day_text(entry.at)} "
            "with no care relationship, appointment, order or break-glass to explain it"
        )
        if self._refused.get(key, 0):
            title += f"; {self._refused[key]} attempt(s) were refused by the access policy"
        return (
            Finding(
                detector=self.name,
                kind="unexplained-access",
                severity=severity,
                title=title,
                group=f"{self.name}:{user.user_id}:{day_of(entry.at)}",
                evidence=(entry.idx,),
                at=entry.at,
                actor=user.user_id,
                patient=patient if count == 1 else None,
                # The day's mean explanation score over all of the user's patient accesses
                # (1.0: all explained by a direct care link): how unusual the day was.
                details={
                    "patients": str(count),
                    "accesses": str(int(score[0])),
                    "explanation_score": f"{score[1] / score[0]:.2f}",
                },
            ),
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        cutoff = now - REGISTERED_FOR
        if len(self._registered) > 50_000:
            self._registered = {k: v for k, v in self._registered.items() if v > cutoff}
        return ()
