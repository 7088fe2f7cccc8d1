"""What the service tells the audit log about each access."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from phivault.store.base import WriteTx

# DICOM/FHIR AuditEvent outcome codes.
SUCCESS = "0"
MINOR_FAILURE = "4"
SERIOUS_FAILURE = "8"


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One access: who did what to which data, from where, why, and how it ended.

    Carries no PHI: resources are named by type/id/version (ids are server-assigned or
    client-chosen keys, not identity), patients by compartment key, which the audit log
    turns into a keyed pseudonym before writing.
    """

    action: str  # read, vread, search, create, update, patch, delete, history, ...
    outcome: str = SUCCESS
    actor: str = "anonymous"
    client: str | None = None  # network address or client id
    purpose: str | None = None  # purpose of use, break-glass reason
    rtype: str | None = None
    rid: str | None = None
    version: int | None = None
    compartment: str | None = None
    query: tuple[tuple[str, str], ...] = ()  # search parameters; the log keeps values keyed-hashed
    result_ids: tuple[str, ...] = ()  # "Type/id/version" of what was returned
    data_hash: str | None = None  # sha256 of the stored version touched
    detail: str | None = None  # error class name on failure
    extra: dict[str, str] = field(default_factory=dict)


class AuditSink(Protocol):
    def record(self, event: AccessEvent, tx: WriteTx | None = None) -> None:
        """Make the event durable before returning.

        With `tx`, the entry joins that write transaction (data and audit commit together);
        without, it is committed on its own (group-committed with concurrent requests).
        Raises AuditUnavailable if it cannot be made durable: callers must then not
        release any data (fail closed).
        """
        ...
