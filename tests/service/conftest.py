"""The search suite's clinic (search_data.py), built once per backend, encryption on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.vault import Vault, init_data_dir, open_vault
from tests.service.search_data import CTX, clinic


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def search_vault(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Vault]:
    tmp = tmp_path_factory.mktemp(f"search-{request.param}")
    db_url: str | None = None
    schema = "t_search_" + uuid.uuid4().hex[:10]
    pg_url = ""
    if request.param == "postgresql":
        pg_url = str(request.getfixturevalue("pg_url"))
        db_url = f"{pg_url}?schema={schema}"
    key = tmp / "kek.key"
    create_key_file(key)
    init_data_dir(tmp / "data", KeyFileKeySource(key), db_url=db_url)
    vault = open_vault(tmp / "data", KeyFileKeySource(key))
    for resource in clinic():
        vault.service.update(CTX, resource["resourceType"], resource["id"], resource)
    yield vault
    vault.close()
    if pg_url:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
