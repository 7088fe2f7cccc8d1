"""Load a PostgreSQL snapshot (binary COPY files) into an empty schema, in one transaction.

The schema is built by phivault's own migrations up to the version the snapshot was taken
at, the tables are filled with COPY FROM, and serial sequences are moved past the
restored rows; later migrations run when the restored data directory is first opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phivault.backup.delta import APPEND_TABLES, KEYS_TABLE, RESOURCES
from phivault.errors import BackupError, ConfigError
from phivault.store.sql import load_migrations

_COPY_BLOCK = 1024 * 1024


def load_postgres(
    db_url: str,
    pg_dir: Path,
    meta: dict[str, Any],
    deltas: Sequence[tuple[Path, dict[str, Any]]] = (),
    keys: Sequence[tuple[str, bytes]] | None = None,
) -> None:
    """Load a full snapshot, then apply each delta (folder, meta) in order: all in one
    transaction, so a failed restore leaves nothing half-loaded."""
    import psycopg

    from phivault.store.pg_pool import split_schema

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
                for folder, delta_meta in deltas:
                    if int(delta_meta["schema_version"]) != version:
                        raise BackupError("an incremental snapshot has another schema version")
                    _apply_delta(conn, schema, folder, [str(t) for t in delta_meta["tables"]])
                if keys is not None:  # the key-set's table replaces whatever the dump held
                    conn.execute(f'DELETE FROM "{schema}".{KEYS_TABLE}'.encode())
                    with conn.cursor() as cur:
                        cur.executemany(
                            f'INSERT INTO "{schema}".{KEYS_TABLE} (key_id, blob) '
                            "VALUES (%s, %s)".encode(),
                            list(keys),
                        )
                for table, column in meta.get("serials", []):
                    conn.execute(
                        f'SELECT setval(pg_get_serial_sequence(\'"{schema}"."{table}"\', %s), '
                        f'COALESCE((SELECT MAX("{column}") FROM "{schema}"."{table}"), 0) + 1, '
                        "false)".encode(),
                        (column,),
                    )
    except psycopg.Error as exc:
        raise BackupError("cannot load the snapshot into PostgreSQL") from exc


def _apply_delta(conn: Any, schema: str, folder: Path, tables: list[str]) -> None:
    """One delta (backup/delta.py): append-only rows are added; the resources it touched
    get their `resources` row and their rows of each index table replaced; every other
    table is replaced whole."""
    conn.execute(b"CREATE TEMP TABLE delta_resources (LIKE resources) ON COMMIT DROP")
    if RESOURCES in tables:
        _copy_in(conn, None, "delta_resources", folder / f"{RESOURCES}.copy")
    for table in tables:
        target = f'"{schema}"."{table}"'
        if table in APPEND_TABLES:
            pass
        elif table.startswith("idx_") or table == RESOURCES:
            conn.execute(
                f"DELETE FROM {target} t USING delta_resources d "
                "WHERE t.rtype = d.rtype AND t.rid = d.rid".encode()
            )
        else:
            conn.execute(f"DELETE FROM {target}".encode())
        _copy_in(conn, schema, table, folder / f"{table}.copy")
    conn.execute(b"DROP TABLE delta_resources")


def _copy_in(conn: Any, schema: str | None, table: str, path: Path) -> None:
    if not path.exists():
        raise BackupError("a table dump is missing from the snapshot")
    name = f'"{schema}"."{table}"' if schema else f'"{table}"'
    query = f"COPY {name} FROM STDIN (FORMAT BINARY)"
    with conn.cursor() as cur, cur.copy(query.encode()) as copy, open(path, "rb") as source:
        while block := source.read(_COPY_BLOCK):
            copy.write(block)
