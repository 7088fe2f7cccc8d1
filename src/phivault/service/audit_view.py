"""The AuditEvent view: reading the audit log as FHIR AuditEvent resources.

    authorize (auditor) -> search the derived index -> re-check and render each hit from
    its entry -> audit this access to the audit log -> respond

AuditEvents are rendered from the log on every request; none is stored (writes are
refused, service/audited.py), so the view cannot diverge from the log.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from phivault.audit.auditevent import Search, matches, parse_search, render
from phivault.audit.entry import decode_entry, index_row_of
from phivault.audit.events import AccessEvent
from phivault.audit.log import AuditLog
from phivault.audit.terms import SEARCH_CATCH_UP, TermKeys, catch_up
from phivault.errors import AuditUnavailable, NotFound
from phivault.fhir.resources import small_int
from phivault.service import authorize
from phivault.store.audit_sql import AuditQuery

if TYPE_CHECKING:
    from phivault.service.core import Context, Service

AUDIT_EVENT = "AuditEvent"
MAX_COUNT = 1000
# Agent, entity, patient, action and failed outcomes are indexed (audit/terms.py, brought
# up to date by the search itself): a search on one of them walks its terms and its pages
# are exact. Only a search that filters on nothing indexed (an outcome list that includes
# success, with no other term) scans the entries' derived columns, newest first, this many
# at most per page, its next link continuing below the window; such a page can hold fewer
# matches than _count, even none.
SCAN_WINDOW = 50_000


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[dict[str, Any]]
    next_cursor: int | None  # pass as _cursor for the next (older) page


def _filters_anything(query: AuditQuery) -> bool:
    return bool(query.actions or query.outcomes or query.actors or query.entities or query.patients)


class AuditView:
    def __init__(self, service: Service) -> None:
        self.service = service
        audit = service.audit
        self._terms = TermKeys.of(audit.signer) if isinstance(audit, AuditLog) else None

    def _log(self) -> AuditLog:
        audit = self.service.audit
        if not isinstance(audit, AuditLog):
            raise AuditUnavailable("this server has no readable audit log")
        return audit

    def search(
        self, ctx: Context, pairs: list[tuple[str, str]], *, count: int, cursor: int | None
    ) -> AuditPage:
        # The auditor-role check: the access policy grants AuditEvent read/search to the
        # auditor role only (access/policy.py); a refusal is itself audited.
        authorize.type_level(self.service, ctx, "search", AUDIT_EVENT)
        log = self._log()
        search = parse_search(pairs, log.pseudonymize)
        count = max(1, min(count, MAX_COUNT))
        rows, next_cursor = self._candidates(search, count, cursor)
        events: list[dict[str, Any]] = []
        for index, raw in rows:
            entry = decode_entry(raw)
            if matches(search, index, index_row_of(entry), entry):
                events.append(render(index, entry))
        self.service.audit.record(
            AccessEvent(
                action="search",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                rtype=AUDIT_EVENT,
                # Names in clear, values keyed-hashed: a query may name a patient.
                query=tuple((n, log.pseudonymize(f"audit-query:{n}={v}")[:16]) for n, v in pairs),
                result_ids=tuple(f"{AUDIT_EVENT}/{e['id']}/1" for e in events),
            )
        )
        return AuditPage(events, next_cursor)

    def _candidates(
        self, search: Search, count: int, cursor: int | None
    ) -> tuple[list[tuple[int, bytes]], int | None]:
        """One page of hits, newest first, and the cursor of the next page (or None)."""
        store = self.service.store
        if search.ids is not None:
            wanted = sorted((i for i in search.ids if cursor is None or i < cursor), reverse=True)
            rows: list[tuple[int, bytes]] = []
            for index in wanted[:count]:
                rows.extend(store.audit_entries(index, index + 1))
            return rows, (wanted[count - 1] if len(wanted) > count else None)
        high = cursor if cursor is not None else store.audit_size()
        low_bound = 0
        if search.query.times:
            span = store.audit_time_span(search.query.times)
            if span is None:
                return [], None
            low_bound, high = span[0], min(high, span[1] + 1)
        if high <= low_bound:
            return [], None
        terms = self._terms.driver(search.query) if self._terms is not None else None
        if terms is not None or not _filters_anything(search.query):
            indexed = (
                catch_up(store, self._terms, limit=SEARCH_CATCH_UP)
                if terms is not None and self._terms
                else 0
            )
            query = replace(
                search.query,
                before=high,
                after=low_bound,
                count=count,
                terms=terms or (),
                indexed=indexed,
            )
            rows = store.audit_search(query)
            return rows, (rows[-1][0] if len(rows) == count else None)
        low = max(low_bound, high - SCAN_WINDOW)
        rows = store.audit_search(replace(search.query, before=high, after=low, count=count))
        if len(rows) == count:
            return rows, rows[-1][0]
        return rows, (low if low > low_bound else None)

    def read(self, ctx: Context, rid: str) -> dict[str, Any]:
        authorize.type_level(self.service, ctx, "read", AUDIT_EVENT, rid)
        index = small_int(rid)
        found = [] if index is None else self.service.store.audit_entries(index, index + 1)
        shown = rid if index is not None else None
        if not found:
            self.service._audit_failure(ctx, "read", AUDIT_EVENT, shown, NotFound())
            raise NotFound("AuditEvent is not known")
        index, raw = found[0]
        event = render(index, decode_entry(raw))
        self.service.audit.record(
            AccessEvent(
                action="read",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                rtype=AUDIT_EVENT,
                rid=str(index),
                version=1,
            )
        )
        return event
