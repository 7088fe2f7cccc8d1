"""The authorize step of the service: asks the access policy, audits every refusal, and
answers refusals so that they reveal nothing.

A type-level refusal (Decision.DENY) is a 403 Forbidden: it depends only on who asks and
the resource type, and is decided before any lookup. An instance-level refusal
(Decision.HIDE) is answered exactly like a missing resource (`Hidden`: 404 with the same
message), so that a patient-scoped token or a snooping user cannot learn whether a record
exists, deleted records included. Both are audited with outcome 4, detail "Forbidden" and
the policy's reason (service/access_guard.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from phivault.access.policy import Decision, Target
from phivault.errors import Forbidden
from phivault.fhir.indexing import patient_compartment
from phivault.service.access_guard import (
    reason_of,
    record_refusal,
    refusal_event,
    refuse,
    require_creatable,
)
from phivault.store.base import VersionRecord
from phivault.types import Resource

if TYPE_CHECKING:
    from phivault.service.core import Context, Service, Version

# Service action -> SMART interaction.
INTERACTION = {
    "read": "read",
    "vread": "vread",
    "create": "create",
    "update": "update",
    "patch": "patch",
    "delete": "delete",
    "search": "search",
}


def interaction_of(action: str, rtype: str | None, rid: str | None) -> str:
    if action == "history":
        if rid is not None:
            return "history-instance"
        return "history-type" if rtype is not None else "history-system"
    return INTERACTION.get(action, action)


def type_level(
    service: Service, ctx: Context, action: str, rtype: str | None, rid: str | None = None
) -> None:
    """Before any lookup: may this caller do `action` on `rtype` at all?"""
    if ctx.principal is None:
        return
    interaction = interaction_of(action, rtype, rid)
    name = rtype if rtype is not None else "*"
    if service.policy.decide_type(ctx.principal, interaction, name) is not Decision.ALLOW:
        reason = reason_of(service.policy, ctx, interaction, Target(name, rid))
        record_refusal(service.audit, refusal_event(ctx, action, rtype, rid, None, reason))
        raise Forbidden()


def instance(
    service: Service,
    ctx: Context,
    action: str,
    rtype: str,
    rid: str | None,
    compartment: str | None,
    resource: Resource | bytes | None,
) -> None:
    """For one resource: allowed, or audited and refused as if it did not exist."""
    if ctx.principal is None:
        return
    target = _target(rtype, rid, compartment, resource)
    interaction = interaction_of(action, rtype, rid)
    decision = service.policy.decide(ctx, interaction, target)
    if decision is not Decision.ALLOW:
        raise refuse(service, ctx, interaction, decision, target)


def visible(
    service: Service,
    ctx: Context,
    action: str,
    versions: Sequence[Version],
    records: Sequence[VersionRecord],
) -> list[Version]:
    """The versions (paired with their records) this caller may see, in order."""
    if ctx.principal is None:
        return list(versions)
    by_key = {(r.rtype, r.rid, r.version): r for r in records}

    def describe(v: Version) -> Target:
        record = by_key.get((v.rtype, v.rid, v.version))
        return _target(v.rtype, v.rid, record.compartment if record else None, v.body)

    interaction = interaction_of(action, None, None) if action == "history" else action
    return service.policy.filter(ctx, interaction, list(versions), describe)


def _target(
    rtype: str, rid: str | None, compartment: str | None, resource: Resource | bytes | None
) -> Target:
    """A JSON body is handed over unparsed: the policy parses it only if it must."""
    if isinstance(resource, bytes):
        return Target(rtype, rid, compartment, None, resource)
    return Target(rtype, rid, compartment, resource)


def writable(
    service: Service,
    ctx: Context,
    action: str,
    rtype: str,
    rid: str | None,
    resource: Resource | None,
) -> None:
    """Before a write: the caller may write this type, the version it replaces (if any)
    and the version it would store (a write must not move a record into, or out of, a
    patient the caller may not touch). A deleted record of a hidden patient is hidden
    too (decided on its compartment alone), so deleting or updating it answers exactly
    like an id that was never used."""
    if ctx.principal is None:
        return
    type_level(service, ctx, action, rtype, rid)
    if rid is not None:
        current = service.store.current(rtype, rid)
        if current is not None:
            body = None if current.deleted else service._open(current).body
            instance(service, ctx, action, rtype, rid, current.compartment, body)
        elif action == "update":
            require_creatable(service, ctx, rtype, rid)
    if resource is not None:
        stored = {**resource, "id": rid or "new"} if rtype == "Patient" else resource
        compartment = patient_compartment(stored)
        instance(service, ctx, action, rtype, rid, compartment, resource)
