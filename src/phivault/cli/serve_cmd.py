"""phivault serve: run the FHIR server."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import click

from phivault.backup.integrity import CHECKED_ENV, fingerprint, sqlite_path
from phivault.cli.common import (
    data_option,
    db_option,
    handle_errors,
    key_file_option,
    open_from_cli,
)
from phivault.config import resolve_data_dir
from phivault.errors import ConfigError

# api/asgi.py builds AccessControl and passes it to create_app: every FHIR route needs a
# bearer token, so serve may listen beyond loopback (with TLS, or --insecure-http).
ACCESS_CONTROL_WIRED = True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _proxy_addresses(values: tuple[str, ...]) -> list[str]:
    """The --trusted-proxy values, each an IP address or network (no wildcards)."""
    found = []
    for value in values:
        try:
            found.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not an IP address or network", param_hint="--trusted-proxy"
            ) from None
    return found


@click.command("serve")
@data_option
@key_file_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Allow plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDRESS",
    help=(
        "Address of a reverse proxy whose X-Forwarded-For / X-Forwarded-Proto headers are "
        "believed (repeatable). Without it no such header is believed: the audit log and the "
        "per-address rate limits see the connection's own peer address."
    ),
)
@handle_errors
def serve(
    data: Path | None,
    key_file: Path | None,
    db: str | None,
    host: str,
    port: int,
    workers: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure_http: bool,
    trusted_proxies: tuple[str, ...],
) -> None:
    """Serve the FHIR API at http(s)://HOST:PORT/fhir."""
    import uvicorn

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key")
    tls = tls_cert is not None
    if not _is_loopback(host):
        if not ACCESS_CONTROL_WIRED:
            # The ASGI entry point does not yet enable bearer authentication: PHI must not
            # be reachable from the network until it does.
            raise ConfigError(
                "phivault serves on loopback only until access control is enabled in the "
                "server (use --host 127.0.0.1)"
            )
        if not tls and not insecure_http:
            raise ConfigError(
                "refusing plain HTTP on a network address: give --tls-cert and --tls-key "
                "(or --insecure-http behind a TLS proxy)"
            )
    proxies = _proxy_addresses(trusted_proxies)
    data_dir = resolve_data_dir(data)
    # Unlock once here so a wrong key stops us before any worker starts.
    vault = open_from_cli(data_dir, key_file, db_url=db)
    settings = vault.settings
    vault.close()
    database = sqlite_path(data_dir, db)
    if database is not None:  # checked just now: the workers need not read it all again
        os.environ[CHECKED_ENV] = fingerprint(database)
    os.environ["PHIVAULT_DATA"] = str(data_dir)
    if key_file is not None:
        os.environ["PHIVAULT_KEY_FILE"] = str(key_file.resolve())
    if db:
        os.environ["PHIVAULT_DB"] = db
    scheme = "https" if tls else "http"
    click.echo(f"phivault serving {data_dir} at {scheme}://{host}:{port}/fhir")
    # TLS 1.2 is the floor: Python's PROTOCOL_TLS_SERVER context (uvicorn's default)
    # refuses SSLv3, TLS 1.0 and 1.1 since Python 3.10.
    tls_options: dict[str, Any] = {}
    if tls:
        tls_options = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
    uvicorn.run(
        "phivault.api.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,  # URLs carry search values, which may be PHI
        server_header=False,
        # Head deadline and size limits before the app (api/connection_limits.py).
        http="phivault.api.connection_limits:GuardedHttpToolsProtocol",
        timeout_keep_alive=settings.keep_alive_timeout_s,
        limit_concurrency=settings.max_connections,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: any local
        # process could then pick the address that the audit log and the rate limits see.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=",".join(proxies) if proxies else "",
        **tls_options,
    )
