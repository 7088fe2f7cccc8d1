"""phivault token issue: a bearer token for scripts and tests (system scopes only).

Needs the data directory's key: the token is signed with a key derived from the key
ring, so whoever can run this could read the data anyway. Every issue is audited.
"""

from __future__ import annotations

from pathlib import Path

import click

from phivault.access import clients
from phivault.access.runtime import AccessControl
from phivault.access.scopes import SYSTEM, parse_scopes
from phivault.audit.events import AccessEvent
from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.errors import BadRequest, InvalidScope


@click.group("token")
def token() -> None:
    """Bearer tokens for scripts."""


@token.command("issue")
@data_option
@key_file_option
@click.option("--client", "client_name", required=True, help="Client name (registered if new).")
@click.option("--scope", required=True, help='System scopes, e.g. "system/*.rs".')
@click.option("--lifetime", default=300, show_default=True, type=click.IntRange(30, 900))
@handle_errors
def issue(
    data: Path | None, key_file: Path | None, client_name: str, scope: str, lifetime: int
) -> None:
    """Print an access token for CLIENT with SCOPE (at most 15 minutes)."""
    resource, _ = parse_scopes(scope)
    if not resource or any(s.context != SYSTEM for s in resource):
        raise InvalidScope("token issue grants system/ scopes only")
    vault = open_from_cli(data, key_file)
    try:
        access = AccessControl.for_service(vault.service, vault.keyring)
        row = access.store.client_by_name(client_name)
        if row is not None and row.kind != clients.SCRIPT:
            raise BadRequest("a client of that name exists and is not a script client")
        if row is None or row.scope != " ".join(scope.split()):
            row = clients.register(access.store, client_name, clients.SCRIPT, scope)
        if row.disabled:
            raise InvalidScope("this client is disabled")
        value, _ = access.system_token(row.client_id, scope, lifetime)
        vault.audit.record(
            AccessEvent(
                action="token-issue", actor="cli:token", client=row.client_id, purpose=scope
            )
        )
    finally:
        vault.close()
    click.echo(value)
