"""Ransomware and sabotage: bursts of updates or deletes, and honeytoken (canary) patients.

Canary patients are seeded at `phivault init` (detect/canaries.py): ordinary-looking
records that no care team, appointment or workflow ever points at. Nobody has a reason to
open one; any access, or a search that returns one, is a critical alert.
"""

from __future__ import annotations

from collections.abc import Iterable

from phivault.detect.canaries import CANARY_ACTOR
from phivault.detect.detectors.common import Window, name_of
from phivault.detect.facts import ClinicFacts
from phivault.detect.model import WRITE_ACTIONS, Entry, Finding, Severity
from phivault.detect.settings import DetectSettings

TEN_MINUTES = 600.0


class WriteBurst:
    name = "write-burst"
    description = "bursts of updates or deletes (ransomware mass-modify, sabotage)"

    def __init__(self, settings: DetectSettings) -> None:
        self.s = settings
        self.writes: dict[str, Window] = {}
        self.deletes: dict[str, Window] = {}
        self.busiest: dict[str, dict[int, int]] = {}  # actor -> hour -> most writes in 10 min

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if entry.action not in WRITE_ACTIONS or entry.action == "create":
            return ()
        writes = self.writes.setdefault(entry.actor, Window(TEN_MINUTES))
        writes.add(entry.at, entry.action, entry.idx)
        found: list[Finding] = []
        hour = int(entry.at // 3600)
        hours = self.busiest.setdefault(entry.actor, {})
        # The actor's busiest 10 minutes in earlier hours: a burst never raises its own bar.
        own = max((c for h, c in hours.items() if h < hour - 1), default=0)
        limit = max(self.s.writes_per_10_minutes, 3 * own)
        if writes.count() > limit:
            found.append(
                self._finding(
                    entry, facts, "update-burst", writes, f"changed {writes.count()} records"
                )
            )
        hours[hour] = max(hours.get(hour, 0), writes.count())
        if len(hours) > 24 * 60:
            for old in sorted(hours)[: len(hours) - 24 * 28]:
                del hours[old]
        if entry.action == "delete":
            deletes = self.deletes.setdefault(entry.actor, Window(TEN_MINUTES))
            deletes.add(entry.at, entry.action, entry.idx)
            if deletes.count() > self.s.deletes_per_10_minutes:
                found.append(
                    self._finding(
                        entry, facts, "delete-burst", deletes, f"deleted {deletes.count()} records"
                    )
                )
        return found

    def _finding(
        self, entry: Entry, facts: ClinicFacts, kind: str, window: Window, what: str
    ) -> Finding:
        who = name_of(entry.actor, facts)
        return Finding(
            detector=self.name,
            kind=kind,
            severity=Severity.CRITICAL,
            title=f"{who} {what} in 10 minutes: possible ransomware or sabotage. "
            "Check the account and be ready to restore from backup",
            group=f"{self.name}:{kind}:{entry.actor}",
            evidence=window.evidence(100),
            at=entry.at,
            actor=entry.actor,
            details={"count": str(window.count())},
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()


class CanaryTouch:
    name = "canary"
    description = "any access to a honeytoken patient record"

    def __init__(self, settings: DetectSettings) -> None:
        self._settings = settings

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if entry.actor == CANARY_ACTOR:
            return ()
        touched = {entry.patient} if entry.patient and facts.is_canary(entry.patient) else set()
        for ref in entry.results:
            pseudonym = facts.patient_of(ref)
            if pseudonym is not None and facts.is_canary(pseudonym):
                touched.add(pseudonym)
        if not touched:
            return ()
        return (
            Finding(
                detector=self.name,
                kind="honeytoken",
                severity=Severity.CRITICAL,
                title=f"{name_of(entry.actor, facts)} touched a honeytoken patient record "
                f"({entry.action}) that no "
                "legitimate work ever opens: treat the account or client as compromised",
                group=f"{self.name}:{entry.actor}",
                evidence=(entry.idx,),
                at=entry.at,
                actor=entry.actor,
                patient=sorted(touched)[0],
                details={"action": entry.action, "address": entry.client or "unknown"},
            ),
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()
