"""phivault audit: verify the log, print checkpoints, proofs and raw leaves, run a witness.

Thin over phivault.audit (verify.py, witness.py, reader.py). Commands that only read the
log open the store without the key; those that sign or must know the log's public key
unlock the data directory, unless a pinned key is given with --public-key.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from phivault.audit.checkpoint import decode_public_key, public_key_document
from phivault.audit.reader import LogReader
from phivault.audit.seal import LogSeal
from phivault.audit.terms import TermKeys, catch_up
from phivault.audit.verify import VerifyReport, verify_log
from phivault.audit.witness import HttpSource, LogSource, StoreSource, witness
from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.config import load_settings, resolve_data_dir
from phivault.errors import AuditVerifyFailed, ConfigError, KeyMaterialError, WitnessAlarm
from phivault.store.base import Store
from phivault.store.factory import open_store
from phivault.vault import is_initialized

MAX_FINDINGS_SHOWN = 20
public_key_option = click.option(
    "--public-key",
    "public_key",
    default=None,
    help="The log's Ed25519 public key (base64 or hex), pinned: no key file needed.",
)


@contextmanager
def _log_store(data: Path | None) -> Iterator[Store]:
    """The data directory's store, opened without the key (the log is not encrypted)."""
    data_dir = resolve_data_dir(data)
    if not is_initialized(data_dir):
        raise ConfigError("not a phivault data directory (run `phivault init` first)")
    store = open_store(data_dir, load_settings(data_dir).db_url)
    try:
        yield store
    finally:
        store.close()


def _keys(data: Path | None, key_file: Path | None) -> tuple[bytes, LogSeal | None]:
    """The log's public key and its seal (unlocks the data directory)."""
    vault = open_from_cli(data, key_file)
    try:
        signer = vault.audit.signer
        assert signer is not None
        return signer.public_key, LogSeal.of(signer)
    finally:
        vault.close()


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, sort_keys=True))


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log (RFC 9162 Merkle tree, signed checkpoints)."""


@audit.command("verify")
@data_option
@key_file_option
@public_key_option
@click.option("--no-data", is_flag=True, help="Check the log only, not the data rows.")
@handle_errors
def verify(data: Path | None, key_file: Path | None, public_key: str | None, no_data: bool) -> None:
    """Recompute the tree from every entry and check nodes, checkpoints and data rows."""
    # With a pinned --public-key no key is unlocked, so the seal cannot be checked.
    key, seal = (decode_public_key(public_key), None) if public_key else _keys(data, key_file)
    with _log_store(data) as store:
        report = verify_log(store, key, check_data=not no_data, seal=seal)
    _print_report(report)
    if not report.ok:
        first = report.first_bad_entry
        where = f"first bad entry: {first}" if first is not None else "see the findings above"
        raise AuditVerifyFailed(f"the audit log does not verify ({where})")


def _print_report(report: VerifyReport) -> None:
    root = base64.b64encode(report.root).decode() if report.root else "-"
    click.echo(
        f"entries: {report.size}  nodes checked: {report.nodes_checked}  "
        f"checkpoints: {report.checkpoints} (newest covers {report.latest_checkpoint})  "
        f"data versions checked: {report.versions_checked}"
    )
    click.echo(f"root: {root}")
    uncovered = report.size - report.latest_checkpoint
    if report.ok and uncovered > 0:
        click.echo(f"note: the newest {uncovered} entries are not yet covered by a checkpoint")
    for finding in report.findings[:MAX_FINDINGS_SHOWN]:
        click.echo(f"  BAD: {finding.message}", err=True)
    if report.total_findings > MAX_FINDINGS_SHOWN:
        click.echo(f"  ... and {report.total_findings - MAX_FINDINGS_SHOWN} more", err=True)
    status = "OK" if report.ok else f"FAILED, first bad entry: {report.first_bad_entry}"
    click.echo(f"{status} ({report.seconds:.2f} s)")


@audit.command("index")
@data_option
@key_file_option
@handle_errors
def index_cmd(data: Path | None, key_file: Path | None) -> None:
    """Bring the AuditEvent search terms up to date (searches do it too, a bounded
    amount at a time; run this off-peak after a large backlog, e.g. from cron)."""
    vault = open_from_cli(data, key_file)
    try:
        keys = TermKeys.of(vault.audit.signer)
        if keys is None:
            raise ConfigError("this audit log has no key")
        started = time.monotonic()
        upto = catch_up(vault.store, keys)
    finally:
        vault.close()
    click.echo(f"search terms cover {upto} entries ({time.monotonic() - started:.1f} s)")


@audit.command("checkpoint")
@data_option
@key_file_option
@handle_errors
def checkpoint(data: Path | None, key_file: Path | None) -> None:
    """Sign a checkpoint if the log grew, and print the latest one (JSON)."""
    vault = open_from_cli(data, key_file)
    try:
        blob = vault.audit.checkpoint()
    finally:
        vault.close()
    if blob is None:
        raise ConfigError("the audit log is empty: no checkpoint yet")
    click.echo(blob.decode())


@audit.command("public-key")
@data_option
@key_file_option
@handle_errors
def public_key_cmd(data: Path | None, key_file: Path | None) -> None:
    """Print the log's public key, for witnesses to pin (JSON)."""
    _print_json(public_key_document(_keys(data, key_file)[0]))


