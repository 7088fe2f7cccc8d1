"""phivault user: add, list, disable, reset-mfa, set-roles, revoke-sessions."""

from __future__ import annotations

import os
from pathlib import Path

import click

from phivault.access.runtime import AccessControl
from phivault.audit.events import AccessEvent
from phivault.cli.common import data_option, handle_errors, key_file_option, open_from_cli
from phivault.vault import Vault

ROLES_HELP = "clinician, nurse, front-desk, billing, researcher, auditor, admin"


def _access(vault: Vault) -> AccessControl:
    return AccessControl.for_service(vault.service, vault.keyring)


def _audit(vault: Vault, action: str, target: str) -> None:
    # Administrative actions are audited like data access: who changed which account.
    vault.audit.record(AccessEvent(action=action, actor="cli:user", extra={"user": target}))


@click.group("user")
def user() -> None:
    """Manage user accounts (passwords, roles, MFA, sessions)."""


@user.command("add")
@data_option
@key_file_option
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help=ROLES_HELP)
@click.option("--practitioner", default=None, help="Practitioner/<id> the user acts as.")
@click.option("--no-mfa", is_flag=True, help="No TOTP (only for non-interactive accounts).")
@handle_errors
def add(
    data: Path | None,
    key_file: Path | None,
    username: str,
    roles: tuple[str, ...],
    practitioner: str | None,
    no_mfa: bool,
) -> None:
    """Create a user. The password is read from PHIVAULT_NEW_PASSWORD or prompted."""
    password = os.environ.get("PHIVAULT_NEW_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    vault = open_from_cli(data, key_file)
    try:
        created, enrolment = _access(vault).users.add(
            username, password, list(roles), practitioner=practitioner, mfa_required=not no_mfa
        )
        _audit(vault, "user-add", created.user_id)
    finally:
        vault.close()
    click.echo(
        f"user {created.username} ({created.user_id}) roles: {' '.join(sorted(created.roles))}"
    )
    if enrolment is not None:
        click.echo("Scan this into an authenticator app (shown once):")
        click.echo(f"  {enrolment.provisioning_uri}")
        click.echo("Recovery codes (each works once; store them offline):")
        for code in enrolment.recovery_codes:
            click.echo(f"  {code}")


@user.command("list")
@data_option
@key_file_option
@handle_errors
def list_(data: Path | None, key_file: Path | None) -> None:
    """List users (no secrets)."""
    vault = open_from_cli(data, key_file)
    try:
        users = _access(vault).users.all()
    finally:
        vault.close()
    for u in users:
        state = "disabled" if u.disabled else "active"
        mfa = "mfa" if u.mfa_enrolled else "no-mfa"
        click.echo(f"{u.username}\t{u.user_id}\t{' '.join(sorted(u.roles))}\t{state}\t{mfa}")


def _simple(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @data_option
    @key_file_option
    @click.argument("username")
    @handle_errors
    def command(data: Path | None, key_file: Path | None, username: str) -> None:
        vault = open_from_cli(data, key_file)
        try:
            access = _access(vault)
            if name == "disable":
                target = access.users.set_disabled(username).user_id
                click.echo(f"disabled {username}; every session ended")
            elif name == "revoke-sessions":
                found = access.users.by_name(username)
                if found is None:
                    from phivault.errors import UnknownUser

                    raise UnknownUser()
                target = found.user_id
                click.echo(f"ended {access.sessions.revoke_user(target)} session(s)")
            else:
                enrolment = access.users.reset_mfa(username)
                found = access.users.by_name(username)
                target = found.user_id if found else username
                click.echo("New authenticator secret (shown once):")
                click.echo(f"  {enrolment.provisioning_uri}")
                click.echo("New recovery codes:")
                for code in enrolment.recovery_codes:
                    click.echo(f"  {code}")
            _audit(vault, f"user-{name}", target)
        finally:
            vault.close()

    return command


user.add_command(_simple("disable", "Disable a user and end every session of theirs."))
user.add_command(_simple("reset-mfa", "New TOTP secret and recovery codes; ends sessions."))
user.add_command(_simple("revoke-sessions", "End every session of a user at once."))


@user.command("set-roles")
@data_option
@key_file_option
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help=ROLES_HELP)
@handle_errors
def set_roles(
    data: Path | None, key_file: Path | None, username: str, roles: tuple[str, ...]
) -> None:
    """Replace a user's roles (their sessions end; new roles apply at next login)."""
    vault = open_from_cli(data, key_file)
    try:
        changed = _access(vault).users.set_roles(username, list(roles))
        _audit(vault, "user-set-roles", changed.user_id)
    finally:
        vault.close()
    click.echo(f"{changed.username}: {' '.join(sorted(changed.roles))}")
