"""Scheduled backups: run when due, once across workers, audited, and alerting when they
fail or are overdue."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phivault.audit.entry import decode_entry
from phivault.backup.create import backup_lock
from phivault.backup.schedule import (
    BACKUP_FAILED,
    BACKUP_OVERDUE,
    BackupScheduler,
    set_alert_hook,
)
from tests.backup.conftest import Clinic


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def alerts() -> list[tuple[str, dict[str, str]]]:
    seen: list[tuple[str, dict[str, str]]] = []
    set_alert_hook(lambda kind, details: seen.append((kind, details)))
    yield seen
    set_alert_hook(None)


def _configure(data_dir: Path, interval: int) -> None:
    with open(data_dir / "phivault.toml", "a", encoding="utf-8") as handle:
        handle.write(f"\n[backup]\ninterval_minutes = {interval}\n")


def _backup_events(clinic: Clinic) -> list[dict[str, object]]:
    store = clinic.vault.store
    entries = [decode_entry(raw) for _, raw in store.audit_entries(0, store.audit_size())]
    return [e for e in entries if e.get("action") == "backup"]


def test_due_backups_run_once_and_are_audited(
    backed_up: Clinic, alerts: list[tuple[str, dict[str, str]]]
) -> None:
    _configure(backed_up.data_dir, 60)
    clock = Clock()
    worker_a = BackupScheduler(backed_up.vault, clock=clock)
    worker_b = BackupScheduler(backed_up.vault, clock=clock)
    assert worker_a.tick() == "done"
    assert worker_b.tick() == "not-due"  # the other worker already did this interval's
    with backup_lock(backed_up.data_dir):
        clock.now += 3601
        assert worker_b.tick() == "busy"
    assert worker_b.tick() == "done"
    events = _backup_events(backed_up)
    assert len(events) == 3 and all(str(e.get("outcome")) == "0" for e in events)
    assert alerts == []


def test_a_failed_backup_is_audited_and_alerts(
    backed_up: Clinic, alerts: list[tuple[str, dict[str, str]]]
) -> None:
    _configure(backed_up.data_dir, 60)
    shutil.rmtree(backed_up.repo_dir)  # the backup disk is gone
    clock = Clock()
    scheduler = BackupScheduler(backed_up.vault, clock=clock)
    assert scheduler.tick() == "failed"
    assert [kind for kind, _ in alerts] == [BACKUP_FAILED]
    assert str(_backup_events(backed_up)[-1].get("outcome")) == "8"
    clock.now += 3 * 3600 + 1  # past twice the interval without a success
    scheduler.tick()
    assert BACKUP_OVERDUE in [kind for kind, _ in alerts]
