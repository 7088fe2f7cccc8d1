"""Off-hours access relative to the user's own pattern.

After `off_hours_min_days` days of history, the hours of the day in which a user has
worked (widened by an hour on each side) are their usual hours; a night-shift nurse's
nights are usual for them. Touching `off_hours_min_records` patient records at an hour the
user has never worked is an alert (high if it comes from an address the user has not
used before).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from phivault.detect.detectors.common import HOUR, day_of, patient_access
from phivault.detect.facts import ClinicFacts
from phivault.detect.model import Entry, Finding, Severity
from phivault.detect.settings import DetectSettings


@dataclass
class _Pattern:
    hours: set[int] = field(default_factory=set)  # hours of the day seen before today
    days: set[int] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    today: int = -1
    today_hours: set[int] = field(default_factory=set)
    today_addresses: set[str] = field(default_factory=set)
    odd: dict[int, list[int]] = field(default_factory=dict)  # day -> evidence at odd hours

    def roll(self, day: int) -> None:
        if day != self.today:
            if self.today >= 0 and self.today_hours:
                self.days.add(self.today)
                self.hours |= self.today_hours
                self.addresses |= self.today_addresses
            self.today, self.today_hours, self.today_addresses = day, set(), set()
            self.odd = {d: v for d, v in self.odd.items() if d >= day - 1}

    def usual(self, hour: int) -> bool:
        return any((hour + d) % 24 in self.hours for d in (-1, 0, 1))


class OffHours:
    name = "off-hours"
    description = "patient records opened at hours the user never works"

    def __init__(self, settings: DetectSettings) -> None:
        self.min_days = settings.off_hours_min_days
        self.min_records = settings.off_hours_min_records
        self.users: dict[str, _Pattern] = {}

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if entry.action == "login" and entry.ok:
            pattern = self.users.setdefault(entry.actor, _Pattern())
            pattern.roll(day_of(entry.at))
            if entry.client:
                pattern.today_addresses.add(entry.client)
            return ()
        user = patient_access(entry, facts)
        if user is None or not entry.ok:
            return ()
        pattern = self.users.setdefault(user.user_id, _Pattern())
        pattern.roll(day_of(entry.at))
        hour = int(entry.at % 86_400 // HOUR)
        if entry.client:
            pattern.today_addresses.add(entry.client)
        pattern.today_hours.add(hour)  # usual from tomorrow: a new shift alerts once, not daily
        if len(pattern.days) < self.min_days or pattern.usual(hour):
            return ()
        # One alert per noon-to-noon period: a night that spans midnight is one night.
        night = day_of(entry.at - 12 * HOUR)
        odd = pattern.odd.setdefault(night, [])
        odd.append(entry.idx)
        if len(odd) < self.min_records:
            return ()
        new_address = entry.client is not None and entry.client not in pattern.addresses
        severity = Severity.HIGH if new_address else Severity.MEDIUM
        return (
            Finding(
                detector=self.name,
                kind="off-hours",
                severity=severity,
                title=f"User {user.label} opened {len(odd)} patient record(s) at "
                f"{hour:02d}:00 UTC, an hour they have not worked in the baseline"
                + (", from an address they have not used before" if new_address else ""),
                group=f"{self.name}:{user.user_id}:{night}",
                evidence=tuple(odd[-50:]),
                at=entry.at,
                actor=user.user_id,
                details={"hour": str(hour), "records": str(len(odd))},
            ),
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()
