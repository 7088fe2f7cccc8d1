"""AuditEvent search terms: the (term, entry) rows that make agent, entity, patient,
action and failed-outcome searches indexed lookups (table `audit_terms`, migration 008).

A term is HMAC-SHA256(K, kind || 0x00 || value) cut to 16 bytes, K derived from the
KEK-protected audit signing seed: the table names no agent, resource or patient in clear.

The rows are written behind the log, never on its durable append path: `catch_up`
indexes the entries past `audit_terms_state.upto` in large batches, each one transaction
of rows sorted by term (so a batch writes each index page once, where a random insert per
entry on the append path would cost most of the append rate). A search catches up first,
then walks the terms below `upto` and scans the few entries appended since. Terms only
pick candidates: every hit is re-checked against its entry before it is shown, so a
tampered term row can hide an entry from a search but never show a wrong one.
"""

from __future__ import annotations

from collections.abc import Iterable

from phivault.audit.checkpoint import CheckpointSigner
from phivault.crypto import primitives
from phivault.store.audit_sql import AuditIndexRow, AuditQuery
from phivault.store.base import Store

TERMS_INFO = b"phivault/audit-terms/v1"
TERM_SIZE = 16
BATCH = 10_000  # entries per indexing transaction (SQLite's appender waits meanwhile)
# Entries a search indexes before it runs; a larger backlog is left to the next searches
# and to `phivault audit index`, and scanned in SQL meanwhile (the query's tail arm).
SEARCH_CATCH_UP = 20_000


class TermKeys:
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def of(cls, signer: CheckpointSigner | None) -> TermKeys | None:
        return cls(signer.derive_key(TERMS_INFO)) if signer is not None else None

    def term(self, kind: str, value: str) -> bytes:
        message = kind.encode() + b"\x00" + value.encode()
        return primitives.hmac_sha256(self._key, message)[:TERM_SIZE]

    def terms_of(self, row: AuditIndexRow) -> Iterable[bytes]:
        yield self.term("agent", row.actor)
        yield self.term("action", row.action)
        if row.outcome != "0":
            yield self.term("outcome", row.outcome)
        if row.rtype is not None and row.rid is not None:
            yield self.term("entity", f"{row.rtype}/{row.rid}")
        if row.patient is not None:
            yield self.term("patient", row.patient)

    def driver(self, query: AuditQuery) -> tuple[bytes, ...] | None:
        """The terms of the most selective indexed filter (their entries are ORed), or
        None when the search filters on nothing indexed."""
        if query.entities and all(rid is not None for _, rid in query.entities):
            return tuple(self.term("entity", f"{t}/{i}") for t, i in query.entities)
        for kind, values in (
            ("patient", query.patients),
            ("agent", query.actors),
            ("outcome", query.outcomes if "0" not in query.outcomes else ()),
            ("action", query.actions),
        ):
            if values:
                return tuple(self.term(kind, v) for v in values)
        return None


def catch_up(store: Store, keys: TermKeys, *, batch: int = BATCH, limit: int | None = None) -> int:
    """Index the entries not indexed yet (at most `limit` of them); returns how far the
    index now reaches."""
    done = 0
    while True:
        with store.write() as tx:
            upto = tx.audit_terms_claim()  # locks the state row: one indexer at a time
            stop = min(tx.audit_size(), upto + batch)
            if limit is not None:
                stop = min(stop, upto + max(limit - done, 0))
            if stop <= upto:
                return upto
            done += stop - upto
            rows: list[tuple[bytes, int]] = []
            for row in tx.audit_rows(upto, stop):
                derived = AuditIndexRow(*(row[2:9]))
                if derived.time is None:
                    continue  # a malformed row: `audit verify` names it
                rows.extend((term, int(row[0])) for term in keys.terms_of(derived))
            rows.sort()
            tx.audit_terms_put(rows, upto, stop)
