"""The append-only audit log: every access becomes a leaf of an RFC 9162 Merkle tree.

Writes: the entry is appended inside the data write's own transaction, so the data and
its audit entry commit together or not at all. A transaction that writes many resources
(a transaction Bundle, an import batch) appends them all at its end, in one append, inside
`AuditLog.batched(tx)`.
Reads: the caller blocks until its entry is durable; a single appender thread commits the
entries of all concurrent readers in one transaction (group commit), so one fsync covers
many requests. If the log cannot be written, `record` raises AuditUnavailable and the
service releases nothing (fail closed).
An async server can take the wait off its worker threads: inside `AuditLog.deferred()`,
`record` queues the entry and returns at once, and the scope's owner awaits
`Deferred.durable()` before it releases anything (the appender then resolves every waiting
coroutine of a group commit with one wake-up of the event loop).
The same thread signs a checkpoint (signed tree head) once a second while the log grows,
and once more on close, so that at most about a second of entries is ever unsigned.
The append itself (leaves, nodes, seal, the cached right edge) is audit/append.py; when a
group commit waits to fill is audit/fill_pace.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator

from phivault.audit.append import RightEdge, StaleEdge, append_entries
from phivault.audit.checkpoint import CheckpointSigner, make_checkpoint, parse_checkpoint
from phivault.audit.entry import (
    ENTRY_FORMAT,
    Pseudonymizer,
    encode_entry,
    encode_fields,
    entry_fields,
    index_row_of,
    now,
)
from phivault.audit.events import AccessEvent, AuditSink
from phivault.audit.fill_pace import FillPace
from phivault.audit.seal import LogSeal
from phivault.errors import AuditUnavailable, PhivaultError, StorageFull
from phivault.store.audit_sql import AuditIndexRow
from phivault.store.base import Store, WriteTx

__all__ = [
    "ENTRY_FORMAT",
    "AuditLog",
    "Deferred",
    "batched",
    "encode_entry",
]

log = logging.getLogger("phivault.audit")

DURABLE_TIMEOUT_S = 10.0
CHECKPOINT_INTERVAL_S = 1.0


class _LoopWaiters:
    """The coroutines of one event loop waiting on one batch, and the one timer that
    refuses them all if the batch is not durable in time (fail closed): one timer per
    batch and loop rather than one `wait_for` task and timer per request."""

    __slots__ = ("futures", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.futures: list[asyncio.Future[None]] = []
        self.timer = loop.call_later(DURABLE_TIMEOUT_S, self.expire)

    def expire(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(AuditUnavailable())

    def resolve(self) -> None:
        self.timer.cancel()
        for future in self.futures:
            if not future.done():
                future.set_result(None)


class _Batch:
    """The entries of one group commit and, per waiting caller, how to wake it.

    A held lock per blocked thread, released by the appender, rather than one shared
    Event: waking hundreds of waiters of one Event makes them all queue again for its
    internal lock, which costs more than the commit itself. Coroutines waiting on the
    batch are resolved with one call per event loop.
    """

    __slots__ = ("done", "entries", "failed", "futures", "rows", "waiters")

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.rows: list[AuditIndexRow] = []
        self.waiters: list[threading.Lock] = []
        self.futures: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}
        self.failed = False
        self.done = False

    def release(self) -> None:
        """Wake every waiter; the caller has set `done` under the log's lock, so no
        waiter registers after this list is read."""
        for waiter in self.waiters:
            waiter.release()
        for loop, waiting in self.futures.items():
            try:
                loop.call_soon_threadsafe(waiting.resolve)
            except RuntimeError:
                pass  # the loop is closed: nobody is left to answer


def batched(sink: AuditSink, tx: WriteTx) -> contextlib.AbstractContextManager[None]:
    """`AuditLog.batched(tx)` for the log; any other sink records each entry as it comes."""
    if isinstance(sink, AuditLog):
        return sink.batched(tx)
    return contextlib.nullcontext()


class _TxEntries:
    """Entries recorded in one write transaction inside `AuditLog.batched`."""

    __slots__ = ("entries", "rows", "tx")

    def __init__(self, tx: WriteTx) -> None:
        self.tx = tx
        self.entries: list[bytes] = []
        self.rows: list[AuditIndexRow] = []


class Deferred:
    """Entries recorded inside `AuditLog.deferred()`: nothing they cover may be released
    before `durable()` (or `wait()`) returned without raising."""

    __slots__ = ("_batches", "_log")

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self._batches: list[_Batch] = []

    def add(self, batch: _Batch) -> None:
        if not any(b is batch for b in self._batches):
            self._batches.append(batch)

    async def durable(self) -> None:
        """Wait, without blocking the event loop, until every entry is committed; raise
        AuditUnavailable if one failed or the wait timed out (fail closed)."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []
        with self._log._lock:
            for batch in self._batches:
                if not batch.done:
                    future: asyncio.Future[None] = loop.create_future()
                    waiting = batch.futures.get(loop)
                    if waiting is None:
                        waiting = batch.futures[loop] = _LoopWaiters(loop)
                    waiting.futures.append(future)
                    pending.append(future)
        try:
            for future in pending:
                await future  # AuditUnavailable once the batch's timer expired
        except BaseException:
            for future in pending:  # nothing left behind to complain unretrieved
                if not future.cancel() and not future.cancelled():
                    future.exception()
            raise
        self._check()

    def wait(self) -> None:
        """The blocking form of `durable` (for callers outside an event loop)."""
        for batch in self._batches:
            self._log._wait(batch)
        self._check()

    def _check(self) -> None:
        if any(batch.failed for batch in self._batches):
            raise AuditUnavailable()


