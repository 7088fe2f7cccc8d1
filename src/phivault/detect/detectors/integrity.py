"""Integrity and backup health: failed decryptions or verifications, audit-verify
failures, failed backups and backups overdue. (The engine itself checks that entries it
has read were not rewritten: see detect/tree.py.)"""

from __future__ import annotations

from collections.abc import Iterable

from phivault.detect.facts import ClinicFacts
from phivault.detect.model import Entry, Finding, Severity, format_instant
from phivault.detect.settings import DetectSettings

INTEGRITY_ERRORS = frozenset(
    {
        "IntegrityError",
        "DecryptionError",
        "ProofError",
        "CheckpointError",
        "AuditVerifyFailed",
        "WitnessAlarm",
        "DataDirDamaged",
        "BackupIntegrityError",
    }
)
VERIFY_ACTIONS = frozenset({"audit-verify", "integrity-check", "backup-verify", "backup-drill"})
BACKUP_ACTOR_ACTIONS = frozenset({"backup"})


class IntegrityFailures:
    name = "integrity"
    description = "records or logs that failed their integrity checks"

    def __init__(self, settings: DetectSettings) -> None:
        self._settings = settings

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        failed_check = entry.action in VERIFY_ACTIONS and not entry.ok
        if not failed_check and entry.detail not in INTEGRITY_ERRORS:
            return ()
        what = entry.detail or "a failed check"
        return (
            Finding(
                detector=self.name,
                kind="integrity-failure",
                severity=Severity.CRITICAL,
                title=f"An integrity check failed ({entry.action}: {what}): stored data or the "
                "audit log may have been altered. Run `phivault audit verify`",
                group=f"{self.name}:{entry.action}:{what}",
                evidence=(entry.idx,),
                at=entry.at,
                actor=entry.actor,
                details={"action": entry.action, "error": what},
            ),
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()


class BackupHealth:
    name = "backup"
    description = "failed backups, and no successful backup for too long"

    def __init__(self, settings: DetectSettings) -> None:
        self.overdue = settings.backup_overdue_minutes * 60.0
        self.last_success: float | None = None
        self.first_seen: float | None = None

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if self.first_seen is None:
            self.first_seen = entry.at
        if entry.action not in BACKUP_ACTOR_ACTIONS:
            return ()
        if entry.ok:
            self.last_success = entry.at
            return ()
        error = entry.detail or "unknown error"
        return (
            Finding(
                detector=self.name,
                kind="backup-failed",
                severity=Severity.HIGH,
                title=f"A backup failed ({error}): without backups ransomware means data loss",
                group=f"{self.name}:failed",
                evidence=(entry.idx,),
                at=entry.at,
                actor=entry.actor,
                details={"error": error},
            ),
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        if self.overdue <= 0:
            return ()
        since = self.last_success if self.last_success is not None else self.first_seen
        if since is None or now - since <= self.overdue:
            return ()
        hours = (now - since) / 3600
        last = format_instant(self.last_success) if self.last_success is not None else "never"
        return (
            Finding(
                detector=self.name,
                kind="backup-overdue",
                severity=Severity.HIGH,
                title=f"No successful backup for {hours:.0f} hours (last: {last})",
                group=f"{self.name}:overdue",
                evidence=(),
                at=now,
                details={"last_success": last},
            ),
        )
