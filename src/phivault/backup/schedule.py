"""Scheduled backups from `phivault serve`, and the alerts they raise.

Every worker process starts a scheduler thread when `[backup] interval_minutes` is set;
the backup lock (a lock file in the data directory) and the shared state file
`backup-state.json` make sure one backup runs per interval whatever the worker count:
a worker that finds the lock taken, or a backup attempted less than an interval ago,
does nothing. Each attempt is recorded in the audit log (action "backup", its outcome).

A failed backup, or no successful one for longer than `overdue_minutes` (default twice
the interval), calls the alert hook: `set_alert_hook` is where the alerts module plugs
in; until it does, the hook logs a warning (no PHI: a kind and an error class name).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phivault.backup.create import backup_lock
from phivault.backup.operations import backup_now, load_backup_settings
from phivault.backup.snapshot import STATE_FILE
from phivault.errors import BackupError, PhivaultError
from phivault.vault import Vault

log = logging.getLogger("phivault.backup")

BACKUP_FAILED = "backup-failed"
BACKUP_OVERDUE = "backup-overdue"
AlertHook = Callable[[str, dict[str, str]], None]
CHECK_EVERY_S = 30.0


def _log_alert(kind: str, details: dict[str, str]) -> None:
    log.warning("backup alert %s %s", kind, json.dumps(details, sort_keys=True))


_alert_hook: AlertHook = _log_alert


def set_alert_hook(hook: AlertHook | None) -> None:
    """Route backup alerts (kind, details without PHI) to `hook`; None restores logging."""
    global _alert_hook
    _alert_hook = hook or _log_alert


def raise_alert(kind: str, details: dict[str, str]) -> None:
    try:
        _alert_hook(kind, details)
    except Exception:  # an alert sink failing must not stop backups
        log.exception("the backup alert hook failed")


def read_state(data_dir: Path) -> dict[str, Any]:
    try:
        state: Any = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = data_dir / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class BackupScheduler:
    """The background thread of one server worker."""

    def __init__(
        self,
        vault: Vault,
        *,
        clock: Callable[[], float] = time.time,
        check_every: float = CHECK_EVERY_S,
    ) -> None:
        self.vault = vault
        self.settings = load_backup_settings(vault.settings.data_dir)
        self._clock = clock
        self._check_every = check_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = clock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="phivault-backup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self._check_every):
            self.tick()

    def tick(self) -> str:
        """One check: back up if due; returns what happened (for tests and logs)."""
        data_dir = self.vault.settings.data_dir
        now = self._clock()
        state = read_state(data_dir)
        last_success = float(state.get("last_success", 0.0)) or self._started_at
        if now - last_success > self.settings.overdue_after_s:
            raise_alert(BACKUP_OVERDUE, {"since_s": f"{now - last_success:.0f}"})
        try:
            with backup_lock(data_dir):
                return self._due_backup(data_dir, now)
        except BackupError:
            return "busy"  # another worker (or a manual `backup create`) holds the lock

    def _due_backup(self, data_dir: Path, now: float) -> str:
        # Read again under the lock: another worker may have just finished this interval's.
        state = read_state(data_dir)
        if now - float(state.get("last_attempt", 0.0)) < 60.0 * self.settings.interval_minutes:
            return "not-due"
        try:
            result = backup_now(self.vault, lock=False)
        except PhivaultError as exc:
            return self._failed(data_dir, state, now, exc)
        except Exception as exc:  # the thread must survive anything
            return self._failed(data_dir, state, now, exc)
        state.update(last_attempt=now, last_success=now, last_snapshot=result.snapshot_id)
        state.pop("last_error", None)
        _write_state(data_dir, state)
        return "done"

    def _failed(self, data_dir: Path, state: dict[str, Any], now: float, exc: Exception) -> str:
        state.update(last_attempt=now, last_error=type(exc).__name__)
        _write_state(data_dir, state)
        raise_alert(BACKUP_FAILED, {"error": type(exc).__name__})
        return "failed"


def start_scheduled_backups(vault: Vault) -> BackupScheduler | None:
    """Start the scheduler if phivault.toml asks for scheduled backups."""
    if load_backup_settings(vault.settings.data_dir).interval_minutes <= 0:
        return None
    scheduler = BackupScheduler(vault)
    scheduler.start()
    return scheduler
