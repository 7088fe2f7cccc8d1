"""phivault keys: rotate the key-encryption key or the data keys, crypto-shred a patient.

Every command runs while servers keep serving (docs/ENCRYPTION.md).
"""

from __future__ import annotations

import base64
import json
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
from phivault.config import load_settings, resolve_data_dir
from phivault.crypto.codec import KeyRingCodec
from phivault.crypto.kek import (
    KekParams,
    KeyFileKeySource,
    KeySource,
    PassphraseKeySource,
    create_key_file,
    unlock_kek,
)
from phivault.crypto.rotation import (
    DEFAULT_GRACE_SECONDS,
    finish_pending,
    new_kek_for_rotation,
    pending_transition,
)
from phivault.errors import ConfigError
from phivault.service import Context
from phivault.service.keys import (
    publish_keys_file,
    published_keys_file,
    rotate_data_keys_recorded,
    rotate_kek_recorded,
    shred_patient,
)
from phivault.store.base import HistoryQuery
from phivault.store.factory import open_store
from phivault.vault import KEYS_FILE, Vault, commit_kek, is_initialized, key_source

CTX = Context(actor="cli:keys")
NEW_PASSPHRASE_ENV = "PHIVAULT_NEW_PASSPHRASE"  # noqa: S105 (a variable name)


@click.group("keys")
def keys() -> None:
    """Rotate keys and crypto-shred patients."""


def _new_source(new_key_file: Path | None, generate: Path | None) -> KeySource | None:
    passphrase = os.environ.get(NEW_PASSPHRASE_ENV) or None
    if sum(x is not None for x in (new_key_file, generate, passphrase)) > 1:
        raise click.UsageError(
            f"give one new key: --new-key-file, --generate-new-key-file or {NEW_PASSPHRASE_ENV}"
        )
    if generate is not None:
        generate.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_key_file(generate)  # refuses to overwrite an existing file
        click.echo(
            f"created key file {generate} (mode 0600): it is the only copy of the new key; "
            "keep it away from the data directory and its backups"
        )
        return KeyFileKeySource(generate)
    if new_key_file is not None:
        return KeyFileKeySource(new_key_file)
    if passphrase is not None:
        return PassphraseKeySource(passphrase)
    return None


def _codec(vault: Vault) -> KeyRingCodec:
    codec = vault.service.codec
    if not isinstance(codec, KeyRingCodec):
        raise ConfigError("this data directory is not encrypted")
    return codec


@keys.command("rotate")
@data_option
@key_file_option
@db_option
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Key file of the new KEK (or {NEW_PASSPHRASE_ENV} for a new passphrase).",
)
@click.option(
    "--generate-new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Create a new random key file here and rotate to it.",
)
@click.option(
    "--data-keys",
    is_flag=True,
    help="Re-encrypt every stored version under a new generation of data keys.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 3600),
    default=DEFAULT_GRACE_SECONDS,
    show_default=True,
    help="Seconds given to running servers to follow a new KEK or data-key generation.",
)
@handle_errors
def rotate(
    data: Path | None,
    key_file: Path | None,
    db: str | None,
    new_key_file: Path | None,
    generate_new_key_file: Path | None,
    data_keys: bool,
    grace: float,
) -> None:
    """Rotate the key-encryption key (rewraps data keys), and/or the data keys
    (re-encrypts bodies), online. The current key comes from PHIVAULT_PASSPHRASE or
    --key-file."""
    data_dir = resolve_data_dir(data)
    vault = open_from_cli(data_dir, key_file, db_url=db)  # a wrong current key stops here
    try:
        source = _new_source(new_key_file, generate_new_key_file)
        ring = _codec(vault).keyring
        pending = pending_transition(ring)
        if source is None and pending is not None and pending.to_kek == ring.kek_id:
            finish_pending(ring)
            click.echo("finished the interrupted key-encryption key rotation")
        elif source is not None:
            new_kek, params, check = new_kek_for_rotation(ring, source)
            result = rotate_kek_recorded(
                ring,
                vault.audit,
                CTX,
                new_kek,
                params,
                check,
                commit=lambda p, c: _commit_and_publish(vault, data_dir, p, c),
                grace=grace,
            )
            click.echo(
                f"rotated the key-encryption key {result.old_kek} -> {result.new_kek}: "
                f"{result.rewrapped} keys rewrapped. Only the new key opens this data "
                "directory now; restart servers with it when convenient."
            )
        elif not data_keys:
            raise click.UsageError(
                "give the new key (--new-key-file, --generate-new-key-file or "
                f"{NEW_PASSPHRASE_ENV}), or --data-keys"
            )
        if data_keys:
            _rotate_data_keys(vault, grace)
    finally:
        vault.close()


