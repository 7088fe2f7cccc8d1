"""The one place where the steps of a request are put in order.

    authenticate (api) -> authorize (policy) -> validate -> store (crypto seals the body)
    -> audit (same transaction for writes; durable before release for reads) -> respond

Lower layers (fhir, store, crypto, audit) know nothing of each other's order; only this
module does. Everything here is synchronous; the HTTP layer runs it in worker threads.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from phivault.audit.events import SUCCESS, AccessEvent, AuditSink
from phivault.crypto.codec import BodyCodec
from phivault.errors import (
    BadRequest,
    Gone,
    IdMismatch,
    InvalidResource,
    MalformedJson,
    NotFound,
    PhivaultError,
    PreconditionFailed,
    ResourceTypeMismatch,
    VersionConflict,
)
from phivault.fhir import json as fhir_json
from phivault.fhir import resources as fhir_types
from phivault.fhir.conditions import Condition, parse_condition
from phivault.fhir.indexing import IndexPolicy, index_rows, last_updated_rows, patient_compartment
from phivault.fhir.validation import validate_resource
from phivault.store.base import HistoryQuery, NewVersion, ReadView, Store, VersionRecord, WriteTx
from phivault.types import IndexRow, Resource

MAX_CONDITION_MATCHES = 2  # we only need to know 0, 1 or "more than one"


@dataclass(frozen=True, slots=True)
class Context:
    """Who is asking, from where and why. Filled in by the API's authentication step."""

    actor: str = "anonymous"
    client: str | None = None
    purpose: str | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """One version as the API sees it: plaintext JSON bytes plus its identity."""

    rtype: str
    rid: str
    version: int
    last_updated: str
    deleted: bool
    body: bytes | None
    method: str = "PUT"  # how this version came to be (history's request.method)


@dataclass(frozen=True, slots=True)
class WriteResult:
    version: Version
    created: bool  # a new resource (201) rather than a new version of one (200)
    changed: bool = True  # False when a conditional create matched an existing resource


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[Version]
    total: int
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A resource made ready for storage before the write transaction opens: id and
    lastUpdated set, index rows extracted (and blinded), its compartment's key in place."""

    rtype: str
    rid: str
    resource: Resource
    rows: list[IndexRow]
    compartment: str | None


