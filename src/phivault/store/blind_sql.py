"""The SQL of a blind prefix match (crypto/blind_index.py): which rows of a type hold any
of the tokens of a starts-with search on an identifying string.

PostgreSQL keeps one `idx_blind` row per token (migration 012): a lookup of the tokens in
its primary key. SQLite keeps one `idx_blind_docs` row per resource, indexed by the FTS5
table `blind_fts` (migration 013; docs/ENCRYPTION.md, "How the blind index is stored"):
an FTS5 query for the tokens, `"<hex>" OR "<hex>"`, of hex digits only.

Both functions append the statement's parameters through `bind`, in the order they
appear, like the rest of search_sql.Compiler.
"""

from __future__ import annotations

from collections.abc import Callable

from phivault.store.sql import BLIND_DOCS, BLIND_FTS

Bind = Callable[..., None]

# SQLite: the rows of idx_blind_docs holding any of the tokens; its one parameter is an
# FTS5 query (`fts_match`).
_FTS_ROWS = f"SELECT rowid FROM {BLIND_FTS} WHERE {BLIND_FTS} MATCH ?"


def fts_match(tokens: list[bytes]) -> str:
    """An FTS5 query for any of these tokens: each a quoted string of hex digits (nothing
    a caller chose reaches the query unencoded)."""
    return " OR ".join(f'"{t.hex()}"' for t in tokens)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def blind_source(
    postgres: bool, tokens: list[bytes], rtype: str, i: str, f: str, bind: Bind
) -> str:
    """SELECT <i>.rid of every resource of `rtype` holding one of `tokens` (a search's
    driving term). SQLite goes from the FTS5 matches (alias `f`) to the rows they name
    (CROSS JOIN keeps that order), never through every row of the type."""
    if not postgres:
        bind(fts_match(tokens), rtype)
        return (
            f"SELECT {i}.rid FROM {BLIND_FTS} {f} CROSS JOIN {BLIND_DOCS} {i} "
            f"ON {i}.num = {f}.rowid WHERE {f}.{BLIND_FTS} MATCH ? AND {i}.rtype = ?"
        )
    bind(*tokens, rtype)
    return (
        f"SELECT {i}.rid FROM idx_blind {i} WHERE {i}.token IN ({_marks(len(tokens))}) "
        f"AND {i}.rtype = ?"
    )


def blind_probe(
    postgres: bool, tokens: list[bytes], rtype: str, i: str, alias: str, probe: str, bind: Bind
) -> str:
    """Whether the candidate row `alias` holds one of `tokens` (beside a more selective
    term). SQLite: the candidate's one idx_blind_docs row, its `num` among the FTS5
    matches (a list SQLite builds once per statement). `probe` ends a PostgreSQL probe
    (search_sql.Dialect.probe)."""
    if not postgres:
        bind(rtype, fts_match(tokens))
        return (
            f"EXISTS (SELECT 1 FROM {BLIND_DOCS} {i} WHERE {i}.rtype = ? "
            f"AND {i}.rid = {alias}.rid AND {i}.num IN ({_FTS_ROWS}))"
        )
    bind(*tokens, rtype)
    return (
        f"EXISTS (SELECT 1 FROM idx_blind {i} WHERE {i}.token IN "
        f"({_marks(len(tokens))}) AND {i}.rtype = ? AND {i}.rid = {alias}.rid{probe})"
    )
