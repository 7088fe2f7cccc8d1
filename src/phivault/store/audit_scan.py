"""Read-only connections that scan the audit tables from another process.

`audit verify` checks pages of the log in worker processes (audit/verify.py); each opens
its own connection from an `AuditScanSource`, which is small and picklable. The scans
only SELECT: SQLite's connection is `query_only`, PostgreSQL's is read-only and
autocommit.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from phivault.errors import StoreError
from phivault.store import audit_sql


@dataclass(frozen=True, slots=True)
class AuditScanSource:
    backend: str  # "sqlite" or "postgresql"
    target: str  # the SQLite file, or the libpq URL
    schema: str = ""

    def open(self) -> AuditScan:
        if self.backend == "sqlite":
            return _SqliteScan(self.target)
        if self.backend == "postgresql":
            return _PostgresScan(self.target, self.schema)
        raise StoreError("unknown store backend")


class AuditScan:
    """`audit_rows` and `audit_nodes_range` as the stores answer them (store/base.py)."""

    def audit_rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def audit_nodes_range(self, level: int, start: int, stop: int) -> list[tuple[int, bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _SqliteScan(AuditScan):
    def __init__(self, path: str) -> None:
        try:
            # One thread at a time, but maybe not the one that opened it (verify's reader).
            self._conn = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self._conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StoreError("cannot open the SQLite database") from exc

    def audit_rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(audit_sql.SELECT_ROWS, (start, stop)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError() from exc

    def audit_nodes_range(self, level: int, start: int, stop: int) -> list[tuple[int, bytes]]:
        try:
            sql = audit_sql.SELECT_NODE_RANGE
            return self._conn.execute(sql, (level, start, stop)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError() from exc

    def close(self) -> None:
        self._conn.close()


class _PostgresScan(AuditScan):
    def __init__(self, url: str, schema: str) -> None:
        import psycopg  # only in the processes that scan PostgreSQL

        self._errors: type[Exception] = psycopg.Error
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            self._conn.execute(f'SET search_path TO "{schema}"')
            self._conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise StoreError("cannot connect to PostgreSQL") from exc
        # Binary results: bytea arrives as bytes, not as hex text to decode.
        self._cur = self._conn.cursor(binary=True)

    def _rows(self, sql: str, params: tuple[int, ...]) -> list[tuple[Any, ...]]:
        try:
            self._cur.execute(sql.replace("?", "%s").encode(), params, prepare=True)
            return self._cur.fetchall()
        except self._errors as exc:
            raise StoreError() from exc

    def audit_rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        return self._rows(audit_sql.SELECT_ROWS, (start, stop))

    def audit_nodes_range(self, level: int, start: int, stop: int) -> list[tuple[int, bytes]]:
        return [
            (int(i), h) for i, h in self._rows(audit_sql.SELECT_NODE_RANGE, (level, start, stop))
        ]

    def close(self) -> None:
        self._conn.close()