def _commit_and_publish(vault: Vault, data_dir: Path, params: KekParams, check: bytes) -> None:
    """The new keys.json here, and in the database for the other hosts (`keys sync`)."""
    commit_kek(data_dir, params, check)
    publish_keys_file(vault.store, (data_dir / KEYS_FILE).read_bytes())


@keys.command("sync")
@data_option
@key_file_option
@db_option
@handle_errors
def sync(data: Path | None, key_file: Path | None, db: str | None) -> None:
    """Take the keys.json that a rotation on another host published in the shared
    database (PostgreSQL with several servers). The key that opens it must be given
    (PHIVAULT_PASSPHRASE or --key-file): a wrong one changes nothing."""
    data_dir = resolve_data_dir(data)
    if not is_initialized(data_dir):
        raise ConfigError("not a phivault data directory (run `phivault init` first)")
    store = open_store(data_dir, db or load_settings(data_dir).db_url)
    try:
        published = published_keys_file(store)
    finally:
        store.close()
    if published is None:
        raise ConfigError("no rotation has published a keys.json in this database")
    record = json.loads(published)
    params = KekParams.from_json(json.dumps(record["kek"]))
    check = base64.b64decode(record["key_check"], validate=True)
    unlock_kek(key_source(key_file=key_file), params, check)  # a wrong key: stop here
    commit_kek(data_dir, params, check)
    vault = open_from_cli(data_dir, key_file, db_url=db)  # proves the directory opens now
    vault.close()
    click.echo("keys.json updated from the database: this host opens with the new key")


def _rotate_data_keys(vault: Vault, grace: float) -> None:
    total = vault.store.history_total(HistoryQuery())
    with click.progressbar(length=max(total, 1), label="re-encrypting versions") as bar:
        shown = 0

        def progress(done: int, _total: int) -> None:
            nonlocal shown
            bar.update(done - shown)
            shown = done

        report = rotate_data_keys_recorded(
            vault.store, _codec(vault), vault.audit, CTX, grace=grace, progress=progress
        )
    click.echo(
        f"data keys now at generation {report.generation}: {report.resealed} versions "
        f"re-encrypted, {report.shredded} shredded left alone, {report.failed} failed"
    )
    if report.failed:
        click.echo(
            "some stored versions failed authentication (see the phivault.security log)",
            err=True,
        )
        raise SystemExit(65)


@keys.command("shred")
@data_option
@key_file_option
@db_option
@click.option("--patient", "patient_id", required=True, help="Id of the Patient resource.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def shred(
    data: Path | None, key_file: Path | None, db: str | None, patient_id: str, yes: bool
) -> None:
    """Destroy one patient's data key: every version of every resource in the patient's
    compartment becomes unreadable for good, in backups too."""
    if not yes:
        click.confirm(
            "This destroys every record of this patient for good, backups included. Continue?",
            abort=True,
        )
    vault = open_from_cli(data, key_file, db_url=db)
    try:
        result = shred_patient(vault.store, _codec(vault).keyring, vault.audit, CTX, patient_id)
    finally:
        vault.close()
    word = "was already shredded; index rows checked" if result.already else "shredded"
    click.echo(f"patient compartment {word}: {result.resources} resources unreadable")


@keys.command("status")
@data_option
@key_file_option
@db_option
@handle_errors
def status(data: Path | None, key_file: Path | None, db: str | None) -> None:
    """Show the KEK in use, the data-key generation and any rotation under way."""
    vault = open_from_cli(data, key_file, db_url=db)
    try:
        ring = _codec(vault).keyring
        state = ring.refresh(force=True)
        pending = pending_transition(ring)
    finally:
        vault.close()
    click.echo(f"key-encryption key: {state.kek or ring.kek_id}")
    click.echo(
        f"data-key generation: {state.generation}" + (" (re-encrypting)" if state.rekey else "")
    )
    if pending is not None:
        click.echo(f"KEK rotation under way: {pending.from_kek} -> {pending.to_kek}")
