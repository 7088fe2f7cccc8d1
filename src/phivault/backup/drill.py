"""`backup drill`: prove a backup restores. Restore into a scratch directory, open it as the
server would (start-up integrity check included), count resources against the snapshot's
own record, verify the whole audit log and its consistency with the snapshot's checkpoint,
and report the recovery time (restore + open: when the server could serve again)."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from phivault.backup.audit_check import AuditCheck, verify_restored_audit
from phivault.backup.create import Progress
from phivault.backup.keys import BackupPrivateKey
from phivault.backup.repository import Repository
from phivault.backup.restore import restore_snapshot
from phivault.crypto.kek import KeySource
from phivault.vault import open_vault


@dataclass(slots=True)
class DrillReport:
    snapshot_id: str = ""
    restore_seconds: float = 0.0
    open_seconds: float = 0.0
    verify_seconds: float = 0.0
    bytes: int = 0
    resources_expected: int = 0
    resources_found: int = 0
    audit: AuditCheck = field(default_factory=AuditCheck)
    problems: list[str] = field(default_factory=list)

    @property
    def recovery_seconds(self) -> float:
        return self.restore_seconds + self.open_seconds

    @property
    def ok(self) -> bool:
        return not self.problems and self.audit.ok


def run_drill(
    repo: Repository,
    key: BackupPrivateKey,
    source: KeySource,
    *,
    scratch: Path | None = None,
    db_url: str | None = None,
    snapshot_id: str | None = None,
    progress: Progress | None = None,
    keep: bool = False,
) -> DrillReport:
    report = DrillReport()
    owned = scratch is None
    target = Path(tempfile.mkdtemp(prefix="phivault-drill-")) if scratch is None else scratch
    try:
        restored = restore_snapshot(
            repo, key, target, snapshot_id=snapshot_id, db_url=db_url, progress=progress
        )
        report.snapshot_id = restored.snapshot_id
        report.restore_seconds = restored.seconds
        report.bytes = restored.bytes
        started = time.monotonic()
        vault = open_vault(target, source)
        report.open_seconds = time.monotonic() - started
        try:
            started = time.monotonic()
            report.resources_expected = int(restored.facts.get("resources", 0))
            report.resources_found = vault.store.count_current()
            if report.resources_found != report.resources_expected:
                report.problems.append(
                    f"{report.resources_found} resources restored, "
                    f"{report.resources_expected} backed up"
                )
            report.audit = verify_restored_audit(vault, restored.facts.get("checkpoint"))
            if report.audit.size < int(restored.facts.get("audit_size", 0)):
                report.problems.append("the restored audit log is shorter than the backed-up one")
            report.verify_seconds = time.monotonic() - started
        finally:
            vault.close()
    finally:
        if owned and not keep:
            shutil.rmtree(target, ignore_errors=True)
    return report
