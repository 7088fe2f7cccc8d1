"""The append-only audit log: every access becomes a leaf of an RFC 9162 Merkle tree.

Writes: the entry is appended inside the data write's own transaction, so the data and
its audit entry commit together or not at all.
Reads: the caller blocks until its entry is durable; a single appender thread commits the
entries of all concurrent readers in one transaction (group commit), so one fsync covers
many requests. If the log cannot be written, `record` raises AuditUnavailable and the
service releases nothing (fail closed).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from phivault.audit.events import AccessEvent
from phivault.audit.merkle import leaf_hash, new_nodes_for_append
from phivault.errors import AuditUnavailable, PhivaultError
from phivault.fhir.resources import now_instant
from phivault.store.base import Store, WriteTx

log = logging.getLogger("phivault.audit")

ENTRY_FORMAT = 1
MAX_BATCH = 2000
DURABLE_TIMEOUT_S = 10.0

Pseudonymizer = Callable[[str], str]


def encode_entry(event: AccessEvent, when: str, pseudonymize: Pseudonymizer) -> bytes:
    """The canonical bytes of one entry (the Merkle leaf). Sorted keys, no whitespace."""
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
        # Search values may identify a person (a name, an MRN): only a keyed hash is kept,
        # so the log shows that two searches asked the same thing, never what.
        entry["query"] = [[name, pseudonymize(f"{name}={value}")] for name, value in event.query]
    if event.result_ids:
        entry["results"] = list(event.result_ids)
    if event.data_hash:
        entry["data_sha256"] = event.data_hash
    if event.detail:
        entry["detail"] = event.detail
    if event.extra:
        entry["extra"] = dict(event.extra)
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


def append_entries(tx: WriteTx, entries: Sequence[bytes]) -> int:
    """Append leaves and every Merkle node they complete, in the caller's transaction.

    Returns the index of the first entry.
    """
    tx.lock_audit()
    size = tx.audit_size()
    nodes = new_nodes_for_append(size, [leaf_hash(e) for e in entries], tx.audit_nodes)
    tx.audit_append(size, entries, nodes)
    return size


@dataclass(slots=True)
class _Pending:
    entry: bytes
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


class AuditLog:
    """AuditSink over the store's audit tables."""

    def __init__(self, store: Store, pseudonymize: Pseudonymizer) -> None:
        self._store = store
        self._pseudonymize = pseudonymize
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def record(self, event: AccessEvent, tx: WriteTx | None = None) -> None:
        entry = encode_entry(event, now_instant(), self._pseudonymize)
        if tx is not None:
            try:
                append_entries(tx, [entry])
            except PhivaultError:
                raise
            except Exception:
                raise AuditUnavailable() from None
            return
        pending = _Pending(entry)
        self._ensure_thread()
        self._queue.put(pending)
        if not pending.done.wait(DURABLE_TIMEOUT_S) or pending.failed:
            raise AuditUnavailable()

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._closed:
                raise AuditUnavailable()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="phivault-audit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._store.write() as tx:
                append_entries(tx, [p.entry for p in batch])
        except Exception as exc:  # any failure: every waiter is refused
            log.error("audit append failed: %s", type(exc).__name__)
            for pending in batch:
                pending.failed = True
        for pending in batch:
            pending.done.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=DURABLE_TIMEOUT_S)
