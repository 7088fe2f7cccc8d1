"""SQL of the audit tables, shared by both backends (written with `?` placeholders).

A group commit writes each table with a few multi-row INSERTs (`_SIZES`, largest first)
rather than `executemany`: SQLite releases the GIL once per
statement instead of once per row, and the appender must win it back from the waiting
request threads each time; PostgreSQL pays one round trip per statement. The few
power-of-two sizes stay in each driver's statement cache.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

NodeKey = tuple[int, int]

# Statement sizes (rows), largest first. The largest keeps the widest table
# (audit_entries, 9 columns) under SQLite's 32,766 parameters. Powers of two and their
# 3/2 below 256: any row count takes about half the statements that powers of two alone
# need (127 rows: 4 instead of 7), each one GIL hand-back of the appender, while the
# writer's statement cache holds at most 18 texts per table.
_SIZES = (2048, 1024, 512, 256, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1)
_NODE_READ_CHUNK = 64

ENTRY_COLUMNS = ("idx", "entry", "time", "action", "outcome", "actor", "rtype", "rid", "patient")
NODE_COLUMNS = ("level", "idx", "hash")

SELECT_ROWS = (
    "SELECT idx, entry, time, action, outcome, actor, rtype, rid, patient FROM audit_entries "
    "WHERE idx >= ? AND idx < ? ORDER BY idx"
)
SELECT_NODE_RANGE = (
    "SELECT idx, hash FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx"
)
SELECT_ALL_CHECKPOINTS = "SELECT size, checkpoint FROM audit_checkpoints ORDER BY size"
SELECT_SEAL = "SELECT size, mac FROM audit_seal WHERE id = 1"
PUT_SEAL = (
    "INSERT INTO audit_seal (id, size, mac) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET size = excluded.size, mac = excluded.mac"
)


class AuditIndexRow(NamedTuple):
    """The searchable columns of one entry, derived from it (never the other way round).
    A tuple: one is made for every audit entry, on the durable append path."""

    time: str
    action: str
    outcome: str
    actor: str
    rtype: str | None = None
    rid: str | None = None
    patient: str | None = None  # keyed pseudonym, never a patient id

    def values(self) -> tuple[str | None, ...]:
        return tuple(self)


_TIME_OPS = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A search of the audit index. Terms are ANDed; the values of one term are ORed."""

    times: tuple[tuple[str, str], ...] = ()  # (operator, FHIR instant), operator in _TIME_OPS
    actions: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    entities: tuple[tuple[str, str | None], ...] = ()  # (type, id or None for any id)
    patients: tuple[str, ...] = ()  # pseudonyms
    before: int | None = None  # only entries with idx < before (the page's window)
    after: int | None = None  # only entries with idx >= after
    count: int = 50
    # Search terms (audit/terms.py) of the filter to walk, ORed, and how far they reach:
    # entries from `indexed` on are scanned instead.
    terms: tuple[bytes, ...] = ()
    indexed: int = 0


def _time_terms(times: Sequence[tuple[str, str]], where: list[str], params: list[Any]) -> None:
    for op, instant in times:
        if op not in _TIME_OPS:
            raise ValueError("unknown time comparison")
        where.append(f"i.time {op} ?")
        params.append(instant)


def time_span_sql(times: Sequence[tuple[str, str]]) -> tuple[str, list[Any]]:
    """The smallest and largest idx of the entries in a time range (time is indexed):
    every entry of the range lies between them, whatever the order of their times."""
    where: list[str] = []
    params: list[Any] = []
    _time_terms(times, where, params)
    return f"SELECT MIN(i.idx), MAX(i.idx) FROM audit_entries i WHERE {' AND '.join(where)}", params


