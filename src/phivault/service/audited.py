"""Failed writes become failed-access audit entries; AuditEvent is never written.

Successful accesses are recorded by the service itself (in the write's transaction, or
durably before a read is released). A write that fails rolls its transaction back, entry
included, so the failure is recorded here on its own, group-committed like a read.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from phivault.audit.events import MINOR_FAILURE, SERIOUS_FAILURE, SUCCESS, AccessEvent
from phivault.errors import (
    AuditUnavailable,
    BadRequest,
    Forbidden,
    Hidden,
    MethodNotAllowed,
    PhivaultError,
    StoreError,
)
from phivault.fhir import resources as fhir_types

if TYPE_CHECKING:
    from phivault.service.core import Context, Service
    from phivault.store.base import VersionRecord

# AuditEvent is a view derived from the audit log (service/audit_view.py): a stored one
# could contradict the log, so no write path (REST, bundle, patch, import) may store one.
READ_ONLY_TYPES = frozenset({"AuditEvent"})

_F = TypeVar("_F", bound=Callable[..., Any])


def access_event(ctx: Context, action: str, record: VersionRecord) -> AccessEvent:
    """The audit entry of a successful access to one stored version, with the hash of
    the version's stored bytes (what `audit verify` checks the data against)."""
    digest = hashlib.sha256(record.body).hexdigest() if record.body is not None else None
    return AccessEvent(
        action=action,
        outcome=SUCCESS,
        actor=ctx.actor,
        client=ctx.client,
        purpose=ctx.purpose,
        rtype=record.rtype,
        rid=record.rid,
        version=record.version,
        compartment=record.compartment,
        data_hash=digest,
    )


def failure_event(
    ctx: Context,
    action: str,
    rtype: str | None,
    rid: str | None,
    error: PhivaultError,
    outcome: str = MINOR_FAILURE,
) -> AccessEvent:
    """The audit entry of a failed interaction: the error's class name, never its text."""
    return AccessEvent(
        action=action,
        outcome=outcome,
        actor=ctx.actor,
        client=ctx.client,
        purpose=ctx.purpose,
        rtype=rtype,
        rid=rid,
        detail=type(error).__name__,
    )


_scope = threading.local()


def check_writable(rtype: str) -> None:
    if rtype in READ_ONLY_TYPES:
        raise MethodNotAllowed(f"{rtype} is derived from the audit log and cannot be written")


def _is_id(rid: str) -> bool:
    try:
        fhir_types.check_id(rid)
    except BadRequest:
        return False
    return True


def audits_failure(action: str, *, id_arg: bool = False) -> Callable[[_F], _F]:
    """Record a write that fails (validation, conflict, precondition, not found, a
    read-only type) as a failed access: outcome 4, or 8 for a server-side error.

    Decorates Service methods shaped `(self, ctx, rtype, [rid if id_arg], ...)`. Only the
    outermost decorated call in a thread records (a conditional update calls update). Not
    recorded: AuditUnavailable (the log cannot take it), Forbidden and Hidden (the access
    policy's refusals, audited with their reason where they were decided).
    """

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: Service, ctx: Context, rtype: str, *args: Any, **kwargs: Any) -> Any:
            if getattr(_scope, "active", False):
                return method(self, ctx, rtype, *args, **kwargs)
            _scope.active = True
            try:
                check_writable(rtype)  # before validation: the answer is 405, not 422
                return method(self, ctx, rtype, *args, **kwargs)
            except (AuditUnavailable, Forbidden, Hidden):
                raise
            except PhivaultError as exc:
                rid = args[0] if id_arg and args and isinstance(args[0], str) else None
                # Only well-formed names reach the log: the URL is the client's text.
                try:
                    self._audit_failure(
                        ctx,
                        action,
                        rtype if rtype in fhir_types.R4_TYPES else None,
                        rid if rid is not None and _is_id(rid) else None,
                        exc,
                        outcome=SERIOUS_FAILURE if exc.http_status >= 500 else MINOR_FAILURE,
                    )
                except AuditUnavailable:
                    if isinstance(exc, StoreError):
                        # The store itself failed (out of space, unreachable): nothing was
                        # written or disclosed, and its own error is the one to report.
                        raise exc from None
                    raise
                raise
            finally:
                _scope.active = False

        return wrapper  # type: ignore[return-value]

    return decorate
