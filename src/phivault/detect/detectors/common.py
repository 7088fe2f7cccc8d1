"""Small pieces the built-in detectors share: windows, day keys, who counts as a user."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from phivault.detect.facts import ClinicFacts, UserInfo
from phivault.detect.model import READ_ACTIONS, WRITE_ACTIONS, Entry, format_instant

HOUR = 3600.0
DAY = 86_400.0
REFUSED = "Forbidden"


def day_of(at: float) -> int:
    return int(at // DAY)


def hour_of(at: float) -> int:
    return int(at // HOUR)


def day_text(at: float) -> str:
    return format_instant(at)[:10]


def patient_access(entry: Entry, facts: ClinicFacts) -> UserInfo | None:
    """The user behind an access to one patient's records (allowed, or refused by the
    policy), or None when the entry is not one (system clients, other actions)."""
    if entry.patient is None or entry.action not in READ_ACTIONS | WRITE_ACTIONS:
        return None
    if not entry.ok and entry.detail != REFUSED:
        return None
    return facts.user(entry.actor)


def touched_patients(entry: Entry, facts: ClinicFacts) -> set[str]:
    """Patients whose data an entry released: its compartment and Patient results."""
    found = {entry.patient} if entry.patient else set()
    for ref in entry.results:
        pseudonym = facts.patient_of(ref)
        if pseudonym is not None:
            found.add(pseudonym)
    return found


def name_of(actor: str, facts: ClinicFacts) -> str:
    """A user by login name and id, a client by its id."""
    user = facts.user(actor)
    return f"User {user.label}" if user is not None else actor


class Window:
    """Times of events in the last `span` seconds."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.times: deque[tuple[float, str, int]] = deque()

    def add(self, at: float, key: str, idx: int) -> None:
        self.times.append((at, key, idx))
        while self.times and self.times[0][0] <= at - self.span:
            self.times.popleft()

    def count(self) -> int:
        return len(self.times)

    def keys(self) -> set[str]:
        return {k for _, k, _ in self.times}

    def evidence(self, limit: int = 50) -> tuple[int, ...]:
        return tuple(i for _, _, i in list(self.times)[-limit:])


def max_or_zero(values: Iterable[int]) -> int:
    return max(values, default=0)
