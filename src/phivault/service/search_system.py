"""System-level search: `GET [base]?_type=Patient,Observation&...` (and POST
[base]/_search), FHIR R4 search.html#all.

Every listed type (every type the caller may search when `_type` is absent) is searched
with the same parameters, through the same planning, access narrowing and re-checks as a
type-level search; the pages are then merged in one order. Parameters must be defined for
every searched type (the common ones, `_id`, `_lastUpdated`, `_tag`, `_profile`,
`_security`, ... when `_type` is absent): others are ignored and reported, or refused
with `Prefer: handling=strict`.

Order and paging: results are ordered by the sort keys, then by resource type, then id
(without `_sort`: type then id). The cursor holds the last row's sort keys, type and id;
each type continues from that position (a type before it strictly after the keys, a type
after it from the keys on), so pages stay stable while data changes, as for one type.
When a type's page stopped early (re-checked candidates), the page ends where that type
stopped, so that nothing is skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from phivault.access.policy import Decision
from phivault.errors import (
    BadRequest,
    Forbidden,
    InvalidSearchParameter,
    UnsupportedSearchParameter,
)
from phivault.fhir import resources as fhir_types
from phivault.fhir.search.model import SearchRequest
from phivault.fhir.search.query import parse_search, safe_name
from phivault.service import search_access
from phivault.service.search import DEFAULT_TOTAL_CAP, Searcher
from phivault.service.search_access import Keep
from phivault.service.search_cursor import decode_cursor, encode_cursor
from phivault.service.search_result import Entry, SearchResult
from phivault.store.search_spec import SearchSpec, SortKey

if TYPE_CHECKING:
    from phivault.service.core import Context

# Sorts after every id ([A-Za-z0-9-.]) and before none: "after (keys, ~)" in a type means
# "strictly after keys", "after (keys, '')" means "from keys on".
_AFTER_EVERY_ID = "~"
_TYPE_KEY = SortKey("_id")  # the cursor's type slot is text, like an id


@dataclass(frozen=True, slots=True)
class _Typed:
    request: SearchRequest
    spec: SearchSpec
    keep: Keep | None


@dataclass(frozen=True, slots=True)
class _Row:
    key: tuple[Any, ...]  # sort keys, type, id: the global order
    entry: Entry


def requested_types(
    pairs: Sequence[tuple[str, str]],
) -> tuple[list[str] | None, list[tuple[str, str]]]:
    """(the `_type` list, None when absent; the other pairs)."""
    types: list[str] | None = None
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name != "_type":
            rest.append((name, value))
            continue
        types = types or []
        for item in value.split(","):
            rtype = item.strip()
            if rtype not in fhir_types.STORABLE_TYPES:
                raise InvalidSearchParameter("_type names a resource type this server lacks")
            if rtype not in types:
                types.append(rtype)
    return types, rest


class SystemSearch:
    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher

    def search(
        self,
        ctx: Context,
        pairs: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
        default_count: int = 50,
        max_count: int = 1000,
        base_url: str | None = None,
    ) -> SearchResult:
        searcher = self.searcher
        named, rest = requested_types(pairs)
        types = self._types(ctx, named)
        requests, warnings = _parse(types, rest, strict, max_count)
        first = requests[types[0]]
        used = ([("_type", ",".join(types))] if named is not None else []) + list(first.used)
        request = replace(first, used=tuple(used))
        count = first.count if first.count is not None else default_count
        if first.summary == "count":
            count = 0
        typed: dict[str, _Typed] = {}
        for rtype in types:
            spec, keep = searcher.prepare(ctx, requests[rtype], base_url)
            typed[rtype] = _Typed(requests[rtype], replace(spec, limit=count), keep)
        sort = typed[types[0]].spec.sort
        position, backward = _decode(first.cursor, sort, types)
        rows, edge = self._merged(typed, sort, position, backward, count)
        whole = position is None and edge is None and count > 0
        total = len(rows) if whole and first.total != "none" else self._total(typed, first)
        matches, included = searcher.finish(ctx, request, [r.entry for r in rows], warnings)
        cursors = _cursors(rows, edge, position, backward)
        return searcher.conclude(ctx, request, matches, included, total, cursors, warnings)

    # -- steps ---------------------------------------------------------------------------
    def _types(self, ctx: Context, named: list[str] | None) -> list[str]:
        """The types searched: those named (403, audited, for one the caller may never
        search, as at type level), else every type the caller may search."""
        searcher = self.searcher
        access = searcher._access()
        if named is not None:
            for rtype in named:
                search_access.check_type(access, searcher.audit, ctx, "search", rtype)
            return named
        principal = ctx.principal
        found = sorted(
            t
            for t in fhir_types.STORABLE_TYPES
            if principal is None or access.decide_type(principal, "search", t) is Decision.ALLOW
        )
        if not found:
            raise Forbidden()
        return found

    def _merged(
        self,
        typed: dict[str, _Typed],
        sort: tuple[SortKey, ...],
        position: tuple[Any, ...] | None,
        backward: bool,
        count: int,
    ) -> tuple[list[_Row], tuple[Any, ...] | None]:
        """(the page's rows in natural order, where the next page in the direction of
        travel starts: None when nothing is left)."""
        if count == 0:
            return [], None
        order = _order(sort, backward)
        found: list[_Row] = []
        stops: list[tuple[Any, ...]] = []  # where a type with candidates left stopped
        for rtype, item in typed.items():
            after = _after_in(rtype, position) if position is not None else None
            page = self.searcher._page(
                replace(item.spec, after=after, backward=backward), item.keep
            )
            for f in page.found:
                r = f.row.record
                entry = Entry(r.rtype, r.rid, r.version, r.last_updated, f.body, r.compartment)
                found.append(_Row(_global(f.row.key, rtype), entry))
            if page.more and page.edge is not None:
                stops.append(_global(page.edge, rtype))
        found.sort(key=lambda row: order(row.key))
        stop = min(stops, key=order) if stops else None
        if stop is not None:  # past it, that type's rows are not known yet
            found = [row for row in found if order(row.key) <= order(stop)]
        rows = found[:count]
        edge = rows[-1].key if len(found) > count else stop
        if backward:
            rows.reverse()
        return rows, edge

    def _total(self, typed: dict[str, _Typed], request: SearchRequest) -> int | None:
        """The sum of every type's total, under the rules of a type-level search."""
        mode = request.total
        if mode == "none":
            return None
        exact = mode in ("accurate", "estimate") or request.summary == "count"
        searcher = self.searcher
        total = 0
        for item in typed.values():
            first = replace(item.spec, after=None, backward=False)
            found: int | None
            if item.keep is not None:
                found = searcher._count_rechecked(first, item.keep) if exact else None
            elif exact:
                found = searcher.store.search_count(first)
            else:
                found = searcher.store.search_count(first, cap=DEFAULT_TOTAL_CAP)
                found = found if found < DEFAULT_TOTAL_CAP else None
            if found is None:
                return None
            total += found
        if not exact and total >= DEFAULT_TOTAL_CAP:
            return None
        return total


