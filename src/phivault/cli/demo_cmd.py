"""phivault demo: load a deterministic synthetic clinic."""

from __future__ import annotations

from pathlib import Path

import click

from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.demo.clinic import ClinicSpec, count_resources, generate_clinic
from phivault.service import Context, ImportStats


@click.command("demo")
@data_option
@key_file_option
@click.option("--patients", default=200, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@handle_errors
def demo(data: Path | None, key_file: Path | None, patients: int, seed: int) -> None:
    """Load a synthetic clinic (same seed, same clinic). Synthetic data only: no real PHI."""
    spec = ClinicSpec(patients=patients, seed=seed)
    vault = open_from_cli(data, key_file)
    stats = ImportStats()
    try:
        with click.progressbar(length=count_resources(spec), label="loading demo clinic") as bar:
            done = 0
            for stats in vault.service.import_resources(
                Context(actor="cli:demo"), generate_clinic(spec), batch_size=1000
            ):
                now = stats.created + stats.updated + stats.failed
                bar.update(now - done)
                done = now
    finally:
        vault.close()
    click.echo(
        f"demo clinic: {stats.created} created, {stats.updated} updated, {stats.failed} failed"
    )
    if stats.failed:
        for message in stats.errors:
            click.echo(f"  {message}", err=True)
        raise SystemExit(2)
