"""Key administration: the order of the steps of a shred or a rotation, and their audit.

Thin CLI commands (cli/keys_cmd.py) call these; the crypto work itself is in
crypto/keyring.py and crypto/rotation.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    and in every backup (they hold only ciphertext). Idempotent: a second run finds the key
    gone and removes any index rows written meanwhile.
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
        codec.keyring, codec, StoreBodies(store), grace=grace, progress=progress
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
    """The store's versions as `crypto.rotation.VersionBodies`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def count(self) -> int:
        return self._store.history_total(HistoryQuery())

    def after(self, seq: int, limit: int) -> Sequence[VersionRecord]:
        return self._store.version_bodies(seq, limit)

    def replace(self, changes: Sequence[tuple[int, bytes, bytes]]) -> int:
        with self._store.write() as tx:
            return sum(tx.replace_body(seq, old, new) for seq, old, new in changes)