def _parse(
    types: list[str], pairs: list[tuple[str, str]], strict: bool, max_count: int
) -> tuple[dict[str, SearchRequest], list[str]]:
    """One parsed request per type, from the parameters every searched type knows; the
    others are reported (lenient) or refused (strict)."""
    ignored: dict[str, list[str]] = {}  # name -> why, per type that ignored it
    for rtype in types:
        for item in parse_search(rtype, pairs, strict=False, max_count=max_count).ignored:
            ignored.setdefault(item.name, []).append(item.reason)
    warnings: list[str] = []
    for name, reasons in ignored.items():
        everywhere = len(reasons) == len(types) and len(set(reasons)) == 1
        reason = reasons[0] if everywhere else "not a search parameter of every searched type"
        if strict:
            raise UnsupportedSearchParameter(f"{reason}: {name}")
        warnings.append(f"{reason}: {name}")
    kept = [(n, v) for n, v in pairs if safe_name(n) not in ignored]
    requests = {t: parse_search(t, kept, strict=strict, max_count=max_count) for t in types}
    return requests, warnings


def _global(key: tuple[Any, ...], rtype: str) -> tuple[Any, ...]:
    """A type's keyset position (sort keys, id) in the global order (sort keys, type, id)."""
    return (*key[:-1], rtype, key[-1])


def _after_in(rtype: str, position: tuple[Any, ...]) -> tuple[Any, ...]:
    """Where `rtype` continues from a global position, as its own keyset position: at
    equal sort keys, a type ordered before the position's type has its rows before the
    position (so it continues strictly past those keys: after an id above every id), one
    ordered after it has them after (so from those keys on: after an id below every id);
    in both directions of travel."""
    *keys, at_type, at_id = position
    if rtype == at_type:
        return (*keys, at_id)
    return (*keys, _AFTER_EVERY_ID if rtype < at_type else "")


def _order(sort: tuple[SortKey, ...], backward: bool) -> Any:
    """A key function putting global keys in the direction of travel."""
    descending = [k.descending for k in sort] + [False, False]

    def compare(a: tuple[Any, ...], b: tuple[Any, ...]) -> int:
        for x, y, desc in zip(a, b, descending, strict=True):
            if x != y:
                result = -1 if x < y else 1
                return -result if desc != backward else result
        return 0

    return functools.cmp_to_key(compare)


def _decode(
    token: str | None, sort: tuple[SortKey, ...], types: list[str]
) -> tuple[tuple[Any, ...] | None, bool]:
    position, backward = decode_cursor(token, (*sort, _TYPE_KEY))
    if position is not None and position[-2] not in types:
        raise BadRequest("invalid paging cursor: start the search again")
    return position, backward


def _cursors(
    rows: list[_Row],
    edge: tuple[Any, ...] | None,
    position: tuple[Any, ...] | None,
    backward: bool,
) -> tuple[str | None, str | None]:
    """(next, previous), as for one type (search.py `_cursors`)."""
    onward = encode_cursor(edge, backward) if edge is not None else None
    if backward:
        back = encode_cursor(rows[-1].key, backward=False) if rows else None
        return back, onward
    previous = encode_cursor(rows[0].key, backward=True) if position is not None and rows else None
    return onward, previous
