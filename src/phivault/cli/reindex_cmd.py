"""phivault reindex: rebuild the search index from the stored resources."""

from __future__ import annotations

from pathlib import Path

import click

from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.fhir import resources as fhir_types
from phivault.service import Context
from phivault.service.reindex import ReindexStats, reindex


@click.command("reindex")
@data_option
@key_file_option
@click.option("--type", "rtype", default=None, help="Only this resource type.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@handle_errors
def reindex_cmd(
    data: Path | None, key_file: Path | None, rtype: str | None, batch_size: int
) -> None:
    """Re-extract the search index rows of every current resource (after the search
    definitions changed). Safe to run while the server is up."""
    if rtype is not None:
        fhir_types.check_type(rtype)
    vault = open_from_cli(data, key_file)
    stats = ReindexStats()
    try:
        total = vault.store.count_current(rtype)
        with click.progressbar(length=max(total, 1), label="reindexing") as bar:
            done = 0
            for stats in reindex(
                vault.service, Context(actor="cli:reindex"), rtype, batch_size=batch_size
            ):
                bar.update(stats.seen - done)
                done = stats.seen
    finally:
        vault.close()
    click.echo(
        f"reindexed {stats.reindexed}, skipped {stats.skipped}, failed {stats.failed} "
        f"(of {stats.seen})"
    )
    if stats.failed:
        raise SystemExit(2)