def _filters(query: AuditQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    _time_terms(query.times, where, params)
    for column, values in (
        ("action", query.actions),
        ("outcome", query.outcomes),
        ("actor", query.actors),
        ("patient", query.patients),
    ):
        if values:
            where.append(f"i.{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
    if query.entities:
        ors: list[str] = []
        for rtype, rid in query.entities:
            if rid is None:
                ors.append("i.rtype = ?")
                params.append(rtype)
            else:
                ors.append("(i.rtype = ? AND i.rid = ?)")
                params.extend((rtype, rid))
        where.append("(" + " OR ".join(ors) + ")")
    if query.before is not None:
        where.append("i.idx < ?")
        params.append(query.before)
    if query.after is not None:
        where.append("i.idx >= ?")
        params.append(query.after)
    return where, params


def search_sql(query: AuditQuery) -> tuple[str, list[Any]]:
    """Newest first: (idx, entry) of matching entries, read from the log itself.

    With `terms`, one arm per term walks `audit_terms` (term, idx) backwards below
    `indexed` and stops at `count` rows; one more arm scans the entries from `indexed` on
    (appended since the terms were last brought up to date); the arms are merged newest
    first. A page costs O(count) index steps however large the log, and `before` (the
    cursor) keeps pages stable while the log grows.
    """
    where, params = _filters(query)
    if not query.terms:
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        sql = f"SELECT i.idx, i.entry FROM audit_entries i{clause} ORDER BY i.idx DESC LIMIT ?"
        return sql, [*params, query.count]
    arms: list[str] = []
    all_params: list[Any] = []
    for n, term in enumerate(query.terms):
        arm_where = " AND ".join(["t.term = ?", "t.idx < ?", *where])
        arms.append(
            f"SELECT a{n}.idx, a{n}.entry FROM (SELECT i.idx, i.entry FROM audit_terms t "
            f"JOIN audit_entries i ON i.idx = t.idx WHERE {arm_where} "
            f"ORDER BY t.idx DESC LIMIT ?) AS a{n}"
        )
        all_params.extend((term, query.indexed, *params, query.count))
    tail_where = " AND ".join(["i.idx >= ?", *where])
    arms.append(
        "SELECT tail.idx, tail.entry FROM (SELECT i.idx, i.entry FROM audit_entries i "
        f"WHERE {tail_where} ORDER BY i.idx DESC LIMIT ?) AS tail"
    )
    all_params.extend((query.indexed, *params, query.count))
    return " UNION ALL ".join(arms) + " ORDER BY 1 DESC LIMIT ?", [*all_params, query.count]


# PostgreSQL: a whole append (entries, nodes, seal) as one statement of column arrays,
# bound in binary (%b): one round trip and one prepared plan whatever the row count, where
# COPY costs a round trip per table and phase. Data-modifying CTEs all run to completion.
_PG_ENTRIES = (
    "INSERT INTO audit_entries (" + ", ".join(ENTRY_COLUMNS) + ") SELECT * FROM unnest("
    "%b::bigint[], %b::bytea[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[])"
)
_PG_NODES = (
    "INSERT INTO audit_nodes (level, idx, hash) "
    "SELECT * FROM unnest(%b::integer[], %b::bigint[], %b::bytea[])"
)
PG_APPEND = f"WITH e AS ({_PG_ENTRIES}), n AS ({_PG_NODES}) SELECT 1"
PG_APPEND_SEALED = (
    f"WITH e AS ({_PG_ENTRIES}), n AS ({_PG_NODES}) INSERT INTO audit_seal (id, size, mac) "
    "VALUES (1, %b, %b) ON CONFLICT (id) DO UPDATE SET size = excluded.size, mac = excluded.mac"
)

# PostgreSQL: a committing append (the appender's group commit) as one statement, run as
# its own transaction (autocommit): the audit lock, the size check and the append. Every
# insert and the seal take their rows through `c`, so no row is written before the lock
# is held and the check passed. The statement's snapshot predates the lock, so the check
# may see fewer entries than the log holds by then, never more (the log only grows):
# entries committed meanwhile either fail the check or take the index the first new row
# wants (a unique violation); a log shorter than `expected` always fails it. Either error
# rolls the whole statement back.
_PG_CLAIMED = (
    "l AS (SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '?audit', 0))), "
    "c AS (SELECT 1 / ((SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries) = %b::bigint)"
    "::integer AS ok FROM l)"
)
_PG_CLAIMED_ENTRIES = (
    "INSERT INTO audit_entries (" + ", ".join(ENTRY_COLUMNS) + ") SELECT u.* FROM unnest("
    "%b::bigint[], %b::bytea[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[]) AS u CROSS JOIN c"
)
_PG_CLAIMED_NODES = (
    "INSERT INTO audit_nodes (level, idx, hash) "
    "SELECT u.* FROM unnest(%b::integer[], %b::bigint[], %b::bytea[]) AS u CROSS JOIN c"
)
_PG_CLAIMED_WITH = f"WITH {_PG_CLAIMED}, e AS ({_PG_CLAIMED_ENTRIES}), n AS ({_PG_CLAIMED_NODES}) "
PG_CLAIM_APPEND = _PG_CLAIMED_WITH + "SELECT ok FROM c"
PG_CLAIM_APPEND_SEALED = (
    _PG_CLAIMED_WITH + "INSERT INTO audit_seal (id, size, mac) SELECT 1, %b, %b FROM c "
    "ON CONFLICT (id) DO UPDATE SET size = excluded.size, mac = excluded.mac"
)


# PostgreSQL: any number of nodes (a whole proof) in one statement of one text, so that
# it is prepared once per connection: the keys as two arrays, joined to the primary key
# (a nested loop of index probes; an OR of keys is planned anew for each key count).
PG_SELECT_NODES = (
    "SELECT n.level, n.idx, n.hash FROM unnest(%b::integer[], %b::bigint[]) AS k (level, idx) "
    "JOIN audit_nodes n ON n.level = k.level AND n.idx = k.idx"
)


SELECT_TERMS_UPTO = "SELECT upto FROM audit_terms_state WHERE id = 1"
UPDATE_TERMS_UPTO = "UPDATE audit_terms_state SET upto = ? WHERE id = 1 AND upto = ?"
TERM_COLUMNS = ("term", "idx")


@functools.lru_cache(maxsize=32)
def insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    one = "(" + ", ".join("?" for _ in columns) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * rows)


def insert_chunks(
    table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> Iterator[tuple[str, list[Any]]]:
    """(statement, flat parameters) pairs that insert `rows` in a few statements."""
    start = 0
    while start < len(rows):
        size = next(s for s in _SIZES if s <= len(rows) - start)
        params = [value for row in rows[start : start + size] for value in row]
        yield insert_sql(table, columns, size), params
        start += size


@functools.lru_cache(maxsize=_NODE_READ_CHUNK)
def _select_nodes_sql(count: int) -> str:
    # An OR of primary-key lookups: both engines answer it with one index probe per key
    # (SQLite's MULTI-INDEX OR, PostgreSQL's BitmapOr); a row-value IN would scan in SQLite.
    terms = " OR ".join("(level = ? AND idx = ?)" for _ in range(count))
    return f"SELECT level, idx, hash FROM audit_nodes WHERE {terms}"


def select_nodes(keys: Sequence[NodeKey]) -> Iterator[tuple[str, list[int]]]:
    """Batched node lookups: one statement per 64 keys (a proof at 10^7 entries needs ~2)."""
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _NODE_READ_CHUNK):
        chunk = unique[start : start + _NODE_READ_CHUNK]
        yield _select_nodes_sql(len(chunk)), [v for key in chunk for v in key]
