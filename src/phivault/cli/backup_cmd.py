"""phivault backup: init, create, list, verify, restore, prune, drill.

A thin layer over phivault.backup. After a disaster the data directory may be gone, so
every command that reads a repository also takes `--repo REPO` (with the repository id
taken from the backup key file); otherwise the repository is the one named in the data
directory's backup.json.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from phivault.backup.backends import open_backend
from phivault.backup.backends.s3 import S3Options
from phivault.backup.keys import read_private_key
from phivault.backup.operations import backup_now, init_repository, open_repository
from phivault.backup.prune import RetentionPolicy, prune
from phivault.backup.repository import Repository
from phivault.backup.restore import parse_time, restore_snapshot
from phivault.cli.common import (
    data_option,
    db_option,
    handle_errors,
    key_file_option,
    open_from_cli,
)
from phivault.config import resolve_data_dir
from phivault.errors import ConfigError, IntegrityError
from phivault.vault import key_source

F = TypeVar("F", bound=Callable[..., Any])


def _s3_options(func: F) -> F:
    func = click.option(
        "--s3-endpoint",
        envvar="PHIVAULT_BACKUP_S3_ENDPOINT",
        default=None,
        help="S3 endpoint URL (MinIO, Ceph...; or PHIVAULT_BACKUP_S3_ENDPOINT).",
    )(func)
    func = click.option("--s3-region", envvar="PHIVAULT_BACKUP_S3_REGION", default=None)(func)
    func = click.option(
        "--s3-profile", default=None, help="AWS profile holding the credentials to use."
    )(func)
    return click.option(
        "--retention-days",
        type=click.IntRange(1, 36500),
        default=None,
        help="S3 Object Lock (COMPLIANCE) retention of every object written.",
    )(func)


def _backend_options(kwargs: dict[str, Any], *, operator: bool = False) -> dict[str, Any]:
    endpoint = kwargs.pop("s3_endpoint", None)
    region = kwargs.pop("s3_region", None)
    profile = kwargs.pop("s3_profile", None)
    retention = kwargs.pop("retention_days", None)
    options = S3Options.from_env(
        operator=operator,
        endpoint_url=endpoint,
        region=region,
        profile=profile,
        retention_days=retention,
    )
    server = S3Options.from_env(endpoint_url=endpoint, region=region)
    return {"s3": options, "server_s3": server}


repo_option = click.option(
    "--repo", default=None, help="Repository (a directory or s3://bucket/prefix)."
)
backup_key_option = click.option(
    "--backup-key",
    "backup_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The operator's backup private key file (written by `backup init`).",
)


class _Bar:
    """click.progressbar behind the library's Progress protocol (stderr, so output parses)."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None

    def start(self, total: int) -> None:
        self._bar = click.progressbar(length=max(total, 1), label=self._label, file=sys.stderr)
        self._bar.__enter__()

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _repository(
    data: Path | None,
    repo: str | None,
    key_file: Path | None,
    options: dict[str, Any],
    *,
    operator: bool = False,
) -> Repository:
    if repo is None:
        return open_repository(resolve_data_dir(data), operator=operator, **options)
    repo_id = read_private_key(key_file).repo_id if key_file else None
    return Repository.open(open_backend(repo, operator=operator, **options), repo_id)


def _need_key(backup_key: Path | None) -> Path:
    if backup_key is None:
        raise ConfigError("give the operator's backup private key with --backup-key FILE")
    return backup_key


@click.group("backup")
def backup() -> None:
    """Encrypted, deduplicated, append-only backups (local directory or S3 Object Lock)."""


