"""SQL shared by the SQLite and PostgreSQL stores.

Statements are written once with `?` placeholders; a backend whose driver wants another
paramstyle rewrites them once at start-up (`Dialect.sql`). Only the connection handling,
transactions and error translation differ per backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from operator import attrgetter
from typing import Any, Protocol

from phivault.store.base import HistoryQuery, IndexRow, NewVersion, VersionRecord

INDEX_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    # kind -> (table, columns taken from IndexRow besides rtype/param/rid)
    "token": ("idx_token", ("system", "value", "text")),
    "string": ("idx_string", ("value", "text")),
    "date": ("idx_date", ("lo", "hi")),
    "reference": ("idx_reference", ("system", "value", "text")),
    "quantity": ("idx_quantity", ("system", "value", "lo", "hi")),
    "number": ("idx_number", ("lo", "hi")),
    "uri": ("idx_uri", ("value",)),
    "composite": ("idx_composite", ("value", "lo", "hi")),
    # Blind prefix tokens of an encrypted store (crypto/blind_index.py): the token (the
    # row's value, in hex) stored as 16 bytes, keyed by itself; no param column.
    "blind": ("idx_blind", ("token",)),
}
BLIND = "blind"
# SQLite keeps a resource's blind tokens as one row of this table, indexed by the FTS5
# table `blind_fts` (migration 013): `index_params` gives that row.
BLIND_DOCS = "idx_blind_docs"
BLIND_TOKEN_BYTES = 16  # crypto/blind.py's TOKEN_BYTES (the store does not import crypto)
BLIND_FTS = "blind_fts"


def row_columns(kind: str) -> tuple[str, ...]:
    """The columns of an index row of `kind`, in the order `index_params` gives them."""
    if kind == BLIND:
        return ("token", "rtype", "rid")
    return ("rtype", "param", "rid", *INDEX_TABLES[kind][1])


VERSION_COLUMNS = "seq, rtype, rid, version, last_updated, deleted, body, compartment, method"


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def row_to_version(row: Sequence[Any]) -> VersionRecord:
    body = row[6]
    return VersionRecord(
        seq=int(row[0]),
        rtype=row[1],
        rid=row[2],
        version=int(row[3]),
        last_updated=row[4],
        deleted=bool(row[5]),
        body=bytes(body) if body is not None else None,
        compartment=row[7],
        method=row[8],
    )


def load_migrations(backend: str) -> list[tuple[int, str]]:
    """(version, script) pairs shipped in the package, in order."""
    folder = resources.files("phivault.store") / "migrations" / backend
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Queries:
    """Every statement the stores run, rendered once for a paramstyle."""

    def __init__(
        self,
        render: Callable[[str], str],
        insert_returning: bool,
        *,
        blind_docs: bool = False,
        one_statement_deletes: bool = False,
    ) -> None:
        """`blind_docs`: blind tokens are kept one row per resource (SQLite, `BLIND_DOCS`)
        instead of one row per token (PostgreSQL, idx_blind). `one_statement_deletes`:
        a resource's index rows of every table go in one statement of data-modifying
        CTEs (PostgreSQL: one round trip instead of one per table)."""
        r = render
        self.blind_docs = blind_docs
        # kind -> the table holding a resource's index rows of that kind
        self.index_tables = {kind: table for kind, (table, _) in INDEX_TABLES.items()}
        if blind_docs:
            self.index_tables[BLIND] = BLIND_DOCS
        self.current = r(
            f"SELECT {_prefixed('v')} FROM resources r JOIN versions v ON v.seq = r.seq "
            "WHERE r.rtype = ? AND r.rid = ?"
        )
        self.version = r(
            f"SELECT {VERSION_COLUMNS} FROM versions WHERE rtype = ? AND rid = ? AND version = ?"
        )
        self.insert_version = r(
            "INSERT INTO versions "
            "(rtype, rid, version, last_updated, deleted, body, compartment, method) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)" + (" RETURNING seq" if insert_returning else "")
        )
        self.upsert_current = r(
            "INSERT INTO resources (rtype, rid, version, seq, deleted, last_updated, compartment) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rtype, rid) DO UPDATE SET "
            "version = excluded.version, seq = excluded.seq, deleted = excluded.deleted, "
            "last_updated = excluded.last_updated, compartment = excluded.compartment"
        )
        self.delete_index = {
            kind: r(f"DELETE FROM {table} WHERE rtype = ? AND rid = ?")
            for kind, table in self.index_tables.items()
        }
        self.delete_all_index: str | None = None
        if one_statement_deletes:
            ctes = ", ".join(
                f"d{n} AS (DELETE FROM {table} WHERE rtype = ? AND rid = ?)"
                for n, table in enumerate(self.index_tables.values())
            )
            self.delete_all_index = r(f"WITH {ctes} SELECT 1")
        self.insert_index = {
            kind: r(
                f"INSERT INTO {table} ({', '.join(row_columns(kind))}) VALUES "
                f"({', '.join('?' for _ in row_columns(kind))})"
                + (" ON CONFLICT DO NOTHING" if kind == BLIND else "")
            )
            for kind, (table, _) in INDEX_TABLES.items()
        }
        if blind_docs:
            self.insert_index[BLIND] = r(
                f"INSERT INTO {BLIND_DOCS} (tokens, rtype, rid) VALUES (?, ?, ?)"
            )
        self.find_token_any = r(
            "SELECT DISTINCT t.rid FROM idx_token t JOIN resources r "
            "ON r.rtype = t.rtype AND r.rid = t.rid AND r.deleted = ? "
            "WHERE t.rtype = ? AND t.param = ? AND t.value = ? ORDER BY t.rid LIMIT ?"
        )
        self.find_token_system = r(
            "SELECT DISTINCT t.rid FROM idx_token t JOIN resources r "
            "ON r.rtype = t.rtype AND r.rid = t.rid AND r.deleted = ? "
            "WHERE t.rtype = ? AND t.param = ? AND t.value = ? AND t.system = ? "
            "ORDER BY t.rid LIMIT ?"
        )
        self.count_all = r("SELECT COUNT(*) FROM resources WHERE deleted = ?")
        self.count_type = r("SELECT COUNT(*) FROM resources WHERE deleted = ? AND rtype = ?")
        self.audit_size = r("SELECT MAX(idx) + 1 FROM audit_entries")
        self.audit_entries = r(
            "SELECT idx, entry FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx"
        )
        self.audit_node = r("SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?")
        self.audit_insert_entry = r("INSERT INTO audit_entries (idx, entry) VALUES (?, ?)")
        self.audit_insert_node = r("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)")
        self.audit_insert_checkpoint = r(
            "INSERT INTO audit_checkpoints (size, checkpoint) VALUES (?, ?) "
            "ON CONFLICT (size) DO NOTHING"
        )
        self.audit_checkpoints = r(
            "SELECT checkpoint FROM audit_checkpoints ORDER BY size DESC LIMIT ?"
        )
        self.key_get = r("SELECT blob FROM wrapped_keys WHERE key_id = ?")
        self.key_put = r(
            "INSERT INTO wrapped_keys (key_id, blob) VALUES (?, ?) "
            "ON CONFLICT (key_id) DO UPDATE SET blob = excluded.blob"
        )
        self.key_add = r(
            "INSERT INTO wrapped_keys (key_id, blob) VALUES (?, ?) ON CONFLICT (key_id) DO NOTHING "
            "RETURNING key_id"
        )
        # SQLite's key_add_if (common.SqlWriteTx): `key_add` only while the row named by
        # the third parameter holds the fourth (IS: NULL for no such row).
        self.key_add_if = (
            "INSERT INTO wrapped_keys (key_id, blob) SELECT ?, ? "
            "WHERE (SELECT blob FROM wrapped_keys WHERE key_id = ?) IS ? "
            "ON CONFLICT (key_id) DO NOTHING RETURNING key_id"
        )
        self.key_delete = r("DELETE FROM wrapped_keys WHERE key_id = ?")
        self.key_ids = r("SELECT key_id FROM wrapped_keys ORDER BY key_id")
        self._render = render

    def render(self, sql: str) -> str:
        return self._render(sql)

    def index_deletes(self, rtype: str, rid: str) -> list[tuple[str, tuple[str, ...]]]:
        """The statements (with their parameters) that delete every index row of one
        resource: one on PostgreSQL, one per index table on SQLite."""
        if self.delete_all_index is not None:
            return [(self.delete_all_index, (rtype, rid) * len(self.index_tables))]
        return [(stmt, (rtype, rid)) for stmt in self.delete_index.values()]


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in VERSION_COLUMNS.split(","))


def history_sql(query: HistoryQuery, *, total: bool) -> tuple[str, list[Any]]:
    """History newest first (FHIR orders history by time, most recent first)."""
    where: list[str] = []
    params: list[Any] = []
    if query.rtype is not None:
        where.append("rtype = ?")
        params.append(query.rtype)
    if query.rid is not None:
        where.append("rid = ?")
        params.append(query.rid)
    if query.since is not None:
        where.append("last_updated >= ?")
        params.append(query.since)
    if query.before_seq is not None and not total:
        where.append("seq < ?")
        params.append(query.before_seq)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    if total:
        return f"SELECT COUNT(*) FROM versions{clause}", params
    params.append(query.count)
    return f"SELECT {VERSION_COLUMNS} FROM versions{clause} ORDER BY seq DESC LIMIT ?", params


def _values_of(columns: tuple[str, ...]) -> Callable[[IndexRow], tuple[Any, ...]]:
    """The row's values of `columns`, as a tuple, read in C (attrgetter)."""
    get = attrgetter(*columns)
    if len(columns) == 1:
        return lambda row: (get(row),)
    return get


