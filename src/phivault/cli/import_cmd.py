"""phivault import: load NDJSON or Bundle files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.fhir.files import iter_file_resources
from phivault.service import Context, ImportStats


@click.command("import")
@data_option
@key_file_option
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@handle_errors
def import_(data: Path | None, key_file: Path | None, files: tuple[Path, ...]) -> None:
    """Import resources from NDJSON files or JSON Bundles (ids are kept)."""
    vault = open_from_cli(data, key_file)
    read_errors: list[str] = []
    stats = ImportStats()
    try:
        total_bytes = sum(p.stat().st_size for p in files)
        with click.progressbar(length=max(total_bytes, 1), label="importing") as bar:

            def resources() -> Iterator[Any]:
                for path in files:
                    yield from iter_file_resources(path, read_errors, bar.update)

            for progress in vault.service.import_resources(
                Context(actor="cli:import"), resources()
            ):
                stats = progress
    finally:
        vault.close()
    failed = stats.failed + len(read_errors)
    click.echo(f"created {stats.created}, updated {stats.updated}, failed {failed}")
    for message in (read_errors + stats.errors)[:20]:
        click.echo(f"  {message}", err=True)
    if failed:
        raise SystemExit(2)