@backup.command("init")
@data_option
@key_file_option
@db_option
@click.option("--repo", required=True, help="A directory or s3://bucket/prefix.")
@click.option(
    "--key-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("phivault-backup.key"),
    show_default=True,
    help="Where to write the backup PRIVATE key (never inside the data directory).",
)
@click.option("--chunk-kib", type=int, default=1024, show_default=True, help="Average chunk size.")
@_s3_options
@handle_errors
def init_cmd(
    data: Path | None,
    key_file: Path | None,
    db: str | None,
    repo: str,
    key_out: Path,
    chunk_kib: int,
    **kwargs: Any,
) -> None:
    """Create a repository and the backup key pair."""
    options = _backend_options(kwargs)
    vault = open_from_cli(data, key_file, db_url=db)
    try:
        key = init_repository(
            vault.settings.data_dir,
            vault.keyring,
            repo,
            key_out,
            avg_chunk_size=chunk_kib * 1024,
            **options,
        )
    finally:
        vault.close()
    click.echo(f"repository {key.repo_id} created at {repo}")
    click.echo(f"backup PRIVATE key written to {key_out.resolve()}")
    click.echo(
        "Move it offline now (a USB key in a safe, a password manager, paper via a QR code)\n"
        "and delete it from this server: the server keeps only the public key, so that\n"
        "someone who takes over this server cannot read the backups. You need the file for\n"
        "`backup restore`, `backup verify --full`, `backup drill` and `backup prune`;\n"
        "without it no backup can ever be restored."
    )


@backup.command("create")
@data_option
@key_file_option
@db_option
@_s3_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--full", is_flag=True, help="A full snapshot even if an incremental one would do.")
@handle_errors
def create_cmd(
    data: Path | None,
    key_file: Path | None,
    db: str | None,
    quiet: bool,
    full: bool,
    **kwargs: Any,
) -> None:
    """Back up the data directory now (safe while the server runs): incremental when the
    newest snapshot allows it (what changed since, by sequence), full otherwise."""
    options = _backend_options(kwargs)
    vault = open_from_cli(data, key_file, db_url=db)
    bar = None if quiet else _Bar("backing up")
    try:
        result = backup_now(vault, progress=bar, full=full, **options)
    finally:
        if bar is not None:
            bar.close()
        vault.close()
    click.echo(
        f"snapshot {result.snapshot_id} ({result.kind}): {result.bytes} bytes read, "
        f"{result.chunks} chunks referenced, "
        f"{result.new_chunks} new ({result.new_bytes} bytes stored), {result.seconds:.1f} s"
    )


@backup.command("list")
@data_option
@repo_option
@backup_key_option
@_s3_options
@handle_errors
def list_cmd(data: Path | None, repo: str | None, backup_key: Path | None, **kwargs: Any) -> None:
    """List snapshots (signatures checked; no private key needed)."""
    repository = _repository(data, repo, backup_key, _backend_options(kwargs))
    for snapshot_id in repository.snapshot_ids():
        header = repository.read_header(snapshot_id)
        stats = header.stats
        kind = f"incremental ({len(header.chain) - 1} since full)" if header.is_delta else "full"
        click.echo(
            f"{snapshot_id}  {header.time}  {header.backend}  {kind}  "
            f"{stats.get('bytes', 0)} bytes  "
            f"{stats.get('chunks', 0)} chunks ({stats.get('new_chunks', 0)} new)"
        )


