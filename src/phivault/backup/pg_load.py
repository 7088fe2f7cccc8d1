"""Load a PostgreSQL snapshot (binary COPY files) into an empty schema, in one transaction.

The schema is built by phivault's own migrations up to the version the snapshot was taken
at, the tables are filled with COPY FROM, and serial sequences are moved past the
restored rows; later migrations run when the restored data directory is first opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phivault.errors import BackupError, ConfigError
from phivault.store.sql import load_migrations

_COPY_BLOCK = 1024 * 1024


def load_postgres(db_url: str, pg_dir: Path, meta: dict[str, Any]) -> None:
    import psycopg

    from phivault.store.postgres import split_schema

    url, schema = split_schema(db_url)
    version = int(meta["schema_version"])
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            with conn.transaction():
                used = conn.execute(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s",
                    (schema,),
                ).fetchone()
                if used and int(used[0]):
                    raise ConfigError("restore into an empty PostgreSQL schema only")
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'.encode())
                conn.execute(f'SET LOCAL search_path TO "{schema}"'.encode())
                conn.execute(b"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
                for number, script in load_migrations("postgres"):
                    if number <= version:
                        conn.execute(script.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version) VALUES (%s)", (number,)
                        )
                for table in meta["tables"]:
                    # Rows a migration seeded are in the snapshot too, as they were then.
                    conn.execute(f'DELETE FROM "{schema}"."{table}"'.encode())
                    _copy_in(conn, schema, str(table), pg_dir / f"{table}.copy")
                for table, column in meta.get("serials", []):
                    conn.execute(
                        f'SELECT setval(pg_get_serial_sequence(\'"{schema}"."{table}"\', %s), '
                        f'COALESCE((SELECT MAX("{column}") FROM "{schema}"."{table}"), 0) + 1, '
                        "false)".encode(),
                        (column,),
                    )
    except psycopg.Error as exc:
        raise BackupError("cannot load the snapshot into PostgreSQL") from exc


def _copy_in(conn: Any, schema: str, table: str, path: Path) -> None:
    if not path.exists():
        raise BackupError("a table dump is missing from the snapshot")
    query = f'COPY "{schema}"."{table}" FROM STDIN (FORMAT BINARY)'
    with conn.cursor() as cur, cur.copy(query.encode()) as copy, open(path, "rb") as source:
        while block := source.read(_COPY_BLOCK):
            copy.write(block)
