"""Open the store a configuration names."""

from __future__ import annotations

from pathlib import Path

from phivault.errors import ConfigError
from phivault.store.base import Store

SQLITE_FILE = "phivault.db"


def open_store(data_dir: Path, db_url: str | None = None, *, migrate: bool = True) -> Store:
    """SQLite inside the data directory by default; PostgreSQL when a URL says so."""
    store: Store
    if db_url is None or db_url.startswith("sqlite"):
        from phivault.store.sqlite import SqliteStore

        path = data_dir / SQLITE_FILE
        if db_url and db_url.startswith("sqlite:///"):
            path = Path(db_url.removeprefix("sqlite:///"))
        store = SqliteStore(path)
    elif db_url.startswith(("postgresql://", "postgres://")):
        from phivault.store.postgres import PostgresStore

        store = PostgresStore(db_url)
    else:
        raise ConfigError("unsupported database URL: use sqlite:///PATH or postgresql://...")
    if migrate:
        store.migrate()
    return store
