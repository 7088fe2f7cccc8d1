"""Fixtures shared by the suite: a data directory on each storage backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from phivault.access import clients
from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.vault import Vault, init_data_dir, open_vault

# What the `client` fixture's bearer token grants: every interaction on every type (a
# backend client), and the audit trail, which only a scope naming it reaches.
CLIENT_SCOPE = "system/*.cruds system/AuditEvent.rs"
PG_URL = os.environ.get("PHIVAULT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    if not _pg_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required in CI but is not reachable")
        pytest.skip("PostgreSQL not reachable")
    return PG_URL


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A fresh schema per test, dropped afterwards."""
    schema = "t_" + uuid.uuid4().hex[:12]
    yield f"{pg_url}?schema={schema}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek.key"
    create_key_file(path)
    return path


@pytest.fixture
def data_dir(tmp_path: Path, key_file: Path, db_url: str | None) -> Path:
    path = tmp_path / "data"
    init_data_dir(path, KeyFileKeySource(key_file), db_url=db_url)
    return path


@pytest.fixture
def vault(data_dir: Path, key_file: Path) -> Iterator[Vault]:
    opened = open_vault(data_dir, KeyFileKeySource(key_file))
    yield opened
    opened.close()


@pytest.fixture
def access(vault: Vault) -> AccessControl:
    return AccessControl.for_service(vault.service, vault.keyring)


def system_token(access: AccessControl, scope: str = CLIENT_SCOPE, name: str = "test-suite") -> str:
    """A bearer token for a registered script client, issued by the real token code."""
    row = access.store.client_by_name(name) or clients.register(
        access.store, name, clients.SCRIPT, scope
    )
    token, _ = access.system_token(row.client_id, scope, 900)
    return token


@pytest.fixture
def client(vault: Vault, access: AccessControl) -> Iterator[TestClient]:
    """The API as served (access control on), called with a system-scoped bearer token."""
    app = create_app(vault.service, vault.settings, access)
    headers = {"Authorization": f"Bearer {system_token(access)}"}
    with TestClient(app, base_url="http://testserver", headers=headers) as test_client:
        yield test_client


@pytest.fixture
def anon_client(vault: Vault, access: AccessControl) -> Iterator[TestClient]:
    """The same API called without any token."""
    app = create_app(vault.service, vault.settings, access)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client
