"""Volume anomalies: a user's hour against their own busiest hours and their role peers'.

Counted per user and clock hour: distinct patients whose data was released (reads,
searches, history, $everything, exports; a bulk import or other writes disclose nothing
and are the sabotage detector's business), records released, searches
without a patient filter, and exports ($export, $everything). An hour is anomalous when
its count passes all of: a floor, `volume_own_factor` times the user's busiest hour in the
baseline, and `volume_peer_factor` times the typical (median) busiest hour of the users
with the same role. A user without history is judged against peers and the floor only.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from phivault.detect.detectors.common import DAY, hour_of, name_of, touched_patients
from phivault.detect.facts import ClinicFacts
from phivault.detect.model import READ_ACTIONS, Entry, Finding, Severity
from phivault.detect.settings import DetectSettings

METRICS = ("patients", "records", "searches", "exports")
PATIENT_FILTERS = frozenset(
    {"patient", "subject", "_id", "identifier", "beneficiary", "encounter", "_has"}
)
_WORDS = {
    "patients": "touched {n} patients' records",
    "records": "received {n} records",
    "searches": "ran {n} searches without a patient filter",
    "exports": "started {n} exports",
}


@dataclass
class _Hour:
    hour: int
    patients: set[str] = field(default_factory=set)
    records: int = 0
    searches: int = 0
    exports: int = 0
    evidence: list[int] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)

    def value(self, metric: str) -> int:
        return len(self.patients) if metric == "patients" else int(getattr(self, metric))


@dataclass
class _User:
    role: str
    current: _Hour | None = None
    history: dict[int, dict[str, int]] = field(default_factory=dict)  # hour -> counts

    def busiest(self, metric: str) -> int:
        return max((h.get(metric, 0) for h in self.history.values()), default=0)

    def days(self) -> int:
        return len({h // 24 for h in self.history})


class VolumeAnomaly:
    name = "volume"
    description = "hours with far more patients, records, broad searches or exports than usual"

    def __init__(self, settings: DetectSettings) -> None:
        self.s = settings
        self.floors = {
            "patients": settings.volume_floor_patients,
            "records": settings.volume_floor_records,
            "searches": settings.volume_floor_searches,
            "exports": settings.volume_floor_exports,
        }
        self.keep_hours = int(settings.baseline_days * DAY // 3600)
        self.users: dict[str, _User] = {}

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if not entry.ok:
            return ()
        user_info = facts.user(entry.actor)
        role = user_info.role if user_info is not None else "system"
        user = self.users.get(entry.actor)
        if user is None:
            user = self.users[entry.actor] = _User(role)
        hour = hour_of(entry.at)
        if user.current is None or user.current.hour != hour:
            self._close(user, hour)
        current = user.current
        assert current is not None
        before = {m: current.value(m) for m in METRICS}
        if entry.action in READ_ACTIONS:
            current.patients |= touched_patients(entry, facts)
        if entry.action in ("read", "vread", "search", "history", "everything"):
            current.records += max(1, len(entry.results)) if entry.action != "read" else 1
        if entry.action == "search" and entry.patient is None:
            names = {name.split(":")[0].split(".")[0] for name, _ in entry.query}
            if not names & PATIENT_FILTERS and entry.rtype is not None:
                current.searches += 1
        if entry.action in ("export", "everything"):
            current.exports += 1
        if len(current.evidence) < 500:
            current.evidence.append(entry.idx)
        found: list[Finding] = []
        for metric in METRICS:
            value = current.value(metric)
            if value == before[metric] or metric in current.reported:
                continue
            limit, own, peer = self._limit(entry.actor, user, metric)
            if value > limit:
                current.reported.add(metric)
                found.append(self._finding(entry, facts, metric, value, own, peer, current))
        return found

    def _close(self, user: _User, hour: int) -> None:
        done = user.current
        if done is not None and any(done.value(m) for m in METRICS):
            user.history[done.hour] = {m: done.value(m) for m in METRICS}
        for old in [h for h in user.history if h < hour - self.keep_hours]:
            del user.history[old]
        user.current = _Hour(hour)

    def _limit(self, actor: str, user: _User, metric: str) -> tuple[float, int, int]:
        own = user.busiest(metric) if user.days() >= 3 else 0
        peers = [
            u.busiest(metric)
            for name, u in self.users.items()
            if name != actor and u.role == user.role and u.days() >= 3
        ]
        peer = int(statistics.median(peers)) if len(peers) >= 2 else 0
        limit = max(
            float(self.floors[metric]),
            self.s.volume_own_factor * own,
            self.s.volume_peer_factor * peer,
        )
        return limit, own, peer

    def _finding(
        self,
        entry: Entry,
        facts: ClinicFacts,
        metric: str,
        value: int,
        own: int,
        peer: int,
        hour: _Hour,
    ) -> Finding:
        severity = Severity.MEDIUM if metric == "searches" else Severity.HIGH
        return Finding(
            detector=self.name,
            kind=f"volume-{metric}",
            severity=severity,
            title=f"{name_of(entry.actor, facts)} {_WORDS[metric].format(n=value)} in one hour "
            f"(their busiest hour before: {own}; typical for their role: {peer})",
            group=f"{self.name}:{metric}:{entry.actor}:{hour.hour // 24}",
            evidence=tuple(hour.evidence[-100:]),
            at=entry.at,
            actor=entry.actor,
            details={"metric": metric, "count": str(value), "own": str(own), "peer": str(peer)},
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()
