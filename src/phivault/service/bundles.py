"""Batch and transaction Bundles (POST to the base URL).

A transaction is atomic: every entry is planned and prepared first, outside any write
transaction (conditions are searched, ids assigned, references rewritten, resources
validated, data keys created), then every write and read happens in ONE store
transaction, in the specification's order (DELETE, POST, PUT/PATCH, GET/HEAD). Any
failure rolls everything back and is reported with the index of the entry that failed.

Conditions (ifNoneExist, conditional update, delete and patch, conditional references)
are matched when planning, then again inside the write transaction after the conditional
lock of their types, as a single conditional request is (service/conditional.py): when an
answer changed (a concurrent writer created or removed a match in between), every entry
is planned again inside the write transaction, where the locks hold the answers. Two
transactions with the same ifNoneExist therefore create one resource, and the second one
reports it as matched (its references to the entry's fullUrl then point at it).

A batch runs each entry as its own one-entry transaction; a failed entry gets its
OperationOutcome in the batch-response and the others go ahead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from phivault.audit.log import batched
from phivault.errors import (
    BadRequest,
    Conflict,
    Gone,
    IdMismatch,
    NotFound,
    PhivaultError,
    PreconditionFailed,
    VersionConflict,
)
from phivault.fhir import json as fhir_json
from phivault.fhir.bundle_entries import (
    EntryError,
    EntryRequest,
    at_entry,
    bundle_kind,
    parse_entries,
    parse_entry,
    processing_order,
    raw_entries,
    rewrite_references,
)
from phivault.fhir.bundles import searchset_bundle
from phivault.fhir.conditions import Condition, parse_condition
from phivault.fhir.patch import parse_patch
from phivault.fhir.resources import check_id
from phivault.fhir.search.query import parse_search
from phivault.fhir.transaction_response import ResponseEntry, response_bundle
from phivault.service.access_guard import (
    deferred_refusals,
    hidden,
    require,
    require_creatable,
    require_type,
)
from phivault.service.bundle_refs import ReferenceResolver
from phivault.service.bundle_reply import failure_entry, reply_entry
from phivault.service.conditional import Matched, still_matched
from phivault.service.patch import prepare_patch
from phivault.store.base import ReadView, WriteTx

if TYPE_CHECKING:
    from phivault.service.core import Context, Prepared, Service, Version
    from phivault.types import Resource

_WRITES = frozenset({"create", "update", "patch", "delete"})
# (method, a version given) -> the SMART interaction checked at type level when planned.
_INTERACTIONS = {
    ("GET", False): "read",
    ("GET", True): "vread",
    ("HEAD", False): "read",
    ("HEAD", True): "vread",
    ("DELETE", False): "delete",
    ("POST", False): "create",
    ("PUT", False): "update",
    ("PATCH", False): "patch",
}


@dataclass(slots=True)
class Plan:
    """What one entry will do, once its conditions are resolved."""

    entry: EntryRequest
    rtype: str
    action: str  # create update patch delete noop matched read vread search
    rid: str | None = None
    prepared: Prepared | None = None
    base_version: int | None = None  # PATCH: the version the patch was applied to
    search: tuple[tuple[str, str], ...] = ()  # GET searches: the query's pairs
    matched: Matched | None = None  # the entry's condition and what it found when planned


@dataclass(slots=True)
class EntryResult:
    status: int
    version: Version | None = None
    searchset: bytes | None = None
    error: PhivaultError | None = None
    extra: dict[str, str] = field(default_factory=dict)


class BundleProcessor:
    def __init__(self, service: Service) -> None:
        self.service = service

    def process(self, ctx: Context, bundle: Resource, *, base_url: str, prefer: str) -> bytes:
        kind = bundle_kind(bundle)
        if kind == "transaction":
            try:
                entries = parse_entries(bundle, base_url)
            except EntryError as exc:
                raise at_entry(exc.index, exc.error) from None
            results = self.transaction(ctx, entries, base_url=base_url)
            replies = [reply_entry(e, results[e.index], base_url, prefer) for e in entries]
            return response_bundle("transaction-response", replies)
        return self._batch(ctx, bundle, base_url=base_url, prefer=prefer)

    # -- batch --------------------------------------------------------------------------
    def _batch(self, ctx: Context, bundle: Resource, *, base_url: str, prefer: str) -> bytes:
        raw = raw_entries(bundle)
        replies: dict[int, ResponseEntry] = {}
        entries: list[EntryRequest] = []
        for index, item in enumerate(raw):
            try:
                entries.append(parse_entry(index, item, base_url))
            except EntryError as exc:
                replies[index] = failure_entry(exc.error)
        for entry in processing_order(entries):
            try:
                result = self._batch_entry(ctx, entry, base_url)
            except PhivaultError as exc:
                replies[entry.index] = failure_entry(exc)
            else:
                replies[entry.index] = reply_entry(entry, result, base_url, prefer)
        return response_bundle("batch-response", [replies[i] for i in range(len(raw))])

    def _batch_entry(self, ctx: Context, entry: EntryRequest, base_url: str) -> EntryResult:
        if entry.method in ("GET", "HEAD") and entry.rid is not None and entry.rtype:
            # A read on its own: the service's read (audited, failures included).
            if entry.version is not None:
                read = self.service.vread(ctx, entry.rtype, entry.rid, entry.version)
            else:
                read = self.service.read(ctx, entry.rtype, entry.rid)
            return EntryResult(200, version=read)
        return self.transaction(ctx, [entry], base_url=base_url)[entry.index]

    # -- transaction --------------------------------------------------------------------
    def _plans(
        self, ctx: Context, entries: list[EntryRequest], view: ReadView | None
    ) -> tuple[list[Plan], list[Matched]]:
        """Every entry planned and prepared, in processing order, its conditions matched
        through `view` (the store, or the write transaction when planning again); with the
        conditions and what they found."""
        aliases: dict[str, str] = {}
        plans: list[Plan] = []
        for entry in processing_order(entries):
            try:
                plans.append(self._plan(ctx, entry, aliases, view))
            except PhivaultError as exc:
                raise at_entry(entry.index, exc) from None
        _check_unique(plans)
        resolver = ReferenceResolver(self.service, aliases, ctx, view)
        for plan in plans:
            try:
                self._prepare(ctx, plan, resolver)
            except PhivaultError as exc:
                raise at_entry(plan.entry.index, exc) from None
        matched = [p.matched for p in plans if p.matched is not None] + resolver.matched
        return plans, matched

    def transaction(
        self, ctx: Context, entries: list[EntryRequest], *, base_url: str
    ) -> dict[int, EntryResult]:
        plans, conditions = self._plans(ctx, entries, None)
        results: dict[int, EntryResult] = {}
        current: Plan | None = None
        try:
            # Refusals inside the transaction are audited once it has ended.
            if any(p.action != "search" for p in plans):
                with (
                    deferred_refusals(self.service),
                    self.service.store.write() as tx,
                    batched(self.service.audit, tx),  # one audit append for all entries
                ):
                    # Conditional locks first (a single conditional request takes its
                    # type's, then its resource's), and every condition matched again.
                    # An answer that changed (a concurrent writer got in between) is
                    # planned again here, where the locks keep the answers as they are.
                    if conditions and not still_matched(self.service, ctx, tx, conditions):
                        plans, _ = self._plans(ctx, entries, tx)
                    in_tx = [p for p in plans if p.action != "search"]
                    # Every resource the transaction writes, locked first in one global
                    # order: two transactions naming the same resources in opposite entry
                    # orders each held one lock and waited for the other (deadlock, 503).
                    for rtype, rid in sorted(
                        {(p.rtype, p.rid) for p in in_tx if p.rid and p.action in _WRITES}
                    ):
                        tx.lock_resource(rtype, rid)
                    for plan in in_tx:
                        current = plan
                        results[plan.entry.index] = self._execute(ctx, tx, plan)
        except PhivaultError as exc:
            if current is None:
                raise
            raise at_entry(current.entry.index, exc) from None
        for plan in plans:
            if plan.action == "search":
                try:
                    results[plan.entry.index] = self._search(ctx, plan, base_url)
                except PhivaultError as exc:
                    # The writes are committed by now: report the search's own failure in
                    # its entry instead of failing a transaction that did happen.
                    results[plan.entry.index] = EntryResult(exc.http_status, error=exc)
        return results

    def _plan(
        self, ctx: Context, entry: EntryRequest, aliases: dict[str, str], view: ReadView | None
    ) -> Plan:
        rtype = entry.rtype
        assert rtype is not None  # parse_entry refuses server-level urls
        method = entry.method
        # Type-level refusals before any lookup or match: a 403 must not depend on what
        # is stored (service/access_guard.py).
        if method not in ("GET", "HEAD") or entry.rid is not None:
            require_type(self.service, ctx, _INTERACTIONS[method, entry.version is not None], rtype)
        if method in ("GET", "HEAD"):
            if entry.rid is None:
                pairs = tuple(parse_qsl(entry.query or "", keep_blank_values=True))
                parse_search(rtype, pairs)  # refused here, before anything is written
                return Plan(entry, rtype, "search", search=pairs)
            return Plan(entry, rtype, "vread" if entry.version else "read", rid=entry.rid)
        if method == "DELETE":
            if entry.rid is not None:
                return Plan(entry, rtype, "delete", rid=entry.rid)
            matched = self._matches(ctx, rtype, entry.query or "", view)
            found = matched.found
            plan = (
                Plan(entry, rtype, "delete", rid=found[0]) if found else Plan(entry, rtype, "noop")
            )
            plan.matched = matched
            return plan
        if method == "POST":
            plan = self._plan_create(ctx, entry, rtype, view)
        elif method == "PUT":
            plan = self._plan_update(ctx, entry, rtype, view)
        else:
            plan = self._plan_patch(ctx, entry, rtype, view)
        if entry.full_url and plan.rid is not None:
            aliases[entry.full_url] = f"{rtype}/{plan.rid}"
        return plan

    def _plan_patch(
        self, ctx: Context, entry: EntryRequest, rtype: str, view: ReadView | None
    ) -> Plan:
        if entry.rid is not None:
            return Plan(entry, rtype, "patch", rid=entry.rid)
        matched = self._matches(ctx, rtype, entry.query or "", view)
        if not matched.found:
            raise NotFound("the condition matched no resource")
        return Plan(entry, rtype, "patch", rid=matched.found[0], matched=matched)

    def _plan_create(
        self, ctx: Context, entry: EntryRequest, rtype: str, view: ReadView | None
    ) -> Plan:
        matched: Matched | None = None
        if entry.if_none_exist:
            matched = self._matches(ctx, rtype, entry.if_none_exist, view)
            if matched.found:
                return Plan(entry, rtype, "matched", rid=matched.found[0], matched=matched)
        # Server-assigned id: a client id in a POST body is ignored, as the spec requires.
        return Plan(entry, rtype, "create", rid=str(uuid.uuid4()), matched=matched)

    def _plan_update(
        self, ctx: Context, entry: EntryRequest, rtype: str, view: ReadView | None
    ) -> Plan:
        body_id = (entry.resource or {}).get("id")
        if entry.rid is not None:
            return Plan(entry, rtype, "update", rid=entry.rid)
        matched = self._matches(ctx, rtype, entry.query or "", view)
        found = matched.found
        if found:
            if body_id is not None and body_id != found[0]:
                raise IdMismatch(
                    "the id in the body differs from the resource the condition matched"
                )
            return Plan(entry, rtype, "update", rid=found[0], matched=matched)
        if isinstance(body_id, str):
            return Plan(entry, rtype, "update", rid=check_id(body_id), matched=matched)
        return Plan(entry, rtype, "create", rid=str(uuid.uuid4()), matched=matched)

    def _matches(self, ctx: Context, rtype: str, query: str, view: ReadView | None) -> Matched:
        """0 or 1 id matching a condition among what `ctx` may see (a hidden record is
        treated as absent: service/conditional.py); more than one is 412."""
        condition: Condition = parse_condition(rtype, query)
        found = self.service.search_ids(rtype, condition, ctx, view)
        if len(found) > 1:
            raise PreconditionFailed("the condition matched more than one resource")
        return Matched(rtype, condition, tuple(found))

    def _prepare(self, ctx: Context, plan: Plan, resolver: ReferenceResolver) -> None:
        entry, rtype = plan.entry, plan.rtype
        if plan.action in ("create", "update"):
            assert plan.rid is not None and entry.resource is not None
            resource = rewrite_references(entry.resource, resolver.for_entry(rtype))
            self.service._validate(rtype, resource)
            body_id = resource.get("id")
            if plan.action == "update" and body_id is not None and body_id != plan.rid:
                raise IdMismatch(expression=[f"{rtype}.id"])
            plan.prepared = self.service.prepare(rtype, plan.rid, resource)
        elif plan.action == "patch":
            assert plan.rid is not None
            operations = rewrite_references(entry.patch, resolver.for_entry("Patch"))
            ready = prepare_patch(
                self.service, ctx, rtype, plan.rid, parse_patch(operations), entry.if_match
            )
            plan.prepared, plan.base_version = ready.prepared, ready.base_version

    def _execute(self, ctx: Context, tx: WriteTx, plan: Plan) -> EntryResult:
        service, rtype, rid = self.service, plan.rtype, plan.rid
        if plan.action == "noop":
            return EntryResult(204)
        assert rid is not None
        if plan.action == "delete":
            tx.lock_resource(rtype, rid)
            existing = tx.current(rtype, rid)
            if existing is not None:
                opened = None if existing.deleted else service._open(existing).body
                body = fhir_json.loads(opened) if opened is not None else None
                resource = body if isinstance(body, dict) else None
                if hidden(service, ctx, "delete", rtype, rid, existing.compartment, resource):
                    return EntryResult(204)  # exactly what deleting an unknown id answers
            try:
                deleted = service._delete(ctx, tx, rtype, rid)
            except NotFound:
                deleted = None  # deleting what does not exist: 204 (http.html#delete)
            return EntryResult(204, version=deleted.version if deleted else None)
        if plan.action in ("read", "vread", "matched"):
            return self._read(ctx, tx, plan)
        prepared = plan.prepared
        assert prepared is not None
        tx.lock_resource(rtype, rid)
        existing = tx.current(rtype, rid)
        if plan.action == "patch":
            if existing is None or existing.version != plan.base_version:
                raise VersionConflict("the resource changed while the patch was prepared")
            expected: int | None = plan.base_version
        else:
            expected = plan.entry.if_match
        # Both the record as it is (its compartment may be left) and as it will be.
        if existing is not None and not existing.deleted:
            interaction = "update" if plan.action == "create" else plan.action
            require(service, ctx, interaction, rtype, rid, existing.compartment)
        else:
            if existing is not None:  # deleted: still hidden if its patient is
                require(service, ctx, "update", rtype, rid, existing.compartment)
            elif plan.action == "update":  # update as create (access_guard.py explains)
                require_creatable(service, ctx, rtype, rid)
            interaction = "create"
        require(service, ctx, interaction, rtype, rid, prepared.compartment, prepared.resource)
        result = service._write(ctx, tx, prepared, expected=expected, action=plan.action)
        return EntryResult(201 if result.created else 200, version=result.version)

    def _read(self, ctx: Context, tx: WriteTx, plan: Plan) -> EntryResult:
        """A read inside the transaction, audited in it (so it sees the writes before it)."""
        rtype, rid = plan.rtype, plan.rid
        assert rid is not None
        version_id = plan.entry.version
        if plan.action == "vread" and version_id is not None:
            record = tx.version(rtype, rid, version_id)
        else:
            record = tx.current(rtype, rid)
        if record is None:
            if plan.action == "matched":
                raise Conflict("the resource matched by ifNoneExist disappeared")
            raise NotFound(f"{rtype}/{rid} is not known")
        action = "vread" if plan.action == "vread" else "read"
        if record.deleted:
            require(self.service, ctx, action, rtype, rid, record.compartment)
            raise Gone(f"{rtype}/{rid} was deleted")
        version = self.service._open(record)
        body = fhir_json.loads(version.body) if version.body is not None else None
        require(self.service, ctx, action, rtype, rid, record.compartment, body)
        self.service.audit.record(self.service._event(ctx, action, record), tx)
        return EntryResult(200, version=version)

    def _search(self, ctx: Context, plan: Plan, base_url: str) -> EntryResult:
        """Searches run after the writes commit (the search engine reads the committed
        store, and audits on its own)."""
        rtype, pairs = plan.rtype, plan.search
        result = self.service.search(ctx, rtype, pairs, base_url=base_url)
        links = {"self": f"{base_url}/{rtype}?{urlencode(pairs)}"}
        if result.next_cursor is not None:
            kept = [(k, v) for k, v in pairs if k != "_cursor"]
            links["next"] = (
                f"{base_url}/{rtype}?{urlencode([*kept, ('_cursor', result.next_cursor)])}"
            )
        matches = [(e.rtype, e.rid, e.body) for e in result.matches]
        includes = [(e.rtype, e.rid, e.body) for e in result.included]
        return EntryResult(
            200,
            searchset=searchset_bundle(base_url, matches, result.total, links, included=includes),
        )


def _check_unique(plans: list[Plan]) -> None:
    """A transaction may touch each resource once (http.html#trules)."""
    seen: dict[tuple[str, str], int] = {}
    for plan in plans:
        if plan.action not in _WRITES or plan.rid is None:
            continue
        key = (plan.rtype, plan.rid)
        if key in seen:
            raise at_entry(
                plan.entry.index,
                BadRequest(f"the Bundle changes the same resource as entry {seen[key]}"),
            )
        seen[key] = plan.entry.index
