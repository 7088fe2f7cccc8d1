"""_include and _revinclude (with :iterate): the resources a page of matches refers to, or
is referred to by, read through the index tables and bounded in number."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from phivault.fhir import resources as fhir_types
from phivault.fhir.search.model import Include, SearchRequest
from phivault.service.search_result import Entry
from phivault.store.base import ReadView, VersionRecord

MAX_INCLUDED = 1000
MAX_INCLUDE_LEVELS = 3  # _include:iterate follows at most this many hops

# Records -> the entries the caller may see, decrypted (crypto-shredded ones left out).
Opener = Callable[[list[VersionRecord]], list[Entry]]


def collect(
    store: ReadView,
    request: SearchRequest,
    matches: list[Entry],
    open_records: Opener,
    warnings: list[str],
) -> list[Entry]:
    if not request.includes and not request.revincludes:
        return []
    seen = {(e.rtype, e.rid) for e in matches}
    included: list[Entry] = []
    frontier = matches
    for level in range(MAX_INCLUDE_LEVELS):
        includes = [i for i in request.includes if level == 0 or i.iterate]
        revincludes = [i for i in request.revincludes if level == 0 or i.iterate]
        if not frontier or not (includes or revincludes):
            break
        room = MAX_INCLUDED - len(included)
        wanted = _targets(store, frontier, includes, revincludes, room + len(seen))
        fresh = [key for key in dict.fromkeys(wanted) if key not in seen]
        if len(fresh) > room:
            fresh = fresh[:room]
            warnings.append(f"included resources were limited to {MAX_INCLUDED}")
        frontier = _fetch(store, fresh, open_records)
        seen.update((e.rtype, e.rid) for e in frontier)
        included.extend(frontier)
        if len(included) >= MAX_INCLUDED:
            break
    return included


def _targets(
    store: ReadView,
    frontier: list[Entry],
    includes: Sequence[Include],
    revincludes: Sequence[Include],
    limit: int,
) -> list[tuple[str, str]]:
    by_type: dict[str, list[str]] = {}
    for entry in frontier:
        by_type.setdefault(entry.rtype, []).append(entry.rid)
    wanted: list[tuple[str, str]] = []
    for inc in includes:
        ids = by_type.get(inc.source)
        if not ids:
            continue
        params = [inc.param] if inc.param is not None else None
        for ref in store.references_from(inc.source, ids, params, limit=limit):
            if inc.target is None or ref.target_type == inc.target:
                wanted.append((ref.target_type, ref.target_id))
    for rev in revincludes:
        params = [rev.param] if rev.param is not None else None
        for target_type, ids in by_type.items():
            if rev.target is not None and rev.target != target_type:
                continue
            for ref in store.references_to(rev.source, params, target_type, ids, limit=limit):
                wanted.append((rev.source, ref.rid))
    return wanted


def _fetch(store: ReadView, keys: list[tuple[str, str]], open_records: Opener) -> list[Entry]:
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        if rtype in fhir_types.STORABLE_TYPES:
            by_type.setdefault(rtype, []).append(rid)
    records: list[VersionRecord] = []
    for rtype, rids in by_type.items():
        records.extend(r for r in store.current_many(rtype, rids) if not r.deleted)
    return open_records(records)
