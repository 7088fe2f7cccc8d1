"""The one storage interface.

The store sees opaque bodies (bytes it never parses: the crypto layer may have encrypted
them) plus index rows. It knows nothing of FHIR semantics, HTTP or keys. Every write goes
through a `WriteTx`, so the service can put the data write and its audit entry in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from phivault.store.audit_scan import AuditScanSource
from phivault.store.audit_sql import AuditIndexRow, AuditQuery
from phivault.store.compartment_sql import CompartmentQuery
from phivault.store.export_jobs import ExportJobRecord
from phivault.types import IndexRow as IndexRow  # re-exported: the store persists these

if TYPE_CHECKING:  # search_spec imports VersionRecord from here
    from phivault.store.search_spec import Reference, SearchPage, SearchSpec


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
class ReadAhead:
    """What a read by id needs from a networked store, read in one round trip where the
    request's token is checked: the access cache epochs, the resource's current version
    (None: not known) and wrapped data-key rows that may open its body (key row id ->
    blob, read from the committed store with the version)."""

    rtype: str
    rid: str
    epochs: dict[str, int]
    record: VersionRecord | None
    wrapped: dict[str, bytes]


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

    def key_get_many(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored blobs of those of `key_ids` that exist, in one read."""
        ...

    def key_ids(self) -> list[str]: ...

    def audit_entries(self, start: int, stop: int) -> list[tuple[int, bytes]]: ...

    def audit_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    def audit_checkpoints(self, limit: int) -> list[bytes]:
        """Newest first."""
        ...

    def audit_all_checkpoints(self) -> list[tuple[int, bytes]]:
        """(size, checkpoint) of every stored checkpoint, oldest first."""
        ...

    def audit_nodes_range(self, level: int, start: int, stop: int) -> list[tuple[int, bytes]]:
        """(index, hash) of the stored nodes of one level with start <= index < stop."""
        ...

    def audit_rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """(index, entry, time, action, outcome, actor, rtype, rid, patient) of entries
        start <= index < stop, in order: an entry with its derived search columns."""
        ...

    def audit_seal(self) -> tuple[int, bytes] | None:
        """(size, mac) of the audit log's seal (audit/seal.py), None before the first."""
        ...

    def audit_time_span(self, times: Sequence[tuple[str, str]]) -> tuple[int, int] | None:
        """(smallest, largest) idx of the entries whose time meets `times`; None if none."""
        ...

    def audit_search(self, query: AuditQuery) -> list[tuple[int, bytes]]:
        """(index, entry) of the entries the derived index matches, newest first."""
        ...

    def compartment(self, query: CompartmentQuery) -> list[VersionRecord]:
        """Current live versions in one patient compartment, ordered by (rtype, rid)."""
        ...

    def compartment_total(self, query: CompartmentQuery) -> int: ...

    def export_job(self, job_id: str) -> ExportJobRecord | None: ...

    def export_jobs_expired(self, now: str) -> list[str]: ...

    def export_jobs_active(self) -> int: ...

    # -- search (store/search_spec.py describes the predicates) ----------------------------
    def search(self, spec: SearchSpec) -> SearchPage:
        """One page of current live resources matching `spec`, in its sort order."""
        ...

    def search_count(self, spec: SearchSpec, cap: int | None = None) -> int:
        """How many resources match (counting stops at `cap` when given)."""
        ...

    def references_from(
        self,
        rtype: str,
        rids: Sequence[str],
        params: Sequence[str] | None,
        *,
        limit: int | None = None,
    ) -> list[Reference]:
        """Local typed references held by these resources (all reference params if None)."""
        ...

    def references_to(
        self,
        source: str,
        params: Sequence[str] | None,
        target_type: str,
        targets: Sequence[str],
        *,
        limit: int | None = None,
    ) -> list[Reference]:
        """References of live `source` resources that point at these targets."""
        ...

    # -- key management (data-key rotation) -------------------------------------------------
    def version_bodies(self, after_seq: int, limit: int) -> list[VersionRecord]:
        """Versions that have a body (any version, current or not, of any compartment)
        with seq > after_seq, in seq order: the data-key rotation walks the table."""
        ...


