"""The demo's login accounts: an admin and a clinician, each with a password and a TOTP
secret generated on this machine (never a fixed default), shown once."""

from __future__ import annotations

import secrets

import click

from phivault.access.runtime import AccessControl
from phivault.audit.events import AccessEvent
from phivault.demo.clinic import ClinicSpec, demo_staff
from phivault.vault import Vault

ADMIN_NAME = "admin"


def _password() -> str:
    # 24 URL-safe characters (144 bits): well past the length rule and any common list.
    return secrets.token_urlsafe(18)


def create_demo_users(vault: Vault, spec: ClinicSpec) -> list[tuple[str, str, str, str]]:
    """(username, role, password, otpauth URI) of each account created now; accounts
    that exist already (a second `demo` run) are left alone."""
    access = AccessControl.for_service(vault.service, vault.keyring)
    clinician = next((m for m in demo_staff(spec) if m["role"] == "clinician"), None)
    wanted: list[tuple[str, str, str | None]] = [(ADMIN_NAME, "admin", None)]
    if clinician is not None:
        wanted.append((clinician["username"], "clinician", clinician["practitioner"]))
    created: list[tuple[str, str, str, str]] = []
    for username, role, practitioner in wanted:
        if access.users.by_name(username) is not None:
            continue
        password = _password()
        user, enrolment = access.users.add(username, password, [role], practitioner=practitioner)
        vault.audit.record(
            AccessEvent(action="user-add", actor="cli:demo", extra={"user": user.user_id})
        )
        uri = enrolment.provisioning_uri if enrolment is not None else ""
        created.append((username, role, password, uri))
    return created


def print_login_help(created: list[tuple[str, str, str, str]], unlock: str) -> None:
    """`unlock`: the --data (and --key-file) options to repeat in the token command."""
    if not created:
        click.echo("demo users exist already (see `phivault user list`).")
    else:
        click.echo("")
        click.echo("Demo logins (generated for this machine only; shown once):")
        for username, role, password, uri in created:
            click.echo(f"  {role:9} username: {username}")
            click.echo(f"            password: {password}")
            click.echo(f"            TOTP:     {uri}")
        click.echo("Add the TOTP URI to an authenticator app (or `oathtool`), then sign in")
        click.echo("through a SMART app at /oauth/authorize (password + 6-digit code).")
    click.echo("A bearer token for scripts (system scopes, at most 15 minutes):")
    click.echo(f'  phivault token issue {unlock} --client demo --scope "system/*.rs"')
