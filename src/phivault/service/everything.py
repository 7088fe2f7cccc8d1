"""Patient/{id}/$everything: a patient's record, paged.

A page holds matches (the patient on the first page, then every current resource of the
patient's compartment, in (type, id) order) and, as includes, the resources those
matches reference that belong to no patient compartment (Practitioner, Organization,
Location, Medication, ...). Resources of another patient's compartment are never
included: a reference to another patient does not open that patient's record.

Paging uses a keyset cursor (the last type and id), so `next` links stay stable while
the record changes. Every page is audited ("everything", with the ids released) before
it is released.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from phivault.audit.events import AccessEvent
from phivault.errors import BadRequest, Gone, NotFound
from phivault.fhir import json as fhir_json
from phivault.fhir import resources as fhir_types
from phivault.fhir.bundle_entries import iter_references
from phivault.service.access_guard import require, type_allowed, visible
from phivault.store.base import VersionRecord
from phivault.store.compartment_sql import CompartmentQuery

if TYPE_CHECKING:
    from phivault.service.core import Context, Service, Version

_RELATIVE = re.compile(r"^([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/\d+)?$")
_START = ("", "")  # sorts before every (type, id): "the compartment from its beginning"


@dataclass(frozen=True, slots=True)
class EverythingPage:
    matches: list[Version]
    includes: list[Version]
    total: int | None  # under access control: only when one page holds everything
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class EverythingQuery:
    count: int
    cursor: str | None = None
    since: str | None = None  # FHIR instant (as given by the client)
    types: Sequence[str] | None = None


def everything(service: Service, ctx: Context, rid: str, query: EverythingQuery) -> EverythingPage:
    fhir_types.check_id(rid)
    types = [fhir_types.check_type(t) for t in query.types] if query.types is not None else None
    since = fhir_types.instant_text(fhir_types.parse_instant(query.since)) if query.since else None
    compartment = f"Patient/{rid}"
    patient = _patient(service, ctx, rid)
    if ctx.principal is not None:
        # Types this caller may never read are not listed at all, so they are neither
        # counted nor paged (type-level: reveals nothing about stored data).
        if types is None:
            types = readable_types(service, ctx)
        else:
            types = sorted(t for t in types if type_allowed(service, ctx, "read", t))
    wants_patient = (types is None or "Patient" in types) and (
        since is None or patient.last_updated >= since
    )
    matches: list[Version] = []
    if query.cursor is None and wants_patient:
        matches.append(patient)
    after = decode_cursor(query.cursor) if query.cursor is not None else _START
    listing = CompartmentQuery(
        compartment,
        rtypes=[t for t in types if t != "Patient"] if types is not None else None,
        exclude_rtypes=("Patient",),  # the patient itself is the first match
        since=since,
        after=after,
    )
    room = query.count - len(matches)
    listed, more = _listed(service, ctx, listing, room)
    matches.extend(v for _, v in listed)
    next_cursor = None
    if more:
        # The cursor is the last compartment row listed (never the patient, who is not
        # part of the (type, id) listing); or, if none was, where this page started.
        last = (listed[-1][0].rtype, listed[-1][0].rid) if listed else after
        next_cursor = encode_cursor(*last)
    total = None
    if ctx.principal is None:
        total = service.store.compartment_total(listing) + (1 if wants_patient else 0)
    elif query.cursor is None and not more:
        # With access control the store's count would reveal what the policy hides: a
        # total only when this page holds all the caller may see.
        total = len(matches)
    includes = _referenced(service, ctx, matches, types, since)
    service.audit.record(
        AccessEvent(
            action="everything",
            actor=ctx.actor,
            client=ctx.client,
            purpose=ctx.purpose,
            rtype="Patient",
            rid=rid,
            compartment=compartment,
            result_ids=tuple(f"{v.rtype}/{v.rid}/{v.version}" for v in matches + includes),
        )
    )
    return EverythingPage(matches, includes, total, next_cursor)


# principal id -> (principal, policy, the storable types it may read), bounded
_READABLE: dict[int, tuple[object, object, tuple[str, ...]]] = {}
_READABLE_KEPT = 256


def readable_types(service: Service, ctx: Context) -> list[str]:
    """Every storable type `ctx` may read, sorted. A type-level decision depends on the
    principal's roles and scopes alone, fixed for its lifetime (the policy keeps each on
    the principal), so the list is kept per principal object too: one lookup instead of
    some 145 decisions on every $everything page."""
    principal, policy = ctx.principal, service.policy
    found = _READABLE.get(id(principal))
    if found is not None and found[0] is principal and found[1] is policy:
        return list(found[2])
    allowed = tuple(
        t for t in sorted(fhir_types.STORABLE_TYPES) if type_allowed(service, ctx, "read", t)
    )
    if len(_READABLE) >= _READABLE_KEPT:
        _READABLE.clear()
    _READABLE[id(principal)] = (principal, policy, allowed)
    return list(allowed)


def _patient(service: Service, ctx: Context, rid: str) -> Version:
    record = service.store.current("Patient", rid)
    try:
        if record is None:
            raise NotFound(f"Patient/{rid} is not known")
        if record.deleted:
            require(service, ctx, "read", "Patient", rid, record.compartment)
            raise Gone(f"Patient/{rid} was deleted")
        version = service._open(record)
        body = fhir_json.loads(version.body) if version.body is not None else None
        require(service, ctx, "read", "Patient", rid, record.compartment, body)
    except (NotFound, Gone) as exc:
        service._audit_failure(ctx, "everything", "Patient", rid, exc)
        raise
    return version


def _listed(
    service: Service, ctx: Context, listing: CompartmentQuery, room: int
) -> tuple[list[tuple[VersionRecord, Version]], bool]:
    """Up to `room` visible compartment resources after the cursor, and whether more
    follow. Hidden ones are skipped before the page is cut, so page sizes reveal
    nothing either."""
    found: list[tuple[VersionRecord, Version]] = []
    batch = room + 1
    after = listing.after
    while True:
        rows = service.store.compartment(replace(listing, after=after, limit=batch))
        for row in rows:
            version = service._open(row)
            if visible(service, ctx, "read", row.rtype, row.rid, row.compartment, version.body):
                found.append((row, version))
                if len(found) > room:
                    return found[:room], True
        if len(rows) < batch:
            return found, False
        after = (rows[-1].rtype, rows[-1].rid)
        batch = max(batch, 100)


def _referenced(
    service: Service,
    ctx: Context,
    matches: list[Version],
    types: Sequence[str] | None,
    since: str | None,
) -> list[Version]:
    """Current resources outside every patient compartment that the matches reference."""
    seen = {(v.rtype, v.rid) for v in matches}
    wanted: dict[str, list[str]] = {}
    for version in matches:
        if version.body is None:
            continue
        for _where, reference in iter_references(fhir_json.loads(version.body)):
            found = _RELATIVE.match(reference)
            if found is None:
                continue
            key = (found.group(1), found.group(2))
            if key in seen or key[0] not in fhir_types.STORABLE_TYPES:
                continue
            if types is not None and key[0] not in types:
                continue
            seen.add(key)
            wanted.setdefault(key[0], []).append(key[1])
    out: list[Version] = []
    for rtype in sorted(wanted):
        for record in service.store.current_many(rtype, sorted(wanted[rtype])):
            if record.deleted or record.compartment is not None:
                continue  # another patient's record is never pulled in by a reference
            if since is not None and record.last_updated < since:
                continue
            version = service._open(record)
            if visible(service, ctx, "read", rtype, record.rid, None, version.body):
                out.append(version)
    return out


def encode_cursor(rtype: str, rid: str) -> str:
    return base64.urlsafe_b64encode(f"{rtype}/{rid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("invalid paging cursor") from None
    rtype, sep, rid = text.partition("/")
    if not sep or (text != "/" and not _RELATIVE.match(text)):
        raise BadRequest("invalid paging cursor")
    return rtype, rid
