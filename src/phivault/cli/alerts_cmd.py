"""phivault alerts: scan, list, show, ack, resolve, eval."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path

import click

from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.detect import runtime
from phivault.detect.alerts import AlertStore
from phivault.detect.model import STATUSES, Alert, parse_since
from phivault.vault import Vault


def _store(vault: Vault) -> AlertStore:
    return AlertStore(vault.store, vault.audit, time.time)


def _reviewer() -> str:
    return f"cli:{getpass.getuser()}"


def _line(alert: Alert) -> str:
    data = alert.as_json()
    return (
        f"{alert.alert_id}  {data['raised'][:19]}  {alert.severity.value:8}  {alert.status:12}  "
        f"{alert.title}"
    )


@click.group("alerts")
def alerts() -> None:
    """Threat detection: scan the audit log, review alerts, evaluate the detectors."""


@alerts.command("scan")
@data_option
@key_file_option
@click.option("--since", default=None, help="Start at this time (2026-09-01, or 24h, 7d ago) "
              "instead of where the last scan stopped.")  # fmt: skip
@handle_errors
def scan(data: Path | None, key_file: Path | None, since: str | None) -> None:
    """Run every detector over the audit log entries not yet scanned."""
    vault = open_from_cli(data, key_file)
    try:
        report, dispatcher = runtime.scan(vault, since=parse_since(since) if since else None)
    finally:
        vault.close()
    click.echo(f"scanned {report.entries} entries; {len(report.alerts)} new or raised alert(s)")
    for alert in report.alerts:
        click.echo(_line(alert))
    if dispatcher.failed:
        click.echo(f"warning: {dispatcher.failed} alert delivery(ies) failed", err=True)


@alerts.command("list")
@data_option
@key_file_option
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--severity", type=click.Choice(["low", "medium", "high", "critical"]),
              default=None, help="This severity and above.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@handle_errors
def list_(
    data: Path | None,
    key_file: Path | None,
    status: str | None,
    severity: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List alerts, newest first."""
    vault = open_from_cli(data, key_file)
    try:
        store = _store(vault)
        found = store.list_alerts(status=status, severity=severity, limit=limit)
        store.audit_read(_reviewer(), None, "list")
    finally:
        vault.close()
    for alert in found:
        click.echo(json.dumps(alert.as_json(), sort_keys=True) if as_json else _line(alert))


@alerts.command("show")
@data_option
@key_file_option
@click.argument("alert_id")
@handle_errors
def show(data: Path | None, key_file: Path | None, alert_id: str) -> None:
    """Show one alert with its evidence (audit entry indexes)."""
    vault = open_from_cli(data, key_file)
    try:
        store = _store(vault)
        alert = store.get(alert_id)
        store.audit_read(_reviewer(), None, alert_id)
        entries = store.evidence_entries(alert)
    finally:
        vault.close()
    click.echo(json.dumps(alert.as_json(), indent=2, sort_keys=True))
    click.echo(f"evidence (audit entries; {len(entries)} of {len(alert.evidence)} shown):")
    for index, entry in entries:
        click.echo(f"  #{index} {json.dumps(entry, sort_keys=True)}")


@alerts.command("ack")
@data_option
@key_file_option
@click.argument("alert_id")
@click.option("--note", default=None, help="Optional note.")
@handle_errors
def ack(data: Path | None, key_file: Path | None, alert_id: str, note: str | None) -> None:
    """Acknowledge an open alert (someone is looking at it)."""
    vault = open_from_cli(data, key_file)
    try:
        alert = _store(vault).acknowledge(alert_id, _reviewer(), note)
    finally:
        vault.close()
    click.echo(f"{alert.alert_id} acknowledged")


@alerts.command("resolve")
@data_option
@key_file_option
@click.argument("alert_id")
@click.option("--note", required=True, help="What it was and what was done.")
@handle_errors
def resolve(data: Path | None, key_file: Path | None, alert_id: str, note: str) -> None:
    """Resolve an alert with a note."""
    vault = open_from_cli(data, key_file)
    try:
        alert = _store(vault).resolve(alert_id, _reviewer(), note)
    finally:
        vault.close()
    click.echo(f"{alert.alert_id} resolved")


@alerts.command("eval")
@click.option("--days", type=click.IntRange(7, 365), default=14, show_default=True)
@click.option("--staff", type=click.IntRange(6, 500), default=20, show_default=True)
@click.option("--patients", type=click.IntRange(10, 100_000), default=200, show_default=True)
@click.option("--seed", "seeds", type=int, multiple=True, default=(1,), show_default=True,
              help="Repeat for several runs.")  # fmt: skip
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the throw-away data directories go (default: the temp dir).")  # fmt: skip
@handle_errors
def eval_(
    days: int, staff: int, patients: int, seeds: tuple[int, ...], workdir: Path | None
) -> None:
    """Simulate a clinic with injected attacks through the real server and detectors, and
    report detection per scenario, precision, recall, false alerts and latency."""
    from phivault.detect.eval.report import markdown, meets_targets
    from phivault.detect.eval.runner import run_eval

    results = [run_eval(days, staff, patients, seed, workdir=workdir) for seed in seeds]
    click.echo(markdown(results))
    if not meets_targets(results):
        raise click.exceptions.Exit(1)