@audit.command("witness")
@data_option
@click.option("--url", default=None, help="Witness a running server (http://HOST:PORT).")
@click.option("--state", "state", required=True, type=click.Path(dir_okay=False, path_type=Path))
@key_file_option
@public_key_option
@handle_errors
def witness_cmd(
    data: Path | None, url: str | None, state: Path, key_file: Path | None, public_key: str | None
) -> None:
    """Check that the log consistently extends every checkpoint this witness saw."""
    key = decode_public_key(public_key) if public_key else None
    try:
        if url is not None:
            _witness(HttpSource(url), state, key)
            return
        with _log_store(data) as store:
            if key is None and not state.exists():
                try:
                    key = _keys(data, key_file)[0]
                except KeyMaterialError:
                    pass  # witness() asks for --public-key
            _witness(StoreSource(store, key), state, key)
    except WitnessAlarm as exc:
        click.echo("!" * 72, err=True)
        click.echo(f"AUDIT LOG ALARM: {exc.message}", err=True)
        click.echo("!" * 72, err=True)
        sys.exit(exc.exit_code)


def _witness(source: LogSource, state: Path, key: bytes | None) -> None:
    result = witness(source, state, key)
    if result.pinned_now:
        click.echo("pinned the log's public key (trust on first use)")
    cp = result.checkpoint
    if cp is None:
        click.echo("the log has no checkpoint yet")
    elif result.status == "extended" and result.previous is not None:
        click.echo(f"consistent: extended from {result.previous.size} to {cp.size} entries")
    else:
        click.echo(f"{result.status}: {cp.size} entries, root {base64.b64encode(cp.root).decode()}")


@audit.command("leaves")
@data_option
@click.option("--from", "start", required=True, type=click.IntRange(0))
@click.option("--to", "stop", required=True, type=click.IntRange(0))
@handle_errors
def leaves(data: Path | None, start: int, stop: int) -> None:
    """Print entries FROM..TO-1 as they are hashed (base64, one a line)."""
    with _log_store(data) as store:
        reader = LogReader(store)
        for first in range(start, stop, 1000):
            for entry in reader.leaves(first, min(first + 1000, stop)):
                click.echo(base64.b64encode(entry).decode())


@audit.command("proof")
@data_option
@click.option("--index", required=True, type=click.IntRange(0))
@click.option("--size", default=None, type=click.IntRange(1))
@handle_errors
def proof(data: Path | None, index: int, size: int | None) -> None:
    """Print the inclusion proof of entry INDEX in the tree of SIZE entries (JSON)."""
    with _log_store(data) as store:
        _print_json(LogReader(store).inclusion(index, size))


@audit.command("consistency")
@data_option
@click.option("--first", required=True, type=click.IntRange(1))
@click.option("--second", default=None, type=click.IntRange(1))
@handle_errors
def consistency(data: Path | None, first: int, second: int | None) -> None:
    """Print the proof that the tree of FIRST entries is a prefix of SECOND's (JSON)."""
    with _log_store(data) as store:
        _print_json(LogReader(store).consistency(first, second))
