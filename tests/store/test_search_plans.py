"""The main searches use indexes, on both backends, shown by the databases' own plans.

Honest conditions: the tables hold a realistic number of rows (4,000 patients, 20,000
observations, 4,000 organizations, index rows shaped like the real ones) and PostgreSQL
has statistics (ANALYZE, as autovacuum would have run), no planner switch turned off; SQLite is
checked both as shipped (no statistics) and after ANALYZE. The SQL is the statement the
store really runs, compiled from the request by the real planner and index policy.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import psycopg
import pytest

from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.fhir.search.query import parse_search
from phivault.service.search_plan import Planner
from phivault.store.search_spec import SearchSpec
from phivault.store.search_sql import Dialect, page_sql, references_from_sql
from phivault.vault import Vault, init_data_dir, open_vault

PATIENTS, OBSERVATIONS = 4_000, 20_000


def _rows(n: int, select: str, postgres: bool) -> str:
    if postgres:
        return f"SELECT {select} FROM generate_series(1, {n}) AS s(n)"
    return (
        f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) "
        f"SELECT {select} FROM s"
    )


def _token(number: str, postgres: bool) -> str:
    """A 16-byte blind token made of a number (equal numbers, equal tokens)."""
    if postgres:
        return f"convert_to(lpad(({number})::text, 16, '0'), 'UTF8')"
    return f"CAST(printf('%016d', {number}) AS BLOB)"


def _blind_rows(p: int, postgres: bool) -> list[tuple[str, int, str]]:
    """Two prefix tokens per patient: one shared by ~8 patients, one by ~80. PostgreSQL:
    a row per token; SQLite: a row per patient, indexed by the FTS5 table's triggers."""
    if postgres:
        return [
            (
                "idx_blind (token, rtype, rid)",
                p,
                f"{_token('n % 500', postgres)}, 'Patient', 'p' || n",
            ),
            (
                "idx_blind (token, rtype, rid)",
                p,
                f"{_token('1000 + n % 50', postgres)}, 'Patient', 'p' || n",
            ),
        ]
    tokens = f"lower(hex({_token('n % 500', False)})) || ' ' || lower(hex({_token('1000 + n % 50', False)}))"
    return [("idx_blind_docs (rtype, rid, tokens)", p, f"'Patient', 'p' || n, {tokens}")]


def fill(execute: Any, postgres: bool) -> None:
    """Index rows shaped like a clinic's: unique MRN tokens, family-name prefix tokens
    shared by ~20 patients, 5 observations per patient over 20 codes and spread dates."""
    false = "FALSE" if postgres else "0"
    p, o = PATIENTS, OBSERVATIONS
    inserts = [
        (
            "resources (rtype, rid, version, seq, deleted, last_updated, compartment)",
            p,
            f"'Patient', 'p' || n, 1, n, {false}, '2024-01-01T00:00:00.000Z', 'Patient/p' || n",
        ),
        (
            "resources (rtype, rid, version, seq, deleted, last_updated, compartment)",
            p,
            f"'Organization', 'g' || n, 1, {p + o} + n, {false}, '2024-01-01T00:00:00.000Z', NULL",
        ),
        (
            "resources (rtype, rid, version, seq, deleted, last_updated, compartment)",
            o,
            f"'Observation', 'o' || n, 1, {p} + n, {false}, '2024-01-01T00:00:00.000Z', 'Patient/p' || (n % {p})",
        ),
        (
            "idx_token (rtype, param, system, value, text, rid)",
            p,
            "'Patient', 'identifier', 'urn:mrn', 'tok' || n, NULL, 'p' || n",
        ),
        (
            "idx_token (rtype, param, system, value, text, rid)",
            p,
            "'Patient', 'gender', '', CASE WHEN n % 2 = 0 THEN 'male' ELSE 'female' END, NULL, 'p' || n",
        ),
        *_blind_rows(p, postgres),
        (
            "idx_string (rtype, param, value, text, rid)",
            p,
            "'Organization', 'name', 'org ' || n, NULL, 'g' || n",
        ),
        (
            "idx_reference (rtype, param, system, value, text, rid)",
            o,
            f"'Observation', 'subject', 'Patient', 'p' || (n % {p}), NULL, 'o' || n",
        ),
        (
            "idx_reference (rtype, param, system, value, text, rid)",
            o,
            f"'Observation', 'patient', 'Patient', 'p' || (n % {p}), NULL, 'o' || n",
        ),
        (
            "idx_token (rtype, param, system, value, text, rid)",
            o,
            "'Observation', 'code', 'http://loinc.org', 'c' || (n % 20), 'Body', 'o' || n",
        ),
        (
            "idx_token (rtype, param, system, value, text, rid)",
            o,
            "'Observation', 'status', '', 'final', NULL, 'o' || n",
        ),
        (
            "idx_date (rtype, param, lo, hi, rid)",
            o,
            "'Observation', 'date', 1.6e9 + n * 1000.0, 1.6e9 + n * 1000.0 + 1, 'o' || n",
        ),
    ]
    for table, n, select in inserts:
        execute(f"INSERT INTO {table} {_rows(n, select, postgres)}")


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        "sqlite-analyzed",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ],
)
def explain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Vault, Any]]:
    """(vault, explain(sql, params) -> plan text) over a filled database."""
    tmp = tmp_path_factory.mktemp("plans")
    postgres = request.param == "postgresql"
    schema = "t_plans_" + uuid.uuid4().hex[:10]
    pg_url = str(request.getfixturevalue("pg_url")) if postgres else ""
    key = tmp / "kek.key"
    create_key_file(key)
    init_data_dir(
        tmp / "data",
        KeyFileKeySource(key),
        db_url=f"{pg_url}?schema={schema}" if postgres else None,
    )
    vault = open_vault(tmp / "data", KeyFileKeySource(key))
    render = vault.store._queries.render  # type: ignore[attr-defined]
    if postgres:
        conn: Any = psycopg.connect(pg_url, autocommit=True)
        conn.execute(f'SET search_path TO "{schema}"')
        fill(conn.execute, True)
        for table in (
            "resources",
            "idx_token",
            "idx_string",
            "idx_blind",
            "idx_reference",
            "idx_date",
        ):
            conn.execute(f"ANALYZE {table}")  # this schema's tables only

        def plan(sql: str, params: list[Any]) -> str:
            rows = conn.execute("EXPLAIN " + render(sql), params).fetchall()
            return "\n".join(r[0] for r in rows)
    else:
        conn = sqlite3.connect(Path(tmp / "data" / "phivault.db"), isolation_level=None)
        fill(conn.execute, False)
        if request.param == "sqlite-analyzed":
            conn.execute("ANALYZE")

        def plan(sql: str, params: list[Any]) -> str:
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            return "\n".join(str(r[3]) for r in rows)

    yield vault, plan
    conn.close()
    vault.close()
    if postgres:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def search_sql(vault: Vault, rtype: str, query: str) -> tuple[str, list[Any], bool]:
    planner = Planner(vault.service.index_policy, vault.service.searcher.registry, lambda *a: ())
    request = parse_search(rtype, parse_qsl(query))
    plan = planner.plan(rtype, request.filters)
    spec = SearchSpec(rtype, plan.terms, planner.sort(rtype, request.sort), limit=50)
    sql, params = page_sql(spec, Dialect(postgres=vault.store.backend == "postgresql"))
    return sql, params, vault.store.backend == "postgresql"


