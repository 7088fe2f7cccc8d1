"""The access policy on the paths that reach the store below the service's public
methods: batch/transaction entries, PATCH, $everything and $export.

Same answers as everywhere else: a type-level refusal is 403 (it reveals nothing about
stored data); an instance-level refusal ("hide") is answered exactly like a resource
that does not exist, and hidden resources are left out of pages before they are cut.
Without a principal (trusted in-process callers, or access control off) everything is
allowed, as the policy itself decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phivault.access.policy import Decision, Target
from phivault.errors import Forbidden, NotFound
from phivault.fhir import json as fhir_json
from phivault.types import Resource

if TYPE_CHECKING:
    from phivault.service.core import Context, Service


def require(
    service: Service,
    ctx: Context,
    interaction: str,
    rtype: str,
    rid: str | None,
    compartment: str | None,
    resource: Resource | None = None,
) -> None:
    """Raise Forbidden (type-level) or NotFound (hidden) unless allowed."""
    if ctx.principal is None:
        return
    target = Target(rtype, rid, compartment, resource)
    decision = service.policy.decide(ctx, interaction, target)
    if decision is Decision.DENY:
        raise Forbidden()
    if decision is Decision.HIDE:
        raise NotFound(f"{rtype}/{rid} is not known" if rid else "not found")


def visible(
    service: Service,
    ctx: Context,
    interaction: str,
    rtype: str,
    rid: str,
    compartment: str | None,
    body: bytes | None,
) -> bool:
    """Whether one resource may be released to `ctx` (left out silently otherwise)."""
    if ctx.principal is None:
        return True
    resource = fhir_json.loads(body) if body is not None else None
    target = Target(rtype, rid, compartment, resource if isinstance(resource, dict) else None)
    return service.policy.decide(ctx, interaction, target) is Decision.ALLOW


def type_allowed(service: Service, ctx: Context, interaction: str, rtype: str) -> bool:
    if ctx.principal is None:
        return True
    return service.policy.decide_type(ctx.principal, interaction, rtype) is Decision.ALLOW
