"""Out of space: writes answer 507 with a clear OperationOutcome, nothing is corrupted,
and service resumes when space returns.

SQLite: a real SQLITE_FULL. The test caps the database file with `PRAGMA max_page_count`
on the store's writer connection (the one every write and audit append goes through), so
SQLite itself refuses to grow the file, exactly as on a full disk.

PostgreSQL: the test cannot fill the shared server's disk. It makes the server raise the
real `disk_full` condition (SQLSTATE 53100) from a trigger on the instance's own `versions`
table, so the error travels the same path as a full tablespace would: server, psycopg,
the store's error translation, the service, the HTTP answer.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from starlette.testclient import TestClient

from phivault.store.postgres import PostgresStore
from phivault.store.sqlite import SqliteStore
from phivault.vault import Vault
from tests.cli.audit_support import run

FHIR = {"content-type": "application/fhir+json"}
FILLER = "x" * 3000  # makes each version take pages of its own


def patient(i: int) -> bytes:
    return json.dumps(
        {"resourceType": "Patient", "name": [{"family": f"Full{i}", "text": FILLER}]}
    ).encode()


class Space:
    """Turns the store's space on and off."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def exhaust(self) -> None:
        store = self.vault.store
        if isinstance(store, SqliteStore):
            conn = store._writer
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + 4}")
        else:
            assert isinstance(store, PostgresStore)
            _pg(store, FULL_TRIGGER)

    def restore(self) -> None:
        store = self.vault.store
        if isinstance(store, SqliteStore):
            store._writer.execute("PRAGMA max_page_count = 4294967294")
        else:
            assert isinstance(store, PostgresStore)
            _pg(store, "DROP TRIGGER phivault_test_full ON versions")


FULL_TRIGGER = """
CREATE OR REPLACE FUNCTION phivault_test_full() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file: No space left on device'
        USING ERRCODE = 'disk_full';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER phivault_test_full BEFORE INSERT ON versions
    FOR EACH ROW EXECUTE FUNCTION phivault_test_full();
"""


def _pg(store: PostgresStore, sql: str) -> None:
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"')
        conn.execute(sql.encode())


def write_until_full(client: TestClient, limit: int = 400) -> tuple[list[str], Any]:
    written: list[str] = []
    for i in range(limit):
        res = client.post("/fhir/Patient", content=patient(i), headers=FHIR)
        if res.status_code != 201:
            return written, res
        written.append(res.json()["id"])
    raise AssertionError("the store never ran out of space")


def test_full_store_refuses_writes_keeps_data_and_recovers(
    client: TestClient, vault: Vault, data_dir: Path, key_file: Path
) -> None:
    before = []
    for i in range(5):
        res = client.post("/fhir/Patient", content=patient(i), headers=FHIR)
        assert res.status_code == 201
        before.append(res.json()["id"])

    space = Space(vault)
    space.exhaust()
    try:
        written, refused = write_until_full(client)
        acked = before + written
        # The refusal: 507, an OperationOutcome that says what happened, nothing else.
        assert refused.status_code == 507, refused.text
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "out of space" in outcome["issue"][0]["diagnostics"]
        assert "Full" not in refused.text and "sqlite" not in refused.text.lower()
        # Later writes are refused the same way while space stays short; a write that
        # still fits in pages a rolled-back write freed may succeed (as on a real disk),
        # and is then acknowledged and must survive like any other. Never a 500.
        versions = dict.fromkeys(acked, "1")
        for i in range(3):
            res = client.post("/fhir/Patient", content=patient(i), headers=FHIR)
            assert res.status_code in (201, 507), res.text
            if res.status_code == 201:
                versions[res.json()["id"]] = "1"
        update = json.loads(patient(99))
        update["id"] = acked[0]
        res = client.put(f"/fhir/Patient/{acked[0]}", content=json.dumps(update), headers=FHIR)
        assert res.status_code in (200, 507), res.text
        if res.status_code == 200:
            versions[acked[0]] = "2"
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": json.loads(patient(i)),
                    "request": {"method": "POST", "url": "Patient"},
                }
                for i in range(3)
            ],
        }
        res = client.post("/fhir", content=json.dumps(bundle), headers=FHIR)
        assert res.status_code in (200, 507), res.text
        if res.status_code == 200:
            for reply in res.json()["entry"]:
                rid = reply["response"]["location"].split("/_history/")[0].rsplit("/", 1)[1]
                versions[rid] = "1"
        acked = list(versions)
        # Reads keep working, each one audited: on SQLite the audit log's appends use the
        # space the store holds back for them; nothing is served unaudited, never a 500.
        audit_before = vault.store.audit_size()
        for rid in acked:
            res = client.get(f"/fhir/Patient/{rid}")
            assert res.status_code == 200, res.text
            assert res.json()["name"][0]["family"].startswith("Full")
        served = len(acked)
        assert vault.store.audit_size() >= audit_before + served
        # ... while data writes stay refused: the reserve is the audit log's alone.
        assert client.post("/fhir/Patient", content=patient(7), headers=FHIR).status_code == 507
        print(f"disk full: {len(acked)} acked, reads served {served}/{len(acked)}")
    finally:
        space.restore()

    # Space is back: writes work again, without a restart.
    res = client.post("/fhir/Patient", content=patient(1000), headers=FHIR)
    assert res.status_code == 201, res.text
    versions[res.json()["id"]] = "1"
    acked = list(versions)
    # Nothing acknowledged was lost or damaged, and only acknowledged writes exist.
    for rid, version in versions.items():
        res = client.get(f"/fhir/Patient/{rid}")
        assert res.status_code == 200
        assert res.json()["meta"]["versionId"] == version
    assert vault.store.count_current("Patient") == len(acked)
    verified = run("audit", "verify", "--data", str(data_dir), "--key-file", str(key_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    if isinstance(vault.store, SqliteStore):
        db = sqlite3.connect(vault.store.path)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # The first write with space again put the audit log's reserve back.
        assert db.execute("SELECT count(*) FROM space_reserve").fetchone() == (1,)