def assert_indexed(text: str, postgres: bool, *indexes: str) -> None:
    for index in indexes:
        assert index in text, f"{index} not used:\n{text}"
    if postgres:
        assert "Seq Scan" not in text, text
    else:
        # an FTS5 table answers its MATCH from its own index ("VIRTUAL TABLE INDEX n:M")
        scans = [
            line
            for line in text.splitlines()
            if line.startswith("SCAN ") and "VIRTUAL TABLE INDEX 0:M" not in line
        ]
        assert not scans, text


MAIN_SEARCHES = [
    # Patient by identifier: an encrypted token, looked up in the token index
    ("Patient", "identifier=urn:mrn|12345678", ("idx_token_match",)),
    # Patient by family-name prefix: an encrypted prefix token, the blind table's key
    # (SQLite: the FTS5 index of the blind tokens)
    ("Patient", "family=smi", ("idx_blind",)),
    # Observation by patient + code + date range: driven by the reference index, the
    # other two probed per candidate through the (rtype, rid, param) indexes
    (
        "Observation",
        "patient=p123&code=http://loinc.org|c3&date=ge2020-01-01&date=lt2025-01-01",
        ("idx_reference_match",),
    ),
    # a quantity in other units: the canonical rows (value-quantity:ucum) and the stored
    # unit's rows, both probed per candidate of the patient
    (
        "Observation",
        "patient=p123&value-quantity=gt5|http://unitsofmeasure.org|mg",
        ("idx_reference_match",),
    ),
    # a prefix in clear (code point order on both backends)
    ("Organization", "name=org 12", ("idx_string_match",)),
]


@pytest.mark.parametrize(("rtype", "query", "indexes"), MAIN_SEARCHES)
def test_main_searches_use_indexes(
    explain: tuple[Vault, Any], rtype: str, query: str, indexes: tuple[str, ...]
) -> None:
    vault, plan = explain
    sql, params, postgres = search_sql(vault, rtype, query)
    renamed = {
        # PostgreSQL's prefix index on idx_string; the blind table's own key
        "idx_string_match": "idx_string_prefix" if postgres and rtype == "Organization" else None,
        "idx_blind": "idx_blind_pkey" if postgres else "VIRTUAL TABLE INDEX 0:M",
    }
    expected = tuple(renamed.get(i) or i for i in indexes)
    if "idx_blind" in indexes and not postgres:  # from the FTS5 index to the rows it names
        expected += ("USING INTEGER PRIMARY KEY (rowid=?)",)
    assert_indexed(plan(sql, params), postgres, *expected)


def test_include_of_the_subject_uses_an_index(explain: tuple[Vault, Any]) -> None:
    vault, plan = explain
    postgres = vault.store.backend == "postgresql"
    page = [f"o{n}" for n in range(1, 51)]
    sql, params = references_from_sql("Observation", page, ["subject"])
    text = plan(sql, params)
    assert_indexed(text, postgres, "idx_reference_res")
    # ... and the included patients are read by primary key
    current = "SELECT rid FROM resources WHERE rtype = ? AND rid IN (" + ", ".join("?" * 50) + ")"
    assert_indexed(
        plan(current, ["Patient", *[f"p{n}" for n in range(50)]]),
        postgres,
        "resources_pkey" if postgres else "PRIMARY KEY",
    )


def test_a_blind_prefix_beside_a_selective_term_is_probed_per_candidate(
    explain: tuple[Vault, Any],
) -> None:
    """identifier drives; the family-name prefix is checked for its candidates only: on
    SQLite by the resource's row of idx_blind_docs and the FTS5 matches, read once."""
    vault, plan = explain
    sql, params, postgres = search_sql(vault, "Patient", "identifier=urn:mrn|12345678&family=smi")
    text = plan(sql, params)
    if postgres:
        assert_indexed(text, postgres, "idx_token_match", "idx_blind_pkey")
    else:
        assert_indexed(
            text,
            postgres,
            "idx_token_match",
            "idx_blind_docs_res (rtype=? AND rid=?)",
            "VIRTUAL TABLE INDEX 0:M",
        )
