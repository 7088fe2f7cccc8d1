"""Conditional create, update and delete, atomic under concurrency.

The condition is matched again inside the write transaction, after a lock that
serialises the conditional writes of one resource type: a transaction-scoped advisory
lock on PostgreSQL; on SQLite the single writer already serialises, and the match reads
through the writer's connection, so it also sees the uncommitted writes of the same
group-committed batch. Two concurrent conditional creates with the same criteria
therefore make exactly one resource: the second one's match finds the first one's.

What needs its own transaction or may audit on its own (a new compartment's data key,
authorisation and its refusals) happens before: a first match outside the transaction
picks the resource, the match inside confirms it, and a different answer (another writer
got in between) starts again, at most MAX_ATTEMPTS times, then 409.

Access control: a condition matches only what the caller may see (the predicates of its
own searches), and matching needs the right to search the type (403 before any lookup
otherwise). A record hidden from the caller is treated exactly as absent, so no status
(412 vs 201, 200 vs 404) reveals it: If-None-Exist then creates, a conditional update
creates, a conditional delete deletes nothing. The price is a possible duplicate of a
record the caller may not see, for someone who may see both to reconcile; any other
answer would confirm the hidden record.

The lock is per type, not per criteria: two conditions written differently may match the
same resource, and only a lock they share keeps them apart. Plain writes do not take it;
the specification leaves a plain create racing a conditional one undefined.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phivault.errors import BadRequest, IdMismatch, PreconditionFailed, VersionConflict
from phivault.fhir import resources as fhir_types
from phivault.fhir.conditions import Condition, parse_condition
from phivault.service import access_guard, authorize
from phivault.service.records import Prepared, WriteResult
from phivault.store.base import ReadView, WriteTx
from phivault.types import Resource

if TYPE_CHECKING:
    from phivault.service.core import Context, Service

# Locked as if it were a resource id; never a real one ('?' is not an id character).
CONDITIONAL_LOCK = "?conditional"
MAX_ATTEMPTS = 3
MATCH_LIMIT = 2  # create and update only need 0, 1 or "more than one"


def _match(
    service: Service,
    ctx: Context,
    view: ReadView,
    rtype: str,
    condition: Condition,
    limit: int,
) -> list[str]:
    """Only what `ctx` may see matches (service/access_guard.py: a hidden record is
    treated exactly as absent, so no answer differs because of it)."""
    return service.searcher.find_ids(rtype, condition.request, limit, view, ctx)


def _locked_match(
    service: Service, ctx: Context, tx: WriteTx, rtype: str, condition: Condition, limit: int
) -> list[str]:
    """The match inside the write transaction (under access_guard.deferred_refusals, so a
    refusal decided here is audited after the transaction, never inside it)."""
    tx.lock_resource(rtype, CONDITIONAL_LOCK)
    return _match(service, ctx, tx, rtype, condition, limit)


@dataclass(frozen=True, slots=True)
class Matched:
    """A condition matched before a write transaction (a transaction Bundle's
    ifNoneExist, conditional update, delete or patch, or conditional reference), and the
    ids it found then (none, or the one the entry was planned with)."""

    rtype: str
    condition: Condition
    found: tuple[str, ...]


def still_matched(service: Service, ctx: Context, tx: WriteTx, matched: Sequence[Matched]) -> bool:
    """Inside the write transaction (under access_guard.deferred_refusals): take the
    conditional lock of every type concerned, in one order (two transactions taking them
    in opposite orders would deadlock), then match each condition again through the
    transaction. False when any answer changed: another writer got in between, and the
    plan must be made again. The same guarantee as a single conditional request's."""
    for rtype in sorted({m.rtype for m in matched}):
        tx.lock_resource(rtype, CONDITIONAL_LOCK)
    return all(
        tuple(_match(service, ctx, tx, m.rtype, m.condition, MATCH_LIMIT)) == m.found
        for m in matched
    )


def _changed() -> VersionConflict:
    return VersionConflict(
        "the resources matching the condition changed while it was applied; try again"
    )


