"""The one storage interface.

The store sees opaque bodies (bytes it never parses: the crypto layer may have encrypted
them) plus index rows. It knows nothing of FHIR semantics, HTTP or keys. Every write goes
through a `WriteTx`, so the service can put the data write and its audit entry in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from phivault.types import IndexRow as IndexRow  # re-exported: the store persists these


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One immutable version of one resource, as stored."""

    rtype: str
    rid: str
    version: int
    last_updated: str  # FHIR instant, UTC
    deleted: bool
    body: bytes | None  # opaque; None for a delete tombstone
    seq: int = 0  # global write order (system history, paging cursors)
    compartment: str | None = None  # patient compartment key, e.g. "Patient/123"
    method: str = "PUT"  # POST, PUT, PATCH or DELETE


@dataclass(frozen=True, slots=True)
class NewVersion:
    rtype: str
    rid: str
    version: int
    last_updated: str
    deleted: bool
    body: bytes | None
    compartment: str | None = None
    index: Sequence[IndexRow] = field(default_factory=tuple)
    method: str = "PUT"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    rtype: str | None = None
    rid: str | None = None
    since: str | None = None  # inclusive lower bound on last_updated
    before_seq: int | None = None  # paging cursor: only versions with seq < before_seq
    count: int = 50


class ReadView(Protocol):
    """Reads. Available outside and inside a write transaction."""

    def current(self, rtype: str, rid: str) -> VersionRecord | None: ...

    def version(self, rtype: str, rid: str, version: int) -> VersionRecord | None: ...

    def history(self, query: HistoryQuery) -> list[VersionRecord]: ...

    def history_total(self, query: HistoryQuery) -> int: ...

    def find_token(
        self, rtype: str, param: str, system: str | None, value: str, limit: int
    ) -> list[str]:
        """Ids of live resources of `rtype` with a token index row (param, system, value).

        `system=None` matches any system; `system=""` matches only values without one.
        """
        ...

    def current_many(self, rtype: str, rids: Sequence[str]) -> list[VersionRecord]: ...

    def audit_size(self) -> int: ...

    def key_get(self, key_id: str) -> bytes | None: ...

    def key_ids(self) -> list[str]: ...

    def audit_entries(self, start: int, stop: int) -> list[tuple[int, bytes]]: ...

    def audit_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    def audit_checkpoints(self, limit: int) -> list[bytes]:
        """Newest first."""
        ...


class WriteTx(ReadView, Protocol):
    """One atomic write transaction: everything commits together or nothing does."""

    def append_version(self, new: NewVersion) -> VersionRecord:
        """Insert a version, move the current pointer, replace the resource's index rows.

        Raises VersionConflict if (rtype, rid, version) already exists: that is how two
        concurrent writers of one version are told apart (exactly one wins).
        """
        ...

    def lock_resource(self, rtype: str, rid: str) -> None:
        """Serialize writers of one resource until the transaction ends."""
        ...

    def lock_audit(self) -> None:
        """Serialize audit appenders until the transaction ends."""
        ...

    def audit_append(
        self, start: int, entries: Sequence[bytes], nodes: dict[tuple[int, int], bytes]
    ) -> None: ...

    def audit_put_checkpoint(self, size: int, checkpoint: bytes) -> None: ...

    def key_put(self, key_id: str, blob: bytes, *, replace: bool) -> None: ...

    def key_delete(self, key_id: str) -> None: ...


class Store(ReadView, Protocol):
    backend: str

    def write(self) -> AbstractContextManager[WriteTx]: ...

    def migrate(self) -> int:
        """Apply pending schema migrations; return the schema version."""
        ...

    def schema_version(self) -> int: ...

    def count_current(self, rtype: str | None = None) -> int: ...

    def iter_current(self, rtype: str | None = None) -> Iterator[VersionRecord]: ...

    def close(self) -> None: ...
