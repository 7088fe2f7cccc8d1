"""The bytes of one audit entry (a Merkle leaf) and the index row derived from them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from phivault.audit.events import AccessEvent
from phivault.errors import IntegrityError
from phivault.store.audit_sql import AuditIndexRow

ENTRY_FORMAT = 1
REQUIRED_FIELDS = ("time", "action", "outcome", "actor")
WRITE_ACTIONS = frozenset({"create", "update", "patch", "delete"})
# A version's body re-encrypted under a new data-key generation: its entry names the
# version, the new `data_sha256` and the old one (`extra.from`); audit/verify.py follows it.
REKEY = "rekey"

Pseudonymizer = Callable[[str], str]


def entry_fields(event: AccessEvent, when: str, pseudonymize: Pseudonymizer) -> dict[str, Any]:
    """The fields of one entry; absent values are left out rather than written as null."""
    entry: dict[str, Any] = {
        "v": ENTRY_FORMAT,
        "time": when,
        "action": event.action,
        "outcome": event.outcome,
        "actor": event.actor,
    }
    if event.client:
        entry["client"] = event.client
    if event.purpose:
        entry["purpose"] = event.purpose
    if event.rtype:
        entry["type"] = event.rtype
    if event.rid:
        entry["id"] = event.rid
    if event.version is not None:
        entry["version"] = event.version
    if event.compartment:
        # The patient is named only by a keyed pseudonym: the log itself holds no identity.
        entry["patient"] = pseudonymize(event.compartment)
    if event.query:
        entry["query"] = [list(t) for t in event.query]
    if event.result_ids:
        entry["results"] = list(event.result_ids)
    if event.data_hash:
        entry["data_sha256"] = event.data_hash
    if event.detail:
        entry["detail"] = event.detail
    if event.extra:
        entry["extra"] = dict(event.extra)
    return entry


def encode_fields(fields: Mapping[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, no whitespace. Changing this changes every leaf hash."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def encode_entry(event: AccessEvent, when: str, pseudonymize: Pseudonymizer) -> bytes:
    """The canonical bytes of one entry (the Merkle leaf)."""
    return encode_fields(entry_fields(event, when, pseudonymize))


def index_row_of(entry: Mapping[str, Any]) -> AuditIndexRow:
    """The searchable columns of an entry. The writer and `audit verify` both derive them
    this way, so a row that differs from its entry is always a finding."""
    rtype, rid, patient = entry.get("type"), entry.get("id"), entry.get("patient")
    return AuditIndexRow(
        str(entry["time"]),
        str(entry["action"]),
        str(entry["outcome"]),
        str(entry["actor"]),
        rtype if type(rtype) is str else None,
        rid if type(rid) is str else None,
        patient if type(patient) is str else None,
    )


_stamp: tuple[int, str] = (-1, "")


def now() -> str:
    """`fhir.resources.now_instant()` (UTC, milliseconds, "Z"), formatted faster: one is
    stamped on every audit entry, on the durable append path."""
    global _stamp
    moment = time.time()
    second = int(moment)
    cached = _stamp  # one read: a second and its text always belong together
    if cached[0] != second:
        cached = _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((moment - second) * 1000):03d}Z"


def decode_entry(raw: bytes) -> dict[str, Any]:
    """Parse a stored entry; `IntegrityError` unless it is an entry object."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise IntegrityError("an audit entry is not valid JSON") from None
    if not isinstance(entry, dict) or entry.get("v") != ENTRY_FORMAT:
        raise IntegrityError("an audit entry has an unknown format")
    for name in REQUIRED_FIELDS:
        if not isinstance(entry.get(name), str):
            raise IntegrityError("an audit entry lacks a required field")
    return entry