def create(
    service: Service, ctx: Context, rtype: str, resource: Resource, if_none_exist: str
) -> WriteResult:
    """Create `resource` unless `if_none_exist` matches: one match returns it unchanged
    (200), several are 412. Validation and authorisation are the caller's (create)."""
    condition = parse_condition(rtype, if_none_exist)
    access_guard.require_type(service, ctx, "search", rtype)  # matching is a search
    found = _match(service, ctx, service.store, rtype, condition, MATCH_LIMIT)
    if not found:
        prepared = service.prepare(rtype, str(uuid.uuid4()), resource, drawn=True)
        with access_guard.deferred_refusals(service), service.store.write() as tx:
            found = _locked_match(service, ctx, tx, rtype, condition, MATCH_LIMIT)
            if not found:
                return service._write(ctx, tx, prepared, expected=None, action="create")
    if len(found) > 1:
        raise PreconditionFailed("If-None-Exist matched more than one resource")
    existing = service.read(ctx, rtype, found[0])
    return WriteResult(existing, created=False, changed=False)


def update(
    service: Service,
    ctx: Context,
    rtype: str,
    query: str,
    resource: Resource,
    *,
    if_match: int | None,
) -> WriteResult:
    """`PUT [type]?condition`: update the one match, or create when nothing matches (with
    the body's id if it has one); several matches are 412."""
    condition = parse_condition(rtype, query)
    service._validate(rtype, resource)
    access_guard.require_type(service, ctx, "search", rtype)
    body_id = resource.get("id")
    if body_id is not None and not isinstance(body_id, str):
        raise BadRequest("the resource id must be a string", expression=[f"{rtype}.id"])
    for _attempt in range(MAX_ATTEMPTS):
        found = _match(service, ctx, service.store, rtype, condition, MATCH_LIMIT)
        if len(found) > 1:
            raise PreconditionFailed("the condition matched more than one resource")
        if found and body_id is not None and body_id != found[0]:
            raise IdMismatch("the id in the body differs from the resource the condition matched")
        rid = found[0] if found else body_id
        action = "update" if rid is not None else "create"
        if rid is None:
            rid = str(uuid.uuid4())
        fhir_types.check_id(rid)
        replaced = rid if action == "update" else None
        authorize.writable(service, ctx, action, rtype, replaced, resource)
        prepared = service.prepare(rtype, rid, resource)
        result = _write_if_unchanged(service, ctx, condition, found, prepared, action, if_match)
        if result is not None:
            return result
    raise _changed()


def _write_if_unchanged(
    service: Service,
    ctx: Context,
    condition: Condition,
    found: list[str],
    prepared: Prepared,
    action: str,
    if_match: int | None,
) -> WriteResult | None:
    rtype = prepared.rtype
    with access_guard.deferred_refusals(service), service.store.write() as tx:
        if _locked_match(service, ctx, tx, rtype, condition, MATCH_LIMIT) != found:
            return None
        if action == "create":
            return service._write(ctx, tx, prepared, expected=None, action=action)
        tx.lock_resource(rtype, prepared.rid)
        return service._write(ctx, tx, prepared, expected=if_match, action=action)


def delete(
    service: Service, ctx: Context, rtype: str, query: str, *, max_matches: int
) -> list[WriteResult | None]:
    """`DELETE [type]?condition`: delete every match when there are at most `max_matches`
    (1 unless the server allows multiple deletes), in one transaction; more are 412.
    Nothing matching is not an error (an empty list). None stands for a resource that was
    deleted already."""
    condition = parse_condition(rtype, query)
    access_guard.require_type(service, ctx, "delete", rtype)
    access_guard.require_type(service, ctx, "search", rtype)
    found = _match(service, ctx, service.store, rtype, condition, max_matches + 1)
    if len(found) > max_matches:
        if max_matches == 1:
            raise PreconditionFailed("the condition matched more than one resource")
        raise PreconditionFailed(f"the condition matched more than {max_matches} resources")
    for rid in found:
        authorize.writable(service, ctx, "delete", rtype, rid, None)
    if not found:
        return []
    with access_guard.deferred_refusals(service), service.store.write() as tx:
        again = _locked_match(service, ctx, tx, rtype, condition, max_matches + 1)
        if not set(again) <= set(found):
            raise _changed()  # a match that was not authorised: never deleted blindly
        return [service._delete(ctx, tx, rtype, rid) for rid in again]
