"""The access policy on the paths that reach the store below the service's public
methods: batch/transaction entries, PATCH, conditional matching, $everything and $export;
and the one place refusals become audit entries.

Same answers as everywhere else: a type-level refusal is 403 (it reveals nothing about
stored data) and is decided before any lookup; an instance-level refusal ("hide") is
answered exactly like a resource that does not exist (`Hidden`, a NotFound with the same
message), and hidden resources are left out of pages before they are cut. Without a
principal (trusted in-process callers, or access control off) everything is allowed, as
the policy itself decides.

Every refusal is audited: who (actor, client, purpose), what (interaction, type, id,
patient compartment) and why (`reason`: scope, role, patient-context, care-relationship
or consent). A refusal decided inside a write transaction is recorded once that
transaction has ended (`deferred_refusals`): it would be rolled back with it otherwise,
and the log's own appender cannot commit while the transaction holds the writer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from phivault.access.policy import Decision, Target
from phivault.audit.events import MINOR_FAILURE, AccessEvent, AuditSink
from phivault.errors import Forbidden, Hidden
from phivault.fhir import json as fhir_json
from phivault.fhir.indexing import patient_compartment
from phivault.fhir.search import default_registry
from phivault.types import Resource

if TYPE_CHECKING:
    from phivault.service.core import Context, Service

_pending = threading.local()


def refusal_event(
    ctx: Context,
    action: str,
    rtype: str | None,
    rid: str | None,
    compartment: str | None,
    reason: str,
    decision: Decision = Decision.DENY,
) -> AccessEvent:
    """The audit entry of one refused access (outcome 4, detail "Forbidden")."""
    extra = {"decision": decision.value}
    if reason:
        extra["reason"] = reason
    return AccessEvent(
        action=action,
        outcome=MINOR_FAILURE,
        actor=ctx.actor,
        client=ctx.client,
        purpose=ctx.purpose,
        rtype=rtype,
        rid=rid,
        compartment=compartment,
        detail="Forbidden",
        extra=extra,
    )


def record_refusal(audit: AuditSink, event: AccessEvent) -> None:
    """Record now, or when the enclosing `deferred_refusals` block ends."""
    pending: list[AccessEvent] | None = getattr(_pending, "events", None)
    if pending is not None:
        pending.append(event)
    else:
        audit.record(event)


@contextmanager
def deferred_refusals(service: Service) -> Iterator[None]:
    """Wrap a write transaction: refusals decided inside it are recorded after it ends
    (committed or rolled back). Nested blocks join the outermost one."""
    if getattr(_pending, "events", None) is not None:
        yield
        return
    events: list[AccessEvent] = []
    _pending.events = events
    try:
        yield
    finally:
        _pending.events = None
        for event in events:
            service.audit.record(event)


def reason_of(policy: object, ctx: Context, interaction: str, target: Target) -> str:
    """The policy's reason for a refusal (`Policy.why`), or "" from a policy without one."""
    why = getattr(policy, "why", None)
    return str(why(ctx, interaction, target)) if why is not None else ""


def audit_refusal(
    service: Service, ctx: Context, action: str, reason: str, rtype: str | None = None
) -> None:
    """Audit a refusal decided outside the policy (e.g. another user's export job), which
    the caller then answers as not found."""
    record_refusal(
        service.audit, refusal_event(ctx, action, rtype, None, None, reason, Decision.HIDE)
    )


def refuse(
    service: Service,
    ctx: Context,
    interaction: str,
    decision: Decision,
    target: Target,
) -> Forbidden | Hidden:
    """Audit one refusal and return the error that answers it."""
    reason = reason_of(service.policy, ctx, interaction, target)
    event = refusal_event(
        ctx, interaction, target.rtype, target.rid, target.compartment, reason, decision
    )
    record_refusal(service.audit, event)
    if decision is Decision.DENY:
        return Forbidden()
    rid = target.rid
    return Hidden(f"{target.rtype}/{rid} is not known" if rid else "resource not found")


def require_type(service: Service, ctx: Context, interaction: str, rtype: str) -> None:
    """Type-level, before any lookup: may this caller ever do `interaction` on `rtype`?
    403 (audited) otherwise, whether or not any such record exists."""
    if ctx.principal is None:
        return
    if service.policy.decide_type(ctx.principal, interaction, rtype) is Decision.ALLOW:
        return
    raise refuse(service, ctx, interaction, Decision.DENY, Target(rtype))


