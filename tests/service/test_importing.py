"""Bulk import (CLI `import` and `demo`) on both backends: its bulk append gives what
one write per resource gives (versions, index rows, one audit entry each), including a
resource given twice in one batch and one that existed before."""

from __future__ import annotations

from typing import Any

import psycopg

from phivault.service import Context
from phivault.vault import Vault

CTX = Context(actor="import-test")


def patient(rid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "name": [{"family": family}]}


def families(vault: Vault, family: str) -> list[str]:
    result = vault.service.search(CTX, "Patient", [("family:exact", family)])
    return sorted(m.rid for m in result.matches)


def prefixed(vault: Vault, start: str) -> list[str]:
    result = vault.service.search(CTX, "Patient", [("family", start)])
    return sorted(m.rid for m in result.matches)


def test_import_appends_versions_index_rows_and_audit_entries(vault: Vault) -> None:
    vault.service.update(CTX, "Patient", "p5", patient("p5", "Before"))
    audit_before = vault.store.audit_size()
    resources = [patient(f"p{i}", f"Family{i}") for i in range(6)]
    resources.append(patient("p0", "Renamed"))  # the same id twice in one batch
    resources.append({"resourceType": "Patient", "id": "bad", "gender": 7})  # invalid
    resources.append(
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": "Patient/p1"},
        }
    )
    (*_, stats) = list(vault.service.import_resources(CTX, resources, batch_size=100))
    assert (stats.created, stats.updated, stats.failed) == (6, 2, 1)
    assert vault.store.audit_size() - audit_before == 8  # one entry per written version

    p0 = vault.store.current("Patient", "p0")
    p5 = vault.store.current("Patient", "p5")
    assert p0 is not None and p0.version == 2
    assert p5 is not None and p5.version == 2
    assert families(vault, "Renamed") == ["p0"]
    assert families(vault, "Family0") == []  # the first version's index rows replaced
    assert families(vault, "Before") == []
    assert families(vault, "Family5") == ["p5"]
    # starts-with search goes through the blind prefix tokens (when encrypted)
    assert prefixed(vault, "renam") == ["p0"]
    assert prefixed(vault, "family0") == []  # the first version's tokens went too
    assert prefixed(vault, "family") == ["p1", "p2", "p3", "p4", "p5"]
    assert vault.service.read(CTX, "Observation", "o1").body is not None
    compartment = vault.service.search(CTX, "Observation", [("patient", "Patient/p1")])
    assert [m.rid for m in compartment.matches] == ["o1"]
    assert vault.store.current("Patient", "bad") is None


def test_an_import_gives_the_planner_statistics_of_what_it_loaded(vault: Vault) -> None:
    """PostgreSQL: the tables an import filled are analyzed (without statistics the
    planner walked every Patient in id order for a family-name prefix). SQLite plans
    without statistics, as it always did."""
    loaded = [patient(f"s{i}", f"Stat{i}") for i in range(5)]
    assert list(vault.service.import_resources(CTX, loaded))[-1].created == 5
    store: Any = vault.store
    if store.backend != "postgresql":
        return
    with psycopg.connect(store.url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (store.schema,),
        ).fetchall()
    tuples = {name: count for name, count in rows}
    assert tuples["resources"] == 5  # counted by ANALYZE (never analyzed: -1)
    assert tuples["idx_blind"] > 0 and tuples["idx_string"] > 0
