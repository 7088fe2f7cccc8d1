"""The PostgreSQL store's connections: phivault's own URL parameters, the pools' probing
of idle connections, reads retried once on a connection that broke in the pool, and the
translation of driver errors into phivault's.

A pooled connection idle for a while (which a restart or a network cut may have broken)
is probed before use; a busy one that broke anyway is dropped by the pool, and a read on
it is run once more on a fresh one (a write never is: it fails with the store's 503).
"""

from __future__ import annotations

import re
import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from phivault.errors import ConfigError, StorageFull, StoreError, VersionConflict

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEFAULT_POOL_TIMEOUT_S",
    "KEEPALIVES",
    "PROBE_AFTER_IDLE_S",
    "PROBE_WRITE_AFTER_IDLE_S",
    "PoolExec",
    "ProbeIfIdle",
    "pool_options",
    "read_retrying",
    "split_schema",
    "translate",
]

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# A pooled read connection is probed (one round trip) before use only after sitting idle
# this long; a busy one that broke anyway is replaced and its statement run once more.
PROBE_AFTER_IDLE_S = 2.0
# A write is never run again, so a write connection is probed after a shorter idle time
# (and whenever its socket shows the server ended the session): one that broke within
# the last second without a word from the server fails its write with the 503.
PROBE_WRITE_AFTER_IDLE_S = 1.0
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}  # fmt: skip


# phivault's own URL parameters (libpq would refuse them): the schema, how long a request
# waits for a pooled connection before its 503, and the pool's size.
_OWN_PARAMS = ("schema", "pool_timeout", "pool_size")
DEFAULT_POOL_TIMEOUT_S = 10.0
DEFAULT_POOL_SIZE = 10


def split_schema(url: str) -> tuple[str, str]:
    """Take phivault's own parameters (`schema=`, `pool_timeout=`, `pool_size=`) out of a
    libpq URL; return the URL libpq gets and the schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {key: value for key, value in query if key in _OWN_PARAMS}
    kept = [(key, value) for key, value in query if key not in _OWN_PARAMS]
    schema = own.get("schema", "public")
    if not _SCHEMA_NAME.match(schema):
        raise ConfigError("invalid PostgreSQL schema name in the database URL")
    return urlunsplit(parts._replace(query=urlencode(kept))), schema


def pool_options(url: str) -> tuple[float, int]:
    """(seconds a request waits for a connection, pool size) from the URL's
    `pool_timeout=` and `pool_size=` parameters, with their defaults."""
    own = {k: v for k, v in parse_qsl(urlsplit(url).query) if k in _OWN_PARAMS}
    try:
        timeout = float(own.get("pool_timeout", DEFAULT_POOL_TIMEOUT_S))
        size = int(own.get("pool_size", DEFAULT_POOL_SIZE))
    except ValueError:
        raise ConfigError("pool_timeout and pool_size in the database URL are numbers") from None
    if not (0.1 <= timeout <= 300) or not (1 <= size <= 1000):
        raise ConfigError("pool_timeout must be 0.1-300 s and pool_size 1-1000")
    return timeout, size


class ProbeIfIdle:
    """A pool's `check`: probing every borrowed connection costs a round trip per
    statement (or per write transaction), as much as the statement itself; only
    connections idle for a while (which a restart or a network cut may have broken) are
    probed, and those whose socket has something to read: a server that ended the
    session (restart, terminated backend, idle timeout) sent its FATAL message or closed
    the socket, which a poll sees without a round trip."""

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._used.get(conn)
        if last is None or now - last > self._idle_s or _readable(conn):
            ConnectionPool.check_connection(conn)
        with self._lock:
            self._used[conn] = now


def _readable(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection's socket has data or an end of file waiting (it should
    have neither: the server speaks only when asked); an unusable socket counts too."""
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


_T = TypeVar("_T")
_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK


class PoolExec:
    """ReadView connection adapter: each statement borrows a pooled connection.

    The read pool's connections are in autocommit: one statement is one round trip,
    where a transaction would add a BEGIN and a COMMIT (each statement was its own
    transaction anyway)."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    def execute(self, sql: str, params: Any = ()) -> Any:
        def run(conn: psycopg.Connection[Any]) -> _Fetched:
            cur = conn.execute(sql, params)
            # Whether the statement returned rows, from the result's status: `description`
            # builds a Column object per column on every call (~10 us for a version row).
            result = cur.pgresult
            returned = result is not None and result.status == _TUPLES_OK
            return _Fetched(cur.fetchall() if returned else [])

        return read_retrying(self._pool, run)


def read_retrying(pool: ConnectionPool[Any], run: Callable[[psycopg.Connection[Any]], _T]) -> _T:
    """`run` on a pooled read connection. A connection broken while it sat in the pool
    (not probed: recently used) is dropped by the pool, and a read is safe to run again
    on a fresh one: once."""
    for attempt in (1, 2):
        used: psycopg.Connection[Any] | None = None
        try:
            with pool.connection() as conn:
                used = conn
                return run(conn)
        except psycopg.OperationalError as exc:
            if attempt == 2 or used is None or not used.broken:
                raise translate(exc) from None
        except psycopg.Error as exc:
            raise translate(exc) from None
    raise StoreError()  # not reached: the second attempt returns or raises


class _Fetched:
    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


def translate(exc: psycopg.Error) -> Exception:
    if isinstance(exc, pg_errors.UniqueViolation):
        return VersionConflict()
    if isinstance(exc, pg_errors.DiskFull):
        return StorageFull()
    return StoreError()