@backup.command("verify")
@data_option
@repo_option
@backup_key_option
@click.option("--full", is_flag=True, help="Also decrypt and re-hash every chunk.")
@_s3_options
@handle_errors
def verify_cmd(
    data: Path | None, repo: str | None, backup_key: Path | None, full: bool, **kwargs: Any
) -> None:
    """Check signatures and chunk presence (--full: every chunk's content too)."""
    from phivault.backup.verify import verify_repository

    repository = _repository(data, repo, backup_key, _backend_options(kwargs))
    key = read_private_key(_need_key(backup_key)) if full else None
    bar = _Bar("verifying") if full else None
    try:
        result = verify_repository(repository, key, full=full, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    for problem in result.problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    mode = "full" if full else "signatures and presence"
    click.echo(f"{result.snapshots} snapshots, {result.chunks} chunks checked ({mode})")
    if not result.ok:
        raise IntegrityError(f"the repository has {len(result.problems)} problem(s)")
    click.echo("OK")


@backup.command("restore")
@data_option
@repo_option
@backup_key_option
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--snapshot", default=None, help="Snapshot id (default: the newest).")
@click.option("--at", "at", default=None, help="The newest snapshot at or before this time.")
@click.option("--db-url", default=None, help="PostgreSQL snapshots: an empty schema to load.")
@_s3_options
@handle_errors
def restore_cmd(
    data: Path | None,
    repo: str | None,
    backup_key: Path | None,
    to_dir: Path,
    snapshot: str | None,
    at: str | None,
    db_url: str | None,
    **kwargs: Any,
) -> None:
    """Restore a snapshot into a new data directory."""
    if snapshot and at:
        raise ConfigError("give --snapshot or --at, not both")
    key = read_private_key(_need_key(backup_key))
    repository = _repository(data, repo, backup_key, _backend_options(kwargs))
    bar = _Bar("restoring")
    try:
        result = restore_snapshot(
            repository,
            key,
            to_dir,
            snapshot_id=snapshot,
            at=parse_time(at) if at else None,
            db_url=db_url,
            progress=bar,
        )
    finally:
        bar.close()
    click.echo(
        f"restored snapshot {result.snapshot_id} ({result.time}) to {to_dir}: "
        f"{result.files} files, {result.bytes} bytes in {result.seconds:.1f} s"
    )
    click.echo(f"start it with: phivault serve --data {to_dir}")


@backup.command("prune")
@data_option
@repo_option
@backup_key_option
@click.option("--keep-last", type=click.IntRange(0), default=0)
@click.option("--keep-daily", type=click.IntRange(0), default=0)
@click.option("--keep-weekly", type=click.IntRange(0), default=0)
@click.option("--keep-monthly", type=click.IntRange(0), default=0)
@click.option("--dry-run", is_flag=True)
@_s3_options
@handle_errors
def prune_cmd(
    data: Path | None,
    repo: str | None,
    backup_key: Path | None,
    keep_last: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    dry_run: bool,
    **kwargs: Any,
) -> None:
    """Remove old snapshots (operator only: backup key and operator credentials)."""
    key = read_private_key(_need_key(backup_key))
    options = _backend_options(kwargs, operator=True)
    repository = _repository(data, repo, backup_key, options, operator=True)
    policy = RetentionPolicy(keep_last, keep_daily, keep_weekly, keep_monthly)
    result = prune(repository, key, policy, dry_run=dry_run)
    for problem in result.problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    verb = "would forget" if dry_run else "forgot"
    click.echo(
        f"kept {len(result.kept)} snapshots, {verb} {len(result.forgotten)}; "
        f"{result.chunks_deleted} chunks removed, {result.retained} still under retention"
    )


@backup.command("drill")
@data_option
@repo_option
@backup_key_option
@key_file_option
@click.option("--scratch", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--db-url", default=None, help="PostgreSQL snapshots: an empty scratch schema.")
@click.option("--snapshot", default=None)
@_s3_options
@handle_errors
def drill_cmd(
    data: Path | None,
    repo: str | None,
    backup_key: Path | None,
    key_file: Path | None,
    scratch: Path | None,
    db_url: str | None,
    snapshot: str | None,
    **kwargs: Any,
) -> None:
    """Restore to a scratch directory, verify it there and time the recovery."""
    from phivault.backup.drill import run_drill

    key = read_private_key(_need_key(backup_key))
    repository = _repository(data, repo, backup_key, _backend_options(kwargs))
    bar = _Bar("restoring")
    try:
        report = run_drill(
            repository,
            key,
            key_source(key_file=key_file),
            scratch=scratch,
            db_url=db_url,
            snapshot_id=snapshot,
            progress=bar,
        )
    finally:
        bar.close()
    click.echo(f"snapshot {report.snapshot_id}: {report.bytes} bytes")
    click.echo(f"resources: {report.resources_found} restored / {report.resources_expected}")
    click.echo(f"audit log: {report.audit.size} entries, checkpoint {report.audit.checkpoint_size}")
    for problem in report.problems + report.audit.problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    click.echo(
        f"recovery time {report.recovery_seconds:.1f} s (restore {report.restore_seconds:.1f} s"
        f" + open {report.open_seconds:.1f} s); verification {report.verify_seconds:.1f} s"
    )
    if not report.ok:
        raise IntegrityError("the drill failed: the restored data does not verify")
    click.echo("DRILL OK")
