"""What detectors read (one audit entry, parsed) and what they report (findings, alerts).

Nothing here holds PHI: patients are the audit log's keyed pseudonyms, evidence is audit
entry indexes, titles are fixed plain-words templates filled with counts and user ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from phivault.errors import BadRequest


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)

# Actions that read patient data; "search" entries list what they returned.
READ_ACTIONS = frozenset({"read", "vread", "search", "history", "everything", "export"})
WRITE_ACTIONS = frozenset({"create", "update", "patch", "delete"})
SUCCESS = "0"


def parse_instant(text: str) -> float:
    """Epoch seconds of a FHIR instant as the audit log writes it (UTC, "Z")."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_since(text: str) -> float:
    """A start time for `--since`: an instant or date (UTC), or a duration ago (90m, 24h, 7d)."""
    units = {"m": 60, "h": 3600, "d": 86_400}
    text = text.strip()
    if text[-1:] in units and text[:-1].isdigit():
        return time.time() - int(text[:-1]) * units[text[-1]]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("--since: give a date, an instant, or 90m / 24h / 7d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_instant(moment: float) -> str:
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit entry as detectors see it (parsed from the leaf bytes)."""

    idx: int
    at: float  # epoch seconds
    action: str
    outcome: str
    actor: str
    client: str | None = None
    purpose: str | None = None
    rtype: str | None = None
    rid: str | None = None
    patient: str | None = None  # keyed pseudonym
    query: tuple[tuple[str, str], ...] = ()
    results: tuple[str, ...] = ()
    detail: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS

    @classmethod
    def from_fields(cls, idx: int, fields: dict[str, Any]) -> Entry:
        query = fields.get("query") or []
        extra = fields.get("extra") or {}
        return cls(
            idx=idx,
            at=parse_instant(str(fields["time"])),
            action=str(fields["action"]),
            outcome=str(fields["outcome"]),
            actor=str(fields["actor"]),
            client=_text(fields.get("client")),
            purpose=_text(fields.get("purpose")),
            rtype=_text(fields.get("type")),
            rid=_text(fields.get("id")),
            patient=_text(fields.get("patient")),
            query=tuple(
                (str(t[0]), str(t[1])) for t in query if isinstance(t, list) and len(t) == 2
            ),
            results=tuple(str(r) for r in fields.get("results") or () if isinstance(r, str)),
            detail=_text(fields.get("detail")),
            extra={str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {},
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's verdict on some entries. Findings with one `group` become one alert
    while it is open or acknowledged (repeats add evidence, not new alerts)."""

    detector: str
    kind: str
    severity: Severity
    title: str
    group: str
    evidence: tuple[int, ...]
    at: float  # time of the newest evidence entry (the triggering access)
    actor: str | None = None
    patient: str | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    detector: str
    kind: str
    severity: Severity
    title: str
    group_key: str
    actor: str | None
    patient: str | None
    status: str
    first_seen: float  # the first triggering access
    last_seen: float  # the latest
    created: float  # when the alert was raised (clock of the engine)
    updated: float
    occurrences: int
    evidence: tuple[int, ...]
    details: dict[str, str]
    note: str | None = None
    reviewer: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The alert as outputs and the admin API show it: no PHI, ids and counts only."""
        return {
            "id": self.alert_id,
            "detector": self.detector,
            "kind": self.kind,
            "severity": self.severity.value,
            "title": self.title,
            "status": self.status,
            "actor": self.actor,
            "patient_pseudonym": self.patient,
            "first_seen": format_instant(self.first_seen),
            "last_seen": format_instant(self.last_seen),
            "raised": format_instant(self.created),
            "updated": format_instant(self.updated),
            "occurrences": self.occurrences,
            "evidence": list(self.evidence),
            "details": dict(self.details),
            "note": self.note,
            "reviewer": self.reviewer,
        }