def require(
    service: Service,
    ctx: Context,
    interaction: str,
    rtype: str,
    rid: str | None,
    compartment: str | None,
    resource: Resource | None = None,
) -> None:
    """Raise Forbidden (type-level) or Hidden (instance-level) unless allowed; audited."""
    if ctx.principal is None:
        return
    target = Target(rtype, rid, compartment, resource)
    decision = service.policy.decide(ctx, interaction, target)
    if decision is not Decision.ALLOW:
        raise refuse(service, ctx, interaction, decision, target)


def hidden(
    service: Service,
    ctx: Context,
    interaction: str,
    rtype: str,
    rid: str | None,
    compartment: str | None,
    resource: Resource | None = None,
) -> bool:
    """True when the policy hides this resource from the caller (audited), so the caller
    must carry on exactly as if it did not exist; Forbidden for a type-level refusal."""
    if ctx.principal is None:
        return False
    target = Target(rtype, rid, compartment, resource)
    decision = service.policy.decide(ctx, interaction, target)
    if decision is Decision.ALLOW:
        return False
    error = refuse(service, ctx, interaction, decision, target)
    if isinstance(error, Forbidden):
        raise error
    return True


def require_creatable(service: Service, ctx: Context, rtype: str, rid: str) -> None:
    """Before a PUT creates `rtype/rid` (update as create, the id unknown).

    For a caller limited to some patients (a clinician's related patients, a launch
    patient), "created" (201) would differ from what a PUT to a hidden record gets (404) and
    so confirm that the hidden one exists. Such a caller creates with POST; a PUT of theirs
    to an unknown id of a type that belongs to patients is answered like a hidden one
    (audited, reason "update-as-create"). Callers that reach every patient (backend
    clients, clerical roles on their types, break-glass) keep update as create."""
    if ctx.principal is None:
        return
    if rtype != "Patient" and not default_registry().compartment_params(rtype):
        return  # never in a patient's compartment: nothing about it can be hidden
    reach = getattr(service.policy, "reach", None)
    if reach is None or reach(ctx, "update", rtype).only is None:
        return
    event = refusal_event(ctx, "update", rtype, rid, None, "update-as-create", Decision.HIDE)
    record_refusal(service.audit, event)
    raise Hidden(f"{rtype}/{rid} is not known")


def visible(
    service: Service,
    ctx: Context,
    interaction: str,
    rtype: str,
    rid: str,
    compartment: str | None,
    body: bytes | None,
) -> bool:
    """Whether one resource may be released to `ctx` (left out silently otherwise). The
    body goes to the policy as text: it is parsed only when a decision depends on the data
    (`Target.data`), not for every resource of a page or an export."""
    if ctx.principal is None:
        return True
    target = Target(rtype, rid, compartment, body=body)
    return service.policy.decide(ctx, interaction, target) is Decision.ALLOW


def released_ndjson(
    service: Service, ctx: Context, rtype: str, chunks: Iterator[bytes]
) -> Iterator[bytes]:
    """A Bulk Data output file of `rtype` as `ctx` may see it now, at download time.

    The job's runner already left out what the policy hid when the file was written; the
    download asks again, so that a right lost since then (a care relationship ended, a
    Consent given, a scope narrowed) is respected: no right to search the type is a 403
    before anything is sent (audited), and a resource the policy now hides is left out
    of the stream (its compartment read from its own references, as when it was stored).
    """
    if ctx.principal is None:
        return chunks
    require_type(service, ctx, "search", rtype)
    return _released_lines(service, ctx, chunks)


def _released_lines(service: Service, ctx: Context, chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = [line for line in lines if line.strip() and _releasable(service, ctx, line)]
        if kept:
            yield b"\n".join(kept) + b"\n"
    if pending.strip() and _releasable(service, ctx, pending):
        yield pending + b"\n"


def _releasable(service: Service, ctx: Context, line: bytes) -> bool:
    parsed = fhir_json.loads(line)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("resourceType"), str):
        return False
    rid = parsed.get("id")
    target = Target(
        parsed["resourceType"],
        rid if isinstance(rid, str) else None,
        patient_compartment(parsed),
        parsed,
    )
    return service.policy.decide(ctx, "read", target) is Decision.ALLOW


def type_allowed(service: Service, ctx: Context, interaction: str, rtype: str) -> bool:
    if ctx.principal is None:
        return True
    return service.policy.decide_type(ctx.principal, interaction, rtype) is Decision.ALLOW
