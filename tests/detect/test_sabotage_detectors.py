"""Write bursts, canaries, integrity and backup failures, break-glass and privilege changes."""

from __future__ import annotations

from phivault.detect.canaries import CANARY_ACTOR
from phivault.detect.detectors.integrity import BackupHealth, IntegrityFailures
from phivault.detect.detectors.review import BreakGlass, PrivilegeChange
from phivault.detect.detectors.sabotage import CanaryTouch, WriteBurst
from phivault.detect.model import Severity
from phivault.detect.settings import settings_from
from tests.detect.conftest import World
from tests.detect.support import HOUR, T0, entry


def test_update_and_delete_bursts(world: World) -> None:
    detector = WriteBurst(world.settings)
    quiet = [entry("update", "lab-feed", at=T0 + n * 30) for n in range(19)]
    assert [f for e in quiet for f in detector.observe(e, world.facts)] == []
    burst = [entry("update", "stolen-token", at=T0 + n * 5) for n in range(61)]
    found = [f for e in burst for f in detector.observe(e, world.facts)]
    assert found and found[0].kind == "update-burst" and found[0].severity is Severity.CRITICAL
    deletes = [entry("delete", "saboteur", at=T0 + n * 10) for n in range(16)]
    assert {f.kind for e in deletes for f in detector.observe(e, world.facts)} == {"delete-burst"}
    creates = [entry("create", "importer", at=T0 + n) for n in range(500)]
    assert [f for e in creates for f in detector.observe(e, world.facts)] == []


def test_a_steady_writer_is_judged_against_its_own_busiest_hour(world: World) -> None:
    detector = WriteBurst(world.settings)
    history = [entry("update", "lab-feed", at=T0 + n * 8) for n in range(70)]  # its normal
    list(f for e in history for f in detector.observe(e, world.facts))
    later = [entry("update", "lab-feed", at=T0 + 5 * HOUR + n * 8) for n in range(70)]
    assert [f for e in later for f in detector.observe(e, world.facts)] == []


def test_any_canary_touch_is_critical(world: World) -> None:
    detector = CanaryTouch(world.settings)
    read = entry(actor="someone", patient=world.canaries[0], client="10.0.0.5")
    found = list(detector.observe(read, world.facts))
    assert found and found[0].severity is Severity.CRITICAL
    canary_id = next(
        pid
        for pid in world.facts.sql.patient_ids()
        if world.vault.audit.pseudonymize(f"Patient/{pid}") in world.canaries
    )
    listed = entry("search", "browser", rtype="Patient", results=(f"Patient/{canary_id}/1",))
    assert list(detector.observe(listed, world.facts))
    seeding = entry("create", CANARY_ACTOR, patient=world.canaries[0])
    ordinary = entry(actor="someone", patient=world.pseudonym(world.clinic.patients[0]))
    assert list(detector.observe(seeding, world.facts)) == []
    assert list(detector.observe(ordinary, world.facts)) == []


def test_integrity_failures(world: World) -> None:
    detector = IntegrityFailures(world.settings)
    bad = entry("read", "dr-a", outcome="8", detail="DecryptionError")
    assert [f.severity for f in detector.observe(bad, world.facts)] == [Severity.CRITICAL]
    verify = entry("audit-verify", "cli:audit", outcome="8", detail="AuditVerifyFailed")
    assert list(detector.observe(verify, world.facts))
    assert (
        list(detector.observe(entry("read", "dr-a", outcome="4", detail="NotFound"), world.facts))
        == []
    )


def test_backups_failed_and_overdue(world: World) -> None:
    detector = BackupHealth(settings_from({"backup_overdue_minutes": 120}))
    assert list(detector.observe(entry("backup", "system:backup", at=T0), world.facts)) == []
    assert list(detector.tick(T0 + HOUR, world.facts)) == []
    failed = entry("backup", "system:backup", at=T0 + 2 * HOUR, outcome="8", detail="BackupError")
    assert [f.kind for f in detector.observe(failed, world.facts)] == ["backup-failed"]
    assert [f.kind for f in detector.tick(T0 + 3 * HOUR, world.facts)] == ["backup-overdue"]
    off = BackupHealth(world.settings)  # no schedule configured: nothing is ever overdue
    off.observe(entry("read", "x", at=T0), world.facts)
    assert list(off.tick(T0 + 100 * HOUR, world.facts)) == []


def test_every_break_glass_is_queued_with_what_it_opened(world: World) -> None:
    detector = BreakGlass(world.settings)
    start = entry("break-glass", "dr-b", purpose="patient unconscious in the waiting room")
    first = list(detector.observe(start, world.facts))
    assert first and first[0].severity is Severity.MEDIUM
    opened = entry(actor="dr-b", purpose="ETREAT", patient="p1", at=T0 + 60)
    joined = list(detector.observe(opened, world.facts))
    assert joined and joined[0].group == first[0].group
    assert (
        list(detector.observe(entry(actor="dr-b", purpose="TREAT", patient="p1"), world.facts))
        == []
    )
    refused = entry("break-glass", "clerk", outcome="4", detail="BreakGlassRefused")
    assert [f.severity for f in detector.observe(refused, world.facts)] == [Severity.LOW]


def test_privilege_changes(world: World) -> None:
    detector = PrivilegeChange(world.settings)
    roles = entry("user-set-roles", "cli:user", extra={"user": "u-42"})
    found = list(detector.observe(roles, world.facts))
    assert found and found[0].severity is Severity.HIGH and "u-42" in found[0].title
    assert list(detector.observe(entry("read", "cli:user"), world.facts)) == []
    failed = entry("user-add", "cli:user", outcome="4")
    assert list(detector.observe(failed, world.facts)) == []
