"""Events that are always reviewed: every break-glass use (with what was opened under
it) and every change of privileges."""

from __future__ import annotations

from collections.abc import Iterable

from phivault.detect.detectors.common import name_of
from phivault.detect.facts import BREAK_GLASS_PURPOSE, ClinicFacts
from phivault.detect.model import Entry, Finding, Severity
from phivault.detect.settings import DetectSettings

BREAK_GLASS = "break-glass"
PRIVILEGE_ACTIONS = {
    "user-add": Severity.MEDIUM,
    "user-set-roles": Severity.HIGH,
    "user-enable": Severity.MEDIUM,
    "user-reset-mfa": Severity.HIGH,
    "user-disable": Severity.LOW,
    "user-revoke-sessions": Severity.LOW,
    "token-issue": Severity.MEDIUM,
    "client-register": Severity.MEDIUM,
    "rotate-kek": Severity.MEDIUM,
    "shred": Severity.HIGH,
}


class BreakGlass:
    name = "break-glass"
    description = "every break-glass use, queued for review with what was opened under it"

    def __init__(self, settings: DetectSettings) -> None:
        self._settings = settings
        self.open: dict[str, int] = {}  # actor -> idx of their current break-glass

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if entry.action == BREAK_GLASS:
            if entry.ok:
                self.open[entry.actor] = entry.idx
            title = (
                f"{name_of(entry.actor, facts)} used break-glass (emergency "
                "access): review the reason "
                "and every record opened under it"
                if entry.ok
                else f"{name_of(entry.actor, facts)} was refused break-glass"
            )
            return (
                Finding(
                    detector=self.name,
                    kind="break-glass" if entry.ok else "break-glass-refused",
                    severity=Severity.MEDIUM if entry.ok else Severity.LOW,
                    title=title,
                    group=f"{self.name}:{entry.actor}:{entry.idx}",
                    evidence=(entry.idx,),
                    at=entry.at,
                    actor=entry.actor,
                ),
            )
        started = self.open.get(entry.actor)
        if started is not None and entry.purpose == BREAK_GLASS_PURPOSE and entry.patient:
            return (
                Finding(
                    detector=self.name,
                    kind="break-glass",
                    severity=Severity.MEDIUM,
                    title=f"{name_of(entry.actor, facts)} used break-glass "
                    "(emergency access): review the "
                    "reason and every record opened under it",
                    group=f"{self.name}:{entry.actor}:{started}",
                    evidence=(entry.idx,),
                    at=entry.at,
                    actor=entry.actor,
                    patient=None,
                ),
            )
        return ()

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()


class PrivilegeChange:
    name = "privilege"
    description = "accounts created, roles changed, MFA reset, tokens issued, keys rotated"

    def __init__(self, settings: DetectSettings) -> None:
        self._settings = settings

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        severity = PRIVILEGE_ACTIONS.get(entry.action)
        if severity is None or not entry.ok:
            return ()
        target = entry.extra.get("user") or entry.client or "the server"
        return (
            Finding(
                detector=self.name,
                kind=entry.action,
                severity=severity,
                title=f"Privilege change: {entry.action} by {name_of(entry.actor, facts)} "
                f"for {name_of(target, facts)}",
                group=f"{self.name}:{entry.idx}",
                evidence=(entry.idx,),
                at=entry.at,
                actor=entry.actor,
                details={"action": entry.action, "target": target},
            ),
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()
