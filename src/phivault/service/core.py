"""The one place where the steps of a request are put in order.

    authenticate (api) -> authorize (policy) -> validate -> store (crypto seals the body)
    -> audit (same transaction for writes; durable before release for reads) -> respond

Lower layers (fhir, store, crypto, audit) know nothing of each other's order; only this
module does. Everything here is synchronous; the HTTP layer runs it in worker threads.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import overload

from phivault.access.policy import AccessPolicy, AllowAll
from phivault.audit.events import MINOR_FAILURE, SERIOUS_FAILURE, AccessEvent, AuditSink
from phivault.crypto.codec import BodyCodec
from phivault.errors import (
    BadRequest,
    DecryptionError,
    Gone,
    IdMismatch,
    KeyShredded,
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
from phivault.service import access_guard, authorize, conditional, history_view
from phivault.service.audited import access_event, audits_failure, check_writable, failure_event
from phivault.service.patch import patch_resource
from phivault.service.records import Context as Context
from phivault.service.records import HistoryPage as HistoryPage
from phivault.service.records import ImportStats as ImportStats
from phivault.service.records import Prepared as Prepared
from phivault.service.records import Version as Version
from phivault.service.records import WriteResult as WriteResult
from phivault.service.search import Searcher, SearchResult
from phivault.service.search_system import SystemSearch
from phivault.store.base import (
    HistoryQuery,
    NewVersion,
    ReadAhead,
    ReadView,
    Store,
    VersionRecord,
    WriteTx,
)
from phivault.types import Resource

MAX_CONDITION_MATCHES = 2  # we only need to know 0, 1 or "more than one"
# Integrity alarms (a stored body that fails authentication). Type and row number only:
# never ids, values or key material.
security_log = logging.getLogger("phivault.security")
# The interaction recorded in history (versions.method) per write action.
_METHODS = {"create": "POST", "patch": "PATCH"}


class Service:
    def __init__(
        self,
        store: Store,
        audit: AuditSink,
        codec: BodyCodec,
        index_policy: IndexPolicy,
        policy: AccessPolicy | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.codec = codec
        self.index_policy = index_policy
        self.policy: AccessPolicy = policy or AllowAll()
        self.searcher = Searcher(store, codec, index_policy, audit, access=lambda: self.policy)

    # -- reads --------------------------------------------------------------------------
    def read(self, ctx: Context, rtype: str, rid: str, ahead: ReadAhead | None = None) -> Version:
        """`ahead`: rtype/rid's current version and key rows, read already with the access
        epochs (api/read_ahead.py): not read again."""
        fhir_types.check_type(rtype)
        fhir_types.check_id(rid)
        authorize.type_level(self, ctx, "read", rtype, rid)
        if ahead is None or (ahead.rtype, ahead.rid) != (rtype, rid):
            return self._release(ctx, "read", rtype, rid, self.store.current(rtype, rid))
        record = ahead.record
        if record is not None and record.body is not None and ahead.wrapped:
            self.codec.offer(record.compartment, record.body, ahead.wrapped)
        return self._release(ctx, "read", rtype, rid, record)

    def vread(self, ctx: Context, rtype: str, rid: str, version: int) -> Version:
        fhir_types.check_type(rtype)
        fhir_types.check_id(rid)
        authorize.type_level(self, ctx, "vread", rtype, rid)
        record = self.store.version(rtype, rid, version)
        return self._release(ctx, "vread", rtype, rid, record)

    def _release(
        self, ctx: Context, action: str, rtype: str, rid: str, record: VersionRecord | None
    ) -> Version:
        if record is None:
            self._audit_failure(ctx, action, rtype, rid, NotFound())
            raise NotFound(f"{rtype}/{rid} is not known")
        if record.deleted:
            # A deleted record of a hidden patient answers like one never created.
            authorize.instance(self, ctx, action, rtype, rid, record.compartment, None)
            self._audit_failure(ctx, action, rtype, rid, Gone())
            raise Gone(f"{rtype}/{rid} was deleted")
        try:
            version = self._open(record)
        except (KeyShredded, DecryptionError) as exc:
            outcome = MINOR_FAILURE if isinstance(exc, KeyShredded) else SERIOUS_FAILURE
            self._audit_failure(ctx, action, rtype, rid, exc, outcome=outcome)
            raise
        authorize.instance(self, ctx, action, rtype, rid, record.compartment, version.body)
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
        authorize.type_level(self, ctx, "history", rtype, rid)
        since_text = fhir_types.instant_text(fhir_types.parse_instant(since)) if since else None
        query = HistoryQuery(rtype=rtype, rid=rid, since=since_text, before_seq=cursor, count=count)
        records = self.store.history(query)
        if rid is not None and not records and cursor is None:
            if self.store.current(rtype or "", rid) is None:
                self._audit_failure(ctx, "history", rtype, rid, NotFound())
                raise NotFound(f"{rtype}/{rid} is not known")
        total: int | None
        if history_view.unrestricted(self, ctx, rtype, rid):
            total = self.store.history_total(query)
            items = self._open_many(ctx, "history", records)
            next_cursor = records[-1].seq if len(records) == count and records else None
        else:
            if rid is not None and records:
                # The resource itself first: hidden means "not known", never an empty page.
                first = records[0]
                opened = self._open_many(ctx, "history", [first])
                body = opened[0].body if opened else None
                authorize.instance(self, ctx, "history", first.rtype, rid, first.compartment, body)
            # Hidden versions are skipped before the page is cut, and the store's total
            # would count them: a total only when this page holds the whole history.
            items, next_cursor = history_view.visible_page(self, ctx, query)
            total = len(items) if cursor is None and next_cursor is None else None
        self.audit.record(
            AccessEvent(
                action="history",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                rtype=rtype,
                rid=rid,
                result_ids=tuple(f"{v.rtype}/{v.rid}/{v.version}" for v in items),
            )
        )
        return HistoryPage(items=items, total=total, next_cursor=next_cursor)

    def search_ids(
        self,
        rtype: str,
        condition: Condition,
        ctx: Context | None = None,
        view: ReadView | None = None,
    ) -> list[str]:
        """Ids of live resources matching a condition (conditional create/update/patch):
        the search engine, strict, stopping at MAX_CONDITION_MATCHES. With `ctx`, only
        what that caller may see matches (service/conditional.py explains why). `view`: a
        write transaction to match in (the store otherwise)."""
        fhir_types.check_type(rtype)
        if ctx is not None:
            access_guard.require_type(self, ctx, "search", rtype)
        return self.searcher.find_ids(
            rtype, condition.request, MAX_CONDITION_MATCHES, view=view, ctx=ctx
        )

    @overload
    def search(
        self,
        ctx: Context,
        rtype: str,
        pairs: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
        default_count: int = 50,
        max_count: int = 1000,
        base_url: str | None = None,
        compartment: str | None = None,
    ) -> SearchResult: ...

    @overload
    def search(
        self, ctx: Context, rtype: str, pairs: Condition, *, count: int, offset: int = 0
    ) -> tuple[list[Version], int]: ...

    def search(
        self,
        ctx: Context,
        rtype: str,
        pairs: Sequence[tuple[str, str]] | Condition,
        *,
        strict: bool = False,
        default_count: int = 50,
        max_count: int = 1000,
        base_url: str | None = None,
        compartment: str | None = None,
        count: int | None = None,
        offset: int = 0,
    ) -> SearchResult | tuple[list[Version], int]:
        """FHIR search on one type, or in Patient/`compartment` (service/search.py).

        With a parsed `Condition` and `count`: the first page of its matches as
        (versions, total), `offset` 0 only (paging is by cursor)."""
        if isinstance(pairs, Condition):
            if offset:
                raise BadRequest("search pages are reached by cursor, not by offset")
            request = replace(pairs.request, count=count)
            result = self.searcher.run(ctx, request, default_count=count or default_count)
            versions = [
                Version(e.rtype, e.rid, e.version, e.last_updated, False, e.body)
                for e in result.matches
            ]
            total = result.total if result.total is not None else len(versions)
            return versions, total
        return self.searcher.search(
            ctx,
            rtype,
            pairs,
            strict=strict,
            default_count=default_count,
            max_count=max_count,
            base_url=base_url,
            compartment=compartment,
        )

    def search_system(
        self,
        ctx: Context,
        pairs: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
        default_count: int = 50,
        max_count: int = 1000,
        base_url: str | None = None,
    ) -> SearchResult:
        """Search across types: `GET [base]?_type=...` (service/search_system.py)."""
        return SystemSearch(self.searcher).search(
            ctx,
            pairs,
            strict=strict,
            default_count=default_count,
            max_count=max_count,
            base_url=base_url,
        )

    # -- writes -------------------------------------------------------------------------
    @audits_failure("create")
    def create(
        self, ctx: Context, rtype: str, resource: Resource, *, if_none_exist: str | None = None
    ) -> WriteResult:
        fhir_types.check_type(rtype)
        self._validate(rtype, resource)
        authorize.writable(self, ctx, "create", rtype, None, resource)
        if if_none_exist:
            # matched again inside the write transaction (service/conditional.py)
            return conditional.create(self, ctx, rtype, resource, if_none_exist)
        # Server-assigned id: a client id in a POST body is ignored, as the spec requires.
        prepared = self.prepare(rtype, str(uuid.uuid4()), resource, drawn=True)
        with self.store.write() as tx:
            return self._write(ctx, tx, prepared, expected=None, action="create")

    @audits_failure("update", id_arg=True)
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
        authorize.writable(self, ctx, "update", rtype, rid, resource)
        prepared = self.prepare(rtype, rid, resource)
        with self.store.write() as tx:
            tx.lock_resource(rtype, rid)
            return self._write(ctx, tx, prepared, expected=if_match, action="update")

    @audits_failure("update")
    def conditional_update(
        self, ctx: Context, rtype: str, query: str, resource: Resource, *, if_match: int | None
    ) -> WriteResult:
        fhir_types.check_type(rtype)
        return conditional.update(self, ctx, rtype, query, resource, if_match=if_match)

    @audits_failure("delete", id_arg=True)
    def delete(self, ctx: Context, rtype: str, rid: str) -> WriteResult | None:
        fhir_types.check_type(rtype)
        fhir_types.check_id(rid)
        authorize.writable(self, ctx, "delete", rtype, rid, None)
        with self.store.write() as tx:
            return self._delete(ctx, tx, rtype, rid)

    @audits_failure("delete")
    def conditional_delete(
        self, ctx: Context, rtype: str, query: str, *, max_matches: int = 1
    ) -> list[WriteResult | None]:
        """`DELETE [type]?condition` (service/conditional.py): every match, in one
        transaction, when there are at most `max_matches`; 412 beyond."""
        fhir_types.check_type(rtype)
        return conditional.delete(self, ctx, rtype, query, max_matches=max_matches)

    @audits_failure("patch", id_arg=True)
    def patch(
        self,
        ctx: Context,
        rtype: str,
        rid: str,
        operations: object,
        *,
        if_match: int | None = None,
    ) -> WriteResult:
        """Apply a JSON Patch (RFC 6902); versioned and validated like an update."""
        return patch_resource(self, ctx, rtype, rid, operations, if_match=if_match)

    @audits_failure("patch")
    def conditional_patch(
        self, ctx: Context, rtype: str, query: str, operations: object, *, if_match: int | None
    ) -> WriteResult:
        fhir_types.check_type(rtype)
        found = self.search_ids(rtype, parse_condition(rtype, query), ctx)
        if not found:
            raise NotFound("the condition matched no resource")
        if len(found) > 1:
            raise PreconditionFailed("the condition matched more than one resource")
        return self.patch(ctx, rtype, found[0], operations, if_match=if_match)

    def import_resources(
        self, ctx: Context, resources: Iterable[Resource], *, batch_size: int = 500
    ) -> Iterator[ImportStats]:
        """Store resources (client ids kept, PUT semantics), one transaction per batch;
        yields cumulative statistics after each batch (see service/importing.py)."""
        from phivault.service.importing import import_resources

        return import_resources(self, ctx, resources, batch_size=batch_size)

    # -- steps --------------------------------------------------------------------------
    def _validate(self, rtype: str, resource: Resource) -> None:
        if not isinstance(resource, dict):
            raise MalformedJson("the body must be a JSON object")
        if resource.get("resourceType") != rtype:
            raise ResourceTypeMismatch(expression=["resourceType"])
        validate_resource(resource)

    def prepare(
        self,
        rtype: str,
        rid: str,
        resource: Resource,
        checked: set[str | None] | None = None,
        *,
        drawn: bool = False,
    ) -> Prepared:
        """Everything about a write that needs no transaction: id, lastUpdated, index rows,
        compartment, and the check that the compartment's data key may be written (not
        shredded). `checked`: compartments whose key a bulk import checked already for
        the batch being prepared (one lookup per compartment instead of per resource).
        `drawn`: `rid` is a random id the server just drew (a create), so a Patient's own
        compartment is new and its key is not looked up (KeyRing.check_writable)."""
        check_writable(rtype)
        stored = dict(resource)
        stored["id"] = rid
        meta = dict(stored.get("meta") or {})
        meta.pop("versionId", None)
        meta["lastUpdated"] = fhir_types.now_instant()
        stored["meta"] = meta
        rows = index_rows(stored)
        compartment = patient_compartment(stored, rows)
        if checked is None or compartment not in checked:
            new = drawn and rtype == "Patient" and compartment == f"Patient/{rid}"
            self.codec.prepare(compartment, new=new)
            if checked is not None:
                checked.add(compartment)
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
        current = tx.current(prepared.rtype, prepared.rid)
        if expected is not None and (current is None or current.version != expected):
            raise VersionConflict()
        new, body = self._new_version(tx, prepared, current, action)
        return self._written(ctx, tx, tx.append_version(new), body, current is None, action)

    def _write_many(
        self, ctx: Context, tx: WriteTx, batch: Sequence[Prepared], *, action: str
    ) -> list[WriteResult]:
        """`_write` (with no expected version) of resources of distinct identities, in
        fewer statements: one lookup of the current versions per type, one bulk append
        (store/base.py WriteTx.append_versions). Bulk import uses it."""
        currents: dict[tuple[str, str], VersionRecord] = {}
        for rtype in dict.fromkeys(p.rtype for p in batch):
            rids = [p.rid for p in batch if p.rtype == rtype]
            currents.update(((rtype, r.rid), r) for r in tx.current_many(rtype, rids))
        olds = [currents.get((p.rtype, p.rid)) for p in batch]
        made = [self._new_version(tx, p, old, action) for p, old in zip(batch, olds, strict=True)]
        records = tx.append_versions([new for new, _ in made])
        return [
            self._written(ctx, tx, record, body, old is None, action)
            for record, (_, body), old in zip(records, made, olds, strict=True)
        ]

    def _new_version(
        self, tx: WriteTx, prepared: Prepared, current: VersionRecord | None, action: str
    ) -> tuple[NewVersion, bytes]:
        """The next version of `prepared` after `current`, sealed; and its plain body."""
        rtype, rid = prepared.rtype, prepared.rid
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
        # In this transaction: a new compartment's data key is created with its first data.
        sealed = self.codec.seal(rtype, rid, version, prepared.compartment, body, tx)
        new = NewVersion(
            rtype=rtype,
            rid=rid,
            version=version,
            last_updated=last_updated,
            deleted=False,
            body=sealed,
            compartment=prepared.compartment,
            index=rows,
            method=_METHODS.get(action, "PUT"),
        )
        return new, body

    def _written(
        self,
        ctx: Context,
        tx: WriteTx,
        record: VersionRecord,
        body: bytes,
        created: bool,
        action: str,
    ) -> WriteResult:
        """A version appended: its audit entry, in the same transaction."""
        event_action = action if action != "import" else ("create" if created else "update")
        self.audit.record(self._event(ctx, event_action, record), tx)
        return WriteResult(_version(record, body), created=created)

    def _delete(self, ctx: Context, tx: WriteTx, rtype: str, rid: str) -> WriteResult | None:
        """Delete inside the caller's transaction; None if it was deleted already."""
        check_writable(rtype)
        tx.lock_resource(rtype, rid)
        current = tx.current(rtype, rid)
        if current is None:
            raise NotFound(f"{rtype}/{rid} is not known")
        if current.deleted:
            # Deleting twice changes nothing, but it is still an answered request (204).
            self.audit.record(self._event(ctx, "delete", current), tx)
            return None
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

    def _open(self, record: VersionRecord) -> Version:
        body = None
        if record.body is not None:
            try:
                body = self.codec.open(
                    record.rtype, record.rid, record.version, record.compartment, record.body
                )
            except DecryptionError:
                security_log.warning(
                    "stored version failed authentication: type=%s seq=%d",
                    record.rtype,
                    record.seq,
                )
                raise
        return _version(record, body)

    def _open_many(
        self, ctx: Context, action: str, records: Sequence[VersionRecord]
    ) -> list[Version]:
        """Open versions for a bundle. Crypto-shredded ones are left out (their data no
        longer exists); one that fails authentication fails the request (audited), so
        that tampering is never passed over in silence."""
        opened: list[Version] = []
        for record in records:
            try:
                opened.append(self._open(record))
            except KeyShredded:
                continue
            except DecryptionError as exc:
                self._audit_failure(
                    ctx, action, record.rtype, record.rid, exc, outcome=SERIOUS_FAILURE
                )
                raise
        return opened

    def _event(self, ctx: Context, action: str, record: VersionRecord) -> AccessEvent:
        return access_event(ctx, action, record)

    def _audit_failure(
        self,
        ctx: Context,
        action: str,
        rtype: str | None,
        rid: str | None,
        error: PhivaultError,
        *,
        outcome: str = MINOR_FAILURE,
    ) -> None:
        self.audit.record(failure_event(ctx, action, rtype, rid, error, outcome))


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
