"""The PostgreSQL pool's limits come from phivault's own URL parameters, and a request
that cannot get a connection in time fails fast with the store's 503 error."""

from __future__ import annotations

import time

import psycopg
import pytest

from phivault.errors import ConfigError, StoreError
from phivault.store.pg_pool import (
    DEFAULT_POOL_SIZE,
    DEFAULT_POOL_TIMEOUT_S,
    pool_options,
    split_schema,
)
from phivault.store.postgres import PostgresStore


def test_own_parameters_never_reach_libpq() -> None:
    url = "postgresql://u@h:5432/db?sslmode=require&schema=clinic&pool_timeout=2.5&pool_size=4"
    libpq_url, schema = split_schema(url)
    assert schema == "clinic"
    assert "pool_" not in libpq_url and "schema" not in libpq_url
    assert "sslmode=require" in libpq_url
    assert pool_options(url) == (2.5, 4)
    assert pool_options("postgresql://u@h/db") == (DEFAULT_POOL_TIMEOUT_S, DEFAULT_POOL_SIZE)


@pytest.mark.parametrize(
    "query", ["pool_timeout=soon", "pool_size=many", "pool_timeout=0", "pool_size=0"]
)
def test_bad_pool_parameters_are_refused(query: str) -> None:
    with pytest.raises(ConfigError):
        pool_options(f"postgresql://u@h/db?{query}")


@pytest.mark.postgres
def test_a_request_waiting_for_a_busy_pool_fails_fast(pg_schema_url: str) -> None:
    store = PostgresStore(f"{pg_schema_url}&pool_timeout=0.5&pool_size=1")
    try:
        store.migrate()
        with store.write():  # holds the only write connection
            started = time.monotonic()
            with pytest.raises(StoreError), store.write():
                pass
            waited = time.monotonic() - started
        assert waited < 3.0
        with store.write():  # the pool is usable again once the holder is done
            pass
    finally:
        store.close()


@pytest.mark.postgres
def test_a_write_connection_the_server_ended_is_replaced_before_the_write(
    pg_schema_url: str, pg_url: str
) -> None:
    """A write connection used a moment ago is not probed (a round trip per write), but
    one whose session the server ended (restart, terminated backend) is: the write gets
    a fresh connection instead of failing."""
    store = PostgresStore(f"{pg_schema_url}&pool_size=1")
    try:
        store.migrate()
        with store.write() as tx:
            pid = tx._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)  # the server's goodbye reaches the socket
        with store.write() as tx:
            again = tx._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert again != pid
    finally:
        store.close()
