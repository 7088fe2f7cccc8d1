"""Retention: which snapshots prune keeps, and that it removes only what nothing needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from phivault.backup.operations import backup_now
from phivault.backup.prune import RetentionPolicy, prune, select_kept
from phivault.backup.restore import restore_snapshot
from phivault.backup.verify import verify_repository
from phivault.errors import ConfigError
from tests.backup.conftest import Clinic
from tests.backup.support import CTX, repository

START = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)


def hourly(days: int) -> list[tuple[str, datetime]]:
    return [(f"s{h:05d}", START + timedelta(hours=h)) for h in range(days * 24)]


def test_keep_daily_keeps_the_last_snapshot_of_each_day() -> None:
    snaps = hourly(10)
    kept = select_kept(snaps, RetentionPolicy(keep_daily=3))
    times = sorted(dict(snaps)[k] for k in kept)
    assert len(kept) == 3
    assert [t.hour for t in times] == [23, 23, 1]  # the newest of each day; today so far
    assert times[-1] == snaps[-1][1]


def test_weekly_and_monthly_periods() -> None:
    snaps = hourly(100)
    kept = select_kept(snaps, RetentionPolicy(keep_weekly=4, keep_monthly=3))
    times = sorted(dict(snaps)[k] for k in kept)
    assert len({t.isocalendar()[:2] for t in times}) >= 4
    assert {(t.year, t.month) for t in times} >= {(2025, 2), (2025, 3), (2025, 4)}
    assert len(kept) <= 7


def test_policies_combine_and_never_drop_the_newest() -> None:
    snaps = hourly(2)
    kept = select_kept(snaps, RetentionPolicy(keep_last=5, keep_daily=3))
    assert {s for s, _ in snaps[-5:]} <= kept
    assert len(kept) == 6
    assert snaps[-1][0] in select_kept(snaps, RetentionPolicy(keep_monthly=1))


def test_an_empty_policy_is_refused() -> None:
    with pytest.raises(ConfigError):
        select_kept(hourly(1), RetentionPolicy())


def test_prune_removes_only_unneeded_chunks(backed_up: Clinic, tmp_path: Path) -> None:
    vault = backed_up.vault
    for i in range(2):
        resource = dict(backed_up.resources[0])
        resource["id"] = f"extra-{i}"
        vault.service.import_resources(CTX, [resource]).__next__()
        backup_now(vault, full=True)  # no chain: each snapshot stands alone
    operator = repository(vault, operator=True)
    before = operator.snapshot_ids()
    assert len(before) == 3
    dry = prune(operator, backed_up.backup_key, RetentionPolicy(keep_last=1), dry_run=True)
    assert len(dry.forgotten) == 2 and operator.snapshot_ids() == before
    result = prune(operator, backed_up.backup_key, RetentionPolicy(keep_last=1))
    assert result.forgotten == before[:2] and result.chunks_deleted > 0
    assert operator.snapshot_ids() == before[2:]
    assert verify_repository(operator, backed_up.backup_key, full=True).ok
    restore_snapshot(operator, backed_up.backup_key, tmp_path / "restored")
