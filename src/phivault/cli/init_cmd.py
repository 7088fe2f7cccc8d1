"""phivault init: create a data directory."""

from __future__ import annotations

import os
from pathlib import Path

import click

from phivault.cli.common import data_option, db_option, handle_errors, key_file_option
from phivault.config import resolve_data_dir
from phivault.crypto import primitives
from phivault.crypto.kek import create_key_file
from phivault.detect.canaries import DEFAULT_COUNT, seed_canaries
from phivault.errors import ConfigError
from phivault.vault import init_data_dir, key_source, open_vault


@click.command("init")
@data_option
@key_file_option
@db_option
@click.option(
    "--generate-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Create a new random key file here and lock the data directory with it.",
)
@click.option(
    "--self-signed-cert",
    "cert_hosts",
    multiple=True,
    metavar="HOST",
    help="Also make a self-signed TLS certificate for HOST (repeat for more names or IPs); "
    "written as tls-cert.pem and tls-key.pem (mode 0600) in the data directory.",
)
@click.option(
    "--canaries",
    type=click.IntRange(0, 50),
    default=DEFAULT_COUNT,
    show_default=True,
    help="Honeytoken patients to seed (any access to one raises a critical alert).",
)
@handle_errors
def init(
    data: Path | None,
    key_file: Path | None,
    db: str | None,
    generate_key_file: Path | None,
    cert_hosts: tuple[str, ...],
    canaries: int,
) -> None:
    """Create a data directory locked with a passphrase or key file."""
    data_dir = resolve_data_dir(data)
    if generate_key_file is not None:
        if key_file is not None:
            raise click.UsageError("use --key-file or --generate-key-file, not both")
        generate_key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if generate_key_file.exists():
            raise ConfigError("the key file already exists; refusing to overwrite a key")
        create_key_file(generate_key_file)
        key_file = generate_key_file
        click.echo(
            f"created key file {generate_key_file} (mode 0600): "
            "keep it away from the data directory and its backups"
        )
    source = key_source(key_file=key_file)
    init_data_dir(data_dir, source, db_url=db)
    if canaries:
        vault = open_vault(data_dir, source)
        try:
            seed_canaries(vault, canaries)
        finally:
            vault.close()
    click.echo(f"initialised {data_dir}")
    if cert_hosts:
        cert, key = primitives.self_signed_certificate(list(cert_hosts))
        _write_private(data_dir / "tls-key.pem", key)
        _write_private(data_dir / "tls-cert.pem", cert)
        click.echo(
            f"self-signed certificate for {', '.join(cert_hosts)}: serve with "
            f"--tls-cert {data_dir / 'tls-cert.pem'} --tls-key {data_dir / 'tls-key.pem'}"
        )


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