@dataclass(slots=True)
class ImportStats:
    created: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Service:
    def __init__(
        self, store: Store, audit: AuditSink, codec: BodyCodec, index_policy: IndexPolicy
    ) -> None:
        self.store = store
        self.audit = audit
        self.codec = codec
        self.index_policy = index_policy

    # -- reads --------------------------------------------------------------------------
    def read(self, ctx: Context, rtype: str, rid: str) -> Version:
        fhir_types.check_type(rtype)
        fhir_types.check_id(rid)
        record = self.store.current(rtype, rid)
        return self._release(ctx, "read", rtype, rid, record)

    def vread(self, ctx: Context, rtype: str, rid: str, version: int) -> Version:
        fhir_types.check_type(rtype)
        fhir_types.check_id(rid)
        record = self.store.version(rtype, rid, version)
        return self._release(ctx, "vread", rtype, rid, record)

    def _release(
        self, ctx: Context, action: str, rtype: str, rid: str, record: VersionRecord | None
    ) -> Version:
        if record is None:
            self._audit_failure(ctx, action, rtype, rid, NotFound())
            raise NotFound(f"{rtype}/{rid} is not known")
        if record.deleted:
            self._audit_failure(ctx, action, rtype, rid, Gone())
            raise Gone(f"{rtype}/{rid} was deleted")
        version = self._open(record)
        # Released only once the audit entry is durable (fail closed).
        self.audit.record(self._event(ctx, action, record))
        return version

    def history(
        self,
        ctx: Context,
        rtype: str | None,
        rid: str | None,
        *,
        since: str | None,
        count: int,
        cursor: int | None,
    ) -> HistoryPage:
        if rtype is not None:
            fhir_types.check_type(rtype)
        if rid is not None:
            fhir_types.check_id(rid)
        since_text = fhir_types.instant_text(fhir_types.parse_instant(since)) if since else None
        query = HistoryQuery(rtype=rtype, rid=rid, since=since_text, before_seq=cursor, count=count)
        records = self.store.history(query)
        if rid is not None and not records and cursor is None:
            if self.store.current(rtype or "", rid) is None:
                self._audit_failure(ctx, "history", rtype, rid, NotFound())
                raise NotFound(f"{rtype}/{rid} is not known")
        total = self.store.history_total(query)
        items = [self._open(r) for r in records]
        next_cursor = records[-1].seq if len(records) == count and records else None
        self.audit.record(
            AccessEvent(
                action="history",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                rtype=rtype,
                rid=rid,
                result_ids=tuple(f"{r.rtype}/{r.rid}/{r.version}" for r in records),
            )
        )
        return HistoryPage(items=items, total=total, next_cursor=next_cursor)

    def search_ids(self, rtype: str, condition: Condition) -> list[str]:
        """Ids of live resources matching a condition (conditional create/update/delete)."""
        return _match(self.store, self.index_policy, rtype, condition, MAX_CONDITION_MATCHES)

    def search(
        self, ctx: Context, rtype: str, condition: Condition, *, count: int, offset: int
    ) -> tuple[list[Version], int]:
        fhir_types.check_type(rtype)
        ids = _match(self.store, self.index_policy, rtype, condition, None)
        total = len(ids)
        page = ids[offset : offset + count]
        versions = [self._open(r) for r in self.store.current_many(rtype, page)]
        self.audit.record(
            AccessEvent(
                action="search",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                rtype=rtype,
                query=condition.audit_terms(),
                result_ids=tuple(f"{v.rtype}/{v.rid}/{v.version}" for v in versions),
            )
        )
        return versions, total

    # -- writes -------------------------------------------------------------------------
    def create(
        self, ctx: Context, rtype: str, resource: Resource, *, if_none_exist: str | None = None
    ) -> WriteResult:
        fhir_types.check_type(rtype)
        self._validate(rtype, resource)
        if if_none_exist:
            condition = parse_condition(rtype, if_none_exist)
            found = self.search_ids(rtype, condition)
            if len(found) > 1:
                raise PreconditionFailed("If-None-Exist matched more than one resource")
            if found:
                existing = self.read(ctx, rtype, found[0])
                return WriteResult(existing, created=False, changed=False)
        # Server-assigned id: a client id in a POST body is ignored, as the spec requires.
        prepared = self.prepare(rtype, str(uuid.uuid4()), resource)
        with self.store.write() as tx:
            return self._write(ctx, tx, prepared, expected=None, action="create")

    def update(
        self,
        ctx: Context,
        rtype: str,
        rid: str,
        resource: Resource,
        *,
        if_match: int | None = None,
    ) -> WriteResult:
        fhir_types.check_type(rtype)
        fhir_types.check_id(rid)
        self._validate(rtype, resource)
        body_id = resource.get("id")
        if body_id is None:
            raise BadRequest(
                "an update must carry the resource id in the body", expression=[f"{rtype}.id"]
            )
        if body_id != rid:
            raise IdMismatch(expression=[f"{rtype}.id"])
        prepared = self.prepare(rtype, rid, resource)
        with self.store.write() as tx:
            tx.lock_resource(rtype, rid)
            return self._write(ctx, tx, prepared, expected=if_match, action="update")

    def conditional_update(
        self, ctx: Context, rtype: str, query: str, resource: Resource, *, if_match: int | None
    ) -> WriteResult:
        fhir_types.check_type(rtype)
        condition = parse_condition(rtype, query)
        found = self.search_ids(rtype, condition)
        if len(found) > 1:
            raise PreconditionFailed("the condition matched more than one resource")
        body_id = resource.get("id")
        if found:
            if body_id is not None and body_id != found[0]:
                raise IdMismatch(
                    "the id in the body differs from the resource the condition matched"
                )
            resource = {**resource, "id": found[0]}
            return self.update(ctx, rtype, found[0], resource, if_match=if_match)
        if isinstance(body_id, str):
            return self.update(ctx, rtype, body_id, resource, if_match=if_match)
        return self.create(ctx, rtype, resource)

    def delete(self, ctx: Context, rtype: str, rid: str) -> WriteResult | None:
        fhir_types.check_type(rtype)
        fhir_types.check_id(rid)
        with self.store.write() as tx:
            tx.lock_resource(rtype, rid)
            current = tx.current(rtype, rid)
            if current is None:
                raise NotFound(f"{rtype}/{rid} is not known")
            if current.deleted:
                return None  # deleting twice changes nothing
            record = tx.append_version(
                NewVersion(
                    rtype=rtype,
                    rid=rid,
                    version=current.version + 1,
                    last_updated=fhir_types.now_instant(),
                    deleted=True,
                    body=None,
                    compartment=current.compartment,
                    method="DELETE",
                )
            )
            self.audit.record(self._event(ctx, "delete", record), tx)
        return WriteResult(_version(record, None), created=False)

    def import_resources(
        self, ctx: Context, resources: Iterable[Resource], *, batch_size: int = 500
    ) -> Iterator[ImportStats]:
        """Store resources (client ids kept, PUT semantics), one transaction per batch.

        Yields cumulative statistics after each batch so a caller can show progress.
        Invalid resources are counted and skipped; they never reach the store.
        """
        stats = ImportStats()
        batch: list[Prepared] = []
        for resource in resources:
            try:
                rtype = resource.get("resourceType") if isinstance(resource, dict) else None
                if not isinstance(rtype, str):
                    raise InvalidResource(expression=["resourceType"])
                fhir_types.check_type(rtype)
                self._validate(rtype, resource)
                rid = resource.get("id")
                rid = fhir_types.check_id(rid) if isinstance(rid, str) else str(uuid.uuid4())
                batch.append(self.prepare(rtype, rid, resource))
            except PhivaultError as exc:
                stats.failed += 1
                if len(stats.errors) < 20:
                    stats.errors.append(exc.message)
            if len(batch) >= batch_size:
                self._import_batch(ctx, batch, stats)
                batch = []
                yield stats
        if batch:
            self._import_batch(ctx, batch, stats)
        yield stats

    def _import_batch(self, ctx: Context, batch: Sequence[Prepared], stats: ImportStats) -> None:
        with self.store.write() as tx:
            for prepared in batch:
                result = self._write(ctx, tx, prepared, expected=None, action="import")
                if result.created:
                    stats.created += 1
                else:
                    stats.updated += 1

    # -- steps --------------------------------------------------------------------------
    def _validate(self, rtype: str, resource: Resource) -> None:
        if not isinstance(resource, dict):
            raise MalformedJson("the body must be a JSON object")
        if resource.get("resourceType") != rtype:
            raise ResourceTypeMismatch(expression=["resourceType"])
        validate_resource(resource)

    def prepare(self, rtype: str, rid: str, resource: Resource) -> Prepared:
        """Everything about a write that needs no transaction: id, lastUpdated, index rows,
        compartment, and the compartment's data key (created here, in its own short
        transaction, never inside the data transaction)."""
        stored = dict(resource)
        stored["id"] = rid
        meta = dict(stored.get("meta") or {})
        meta.pop("versionId", None)
        meta["lastUpdated"] = fhir_types.now_instant()
        stored["meta"] = meta
        rows = index_rows(stored)
        compartment = patient_compartment(stored, rows)
        self.codec.prepare(compartment)
        return Prepared(rtype, rid, stored, self.index_policy.transform(rtype, rows), compartment)

    def _write(
        self,
        ctx: Context,
        tx: WriteTx,
        prepared: Prepared,
        *,
        expected: int | None,
        action: str,
    ) -> WriteResult:
        rtype, rid = prepared.rtype, prepared.rid
        current = tx.current(rtype, rid)
        if expected is not None and (current is None or current.version != expected):
            raise VersionConflict()
        version = current.version + 1 if current else 1
        stored = prepared.resource
        # Stamped inside the transaction, after the resource lock, and never before the
        # previous version: _since polling relies on lastUpdated not going backwards.
        last_updated = fhir_types.now_instant()
        if current is not None and current.last_updated > last_updated:
            last_updated = current.last_updated
        meta = {k: v for k, v in stored["meta"].items() if k != "lastUpdated"}
        stored["meta"] = {"versionId": str(version), "lastUpdated": last_updated, **meta}
        rows = [r for r in prepared.rows if r.param != "_lastUpdated"]
        rows.extend(last_updated_rows(last_updated))
        body = fhir_json.dumps(stored)
        sealed = self.codec.seal(rtype, rid, version, prepared.compartment, body)
        record = tx.append_version(
            NewVersion(
                rtype=rtype,
                rid=rid,
                version=version,
                last_updated=last_updated,
                deleted=False,
                body=sealed,
                compartment=prepared.compartment,
                index=rows,
                method="POST" if action == "create" else "PUT",
            )
        )
        created = current is None
        event_action = action if action != "import" else ("create" if created else "update")
        self.audit.record(self._event(ctx, event_action, record), tx)
        return WriteResult(_version(record, body), created=created)

    def _open(self, record: VersionRecord) -> Version:
        body = None
        if record.body is not None:
            body = self.codec.open(
                record.rtype, record.rid, record.version, record.compartment, record.body
            )
        return _version(record, body)

    def _event(self, ctx: Context, action: str, record: VersionRecord) -> AccessEvent:
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

    def _audit_failure(
        self, ctx: Context, action: str, rtype: str | None, rid: str | None, error: PhivaultError
    ) -> None:
        self.audit.record(
            AccessEvent(
                action=action,
                outcome="4",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                rtype=rtype,
                rid=rid,
                detail=type(error).__name__,
            )
        )


def _version(record: VersionRecord, body: bytes | None) -> Version:
    return Version(
        rtype=record.rtype,
        rid=record.rid,
        version=record.version,
        last_updated=record.last_updated,
        deleted=record.deleted,
        body=body,
        method=record.method,
    )


def _match(
    view: ReadView, policy: IndexPolicy, rtype: str, condition: Condition, limit: int | None
) -> list[str]:
    """Intersect the ids each term matches (AND); a term's values are ORed."""
    result: set[str] | None = None
    cap = limit if limit is not None else 1_000_000
    for term in condition.terms:
        ids: set[str] = set()
        for system, value in term.values:
            if term.param == "_id":
                record = view.current(rtype, value)
                if record is not None and not record.deleted:
                    ids.add(value)
            else:
                # AND with a limit would cut a set before intersecting; only cap the last.
                if policy.is_blinded(rtype, term.param):
                    value = policy.query_token(term.param, value)
                ids.update(view.find_token(rtype, term.param, system, value, 1_000_000))
        result = ids if result is None else result & ids
        if not result:
            return []
    found = sorted(result or ())
    return found[:cap]
