"""The engine: cursor, warm-up, the canaries seeded at init, and its own tree check."""

from __future__ import annotations

import time

import pytest

from phivault.detect.canaries import seed_canaries
from phivault.detect.engine import CURSOR, ScanStopped
from phivault.detect.sql import DetectSql
from phivault.errors import StoreError
from phivault.service import Context
from phivault.vault import Vault
from tests.audit.support import edit_entry, rebuild_tree, workload
from tests.detect.support import engine


def test_cursor_continues_and_nothing_is_judged_twice(vault: Vault) -> None:
    seed_canaries(vault, 2)
    canary = DetectSql(vault.store).patient_ids()[0]
    first = engine(vault, time.time)
    report = first.scan()
    assert report.alerts == []  # seeding the canaries is not an access
    vault.service.read(Context(actor="intruder", client="203.0.113.9"), "Patient", canary)
    report = first.scan()
    assert [a.detector for a in report.alerts] == ["canary"]
    assert report.alerts[0].actor == "intruder"
    assert DetectSql(vault.store).state(CURSOR) == str(vault.store.audit_size() - 1)
    again = engine(vault, time.time)  # a new process continues from the stored cursor
    assert again.scan().alerts == []


def test_canaries_are_kept_as_pseudonyms_only(vault: Vault) -> None:
    seed_canaries(vault, 3)
    ids = DetectSql(vault.store).patient_ids()
    stored = DetectSql(vault.store).canaries()
    assert len(ids) == len(stored) == 3
    assert not stored & set(ids)
    assert stored == {vault.audit.pseudonymize(f"Patient/{i}") for i in ids}


def test_rewritten_history_is_a_critical_alert(vault: Vault) -> None:
    workload(vault, 2)
    watcher = engine(vault, time.time)
    assert watcher.scan().alerts == []
    # An intruder with database access edits an entry already read and recomputes the
    # whole tree, so that every stored node agrees with the forged entry.
    edit_entry(vault, 1, actor="someone-else")
    rebuild_tree(vault)
    alerts = watcher.scan().alerts
    assert [(a.detector, a.severity.value) for a in alerts] == [("integrity", "critical")]
    # And a process started later, from the stored tree head, sees it too.
    later = engine(vault, time.time)
    assert any(
        a.kind == "audit-tampering" for a in later.scan().alerts + later.alerts.list_alerts()
    )


def test_a_stopping_server_ends_the_scan_and_the_next_one_resumes(vault: Vault) -> None:
    seed_canaries(vault, 2)
    canary = DetectSql(vault.store).patient_ids()[0]
    engine(vault, time.time).scan()  # the cursor is past the seeding
    saved = DetectSql(vault.store).state(CURSOR)
    vault.service.read(Context(actor="intruder", client="203.0.113.9"), "Patient", canary)
    stopping = engine(vault, time.time)
    stopping.stopping = lambda: True
    with pytest.raises(ScanStopped):
        stopping.scan()
    assert DetectSql(vault.store).state(CURSOR) == saved  # nothing of it saved
    resumed = engine(vault, time.time).scan()
    assert [a.detector for a in resumed.alerts] == ["canary"]  # the access was not skipped


def test_an_unavailable_store_fails_the_scan_once_instead_of_every_entry(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed_canaries(vault, 2)
    canary = DetectSql(vault.store).patient_ids()[0]
    for _ in range(5):
        vault.service.read(Context(actor="intruder", client="203.0.113.9"), "Patient", canary)
    scanner = engine(vault, time.time)

    def down(*_args: object, **_kwargs: object) -> None:
        raise StoreError()

    for detector in scanner.detectors:
        monkeypatch.setattr(detector, "observe", down)
    with pytest.raises(StoreError):
        scanner.scan()
    assert not [r for r in caplog.records if "failed on entry" in r.getMessage()]


def test_a_long_scan_hands_the_gil_over_every_slice(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phivault.detect import courtesy

    patients = [{"resourceType": "Patient", "id": f"p{i}"} for i in range(60)]
    for _ in vault.service.import_resources(Context(actor="system:import"), patients):
        pass
    monkeypatch.setattr(courtesy, "SLICE_S", 0.0)  # every entry uses up a slice
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    report = engine(vault, time.time).scan()
    assert report.entries >= 60
    # A request thread waits for the scan one slice at most, not the 5 ms switch interval.
    assert waits.count(0) >= report.entries


def test_courtesy_sleeps_only_once_a_slice_is_used_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from phivault.detect import courtesy

    now = [0.0]
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    polite = courtesy.Courtesy(clock=lambda: now[0])
    for _ in range(10):
        now[0] += courtesy.SLICE_S / 4
        polite.tick()
    assert waits == [0, 0]  # after 4 and 8 quarter slices
