"""Opening a data directory: settings, keys, store, audit log and service, wired once.

A data directory holds `phivault.toml` (settings), `keys.json` (the KEK source's
non-secret parameters and a key check) and, on the embedded default, `phivault.db`.
The key-encryption key itself is never written here: it comes from a passphrase
(PHIVAULT_PASSPHRASE), a key file kept elsewhere (--key-file / PHIVAULT_KEY_FILE) or a
key-source plug-in.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phivault.audit.checkpoint import CheckpointSigner
from phivault.audit.log import AuditLog
from phivault.backup.integrity import check_audit_tip, check_files
from phivault.config import CONFIG_FILE, Settings, load_settings
from phivault.crypto.blind_index import BlindIndexPolicy
from phivault.crypto.codec import BodyCodec, KeyRingCodec, PlaintextCodec
from phivault.crypto.kek import (
    KekParams,
    KeyFileKeySource,
    KeySource,
    PassphraseKeySource,
    initialize_kek,
    unlock_kek,
)
from phivault.crypto.keyring import KeyRing
from phivault.crypto.keystate import KeyState
from phivault.crypto.pseudonym import Pseudonyms
from phivault.errors import ConfigError, KeyMaterialError
from phivault.fhir.indexing import IndexPolicy, PlainIndexPolicy
from phivault.service import Service
from phivault.store.base import Store
from phivault.store.factory import open_store
from phivault.store.keys import StoreWrappedKeys

KEYS_FILE = "keys.json"
KEYS_FORMAT = 1


def key_source(
    passphrase: str | None = None, key_file: str | os.PathLike[str] | None = None
) -> KeySource:
    """The KEK source named on the command line, else by the environment. Never a default."""
    key_file = key_file or os.environ.get("PHIVAULT_KEY_FILE") or None
    passphrase = passphrase or os.environ.get("PHIVAULT_PASSPHRASE") or None
    if key_file and passphrase:
        raise ConfigError("give either a passphrase or a key file, not both")
    if key_file:
        return KeyFileKeySource(key_file)
    if passphrase:
        return PassphraseKeySource(passphrase)
    raise KeyMaterialError(
        "no key: set PHIVAULT_PASSPHRASE or pass --key-file (phivault never uses a default key)"
    )


def is_initialized(data_dir: Path) -> bool:
    return (data_dir / KEYS_FILE).exists()


def init_data_dir(
    data_dir: Path, source: KeySource, *, db_url: str | None = None, encryption: bool = True
) -> None:
    """Create a data directory: settings, KEK parameters, schema, key ring, audit log.

    `encryption=False` is for tests and benchmarks only: bodies and search values are then
    stored in clear, keys.json says so, and an encrypted open (what `serve` does) refuses
    the directory."""
    if is_initialized(data_dir):
        raise ConfigError("the data directory is already initialised")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    kek, params, check = initialize_kek(source)
    config = data_dir / CONFIG_FILE
    if not config.exists():
        lines = ["# phivault settings; see docs/CONFIGURATION.md", "[server]"]
        if db_url:
            lines.append(f"db_url = {json.dumps(db_url)}")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = open_store(data_dir, db_url)
    try:
        keyring = KeyRing(kek, StoreWrappedKeys(store))
        # The shared key state names the KEK in use, so that a process still holding a
        # rotated-out KEK is refused instead of creating keys nobody could open later.
        keyring.update_state(lambda _tx, _state: KeyState(kek=kek.key_id).bumped())
        keyring.blind_index_key()  # creates the index root key (and so the signing key)
    finally:
        store.close()
    _write_keys_file(data_dir, params, check, encryption=encryption)


def commit_kek(data_dir: Path, params: KekParams, check: bytes) -> None:
    """Make a rotated KEK the one that opens this data directory (atomic replace)."""
    _read_keys_file(data_dir)  # refuse to write over a damaged or missing keys.json
    _write_keys_file(data_dir, params, check, encryption=_encryption_of(data_dir))


def _write_keys_file(data_dir: Path, params: KekParams, check: bytes, *, encryption: bool) -> None:
    record: dict[str, Any] = {
        "format": KEYS_FORMAT,
        "kek": json.loads(params.to_json()),
        "key_check": base64.b64encode(check).decode(),
    }
    if not encryption:
        record["encryption"] = False  # a test or benchmark directory: never served
    content = json.dumps(record, indent=2)
    path = data_dir / KEYS_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_keys_file(data_dir: Path) -> tuple[KekParams, bytes]:
    path = data_dir / KEYS_FILE
    if not path.exists():
        raise ConfigError("not a phivault data directory (run `phivault init` first)")
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        params = KekParams.from_json(json.dumps(data["kek"]))
        check = base64.b64decode(data["key_check"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise KeyMaterialError("keys.json is damaged") from None
    return params, check


def _encryption_of(data_dir: Path) -> bool:
    try:
        data: Any = json.loads((data_dir / KEYS_FILE).read_text(encoding="utf-8"))
        return data.get("encryption", True) is not False
    except (OSError, ValueError, AttributeError):
        raise KeyMaterialError("keys.json is damaged") from None


@dataclass
class Vault:
    settings: Settings
    store: Store
    keyring: KeyRing
    audit: AuditLog
    service: Service

    def close(self) -> None:
        self.audit.close()
        self.store.close()


def open_vault(
    data_dir: Path,
    source: KeySource,
    *,
    encryption: bool = True,
    checked: str | None = None,
    **overrides: Any,
) -> Vault:
    """Unlock and open a data directory. A wrong key changes nothing and opens nothing.

    `encryption=False` (tests and benchmarks only) stores bodies and search values in
    clear; it opens only a directory initialised that way, and an encrypted open refuses
    such a directory, so `serve` can never run without encryption. `checked`: see
    backup/integrity.py `check_files` (serve's workers, after serve checked the file)."""
    # A damaged directory (ransomware, disk fault) is refused, pointing at `backup restore`.
    check_files(data_dir, overrides.get("db_url"), checked)
    params, check = _read_keys_file(data_dir)
    kek = unlock_kek(source, params, check)
    if _encryption_of(data_dir) != encryption:
        raise ConfigError(
            "this data directory was created with encryption off (tests and benchmarks "
            "only): phivault will not serve it"
            if encryption
            else "this data directory is encrypted; it cannot be opened with encryption off"
        )
    settings = load_settings(data_dir, **overrides)
    store = open_store(data_dir, settings.db_url)
    try:
        keyring = KeyRing(kek, StoreWrappedKeys(store))
        keyring.check_current()  # a KEK rotated out by `keys rotate` is refused here
        pseudonymize = Pseudonyms(keyring.audit_pseudonym_key())
        audit = AuditLog(store, pseudonymize, CheckpointSigner(keyring.audit_signing_seed()))
        check_audit_tip(store, audit.signer.public_key if audit.signer else None)
        codec: BodyCodec = KeyRingCodec(keyring)
        index_policy: IndexPolicy = BlindIndexPolicy(keyring.blind_index_key())
        if not encryption:
            codec, index_policy = PlaintextCodec(), PlainIndexPolicy()
        service = Service(store, audit, codec, index_policy)
    except BaseException:
        store.close()
        raise
    return Vault(settings=settings, store=store, keyring=keyring, audit=audit, service=service)
