"""Work whose answer is held back until every audit entry it made is durable.

A read, a search or `$everything` runs inside the audit log's deferred scope
(`AuditLog.deferred`): its entries are queued for the next group commit and the work
returns at once. `Held.released` then awaits the commit on the event loop (the appender
wakes every request of one group commit at once) and only then hands the answer, or the
work's error, over: fail closed, as `AuditSink.record` is. The work may run in one
place (a worker thread, the event loop) and be released in another (the route).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast

from phivault.audit.events import AuditSink
from phivault.audit.log import AuditLog, Deferred

T = TypeVar("T")


class Held(Generic[T]):
    """The outcome of `held(...)`: the answer or the error, and the audit entries that
    must be durable before either is released."""

    __slots__ = ("_error", "_pending", "_value")

    def __init__(self, pending: Deferred | None, value: T | None, error: Exception | None):
        self._pending = pending
        self._value = value
        self._error = error

    async def released(self) -> T:
        """The answer once its audit entries are durable; AuditUnavailable if they are
        not (nothing is released), else the work's own error, if it raised."""
        if self._pending is not None:
            await self._pending.durable()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)  # set whenever _error is None


def held(audit: AuditSink, work: Callable[[], T]) -> Held[T]:
    """Run `work` (blocking), its audit entries deferred: release with `Held.released`.
    Another sink than the log records each entry before `record` returns (nothing to
    wait for)."""
    if not isinstance(audit, AuditLog):
        try:
            return Held(None, work(), None)
        except Exception as exc:
            return Held(None, None, exc)
    with audit.deferred() as pending:
        try:
            value = work()
        except Exception as exc:  # answered only after its audit entry is durable
            return Held(pending, None, exc)
        return Held(pending, value, None)
