"""phivault serve: run the FHIR server."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import click

from phivault.cli.common import (
    data_option,
    db_option,
    handle_errors,
    key_file_option,
    open_from_cli,
)
from phivault.config import resolve_data_dir
from phivault.errors import ConfigError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@data_option
@key_file_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@handle_errors
def serve(
    data: Path | None, key_file: Path | None, db: str | None, host: str, port: int, workers: int
) -> None:
    """Serve the FHIR API at http://HOST:PORT/fhir."""
    import uvicorn

    if not _is_loopback(host):
        # No authentication exists yet: PHI must not be reachable from the network.
        raise ConfigError(
            "phivault serves on loopback only until access control is in place "
            "(use --host 127.0.0.1)"
        )
    data_dir = resolve_data_dir(data)
    # Unlock once here so a wrong key stops us before any worker starts.
    vault = open_from_cli(data_dir, key_file, db_url=db)
    vault.close()
    os.environ["PHIVAULT_DATA"] = str(data_dir)
    if key_file is not None:
        os.environ["PHIVAULT_KEY_FILE"] = str(key_file.resolve())
    if db:
        os.environ["PHIVAULT_DB"] = db
    click.echo(
        f"phivault serving {data_dir} at http://{host}:{port}/fhir "
        "(loopback only: access control is not enabled yet)"
    )
    uvicorn.run(
        "phivault.api.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,  # URLs carry search values, which may be PHI
        server_header=False,
    )
