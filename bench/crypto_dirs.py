"""bench_crypto.py's data directories: the demo clinic loaded, encryption on or off, on
SQLite or in a PostgreSQL schema of their own (dropped at the end of the run)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.service import Context
from phivault.vault import init_data_dir, open_vault

PG_URL = os.environ.get("PHIVAULT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMAS: list[str] = []  # PostgreSQL schemas this run made, dropped at its end


def prepare_dir(
    work: Path, tag: str, encryption: bool, patients: int, backend: str | None = None
) -> tuple[Path, Path]:
    backend = backend or tag
    tag = f"{tag}-{'on' if encryption else 'off'}"
    key_file, data = work / f"{tag}.key", work / f"data-{tag}"
    create_key_file(key_file)
    db = None
    if backend == "postgresql":
        schema = f"bench_crypto_{uuid.uuid4().hex[:8]}"
        SCHEMAS.append(schema)
        db = f"{PG_URL}?schema={schema}"
    init_data_dir(data, KeyFileKeySource(key_file), db_url=db, encryption=encryption)
    vault = open_vault(data, KeyFileKeySource(key_file), encryption=encryption)
    try:
        clinic = generate_clinic(ClinicSpec(patients=patients, seed=1))
        for stats in vault.service.import_resources(
            Context(actor="bench"), clinic, batch_size=1000
        ):
            assert stats.failed == 0, stats.errors
    finally:
        vault.close()
    return data, key_file


def drop_schemas() -> None:
    if not SCHEMAS:
        return
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for schema in SCHEMAS:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
