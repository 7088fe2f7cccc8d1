"""Crypto-shredding one patient through the service and the API, on both backends: every
version of every resource in the compartment is gone for good (410), the index rows go,
the action is audited under a pseudonym, and no other patient is touched."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from phivault.errors import KeyShredded, NotFound
from phivault.service.keys import shred_patient
from phivault.vault import Vault
from tests.keys_support import CTX, clinic, load_clinic, patients_of, raw_sql


def compartment_rows(vault: Vault, patient_id: str) -> list[tuple[Any, ...]]:
    return raw_sql(
        vault, "SELECT rtype, rid FROM resources WHERE compartment = ?", (f"Patient/{patient_id}",)
    )


def index_rows_of(vault: Vault, owned: list[tuple[Any, ...]]) -> int:
    total = 0
    tables: dict[str, str] = vault.store._queries.index_tables  # type: ignore[attr-defined]
    for table in tables.values():
        for rtype, rid in owned:
            sql = f"SELECT COUNT(*) FROM {table} WHERE rtype = ? AND rid = ?"
            total += int(raw_sql(vault, sql, (rtype, rid))[0][0])
    return total


def shred(vault: Vault, patient_id: str) -> Any:
    return shred_patient(vault.store, vault.keyring, vault.audit, CTX, patient_id)


@pytest.fixture
def clinic_ids(vault: Vault) -> list[str]:
    resources = clinic(3)
    load_clinic(vault, resources)
    return [p["id"] for p in patients_of(resources)]


def test_shredded_patient_answers_410_everywhere(
    vault: Vault, client: TestClient, clinic_ids: list[str]
) -> None:
    victim = clinic_ids[0]
    patient = client.get(f"/fhir/Patient/{victim}").json()
    assert (
        client.put(f"/fhir/Patient/{victim}", json={**patient, "active": False}).status_code == 200
    )
    owned = compartment_rows(vault, victim)
    assert len(owned) > 3 and index_rows_of(vault, owned) > 0
    # A copy of the ciphertext taken before (what a backup holds).
    backup = raw_sql(
        vault,
        "SELECT rtype, rid, version, compartment, body FROM versions WHERE compartment = ?",
        (f"Patient/{victim}",),
    )

    sqlite = vault.store.backend == "sqlite"
    if sqlite:  # the patient's blind tokens: one row of idx_blind_docs, in the FTS5 index
        doc = "SELECT num, tokens FROM idx_blind_docs WHERE rtype = 'Patient' AND rid = ?"
        ((num, tokens),) = raw_sql(vault, doc, (victim,))
        match = " OR ".join(f'"{t}"' for t in tokens.split())
        in_fts = "SELECT COUNT(*) FROM blind_fts WHERE blind_fts MATCH ? AND rowid = ?"
        assert raw_sql(vault, in_fts, (match, num)) == [(1,)]

    result = shred(vault, victim)

    assert result.resources == len(owned) and not result.already
    assert index_rows_of(vault, owned) == 0
    if sqlite:
        assert raw_sql(vault, in_fts, (match, num)) == [(0,)]
        # FTS5 drops deleted entries when it merges segments: the shred merged them
        # all, so no segment still holds the patient's tokens.
        assert raw_sql(vault, "SELECT COUNT(DISTINCT segid) FROM blind_fts_idx") == [(1,)]
        raw_sql(vault, "INSERT INTO blind_fts (blind_fts) VALUES ('integrity-check')")
    for rtype, rid in owned:
        res = client.get(f"/fhir/{rtype}/{rid}")
        assert res.status_code == 410, (rtype, res.text)
        outcome = res.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "deleted"
        assert "crypto-shredded" in outcome["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{victim}/_history/1").status_code == 410
    # History and search leave the shredded versions out instead of failing.
    history = client.get(f"/fhir/Patient/{victim}/_history")
    assert history.status_code == 200 and not history.json().get("entry")
    everything = client.get("/fhir/_history", params={"_count": 1000})
    assert everything.status_code == 200
    assert victim not in everything.text
    # The backup's ciphertext is as dead as the live rows.
    for rtype, rid, version, compartment, body in backup:
        with pytest.raises(KeyShredded):
            vault.service.codec.open(rtype, rid, version, compartment, bytes(body))
    # Other patients are untouched.
    for rid in clinic_ids[1:]:
        assert client.get(f"/fhir/Patient/{rid}").status_code == 200
        assert compartment_rows(vault, rid) and index_rows_of(vault, compartment_rows(vault, rid))


def test_search_leaves_shredded_versions_out(
    vault: Vault, client: TestClient, clinic_ids: list[str]
) -> None:
    victim, other = clinic_ids[0], clinic_ids[1]
    shred(vault, victim)
    search = client.get("/fhir/Patient", params={"_id": f"{victim},{other}"})
    assert search.status_code == 200
    assert [e["resource"]["id"] for e in search.json()["entry"]] == [other]


def test_shred_is_audited_under_a_pseudonym_and_repeatable(
    vault: Vault, clinic_ids: list[str]
) -> None:
    victim = clinic_ids[0]
    start = vault.store.audit_size()
    shred(vault, victim)
    again = shred(vault, victim)
    assert again.already
    entries = [json.loads(e) for _, e in vault.store.audit_entries(start, vault.store.audit_size())]
    shreds = [e for e in entries if e["action"] == "shred"]
    assert len(shreds) == 2
    assert shreds[0]["actor"] == CTX.actor and shreds[0]["outcome"] == "0"
    assert shreds[0]["patient"] and shreds[0]["patient"] == shreds[1]["patient"]
    for entry in shreds:
        assert victim not in json.dumps(entry)  # named by pseudonym only


def test_shred_refuses_unknown_and_malformed_ids(vault: Vault, clinic_ids: list[str]) -> None:
    with pytest.raises(NotFound):
        shred(vault, "no-such-patient")
    with pytest.raises(Exception) as excinfo:
        shred(vault, "bad id/..")
    assert getattr(excinfo.value, "http_status", None) == 400
    assert vault.keyring.has_key(f"patient:{clinic_ids[0]}")
