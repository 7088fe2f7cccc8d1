"""Detection inside `serve`: the background task tails the log, one worker at a time."""

from __future__ import annotations

import time

import pytest

from phivault.backup.schedule import BACKUP_FAILED, BACKUP_OVERDUE, raise_alert
from phivault.detect.alerts import AlertStore
from phivault.detect.canaries import seed_canaries
from phivault.detect.runtime import DetectorTask, scan, start_detector_task
from phivault.detect.sql import DetectSql
from phivault.errors import DetectorBusy
from phivault.service import Context
from phivault.vault import Vault


def test_an_access_becomes_an_alert_within_seconds(vault: Vault) -> None:
    seed_canaries(vault, 1)
    config = vault.settings.data_dir / "phivault.toml"
    config.write_text(config.read_text() + "\n[alerts]\nscan_interval_seconds = 0.2\n")
    task = start_detector_task(vault)
    assert task is not None
    try:
        touched = time.time()
        canary = DetectSql(vault.store).patient_ids()[0]
        vault.service.read(Context(actor="intruder"), "Patient", canary)
        alerts = AlertStore(vault.store, vault.audit, time.time)
        while not alerts.list_alerts() and time.time() - touched < 30:
            time.sleep(0.1)
        found = alerts.list_alerts()
    finally:
        task.stop()
    assert [a.detector for a in found] == ["canary"]
    assert found[0].created - found[0].first_seen < 60


def test_one_worker_scans_at_a_time(vault: Vault) -> None:
    first, second = DetectorTask(vault), DetectorTask(vault)
    try:
        assert first.tick() is not None
        assert second.tick() is None  # the lease is held
        assert first.tick() is not None  # and renewed by its holder
        with pytest.raises(DetectorBusy):
            scan(vault)  # `alerts scan` does not race a running server
    finally:
        first.stop()
    assert scan(vault)[0].cursor == vault.store.audit_size()  # released on stop
    assert second.tick() is not None
    second.stop()


def test_scan_interval_zero_turns_the_task_off(vault: Vault) -> None:
    config = vault.settings.data_dir / "phivault.toml"
    config.write_text(config.read_text() + "\n[alerts]\nscan_interval_seconds = 0\n")
    assert start_detector_task(vault) is None


def test_the_backup_schedulers_alerts_are_stored(vault: Vault) -> None:
    config = vault.settings.data_dir / "phivault.toml"
    config.write_text(config.read_text() + "\n[alerts]\nscan_interval_seconds = 60\n")
    task = start_detector_task(vault)
    assert task is not None
    try:
        raise_alert(BACKUP_FAILED, {"error": "BackupError"})
        raise_alert(BACKUP_FAILED, {"error": "BackupError"})  # a repeat joins the alert
        raise_alert(BACKUP_OVERDUE, {"since_s": "90000"})
    finally:
        task.stop()
    found = AlertStore(vault.store, vault.audit, time.time).list_alerts()
    assert sorted(a.kind for a in found) == ["backup-failed", "backup-overdue"]
    assert next(a for a in found if a.kind == "backup-failed").occurrences == 2
    assert any("25 hours" in a.title for a in found)
