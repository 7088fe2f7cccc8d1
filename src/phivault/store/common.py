"""Read and write logic shared by both SQL backends, over any DB-API-like connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from phivault.store.base import HistoryQuery, NewVersion, VersionRecord
from phivault.store.sql import (
    Queries,
    history_sql,
    index_params,
    new_version_params,
    row_to_version,
)

Execute = Callable[[str, Sequence[Any]], Any]


class SqlReadView:
    """ReadView over a connection-like object with `execute(sql, params)`."""

    def __init__(self, conn: Any, queries: Queries) -> None:
        self._conn = conn
        self._q = queries

    def current(self, rtype: str, rid: str) -> VersionRecord | None:
        row = self._conn.execute(self._q.current, (rtype, rid)).fetchone()
        return row_to_version(row) if row else None

    def version(self, rtype: str, rid: str, version: int) -> VersionRecord | None:
        row = self._conn.execute(self._q.version, (rtype, rid, version)).fetchone()
        return row_to_version(row) if row else None

    def current_many(self, rtype: str, rids: Sequence[str]) -> list[VersionRecord]:
        found: list[VersionRecord] = []
        for rid in rids:
            record = self.current(rtype, rid)
            if record is not None:
                found.append(record)
        return found

    def history(self, query: HistoryQuery) -> list[VersionRecord]:
        sql, params = history_sql(query, total=False)
        rows = self._conn.execute(self._q.render(sql), params).fetchall()
        return [row_to_version(r) for r in rows]

    def history_total(self, query: HistoryQuery) -> int:
        sql, params = history_sql(query, total=True)
        return int(self._conn.execute(self._q.render(sql), params).fetchone()[0])

    # -- audit log ------------------------------------------------------------------------
    def audit_size(self) -> int:
        row = self._conn.execute(self._q.audit_size, ()).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def audit_entries(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        rows = self._conn.execute(self._q.audit_entries, (start, stop)).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def audit_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        for level, idx in keys:
            row = self._conn.execute(self._q.audit_node, (level, idx)).fetchone()
            if row is not None:
                found[(level, idx)] = bytes(row[0])
        return found

    def audit_checkpoints(self, limit: int) -> list[bytes]:
        rows = self._conn.execute(self._q.audit_checkpoints, (limit,)).fetchall()
        return [bytes(r[0]) for r in rows]

    # -- wrapped keys -----------------------------------------------------------------------
    def key_get(self, key_id: str) -> bytes | None:
        row = self._conn.execute(self._q.key_get, (key_id,)).fetchone()
        return bytes(row[0]) if row else None

    def key_ids(self) -> list[str]:
        return [r[0] for r in self._conn.execute(self._q.key_ids, ()).fetchall()]

    def find_token(
        self, rtype: str, param: str, system: str | None, value: str, limit: int
    ) -> list[str]:
        if system is None:
            rows = self._conn.execute(
                self._q.find_token_any, (False, rtype, param, value, limit)
            ).fetchall()
        else:
            rows = self._conn.execute(
                self._q.find_token_system, (False, rtype, param, value, system, limit)
            ).fetchall()
        return [r[0] for r in rows]


class SqlWriteTx(SqlReadView):
    """The write half; the backend wraps it in its own transaction and locking."""

    def __init__(
        self, conn: Any, queries: Queries, executemany: Callable[[str, list[tuple[Any, ...]]], None]
    ) -> None:
        super().__init__(conn, queries)
        self._executemany = executemany

    def lock_resource(self, rtype: str, rid: str) -> None:
        # SQLite: the whole write transaction holds the database write lock already.
        return None

    def lock_audit(self) -> None:
        # SQLite: the write transaction already excludes every other writer.
        return None

    def audit_append(
        self, start: int, entries: Sequence[bytes], nodes: dict[tuple[int, int], bytes]
    ) -> None:
        self._executemany(
            self._q.audit_insert_entry, [(start + i, e) for i, e in enumerate(entries)]
        )
        self._executemany(self._q.audit_insert_node, [(lv, ix, h) for (lv, ix), h in nodes.items()])

    def key_put(self, key_id: str, blob: bytes, *, replace: bool) -> None:
        self._conn.execute(self._q.key_put if replace else self._q.key_add, (key_id, blob))

    def key_delete(self, key_id: str) -> None:
        self._conn.execute(self._q.key_delete, (key_id,))

    def audit_put_checkpoint(self, size: int, checkpoint: bytes) -> None:
        self._conn.execute(self._q.audit_insert_checkpoint, (size, checkpoint))

    def append_version(self, new: NewVersion) -> VersionRecord:
        q = self._q
        seq = int(
            self._conn.execute(q.insert_version, new_version_params(new, new.deleted)).fetchone()[0]
        )
        self._conn.execute(
            q.upsert_current,
            (new.rtype, new.rid, new.version, seq, new.deleted, new.last_updated, new.compartment),
        )
        if new.version > 1:
            for stmt in q.delete_index.values():
                self._conn.execute(stmt, (new.rtype, new.rid))
        if not new.deleted:
            for kind, rows in index_params(new.rtype, new.rid, new.index).items():
                self._executemany(q.insert_index[kind], rows)
        return VersionRecord(
            rtype=new.rtype,
            rid=new.rid,
            version=new.version,
            last_updated=new.last_updated,
            deleted=new.deleted,
            body=new.body,
            seq=seq,
            compartment=new.compartment,
            method=new.method,
        )