class WriteTx(ReadView, Protocol):
    """One atomic write transaction: everything commits together or nothing does."""

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Call `fn` once what the caller wrote in this transaction has committed (it is
        durable), and never if it is rolled back: for in-process caches that may only
        learn a committed state. `fn` must be quick and must not raise."""
        ...

    def append_version(self, new: NewVersion) -> VersionRecord:
        """Insert a version, move the current pointer, replace the resource's index rows.

        Raises VersionConflict if (rtype, rid, version) already exists: that is how two
        concurrent writers of one version are told apart (exactly one wins).
        """
        ...

    def append_versions(self, news: Sequence[NewVersion]) -> list[VersionRecord]:
        """`append_version` of each, in order, for resources of distinct identities (bulk
        import): a backend may use fewer statements."""
        ...

    def lock_resource(self, rtype: str, rid: str) -> None:
        """Serialize writers of one resource until the transaction ends."""
        ...

    def lock_audit(self) -> None:
        """Serialize audit appenders until the transaction ends."""
        ...

    def audit_claim(self) -> int:
        """Take the audit lock (as `lock_audit`) and return the log's size under it: one
        round trip where the backend can (PostgreSQL pipelines the two statements)."""
        ...

    def audit_append(
        self,
        start: int,
        entries: Sequence[bytes],
        nodes: dict[tuple[int, int], bytes],
        index: Sequence[AuditIndexRow] = (),
        seal: tuple[int, bytes] | None = None,
    ) -> None:
        """Insert entries from `start`, their new Merkle nodes and their derived index rows
        (one per entry, or none), and with `seal` (size, mac) replace the log's seal, all in
        as few statements as the backend allows (PostgreSQL: one)."""
        ...

    def audit_claim_append(
        self,
        expected: int,
        entries: Sequence[bytes],
        nodes: dict[tuple[int, int], bytes],
        index: Sequence[AuditIndexRow] = (),
        seal: tuple[int, bytes] | None = None,
        *,
        commit: bool = False,
    ) -> int:
        """`audit_claim`, then `audit_append(expected, ...)`, in one round trip where the
        backend can. Returns the size found under the lock (-1 if unknown); unless it is
        `expected`, the caller must abandon the transaction (it may hold misplaced rows).
        `commit`: nothing else follows in this transaction; a backend may commit it in the
        same round trip, and then does so only if the size was `expected` (PostgreSQL).
        The rows are durable when this returns `expected` on such a backend, else when
        the write block ends, as always."""
        ...

    def audit_put_checkpoint(self, size: int, checkpoint: bytes) -> None: ...

    def audit_put_seal(self, size: int, mac: bytes) -> None:
        """Replace the audit log's seal (one row)."""
        ...

    def audit_terms_claim(self) -> int:
        """How far the AuditEvent search terms reach, locking that mark until the
        transaction ends (one indexer at a time; audit/terms.py)."""
        ...

    def audit_terms_put(self, rows: Sequence[tuple[bytes, int]], upto: int, new: int) -> None:
        """Insert (term, idx) rows and move the mark from `upto` to `new`."""
        ...

    def key_put(self, key_id: str, blob: bytes, *, replace: bool) -> bool:
        """Store a wrapped key. `replace=False` keeps a blob already stored under the id;
        returns whether this call's blob was stored."""
        ...

    def key_delete(self, key_id: str) -> None: ...

    def key_lock(self, key_id: str, *, exclusive: bool) -> bytes | None:
        """Lock one wrapped-key row until the transaction ends (PostgreSQL: FOR SHARE or
        FOR UPDATE; SQLite: nothing more, its write transaction excludes every other
        writer) and return its blob as locked (None: no such row)."""
        ...

    def key_add_if(self, lock_id: str, expected: bytes | None, key_id: str, blob: bytes) -> bool:
        """`key_lock(lock_id, exclusive=False)`, then `key_put(key_id, blob, replace=False)`
        only if the locked row holds `expected` (None: no such row), in one statement
        where the backend allows it. True if `blob` was stored; False changed nothing but
        the lock."""
        ...

    def export_job_insert(self, job: ExportJobRecord) -> None: ...

    def export_job_update(self, job: ExportJobRecord) -> bool:
        """Replace a job's state; False if the job no longer exists (it was cancelled)."""
        ...

    def export_job_delete(self, job_id: str) -> None: ...

    def replace_index(self, rtype: str, rid: str, rows: Sequence[IndexRow]) -> None:
        """Replace the index rows of the current version of one resource (reindex)."""
        ...

    def replace_body(self, seq: int, old: bytes, new: bytes) -> bool:
        """Swap one version's stored body if it is still `old` (data-key rotation
        re-encrypts in place); False if it changed meanwhile."""
        ...

    def delete_compartment_index(self, compartment: str) -> int:
        """Remove every index row of every resource whose current version is in the
        compartment (e.g. "Patient/123"), before that patient's key is shredded.
        Returns how many resources were concerned."""
        ...


class Store(ReadView, Protocol):
    backend: str

    def write(self, *, spare: bool = False) -> AbstractContextManager[WriteTx]:
        """One write transaction. `spare`: the audit log's own appends, which may use
        space held back for them when the disk is full (see `release_space_reserve`)."""
        ...

    def release_space_reserve(self) -> bool:
        """Give the space held back for audit appends to them (the store is full);
        True if there was any. Data writes are refused until the reserve is back."""
        ...

    def refresh_statistics(self) -> None:
        """After a bulk import: give the query planner statistics of what was loaded."""
        ...

    def migrate(self) -> int:
        """Apply pending schema migrations; return the schema version."""
        ...

    def schema_version(self) -> int: ...

    def count_current(self, rtype: str | None = None) -> int: ...

    def iter_current(self, rtype: str | None = None) -> Iterator[VersionRecord]: ...

    def audit_scan_source(self) -> AuditScanSource | None:
        """How another process opens its own read connection to the audit tables
        (`audit verify` checks pages of the log in parallel); None if it cannot."""
        ...

    def close(self) -> None: ...
