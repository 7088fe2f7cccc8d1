"""Listing the current resources of one patient compartment (`$everything`, export).

Keyset paging on (rtype, rid): a page starts after the last (type, id) of the previous
one, so pages stay stable while other resources are written. The filter on
`resources.compartment` uses the partial index `resources_compartment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CompartmentQuery:
    compartment: str  # "Patient/<id>"
    rtypes: Sequence[str] | None = None  # only these types (None: every type)
    exclude_rtypes: Sequence[str] = ()
    since: str | None = None  # inclusive lower bound on last_updated
    after: tuple[str, str] | None = None  # keyset cursor: (rtype, rid) of the last item
    limit: int = 50


def compartment_sql(query: CompartmentQuery, *, total: bool, columns: str) -> tuple[str, list[Any]]:
    """`columns`: the version columns to select (store.sql.VERSION_COLUMNS; passed in so
    that this module, imported by store.base, does not import store.sql)."""
    where = ["r.compartment = ?", "r.deleted = ?"]
    params: list[Any] = [query.compartment, False]
    if query.rtypes is not None:
        if not query.rtypes:
            where.append("1 = 0")
        else:
            where.append(f"r.rtype IN ({', '.join('?' for _ in query.rtypes)})")
            params.extend(query.rtypes)
    if query.exclude_rtypes:
        where.append(f"r.rtype NOT IN ({', '.join('?' for _ in query.exclude_rtypes)})")
        params.extend(query.exclude_rtypes)
    if query.since is not None:
        where.append("r.last_updated >= ?")
        params.append(query.since)
    if query.after is not None and not total:
        where.append("(r.rtype > ? OR (r.rtype = ? AND r.rid > ?))")
        params.extend([query.after[0], query.after[0], query.after[1]])
    clause = " AND ".join(where)
    if total:
        return f"SELECT COUNT(*) FROM resources r WHERE {clause}", params
    cols = ", ".join("v." + c.strip() for c in columns.split(","))
    params.append(query.limit)
    return (
        f"SELECT {cols} FROM resources r JOIN versions v ON v.seq = r.seq "
        f"WHERE {clause} ORDER BY r.rtype, r.rid LIMIT ?",
        params,
    )
