"""Key administration: the order of the steps of a shred or a rotation, and their audit.

Thin CLI commands (cli/keys_cmd.py) call these; the crypto work itself is in
crypto/keyring.py and crypto/rotation.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from phivault.audit.entry import REKEY
from phivault.audit.events import AccessEvent, AuditSink
from phivault.crypto.codec import KeyRingCodec
from phivault.crypto.kek import Kek, KekParams
from phivault.crypto.keyring import KeyRing
from phivault.crypto.keystate import patient_key_id
from phivault.crypto.rotation import (
    DEFAULT_GRACE_SECONDS,
    KekRotation,
    Progress,
    RekeyReport,
    rotate_data_keys,
    rotate_kek,
)
from phivault.errors import NotFound
from phivault.fhir import resources as fhir_types
from phivault.service.core import Context
from phivault.store.base import HistoryQuery, Store, VersionRecord


@dataclass(frozen=True, slots=True)
class ShredResult:
    resources: int  # resources of the compartment whose index rows were removed
    already: bool  # the key had been shredded before


def shred_patient(
    store: Store, keyring: KeyRing, audit: AuditSink, ctx: Context, patient_id: str
) -> ShredResult:
    """Crypto-shred one patient: remove the compartment's index rows, destroy its data
    key (every generation), and record the action (the patient named by pseudonym only).

    Every version of every resource in the compartment becomes unreadable for good, here
    and in every copy of the ciphertext. Backups: the next snapshot holds no trace of the
    key, and once the operator prunes, no key-set does either (backup/keysets.py).
    Idempotent: a second run finds the key gone and removes any index rows written
    meanwhile.
    """
    fhir_types.check_id(patient_id)
    compartment = f"Patient/{patient_id}"
    key_id = patient_key_id(patient_id)
    already = keyring.is_shredded(key_id)
    with store.write() as tx:
        resources = tx.delete_compartment_index(compartment)
    if not already and resources == 0 and not keyring.has_key(key_id):
        raise NotFound("no patient compartment with this id")
    keyring.shred(key_id)
    with store.write() as tx:
        # Again: a server that had not yet dropped its cached key may have indexed a write
        # (its body is unreadable now; its index rows must go too).
        tx.delete_compartment_index(compartment)
        audit.record(
            AccessEvent(
                action="shred",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                compartment=compartment,
                extra={"resources": str(resources), "repeat": str(already).lower()},
            ),
            tx,
        )
    return ShredResult(resources, already)


def rotate_kek_recorded(
    keyring: KeyRing,
    audit: AuditSink,
    ctx: Context,
    new_kek: Kek,
    params: KekParams,
    check: bytes,
    *,
    commit: Callable[[KekParams, bytes], None],
    grace: float = DEFAULT_GRACE_SECONDS,
) -> KekRotation:
    """`crypto.rotation.rotate_kek`, then an audit entry naming both KEK fingerprints."""
    result = rotate_kek(keyring, new_kek, params, check, commit=commit, grace=grace)
    audit.record(
        AccessEvent(
            action="rotate-kek",
            actor=ctx.actor,
            client=ctx.client,
            extra={
                "from": result.old_kek,
                "to": result.new_kek,
                "rewrapped": str(result.rewrapped),
            },
        )
    )
    return result


def rotate_data_keys_recorded(
    store: Store,
    codec: KeyRingCodec,
    audit: AuditSink,
    ctx: Context,
    *,
    grace: float = DEFAULT_GRACE_SECONDS,
    progress: Progress | None = None,
) -> RekeyReport:
    """`crypto.rotation.rotate_data_keys` over the store's versions, then an audit entry."""
    report = rotate_data_keys(
        codec.keyring, codec, StoreBodies(store, audit, ctx), grace=grace, progress=progress
    )
    audit.record(
        AccessEvent(
            action="rotate-data-keys",
            actor=ctx.actor,
            client=ctx.client,
            extra={
                "generation": str(report.generation),
                "resealed": str(report.resealed),
                "failed": str(report.failed),
            },
        )
    )
    return report


class StoreBodies:
    """The store's versions as `crypto.rotation.VersionBodies`.

    Re-encryption changes the stored bytes that write entries hashed (`data_sha256`), so
    each body swapped gets a `rekey` entry in the same transaction, naming the version
    and both hashes: `audit verify` follows a version from its write through every
    re-encryption, and an edit made outside phivault still shows."""

    def __init__(self, store: Store, audit: AuditSink | None = None, ctx: Context | None = None):
        self._store = store
        self._audit = audit
        self._ctx = ctx
        self._rows: dict[int, VersionRecord] = {}

    def count(self) -> int:
        return self._store.history_total(HistoryQuery())

    def after(self, seq: int, limit: int) -> Sequence[VersionRecord]:
        rows = self._store.version_bodies(seq, limit)
        self._rows = {row.seq: row for row in rows}
        return rows

    def replace(self, changes: Sequence[tuple[int, bytes, bytes]]) -> int:
        done = 0
        with self._store.write() as tx:
            for seq, old, new in changes:
                if not tx.replace_body(seq, old, new):
                    continue
                done += 1
                row = self._rows.get(seq)
                if self._audit is not None and row is not None:
                    self._audit.record(self._rekeyed(row, old, new), tx)
        return done

    def _rekeyed(self, row: VersionRecord, old: bytes, new: bytes) -> AccessEvent:
        ctx = self._ctx
        return AccessEvent(
            action=REKEY,
            actor=ctx.actor if ctx else "system:keys",
            client=ctx.client if ctx else None,
            rtype=row.rtype,
            rid=row.rid,
            version=row.version,
            compartment=row.compartment,
            data_hash=hashlib.sha256(new).hexdigest(),
            extra={"from": hashlib.sha256(old).hexdigest()},
        )


# keys.json as last committed by a rotation, in the shared database (not secret: KEK
# parameters and a key check), so every host of one PostgreSQL database can take it with
# `phivault keys sync` instead of having it copied by hand. Not a data key row: the
# key ring never reads, rewraps or shreds it.
PUBLISHED_KEYS_FILE = "keys-file:published"


def publish_keys_file(store: Store, content: bytes) -> None:
    with store.write() as tx:
        tx.key_put(PUBLISHED_KEYS_FILE, content, replace=True)


def published_keys_file(store: Store) -> bytes | None:
    return store.key_get(PUBLISHED_KEYS_FILE)
