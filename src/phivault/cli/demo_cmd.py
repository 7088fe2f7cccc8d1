"""phivault demo: load a deterministic synthetic clinic."""

from __future__ import annotations

from pathlib import Path

import click

from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.cli.demo_users import create_demo_users, print_login_help
from phivault.demo.clinic import ClinicSpec, count_resources, generate_clinic
from phivault.service import Context, ImportStats


@click.command("demo")
@data_option
@key_file_option
@click.option("--patients", default=200, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--no-users", is_flag=True, help="Do not create the demo login accounts.")
@handle_errors
def demo(
    data: Path | None, key_file: Path | None, patients: int, seed: int, no_users: bool
) -> None:
    """Load a synthetic clinic (same seed, same clinic). Synthetic data only: no real PHI.

    Also creates an admin and a clinician login, each with a password and TOTP secret
    generated here, and prints how to sign in (shown once)."""
    spec = ClinicSpec(patients=patients, seed=seed)
    vault = open_from_cli(data, key_file)
    stats = ImportStats()
    created: list[tuple[str, str, str, str]] = []
    try:
        with click.progressbar(length=count_resources(spec), label="loading demo clinic") as bar:
            done = 0
            for stats in vault.service.import_resources(
                Context(actor="cli:demo"), generate_clinic(spec), batch_size=1000
            ):
                now = stats.created + stats.updated + stats.failed
                bar.update(now - done)
                done = now
        if not no_users:
            created = create_demo_users(vault, spec)
    finally:
        vault.close()
    click.echo(
        f"demo clinic: {stats.created} created, {stats.updated} updated, {stats.failed} failed"
    )
    if not no_users:
        unlock = f"--data {data if data is not None else '$PHIVAULT_DATA'}"
        if key_file is not None:
            unlock += f" --key-file {key_file}"
        print_login_help(created, unlock)
    if stats.failed:
        for message in stats.errors:
            click.echo(f"  {message}", err=True)
        raise SystemExit(2)
