"""Helpers for the encryption, rotation and shredding tests: raw SQL behind the store's
back, a real HTTP server in a thread, and the demo clinic."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import uvicorn

from phivault.api.app import create_app
from phivault.crypto.kek import KeyFileKeySource
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.service import Context
from phivault.store.factory import SQLITE_FILE
from phivault.types import Resource
from phivault.vault import Vault, open_vault

CTX = Context(actor="keys-test")


def raw_sql(vault: Vault, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on the database behind the store, bypassing it (`?` placeholders)."""
    store: Any = vault.store
    if store.backend == "sqlite":
        conn = sqlite3.connect(vault.settings.data_dir / SQLITE_FILE, timeout=30)
        try:
            cur = conn.execute(sql, params)
            rows = cur.fetchall()
            conn.commit()
        finally:
            conn.close()
        return rows
    with psycopg.connect(store.url, autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{store.schema}"')
        cur = pg.execute(sql.replace("?", "%s").encode(), params)
        return cur.fetchall() if cur.description else []


def open_with(data_dir: Path, key_file: Path, **kwargs: Any) -> Vault:
    return open_vault(data_dir, KeyFileKeySource(key_file), **kwargs)


def clinic(patients: int, seed: int = 1) -> list[Resource]:
    return list(generate_clinic(ClinicSpec(patients=patients, seed=seed)))


def load_clinic(vault: Vault, resources: list[Resource]) -> None:
    for stats in vault.service.import_resources(CTX, resources, batch_size=1000):
        assert stats.failed == 0, stats.errors


def patients_of(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r["resourceType"] == "Patient"]


@contextmanager
def serving(vault: Vault) -> Iterator[str]:
    """The vault's FHIR API on a real uvicorn server in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    config = uvicorn.Config(
        create_app(vault.service, vault.settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/fhir"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def run_cli(*args: str, env: dict[str, str | None] | None = None) -> Any:
    """`phivault ...` in this process (click's runner); the key comes from the arguments
    or `env`, never from the caller's environment."""
    from click.testing import CliRunner

    from phivault.cli.main import cli

    clean: dict[str, str | None] = {
        name: None
        for name in (
            "PHIVAULT_PASSPHRASE",
            "PHIVAULT_NEW_PASSPHRASE",
            "PHIVAULT_KEY_FILE",
            "PHIVAULT_DATA",
            "PHIVAULT_DB",
        )
    }
    clean.update(env or {})
    return CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)
