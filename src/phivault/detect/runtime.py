"""Detection wired to one opened vault: the engine for `alerts scan`, and the background
task that tails the audit log inside `serve`.

Several server workers may run at once; a lease in `detect_state` lets exactly one of
them scan at a time (another takes over when a holder stops renewing it).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from phivault.access.keys import AccessKeys
from phivault.backup.operations import load_backup_settings
from phivault.backup.schedule import BACKUP_FAILED, set_alert_hook
from phivault.detect import registry
from phivault.detect.alerts import AlertStore
from phivault.detect.engine import Engine, ScanReport, ScanStopped
from phivault.detect.facts import VaultFacts
from phivault.detect.model import Finding, Severity
from phivault.detect.outputs import Dispatcher, outputs_from
from phivault.detect.settings import DetectSettings, load_detect_settings
from phivault.detect.sql import DetectSql
from phivault.errors import DetectorBusy
from phivault.store.base import VersionRecord
from phivault.vault import Vault

log = logging.getLogger("phivault.detect")
LEASE_S = 60.0


def vault_facts(vault: Vault) -> VaultFacts:
    keys = AccessKeys.from_keyring(vault.keyring)

    def opener(record: VersionRecord) -> bytes | None:
        return vault.service._open(record).body

    def account_key(username: str) -> str:
        # The same keyed name `access/login.py` audits a failed login under.
        return "account:" + keys.keyed_hash("username", username.strip().lower())

    return VaultFacts(vault.store, vault.audit.pseudonymize, opener, account_key)


def detect_settings(vault: Vault, **overrides: object) -> DetectSettings:
    settings = load_detect_settings(vault.settings.data_dir, **overrides)
    if settings.backup_overdue_minutes == 0:
        backup = load_backup_settings(vault.settings.data_dir)
        if backup.interval_minutes > 0:
            settings = replace(settings, backup_overdue_minutes=int(backup.overdue_after_s // 60))
    return settings


def build_engine(
    vault: Vault,
    settings: DetectSettings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    dispatcher: Dispatcher | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> Engine:
    settings = settings or detect_settings(vault)
    return Engine(
        vault.store,
        vault_facts(vault),
        registry.load(settings),
        AlertStore(vault.store, vault.audit, clock),
        clock=clock,
        baseline_days=settings.baseline_days,
        announce=dispatcher.announce if dispatcher is not None else None,
        stopping=stopping,
    )


def dispatcher_for(vault: Vault, settings: DetectSettings) -> Dispatcher:
    return Dispatcher(
        outputs_from(settings, vault.settings.data_dir),
        min_severity=settings.min_severity,
        retries=settings.webhook_retries,
    )


def scan(vault: Vault, *, since: float | None = None) -> tuple[ScanReport, Dispatcher]:
    """One scan from the cursor (or from `since`) to the end of the log."""
    settings = detect_settings(vault)
    sql = DetectSql(vault.store)
    holder = f"cli-{os.getpid()}-{secrets.token_hex(4)}"
    if not sql.take_lease(holder, time.time(), LEASE_S):
        raise DetectorBusy()
    try:
        dispatcher = dispatcher_for(vault, settings)
        engine = build_engine(vault, settings, dispatcher=dispatcher)
        engine.start(since)
        report = engine.scan()
        dispatcher.close()
    finally:
        sql.release_lease(holder)
    return report, dispatcher


class DetectorTask:
    """The detector thread of one server worker: a scan every `scan_interval_seconds`
    while it holds the lease, so alerts follow an access within seconds."""

    def __init__(self, vault: Vault, *, clock: Callable[[], float] = time.time) -> None:
        self.vault = vault
        self.settings = detect_settings(vault)
        self.dispatcher = dispatcher_for(vault, self.settings)
        self.engine = build_engine(vault, self.settings, clock=clock, dispatcher=self.dispatcher)
        self.clock = clock
        self.holder = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.sql = DetectSql(vault.store)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leased = False

    def start(self) -> None:
        set_alert_hook(self.backup_alert)  # the backup scheduler's alerts become alerts here
        self._thread = threading.Thread(target=self._run, name="phivault-detect", daemon=True)
        self._thread.start()

    def backup_alert(self, kind: str, details: dict[str, str]) -> None:
        """The backup scheduler's hook: a failed or overdue backup, raised at once."""
        failed = kind == BACKUP_FAILED
        title = (
            f"A scheduled backup failed ({details.get('error', 'unknown error')})"
            if failed
            else f"No successful backup for {int(float(details.get('since_s', '0')) // 3600)} hours"
        )
        finding = Finding(
            detector="backup",
            kind="backup-failed" if failed else "backup-overdue",
            severity=Severity.HIGH,
            title=title + ": without backups, ransomware means data loss",
            group="backup:failed" if failed else "backup:overdue",
            evidence=(),
            at=self.clock(),
            details={k: str(v) for k, v in details.items()},
        )
        self.dispatcher.announce(self.engine.alerts.raise_findings([finding]))

    def tick(self) -> ScanReport | None:
        """One round: renew or take the lease, then scan. None if another worker scans."""
        if not self.sql.take_lease(self.holder, self.clock(), LEASE_S):
            self._leased = False
            return None
        if not self._leased:
            self.engine = build_engine(
                self.vault,
                self.settings,
                clock=self.clock,
                dispatcher=self.dispatcher,
                stopping=self._stop.is_set,
            )
            self._leased = True  # a fresh engine: the previous holder may have moved the cursor
        return self.engine.scan()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.scan_interval_seconds):
            try:
                self.tick()
            except ScanStopped:
                return
            except Exception as exc:  # never kill the thread; no PHI in the log line
                log.error("detector scan failed: %s", type(exc).__name__)

    def stop(self) -> None:
        set_alert_hook(None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.dispatcher.close()
        if self._leased:
            try:
                self.sql.release_lease(self.holder)  # the next scanner need not wait it out
            except Exception as exc:  # closing anyway; the lease then expires by itself
                log.warning("could not release the detector lease: %s", type(exc).__name__)


def start_detector_task(vault: Vault) -> DetectorTask | None:
    """Start detection in `serve` unless [alerts] scan_interval_seconds is 0."""
    task = DetectorTask(vault)
    if task.settings.scan_interval_seconds <= 0:
        return None
    task.start()
    return task
