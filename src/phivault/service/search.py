"""Search, in the service's order of steps:

    parse (fhir/search) -> type-level access check -> plan through the index policy
    (search_plan) -> restrict to what the caller may see (search_access: store predicates,
    chains and _has included) -> store page + total -> decrypt -> re-check blinded
    prefixes and data-dependent access -> _include / _revinclude (each released resource
    decided by the policy) -> _summary / _elements -> audit -> respond

The page, its total and its links all come from one predicate, so a filter added by the
access policy changes counts and pages alike. The audit entry names each parameter with a
keyed digest of its value (never the value) and lists every resource returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from phivault.access.policy import AccessPolicy, AllowAll, Decision, Target
from phivault.audit.events import SERIOUS_FAILURE, AccessEvent, AuditSink
from phivault.crypto.codec import BodyCodec
from phivault.errors import DecryptionError, Gone, KeyShredded, NotFound
from phivault.fhir import json as fhir_json
from phivault.fhir import resources as fhir_types
from phivault.fhir import valuesets
from phivault.fhir.indexing import IndexPolicy
from phivault.fhir.search import default_registry
from phivault.fhir.search.extract import extract_params
from phivault.fhir.search.model import SearchRequest
from phivault.fhir.search.query import parse_search
from phivault.fhir.search.registry import Registry
from phivault.fhir.search.shaping import shape
from phivault.fhir.valuesets import CodeSet
from phivault.service import search_access, search_include
from phivault.service.search_access import Keep, Visibility
from phivault.service.search_cursor import decode_cursor, encode_cursor
from phivault.service.search_plan import MAX_RESOLVED_IDS, Planner, Recheck
from phivault.service.search_result import Entry, SearchResult
from phivault.store.base import ReadView, Store, VersionRecord
from phivault.store.search_spec import (
    EXACT_TOKEN,
    Cmp,
    IndexMatch,
    SearchRow,
    SearchSpec,
    Term,
)

if TYPE_CHECKING:
    from phivault.service.core import Context

__all__ = ["Entry", "SearchResult", "Searcher"]

DEFAULT_TOTAL_CAP = 1000  # without _total, a total is given when counting stops below this
RECHECK_TOTAL_CAP = 10_000  # candidates decrypted at most to count a re-checked search
RECHECK_PAGE_CAP = 2_000  # candidates decrypted at most for one re-checked page
RECHECK_BATCH = 100
MAX_VALUESET_VERSIONS = 50  # stored versions of one ValueSet url considered


@dataclass(frozen=True, slots=True)
class _Found:
    row: SearchRow
    body: bytes


@dataclass(frozen=True, slots=True)
class _Page:
    found: list[_Found]  # in the spec's natural order
    more: bool  # candidates remain beyond `edge` in the direction of travel
    edge: tuple[Any, ...] | None  # the last candidate examined, in the direction of travel


class Searcher:
    def __init__(
        self,
        store: Store,
        codec: BodyCodec,
        policy: IndexPolicy,
        audit: AuditSink,
        registry: Registry | None = None,
        access: Callable[[], AccessPolicy] | None = None,
    ) -> None:
        self.store = store
        self.codec = codec
        self.policy = policy
        self.audit = audit
        self.registry = registry or default_registry()
        self._access = access or AllowAll

    # -- access-control hooks (the access policy plugs in here) -------------------------------
    def visibility(self, ctx: Context, rtype: str) -> Visibility | None:
        """What `ctx` may see of `rtype` (care relationship, patient context, consent,
        break-glass), as store predicates ANDed into the page, the total and the links
        alike, so totals never count hidden resources. None: no restriction."""
        return search_access.visibility(self._access(), ctx, "search", rtype)

    def inner_terms(self, ctx: Context, rtype: str) -> tuple[Term, ...]:
        """Predicates for the inside of a chain or `_has` on `rtype`: what is certainly
        visible only (403 if `rtype` may never be searched by this caller)."""
        search_access.check_type(self._access(), self.audit, ctx, "search", rtype)
        found = self.visibility(ctx, rtype)
        return found.sure if found is not None else ()

    def visible_entries(self, ctx: Context, entries: list[Entry]) -> list[Entry]:
        """The included (_include / _revinclude) resources `ctx` may read."""
        if ctx.principal is None:
            return entries
        policy = self._access()
        kept: list[Entry] = []
        for entry in entries:
            target = Target(entry.rtype, entry.rid, entry.compartment, None, entry.body)
            if policy.decide(ctx, "read", target) is Decision.ALLOW:
                kept.append(entry)
        return kept

    # -- the search -----------------------------------------------------------------------
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
    ) -> SearchResult:
        """Run a type-level search (or a Patient compartment search when `compartment`
        names a patient id). Raises a BadRequest subclass for refused requests."""
        fhir_types.check_type(rtype)
        request = parse_search(rtype, pairs, strict=strict, max_count=max_count)
        return self.run(
            ctx, request, default_count=default_count, base_url=base_url, compartment=compartment
        )

    def run(
        self,
        ctx: Context,
        request: SearchRequest,
        *,
        default_count: int = 50,
        base_url: str | None = None,
        compartment: str | None = None,
    ) -> SearchResult:
        """Run a parsed search."""
        try:
            return self._run(ctx, request, default_count, base_url, compartment)
        except DecryptionError as exc:
            # A stored version failed its integrity check: never passed over in silence.
            self.audit.record(
                AccessEvent(
                    action="search",
                    outcome=SERIOUS_FAILURE,
                    actor=ctx.actor,
                    client=ctx.client,
                    purpose=ctx.purpose,
                    rtype=request.rtype,
                    detail=type(exc).__name__,
                )
            )
            raise

    def _run(
        self,
        ctx: Context,
        request: SearchRequest,
        default_count: int,
        base_url: str | None,
        compartment: str | None,
    ) -> SearchResult:
        rtype = request.rtype
        access = self._access()
        search_access.check_type(access, self.audit, ctx, "search", rtype)
        if compartment is not None:
            search_access.check_compartment(access, self.audit, ctx, rtype, compartment)
        spec, keep = self.prepare(ctx, request, base_url, compartment)
        after, backward = decode_cursor(request.cursor, spec.sort)
        count = request.count if request.count is not None else default_count
        if request.summary == "count":
            count = 0
        spec = replace(spec, limit=count, after=after, backward=backward)
        page = self._page(spec, keep)
        total = self._total(request, spec, keep, page)
        warnings = [f"{i.reason}: {i.name}" for i in request.ignored]
        matches = [_entry(f.row.record, f.body) for f in page.found]
        matches, included = self.finish(ctx, request, matches, warnings)
        return self.conclude(
            ctx,
            request,
            matches,
            included,
            total,
            _cursors(page, spec),
            warnings,
            rtype=rtype,
            compartment=f"Patient/{compartment}" if compartment is not None else None,
        )

    def conclude(
        self,
        ctx: Context,
        request: SearchRequest,
        matches: list[Entry],
        included: list[Entry],
        total: int | None,
        cursors: tuple[str | None, str | None],
        warnings: Sequence[str],
        *,
        rtype: str | None = None,
        compartment: str | None = None,
    ) -> SearchResult:
        """The result of a search page, released only once its audit entry (with every
        id returned) is durable."""
        result = SearchResult(
            request=request,
            matches=matches,
            included=included,
            total=total,
            next_cursor=cursors[0],
            previous_cursor=cursors[1],
            warnings=tuple(warnings),
        )
        self.audit.record(
            AccessEvent(
                action="search",
                actor=ctx.actor,
                client=ctx.client,
                purpose=ctx.purpose,
                rtype=rtype,
                compartment=compartment,
                query=self.audit_terms(request.used),
                result_ids=tuple(e.ref for e in (*matches, *included)),
            )
        )
        return result

    def prepare(
        self,
        ctx: Context,
        request: SearchRequest,
        base_url: str | None = None,
        compartment: str | None = None,
    ) -> tuple[SearchSpec, Keep | None]:
        """The store predicates and sort of a parsed search, narrowed to what `ctx` may
        see, and the check of each decrypted candidate (None: the predicates are exact).
        The type-level check is the caller's."""
        rtype = request.rtype

        def inner(inner_type: str) -> tuple[Term, ...]:
            return self.inner_terms(ctx, inner_type)

        planner = Planner(self.policy, self.registry, self._resolve, base_url, inner, self.expand)
        plan = planner.plan(rtype, request.filters)
        seen = self.visibility(ctx, rtype)
        terms = plan.terms + (seen.candidates if seen is not None else ())
        keep = _keeper(plan.rechecks, seen.keep if seen is not None else None)
        if compartment is not None:
            self._check_patient(compartment)
            terms += (planner.compartment(rtype, compartment),)
        return SearchSpec(rtype, terms, planner.sort(rtype, request.sort)), keep

    def finish(
        self, ctx: Context, request: SearchRequest, matches: list[Entry], warnings: list[str]
    ) -> tuple[list[Entry], list[Entry]]:
        """_include / _revinclude (what `ctx` may read), then _summary / _elements:
        (matches, included)."""

        def open_visible(records: list[VersionRecord]) -> list[Entry]:
            return self.visible_entries(ctx, self._entries(records))

        included = search_include.collect(self.store, request, matches, open_visible, warnings)
        if request.summary or request.elements:
            matches = [_shaped(e, request.summary, request.elements) for e in matches]
            if request.summary in ("true", "text", "data"):
                included = [_shaped(e, request.summary, ()) for e in included]
        return matches, included

    def find_ids(
        self,
        rtype: str,
        request: SearchRequest,
        limit: int,
        view: ReadView | None = None,
        ctx: Context | None = None,
    ) -> list[str]:
        """Ids of the first `limit` live matches (conditional interactions), read through
        `view` (a write transaction, so that the match and the write are one step). With
        `ctx`, only what that caller may see can match (the same predicates as its
        searches), so a conditional interaction never reveals a hidden record."""
        planner = Planner(self.policy, self.registry, self._resolve, expand=self.expand)
        if ctx is not None:
            caller = ctx
            planner.inner = lambda inner_type: self.inner_terms(caller, inner_type)
        plan = planner.plan(rtype, request.filters)
        seen = self.visibility(ctx, rtype) if ctx is not None else None
        terms = plan.terms + (seen.candidates if seen is not None else ())
        keep = _keeper(plan.rechecks, seen.keep if seen is not None else None)
        page = self._page(SearchSpec(rtype, terms, limit=limit), keep, view)
        return [f.row.record.rid for f in page.found]

    def audit_terms(self, used: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """(name, keyed digest of the value): what was asked, never the value itself (a
        name, an MRN). The digest is keyed (the index policy's token key, in a domain of
        its own), so a guess cannot be confirmed by hashing it; equal searches still give
        equal digests, which is what a reviewer needs."""
        out: list[tuple[str, str]] = []
        for name, raw in used:
            token = self.policy.query_token(f"audit:{name}", raw)
            out.append((name, hashlib.sha256(token.encode()).hexdigest()[:32]))
        return tuple(out)

    def expand(self, url: str) -> CodeSet:
        """The codes of a ValueSet stored in this server (`:in`, `:not-in`). ValueSets are
        terminology, outside every patient compartment: read without a per-caller check."""
        return valuesets.expand(url, self._valueset)

    def _valueset(self, url: str, version: str | None) -> dict[str, Any] | None:
        """The stored ValueSet with this canonical url (or `ValueSet/id`), the given
        version, else the highest version."""
        if url.startswith("ValueSet/"):
            found = self.store.current("ValueSet", url[len("ValueSet/") :])
            records = [found] if found is not None and not found.deleted else []
        else:
            row = (Cmp("value", "=", url),)
            term = Term((IndexMatch("uri", "url", (row,), EXACT_TOKEN),))
            page = self.store.search(SearchSpec("ValueSet", (term,), limit=MAX_VALUESET_VERSIONS))
            records = [r.record for r in page.rows]
        candidates: list[dict[str, Any]] = []
        for record in records:
            body = self._open(record)
            parsed = fhir_json.loads(body) if body is not None else None
            if isinstance(parsed, dict) and version in (None, parsed.get("version")):
                candidates.append(parsed)
        if not candidates:
            return None
        return max(candidates, key=lambda vs: str(vs.get("version", "")))

    # -- steps ------------------------------------------------------------------------------
    def _check_patient(self, patient_id: str) -> None:
        fhir_types.check_id(patient_id)
        record = self.store.current("Patient", patient_id)
        if record is None:
            raise NotFound(f"Patient/{patient_id} is not known")
        if record.deleted:
            raise Gone(f"Patient/{patient_id} was deleted")

    def _open(self, record: VersionRecord) -> bytes | None:
        """The plaintext body; None once the patient's data key was destroyed (the data no
        longer exists). A failed integrity check raises (and is audited by `run`)."""
        if record.body is None:
            return None
        try:
            return self.codec.open(
                record.rtype, record.rid, record.version, record.compartment, record.body
            )
        except KeyShredded:
            return None

    def _prefetch(self, records: list[VersionRecord]) -> None:
        """The data keys of the records about to be opened, in one store read instead of
        one round trip per patient whose key is not cached (a page of many patients)."""
        self.codec.prefetch([(r.compartment, r.body) for r in records if r.body is not None])

    def _entries(self, records: list[VersionRecord]) -> list[Entry]:
        self._prefetch(records)
        found: list[Entry] = []
        for record in records:
            body = self._open(record)
            if body is not None:
                found.append(_entry(record, body))
        return found

    def _page(self, spec: SearchSpec, keep: Keep | None, view: ReadView | None = None) -> _Page:
        """One page of matches, and where the next page in the direction of travel starts.
        `keep`: the check of each decrypted candidate (blinded prefixes, data-dependent
        access), None when the store's predicates are exact. `view`: where to read (the
        store unless given)."""
        if spec.limit == 0:
            return _Page([], False, None)
        source = view if view is not None else self.store
        if keep is None:
            page = source.search(spec)
            self._prefetch([r.record for r in page.rows])
            found = [_Found(r, b) for r in page.rows if (b := self._open(r.record)) is not None]
            edge_row = (page.rows[0] if spec.backward else page.rows[-1]) if page.rows else None
            return _Page(found, page.more, edge_row.key if edge_row else None)
        # The store matched a superset (blind prefixes, data-dependent access): read
        # candidates in batches, keep those that pass `keep`, until the page is full. At
        # most RECHECK_PAGE_CAP candidates per page: a page may come back short, with a
        # next link, rather than decrypting without bound. The first batch is the page's
        # size (most candidates usually pass: a Consent hides a few resources of a few
        # patients), so a full page reads no more rows than an exact one would; later
        # batches take RECHECK_BATCH at a time.
        kept: list[_Found] = []
        edge = spec.after
        examined = 0
        limit = spec.limit
        while True:
            batch = source.search(replace(spec, after=edge, limit=limit))
            limit = max(spec.limit, RECHECK_BATCH)
            rows = list(reversed(batch.rows)) if spec.backward else batch.rows
            self._prefetch([row.record for row in rows])
            for n, row in enumerate(rows):
                edge = row.key
                examined += 1
                body = self._open(row.record)
                if body is not None and keep(row.record, body):
                    kept.append(_Found(row, body))
                if len(kept) == spec.limit or examined >= RECHECK_PAGE_CAP:
                    more = n < len(rows) - 1 or batch.more
                    return _Page(kept[::-1] if spec.backward else kept, more, edge)
            if not batch.more:
                return _Page(kept[::-1] if spec.backward else kept, False, edge)

    def _total(
        self, request: SearchRequest, spec: SearchSpec, keep: Keep | None, page: _Page
    ) -> int | None:
        mode = request.total
        if mode == "none":
            return None
        if spec.after is None and not page.more and spec.limit > 0:
            return len(page.found)  # the whole result is on this page
        first = replace(spec, after=None, backward=False)
        exact = mode in ("accurate", "estimate") or request.summary == "count"
        if keep is not None:
            return self._count_rechecked(first, keep) if exact else None
        if exact:
            return self.store.search_count(first)
        counted = self.store.search_count(first, cap=DEFAULT_TOTAL_CAP)
        return counted if counted < DEFAULT_TOTAL_CAP else None

    def _count_rechecked(self, spec: SearchSpec, keep: Keep) -> int | None:
        """Matches after decryption, or None past RECHECK_TOTAL_CAP candidates."""
        matches = seen = 0
        after = None
        while seen < RECHECK_TOTAL_CAP:
            page = self.store.search(replace(spec, after=after, limit=RECHECK_BATCH))
            for row in page.rows:
                seen += 1
                body = self._open(row.record)
                matches += body is not None and keep(row.record, body)
                after = row.key
            if not page.more:
                return matches
        return None

    def _resolve(
        self, rtype: str, terms: tuple[Term, ...], rechecks: tuple[Recheck, ...]
    ) -> tuple[str, ...]:
        """Every id of `rtype` matching (for chains and _has whose inner part is
        re-checked), stopping just past MAX_RESOLVED_IDS."""
        ids: list[str] = []
        spec = SearchSpec(rtype, terms, limit=RECHECK_BATCH)
        while len(ids) <= MAX_RESOLVED_IDS:
            page = self._page(spec, _keeper(rechecks))
            ids.extend(f.row.record.rid for f in page.found)
            if not page.more or page.edge is None:
                break
            spec = replace(spec, after=page.edge)
        return tuple(ids)


def _entry(record: VersionRecord, body: bytes) -> Entry:
    return Entry(
        record.rtype, record.rid, record.version, record.last_updated, body, record.compartment
    )


def _keeper(rechecks: Sequence[Recheck], access: Keep | None = None) -> Keep | None:
    """One check of a decrypted candidate: the blinded-prefix re-checks and the access
    policy's data-dependent decision; None when neither applies."""
    if not rechecks:
        return access

    def keep(record: VersionRecord, body: bytes) -> bool:
        return _passes(body, rechecks) and (access is None or access(record, body))

    return keep


def _passes(body: bytes, rechecks: Sequence[Recheck]) -> bool:
    resource = fhir_json.loads(body)
    for check in rechecks:
        # Only this parameter's values: a fraction of extracting every parameter. One
        # parameter at a time, so the extractor keeps a narrowed plan per parameter, not
        # one per combination a client's searches could name.
        rows = extract_params(resource, frozenset((check.param,)))
        found = [r for r in rows if r.param == check.param and r.kind == "string"]
        if check.exact:  # the value as written (IndexRow.text), whole
            if not any(r.text in check.texts for r in found):
                return False
        elif not any(r.value and r.value.startswith(p) for r in found for p in check.texts):
            return False
    return True


def _shaped(entry: Entry, summary: str | None, elements: tuple[str, ...]) -> Entry:
    trimmed = shape(fhir_json.loads(entry.body), summary, elements)
    if trimmed is None:
        return entry
    return replace(entry, body=fhir_json.dumps(trimmed))


def _cursors(page: _Page, spec: SearchSpec) -> tuple[str | None, str | None]:
    """(next, previous). Onward from the page's edge while candidates remain; back from
    where this page began (its first row) when it was reached by a cursor."""
    found = page.found
    onward = encode_cursor(page.edge, spec.backward) if page.more and page.edge else None
    if spec.backward:
        back = encode_cursor(found[-1].row.key, backward=False) if found else None
        return back, onward
    previous = None
    if spec.after is not None and found:
        previous = encode_cursor(found[0].row.key, backward=True)
    return onward, previous