_VALUES = {kind: _values_of(columns) for kind, (_, columns) in INDEX_TABLES.items()}


def index_params(
    rtype: str, rid: str, rows: Sequence[IndexRow]
) -> dict[str, list[tuple[Any, ...]]]:
    """Group index rows by kind into parameter tuples for executemany. A blind row carries
    its parameter's prefix tokens (hex, space-separated): the resource's distinct tokens
    become one tuple (its tokens in hex, space-separated, in token order; rtype; rid),
    which SQLite stores as is (`BLIND_DOCS`) and PostgreSQL as one row per token
    (`blind_bytes`)."""
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    tokens: set[str] = set()
    for row in rows:
        kind = row.kind
        if kind == BLIND:
            if not row.value:
                raise ValueError("a blind index row without its tokens")
            tokens.update(row.value.split(" "))
            continue
        values = _VALUES.get(kind)
        if values is None:
            raise ValueError(f"unknown index kind {kind!r}")
        grouped.setdefault(kind, []).append((rtype, row.param, rid, *values(row)))
    if tokens:
        # In token order, never in the order of their prefixes: on PostgreSQL the heap
        # keeps insertion order, which would tell the 1-character prefix from the others.
        # (Lower-case hex of one length sorts as the bytes it spells.)
        ordered = sorted(tokens)
        doc = " ".join(ordered)
        hex_len = 2 * BLIND_TOKEN_BYTES
        if any(len(t) != hex_len for t in ordered) or len(
            bytes.fromhex(doc)
        ) != BLIND_TOKEN_BYTES * len(ordered):
            raise ValueError("a blind index token that is not 16 bytes in hex")
        grouped[BLIND] = [(doc, rtype, rid)]
    return grouped


def blind_bytes(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`index_params`' blind tuples (tokens in hex, rtype, rid) as `idx_blind` rows: one
    per token, the token as its 16 bytes, in token order."""
    return [
        (bytes.fromhex(token), rtype, rid) for doc, rtype, rid in rows for token in doc.split(" ")
    ]


def new_version_params(new: NewVersion, deleted_value: Any) -> tuple[Any, ...]:
    return (
        new.rtype,
        new.rid,
        new.version,
        new.last_updated,
        deleted_value,
        new.body,
        new.compartment,
        new.method,
    )
