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
from phivault.errors import AuditUnavailable, NotFound
from phivault.service import authorize

if TYPE_CHECKING:
    from phivault.service.core import Context, Service

AUDIT_EVENT = "AuditEvent"
MAX_COUNT = 1000


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[dict[str, Any]]
    next_cursor: int | None  # pass as _cursor for the next (older) page


class AuditView:
    def __init__(self, service: Service) -> None:
        self.service = service

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
        rows = self._candidates(search, count, cursor)
        events: list[dict[str, Any]] = []
        for index, raw in rows:
            entry = decode_entry(raw)
            if matches(search, index, index_row_of(entry), entry):
                events.append(render(index, entry))
        next_cursor = rows[-1][0] if len(rows) == count else None
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
    ) -> list[tuple[int, bytes]]:
        store = self.service.store
        if search.ids is None:
            return store.audit_search(replace(search.query, before=cursor, count=count))
        wanted = sorted((i for i in search.ids if cursor is None or i < cursor), reverse=True)
        rows: list[tuple[int, bytes]] = []
        for index in wanted[:count]:
            rows.extend(store.audit_entries(index, index + 1))
        return rows

    def read(self, ctx: Context, rid: str) -> dict[str, Any]:
        authorize.type_level(self.service, ctx, "read", AUDIT_EVENT, rid)
        found = (
            self.service.store.audit_entries(int(rid), int(rid) + 1)
            if rid.isdigit() and len(rid) <= 18
            else []
        )
        shown = rid if rid.isdigit() and len(rid) <= 18 else None
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