class AuditLog:
    """AuditSink over the store's audit tables, with the checkpoint signer."""

    def __init__(
        self,
        store: Store,
        pseudonymize: Pseudonymizer,
        signer: CheckpointSigner | None = None,
        *,
        checkpoint_interval: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self.store = store
        self.stamp = now  # the entry time source; the detection eval sets a simulated clock
        self.signer = signer
        self.seal = LogSeal.of(signer)
        self._pseudonymize = pseudonymize
        self._interval = checkpoint_interval
        self._edge = RightEdge()
        self._lock = threading.Lock()
        self._open = _Batch()
        self._wakeup = threading.Event()
        self._filled = threading.Event()
        self._expect = 0  # callers the last commit released: they are about to queue again
        self._pace = FillPace()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._checkpointed_size = 0
        self._deferred: contextvars.ContextVar[Deferred | None] = contextvars.ContextVar(
            "phivault_audit_deferred", default=None
        )
        self._in_tx: contextvars.ContextVar[_TxEntries | None] = contextvars.ContextVar(
            "phivault_audit_in_tx", default=None
        )

    def pseudonymize(self, compartment: str) -> str:
        """The keyed pseudonym the log uses for a patient compartment ("Patient/<id>")."""
        return self._pseudonymize(compartment)

    # -- recording --------------------------------------------------------------------------
    def record(self, event: AccessEvent, tx: WriteTx | None = None) -> None:
        fields = entry_fields(event, self.stamp(), self._pseudonymize)
        entry, row = encode_fields(fields), index_row_of(fields)
        self._ensure_thread()
        if tx is not None:
            pending = self._in_tx.get()
            if pending is not None and pending.tx is tx:
                pending.entries.append(entry)  # appended when the batched block ends
                pending.rows.append(row)
                return
            self._append_in(tx, [entry], [row])
            return
        with self._lock:
            if self._closed:
                raise AuditUnavailable()
            batch = self._open
            batch.entries.append(entry)
            batch.rows.append(row)
            first = len(batch.entries) == 1
            self._pace.arrived(time.monotonic(), first)
            if first:
                self._wakeup.set()
            if len(batch.entries) >= self._expect:
                self._filled.set()
        deferred = self._deferred.get()
        if deferred is not None:
            deferred.add(batch)  # the scope's owner waits before releasing anything
            return
        self._wait(batch)
        if batch.failed:
            raise AuditUnavailable()

    def _append_in(self, tx: WriteTx, entries: list[bytes], rows: list[AuditIndexRow]) -> None:
        try:
            # The appender's edge, if it is still the log's: then neither the tree's edge
            # nor the seal is read again (the log is exactly what the appender committed).
            append_entries(tx, entries, rows, self._edge, self.seal, stage=False)
        except PhivaultError:
            raise
        except Exception:
            raise AuditUnavailable() from None

    @contextlib.contextmanager
    def batched(self, tx: WriteTx) -> Iterator[None]:
        """Inside the write transaction `tx`: `record(event, tx)` collects its entry, and
        every entry is appended in one go when the block ends without an error (still in
        `tx`, so data and entries commit together). One read of the tree's edge, one seal
        and a few multi-row INSERTs for the whole transaction instead of per resource.
        A block that raises appends nothing: its transaction is rolled back anyway."""
        pending = _TxEntries(tx)
        token = self._in_tx.set(pending)
        try:
            yield
        finally:
            self._in_tx.reset(token)
        if pending.entries:
            self._append_in(tx, pending.entries, pending.rows)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[Deferred]:
        """A scope in which `record` (without a transaction) queues the entry and returns
        at once. Whoever opens it owns the fail-closed rule: await `durable()` (or call
        `wait()`) and release nothing the entries cover before it returns."""
        scope = Deferred(self)
        token = self._deferred.set(scope)
        try:
            yield scope
        finally:
            self._deferred.reset(token)

    def _wait(self, batch: _Batch) -> None:
        durable = threading.Lock()
        durable.acquire()
        with self._lock:
            if batch.done:
                return
            batch.waiters.append(durable)
        # Fail closed: no answer within the timeout is a refusal, even if the entry is
        # committed later (an entry for an access that did not happen is harmless).
        if not durable.acquire(timeout=DURABLE_TIMEOUT_S):
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
        last_checkpoint = time.monotonic()
        while True:
            self._wakeup.wait(self._interval)
            # Under load, the callers the last commit released are queueing again: a
            # moment's wait can let one fsync cover them all instead of half of them.
            with self._lock:
                wait = self._pace.wait(self._expect, len(self._open.entries))
                if wait:
                    self._filled.clear()
            if wait:
                self._filled.wait(wait)
            with self._lock:
                batch = self._open
                if batch.entries:
                    self._open = _Batch()
                self._wakeup.clear()
                stop = self._closed
            if batch.entries:
                self._commit(batch)
                with self._lock:
                    # Those just released plus those already waiting: how many to expect.
                    self._expect = (len(batch.entries) + len(self._open.entries)) * 7 // 8
            now = time.monotonic()
            if stop or now - last_checkpoint >= self._interval:
                self._checkpoint_if_grown()
                last_checkpoint = now
            if stop:
                return

    def _commit(self, batch: _Batch) -> None:
        try:
            try:
                self._append(batch)
            except StorageFull:
                # The disk is full: the store's reserve is for exactly this, so reads stay
                # audited (and served) while data writes are refused.
                if not self.store.release_space_reserve():
                    raise
                self._append(batch)
        except Exception as exc:  # any failure: every waiter is refused
            log.error("audit append failed: %s", type(exc).__name__)
            batch.failed = True
        with self._lock:
            batch.done = True
        batch.release()

    def _append(self, batch: _Batch) -> None:
        try:
            try:
                with self.store.write(spare=True) as tx:
                    append_entries(tx, batch.entries, batch.rows, self._edge, self.seal, last=True)
            except StaleEdge:
                self._edge.discard()  # so this attempt reads the tree and checks the seal
                with self.store.write(spare=True) as tx:
                    append_entries(tx, batch.entries, batch.rows, self._edge, self.seal, last=True)
        except BaseException:
            self._edge.discard()
            raise
        self._edge.commit()

    # -- checkpoints ------------------------------------------------------------------------
    def _checkpoint_if_grown(self) -> None:
        if self.signer is None:
            return
        try:
            if self.store.audit_size() > self._checkpointed_size:
                self.checkpoint()
        except Exception as exc:  # the next tick tries again; never kill the appender
            log.warning("audit checkpoint failed: %s", type(exc).__name__)

    def checkpoint(self) -> bytes | None:
        """Sign and store a checkpoint of the current tree (on demand); None if empty."""
        if self.signer is None:
            raise AuditUnavailable("the audit log has no signing key")
        blob = make_checkpoint(self.store, self.signer)
        if blob is not None:
            self._checkpointed_size = parse_checkpoint(blob)[0].size
        return blob

    def close(self) -> None:
        """Commit what is queued, sign a last checkpoint and stop the appender."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wakeup.set()
        if thread is not None:
            thread.join(timeout=DURABLE_TIMEOUT_S)
            self._thread = None
