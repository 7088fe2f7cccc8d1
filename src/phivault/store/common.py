"""Read and write logic shared by both SQL backends, over any DB-API-like connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from phivault.store import audit_sql, export_jobs
from phivault.store.audit_sql import AuditIndexRow, AuditQuery
from phivault.store.base import HistoryQuery, IndexRow, NewVersion, VersionRecord
from phivault.store.compartment_lists import CompartmentSets
from phivault.store.compartment_sql import CompartmentQuery, compartment_sql
from phivault.store.export_jobs import ExportJobRecord
from phivault.store.search_spec import Reference, SearchPage, SearchRow, SearchSpec
from phivault.store.search_sql import (
    Dialect,
    count_sql,
    page_versions_sql,
    references_from_sql,
    references_to_sql,
)
from phivault.store.sql import (
    BLIND,
    BLIND_FTS,
    VERSION_COLUMNS,
    Queries,
    blind_bytes,
    history_sql,
    index_params,
    new_version_params,
    row_to_version,
)

Execute = Callable[[str, Sequence[Any]], Any]


_KEYS_PER_READ = 500  # wrapped keys read by one statement (SQLite binds at most 999)


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
        """Current versions (deleted ones included) of these ids, in the order given."""
        by_rid: dict[str, VersionRecord] = {}
        for chunk in _chunks(list(dict.fromkeys(rids))):
            sql = (
                f"SELECT {', '.join('v.' + c.strip() for c in VERSION_COLUMNS.split(','))} "
                "FROM resources r JOIN versions v ON v.seq = r.seq WHERE r.rtype = ? AND r.rid "
                f"IN ({', '.join('?' for _ in chunk)})"
            )
            for row in self._conn.execute(self._q.render(sql), [rtype, *chunk]).fetchall():
                record = row_to_version(row)
                by_rid[record.rid] = record
        return [by_rid[rid] for rid in rids if rid in by_rid]

    def history(self, query: HistoryQuery) -> list[VersionRecord]:
        sql, params = history_sql(query, total=False)
        rows = self._conn.execute(self._q.render(sql), params).fetchall()
        return [row_to_version(r) for r in rows]

    def history_total(self, query: HistoryQuery) -> int:
        sql, params = history_sql(query, total=True)
        return int(self._conn.execute(self._q.render(sql), params).fetchone()[0])

    # -- patient compartments ($everything, export) ----------------------------------------
    def compartment(self, query: CompartmentQuery) -> list[VersionRecord]:
        sql, params = compartment_sql(query, total=False, columns=VERSION_COLUMNS)
        rows = self._conn.execute(self._q.render(sql), params).fetchall()
        return [row_to_version(r) for r in rows]

    def compartment_total(self, query: CompartmentQuery) -> int:
        sql, params = compartment_sql(query, total=True, columns=VERSION_COLUMNS)
        return int(self._conn.execute(self._q.render(sql), params).fetchone()[0])

    # -- bulk export jobs -------------------------------------------------------------------
    def export_job(self, job_id: str) -> ExportJobRecord | None:
        row = self._conn.execute(self._q.render(export_jobs.GET), (job_id,)).fetchone()
        return export_jobs.row_to_job(row) if row else None

    def export_jobs_expired(self, now: str) -> list[str]:
        rows = self._conn.execute(self._q.render(export_jobs.EXPIRED), (now,)).fetchall()
        return [r[0] for r in rows]

    def export_jobs_active(self) -> int:
        sql = self._q.render(export_jobs.COUNT_ACTIVE)
        row = self._conn.execute(sql, (export_jobs.ACCEPTED, export_jobs.RUNNING)).fetchone()
        return int(row[0])

    # -- search (search_sql.py compiles the spec) ---------------------------------------------
    def _dialect(self) -> Dialect:
        # The PostgreSQL queries are rendered with %s placeholders, SQLite's keep "?".
        return Dialect(postgres=self._q.render("?") != "?")

    def _set_loader(self) -> Callable[[CompartmentSets], None] | None:
        """What loads compartment sets into the connection a query is about to run on
        (search_sql.Compiler), or None: long compartment lists are written into the
        statement instead (PostgreSQL, and write transactions, whose loads a rollback
        would undo)."""
        return None

    def _sets(self) -> CompartmentSets | None:
        return {} if self._set_loader() is not None else None

    def _load_sets(self, sets: CompartmentSets | None) -> None:
        loader = self._set_loader()
        if sets and loader is not None:
            loader(sets)

    def search(self, spec: SearchSpec) -> SearchPage:
        sets = self._sets()
        sql, params = page_versions_sql(spec, self._dialect(), sets)
        self._load_sets(sets)
        rows = self._conn.execute(self._q.render(sql), params).fetchall()
        more = len(rows) > spec.limit
        keys = 2 + len(spec.sort)  # rid, seq, the sort keys; then the version's columns
        found = [SearchRow(row_to_version(r[keys:]), (*r[2:keys], r[0])) for r in rows]
        found = found[: spec.limit]
        if spec.backward:
            found.reverse()
        return SearchPage(found, more)

    def search_count(self, spec: SearchSpec, cap: int | None = None) -> int:
        sets = self._sets()
        sql, params = count_sql(spec, self._dialect(), cap, sets)
        self._load_sets(sets)
        return int(self._conn.execute(self._q.render(sql), params).fetchone()[0])

    def references_from(
        self,
        rtype: str,
        rids: Sequence[str],
        params: Sequence[str] | None,
        *,
        limit: int | None = None,
    ) -> list[Reference]:
        found: list[Reference] = []
        for chunk in _chunks(list(dict.fromkeys(rids))):
            sql, args = references_from_sql(rtype, chunk, params, limit)
            rows = self._conn.execute(self._q.render(sql), args).fetchall()
            found.extend(Reference(r[0], r[1], r[2], r[3]) for r in rows)
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    def references_to(
        self,
        source: str,
        params: Sequence[str] | None,
        target_type: str,
        targets: Sequence[str],
        *,
        limit: int | None = None,
    ) -> list[Reference]:
        found: list[Reference] = []
        for chunk in _chunks(list(dict.fromkeys(targets))):
            sql, args = references_to_sql(source, params, target_type, chunk, limit)
            rows = self._conn.execute(self._q.render(sql), args).fetchall()
            found.extend(Reference(r[0], r[1], r[2], r[3]) for r in rows)
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    # -- key management (data-key rotation) -------------------------------------------------
    def version_bodies(self, after_seq: int, limit: int) -> list[VersionRecord]:
        sql = (
            f"SELECT {VERSION_COLUMNS} FROM versions WHERE seq > ? AND body IS NOT NULL "
            "ORDER BY seq LIMIT ?"
        )
        rows = self._conn.execute(self._q.render(sql), (after_seq, limit)).fetchall()
        return [row_to_version(r) for r in rows]

    # -- audit log ------------------------------------------------------------------------
    def audit_size(self) -> int:
        row = self._conn.execute(self._q.audit_size, ()).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def audit_entries(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        rows = self._conn.execute(self._q.audit_entries, (start, stop)).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def audit_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        for sql, params in audit_sql.select_nodes(keys):
            for row in self._conn.execute(self._q.render(sql), params).fetchall():
                found[(int(row[0]), int(row[1]))] = bytes(row[2])
        return found

    def audit_checkpoints(self, limit: int) -> list[bytes]:
        rows = self._conn.execute(self._q.audit_checkpoints, (limit,)).fetchall()
        return [bytes(r[0]) for r in rows]

    def audit_all_checkpoints(self) -> list[tuple[int, bytes]]:
        sql = self._q.render(audit_sql.SELECT_ALL_CHECKPOINTS)
        return [(int(r[0]), bytes(r[1])) for r in self._conn.execute(sql, ()).fetchall()]

    def audit_nodes_range(self, level: int, start: int, stop: int) -> list[tuple[int, bytes]]:
        sql = self._q.render(audit_sql.SELECT_NODE_RANGE)
        rows = self._conn.execute(sql, (level, start, stop)).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def audit_rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        sql = self._q.render(audit_sql.SELECT_ROWS)
        rows: list[tuple[Any, ...]] = self._conn.execute(sql, (start, stop)).fetchall()
        return rows

    def audit_seal(self) -> tuple[int, bytes] | None:
        row = self._conn.execute(self._q.render(audit_sql.SELECT_SEAL), ()).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def audit_time_span(self, times: Sequence[tuple[str, str]]) -> tuple[int, int] | None:
        sql, params = audit_sql.time_span_sql(times)
        row = self._conn.execute(self._q.render(sql), params).fetchone()
        return (int(row[0]), int(row[1])) if row and row[0] is not None else None

    def audit_search(self, query: AuditQuery) -> list[tuple[int, bytes]]:
        sql, params = audit_sql.search_sql(query)
        rows = self._conn.execute(self._q.render(sql), params).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    # -- wrapped keys -----------------------------------------------------------------------
    def key_get(self, key_id: str) -> bytes | None:
        row = self._conn.execute(self._q.key_get, (key_id,)).fetchone()
        return bytes(row[0]) if row else None

    def key_get_many(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        ids = sorted(set(key_ids))
        for start in range(0, len(ids), _KEYS_PER_READ):
            chunk = ids[start : start + _KEYS_PER_READ]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT key_id, blob FROM wrapped_keys WHERE key_id IN ({marks})"
            for key_id, blob in self._conn.execute(self._q.render(sql), chunk).fetchall():
                found[str(key_id)] = bytes(blob)
        return found

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
        self.committed: list[Callable[[], None]] = []  # after_commit's, for the backend

    def after_commit(self, fn: Callable[[], None]) -> None:
        self.committed.append(fn)

    def lock_resource(self, rtype: str, rid: str) -> None:
        # SQLite: the whole write transaction holds the database write lock already.
        return None

    def lock_audit(self) -> None:
        # SQLite: the write transaction already excludes every other writer.
        return None

    def audit_claim(self) -> int:
        self.lock_audit()
        return self.audit_size()

    def audit_append(
        self,
        start: int,
        entries: Sequence[bytes],
        nodes: dict[tuple[int, int], bytes],
        index: Sequence[AuditIndexRow] = (),
        seal: tuple[int, bytes] | None = None,
    ) -> None:
        if index and len(index) != len(entries):
            raise ValueError("one index row per entry")
        empty = (None,) * 7
        entry_rows = [
            (start + i, e, *(index[i] if index else empty)) for i, e in enumerate(entries)
        ]
        node_rows = [(lv, ix, h) for (lv, ix), h in nodes.items()]
        self.insert_rows("audit_entries", audit_sql.ENTRY_COLUMNS, entry_rows)
        self.insert_rows("audit_nodes", audit_sql.NODE_COLUMNS, node_rows)
        if seal is not None:
            self.audit_put_seal(*seal)

    def audit_claim_append(
        self,
        expected: int,
        entries: Sequence[bytes],
        nodes: dict[tuple[int, int], bytes],
        index: Sequence[AuditIndexRow] = (),
        seal: tuple[int, bytes] | None = None,
        *,
        commit: bool = False,
    ) -> int:
        # `commit` changes nothing here: the write block's end commits (SQLite's group
        # commit shares one transaction among writers, so no block commits on its own).
        size = self.audit_claim()
        if size == expected:
            self.audit_append(expected, entries, nodes, index, seal)
        return size

    def insert_rows(
        self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        """Bulk insert in a few multi-row statements (a backend may do better: COPY)."""
        for sql, params in audit_sql.insert_chunks(table, columns, rows):
            self._conn.execute(self._q.render(sql), params)

    def key_put(self, key_id: str, blob: bytes, *, replace: bool) -> bool:
        if replace:
            self._conn.execute(self._q.key_put, (key_id, blob))
            return True
        return self._conn.execute(self._q.key_add, (key_id, blob)).fetchone() is not None

    def key_delete(self, key_id: str) -> None:
        self._conn.execute(self._q.key_delete, (key_id,))

    def key_lock(self, key_id: str, *, exclusive: bool) -> bytes | None:
        if self._q.render("?") == "?":
            # SQLite: this write transaction already excludes every other writer.
            return self.key_get(key_id)
        mode = "UPDATE" if exclusive else "SHARE"
        sql = f"SELECT blob FROM wrapped_keys WHERE key_id = ? FOR {mode}"
        row = self._conn.execute(self._q.render(sql), (key_id,)).fetchone()
        return bytes(row[0]) if row else None

    def key_add_if(self, lock_id: str, expected: bytes | None, key_id: str, blob: bytes) -> bool:
        # SQLite (PostgreSQL has its own, with FOR SHARE): the write transaction already
        # excludes every other writer, so the check needs no lock and goes into the insert
        # (one statement inside the writer lock, not a read and then an insert).
        row = self._conn.execute(self._q.key_add_if, (key_id, blob, lock_id, expected))
        return row.fetchone() is not None

    def export_job_insert(self, job: ExportJobRecord) -> None:
        self._conn.execute(self._q.render(export_jobs.INSERT), export_jobs.insert_params(job))

    def export_job_update(self, job: ExportJobRecord) -> bool:
        sql = self._q.render(export_jobs.UPDATE)
        return self._conn.execute(sql, export_jobs.update_params(job)).fetchone() is not None

    def export_job_delete(self, job_id: str) -> None:
        self._conn.execute(self._q.render(export_jobs.DELETE), (job_id,))

    def insert_index(self, kind: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert one resource's index rows of one kind (parameter tuples of
        `index_params`). A backend may do better than executemany (PostgreSQL: COPY)."""
        if kind == BLIND:
            rows = rows if self._q.blind_docs else blind_bytes(rows)
        self._executemany(self._q.insert_index[kind], rows)

    def replace_index(self, rtype: str, rid: str, rows: Sequence[IndexRow]) -> None:
        for stmt, keys in self._q.index_deletes(rtype, rid):
            self._conn.execute(stmt, keys)
        for kind, params in index_params(rtype, rid, rows).items():
            self.insert_index(kind, params)

    def replace_body(self, seq: int, old: bytes, new: bytes) -> bool:
        sql = "UPDATE versions SET body = ? WHERE seq = ? AND body = ? RETURNING seq"
        return self._conn.execute(self._q.render(sql), (new, seq, old)).fetchone() is not None

    def delete_compartment_index(self, compartment: str) -> int:
        owned = "SELECT rtype, rid FROM resources WHERE compartment = ?"
        for table in self._q.index_tables.values():
            sql = f"DELETE FROM {table} WHERE (rtype, rid) IN ({owned})"
            self._conn.execute(self._q.render(sql), (compartment,))
        sql = f"SELECT COUNT(*) FROM ({owned}) AS owned"
        count = int(self._conn.execute(self._q.render(sql), (compartment,)).fetchone()[0])
        if count and self._q.blind_docs:
            # FTS5 marks deleted tokens and drops them only when it merges the segments
            # that hold them: merge them all now, so the shredded tokens leave the file.
            self._conn.execute(f"INSERT INTO {BLIND_FTS} ({BLIND_FTS}) VALUES ('optimize')")
        return count

    def audit_put_checkpoint(self, size: int, checkpoint: bytes) -> None:
        self._conn.execute(self._q.audit_insert_checkpoint, (size, checkpoint))

    def audit_put_seal(self, size: int, mac: bytes) -> None:
        self._conn.execute(self._q.render(audit_sql.PUT_SEAL), (size, mac))

    def audit_terms_claim(self) -> int:
        sql = audit_sql.SELECT_TERMS_UPTO
        if self._q.render("?") != "?":  # PostgreSQL; SQLite's write transaction excludes
            sql += " FOR UPDATE"
        row = self._conn.execute(self._q.render(sql), ()).fetchone()
        return int(row[0]) if row else 0

    def audit_terms_put(self, rows: Sequence[tuple[bytes, int]], upto: int, new: int) -> None:
        self.insert_rows("audit_terms", audit_sql.TERM_COLUMNS, list(rows))
        self._conn.execute(self._q.render(audit_sql.UPDATE_TERMS_UPTO), (new, upto))

    def append_versions(self, news: Sequence[NewVersion]) -> list[VersionRecord]:
        return [self.append_version(new) for new in news]

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
            for stmt, params in q.index_deletes(new.rtype, new.rid):
                self._conn.execute(stmt, params)
        if not new.deleted:
            for kind, rows in index_params(new.rtype, new.rid, new.index).items():
                self.insert_index(kind, rows)
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


def _chunks(items: list[Any], size: int = 500) -> list[list[Any]]:
    """Bounded IN lists (SQLite limits bound parameters per statement)."""
    return [items[i : i + size] for i in range(0, len(items), size)]
