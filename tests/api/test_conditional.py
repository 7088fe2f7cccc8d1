"""Conditional delete, and conditional create/update under real concurrency (threads
sending HTTP requests at the same moment), on both backends.

Expectations from the R4 specification (http.html#cdelete, #ccreate, #cond-update):
a conditional delete with no match does nothing and says so, with one match deletes it,
with several refuses (412) unless the server supports multiple deletes; concurrent
conditional creates with the same criteria must not make duplicates."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.vault import Vault
from tests.api.test_concurrency import THREADS, run_together
from tests.cli.audit_support import PHIVAULT, free_port, subprocess_env
from tests.conftest import system_token
from tests.server_support import START_TIMEOUT_S, init_data_dir, issue_token

CT = {"content-type": "application/fhir+json"}
ROUNDS = 3
PROCESS_THREADS = 16
SYSTEM = "urn:conditional"


def basic(value: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Basic",
        "code": {"text": "conditional test"},
        "identifier": [{"system": SYSTEM, "value": value}],
        **extra,
    }


def create(client: TestClient, body: dict[str, Any]) -> str:
    res = client.post(f"/fhir/{body['resourceType']}", content=json.dumps(body), headers=CT)
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


def test_conditional_delete_none_one_and_several(client: TestClient, vault: Vault) -> None:
    res = client.delete(f"/fhir/Basic?identifier={SYSTEM}|none")
    assert res.status_code == 200
    assert res.json()["issue"][0]["severity"] == "information"

    rid = create(client, basic("one"))
    keep = create(client, basic("other"))
    res = client.delete(f"/fhir/Basic?identifier={SYSTEM}|one")
    assert res.status_code == 204
    assert res.headers["etag"] == 'W/"2"'  # the tombstone is version 2
    assert client.get(f"/fhir/Basic/{rid}").status_code == 410
    assert client.get(f"/fhir/Basic/{keep}").status_code == 200

    twins = [create(client, basic("twin")) for _ in range(2)]
    res = client.delete(f"/fhir/Basic?identifier={SYSTEM}|twin")
    assert res.status_code == 412
    assert res.json()["resourceType"] == "OperationOutcome"
    assert all(client.get(f"/fhir/Basic/{t}").status_code == 200 for t in twins)

    # A condition is strict: an unknown parameter never widens the match to "all".
    assert client.delete("/fhir/Basic?no-such=1").status_code == 400
    assert client.delete("/fhir/Basic").status_code == 405
    assert vault.store.count_current("Basic") == 3
    # The deletion is audited like a plain delete.
    assert vault.store.current("Basic", rid).deleted  # type: ignore[union-attr]


def test_multiple_deletes_when_configured(vault: Vault, access: AccessControl) -> None:
    settings = replace(vault.settings, max_conditional_deletes=3)
    app = create_app(vault.service, settings, access)
    headers = {"Authorization": f"Bearer {system_token(access)}"}
    with TestClient(app, headers=headers) as trusted:
        ids = [create(trusted, basic("many")) for _ in range(3)]
        res = trusted.delete(f"/fhir/Basic?identifier={SYSTEM}|many")
        assert res.status_code == 200, res.text
        assert "3 Basic resources deleted" in res.json()["issue"][0]["diagnostics"]
        assert all(trusted.get(f"/fhir/Basic/{i}").status_code == 410 for i in ids)
        more = [create(trusted, basic("more")) for _ in range(4)]
        assert trusted.delete(f"/fhir/Basic?identifier={SYSTEM}|more").status_code == 412
        assert all(trusted.get(f"/fhir/Basic/{i}").status_code == 200 for i in more)
        # The CapabilityStatement says so (conditionalDelete, restful-capabilitystatement).
        rest = trusted.get("/fhir/metadata").json()["rest"][0]
        assert {r["conditionalDelete"] for r in rest["resource"]} == {"multiple"}


def test_concurrent_conditional_creates_make_one_resource(client: TestClient, vault: Vault) -> None:
    for round_ in range(3):
        value = f"race-{round_}"
        headers = {**CT, "if-none-exist": f"identifier={SYSTEM}|{value}"}
        body = json.dumps(basic(value))

        def worker(i: int, headers: dict[str, str] = headers, body: str = body) -> tuple[int, str]:
            res = client.post("/fhir/Basic", content=body, headers=headers)
            return res.status_code, str(res.json().get("id"))

        results = run_together(worker)
        statuses = sorted(s for s, _ in results)
        assert statuses == [200] * (THREADS - 1) + [201], results
        assert len({rid for _, rid in results}) == 1, results
        found = client.get(f"/fhir/Basic?identifier={SYSTEM}|{value}").json()
        assert found["total"] == 1


def test_concurrent_conditional_updates_make_one_resource(client: TestClient, vault: Vault) -> None:
    url = f"/fhir/Basic?identifier={SYSTEM}|upd"

    def worker(i: int) -> tuple[int, str]:
        body = json.dumps(basic("upd", created=f"2020-01-{i + 1:02d}"))
        res = client.put(url, content=body, headers=CT)
        return res.status_code, str(res.json().get("id"))

    results = run_together(worker)
    assert sorted(s for s, _ in results) == [200] * (THREADS - 1) + [201], results
    (rid,) = {rid for _, rid in results}
    assert vault.store.count_current("Basic") == 1
    assert vault.store.current("Basic", rid).version == THREADS  # type: ignore[union-attr]


def _transaction(value: str, i: int) -> str:
    """A transaction Bundle: a Basic created unless its identifier exists (ifNoneExist),
    and a Basic of its own (identifier `value-ref-i`) referring to the first one through
    its fullUrl."""
    ref = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
    entries = [
        {
            "fullUrl": ref,
            "resource": basic(value),
            "request": {
                "method": "POST",
                "url": "Basic",
                "ifNoneExist": f"identifier={SYSTEM}|{value}",
            },
        },
        {
            "resource": basic(f"{value}-ref-{i}", subject={"reference": ref}),
            "request": {"method": "POST", "url": "Basic"},
        },
    ]
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def test_concurrent_transactions_with_one_if_none_exist_make_one_resource(
    client: TestClient, vault: Vault
) -> None:
    """The ifNoneExist of a transaction entry is matched again inside the write
    transaction (as a single conditional create's is): transactions racing with the same
    criteria create exactly one resource, the others report it matched (200 OK), and
    their references to the entry's fullUrl point at that one resource."""
    for round_ in range(ROUNDS):
        value = f"tx-race-{round_}"

        def worker(i: int, value: str = value) -> tuple[int, Any]:
            res = client.post("/fhir", content=_transaction(value, i), headers=CT)
            return res.status_code, res.json().get("entry", res.json())

        results = run_together(worker)
        assert [status for status, _ in results] == [200] * THREADS, results
        firsts = sorted(entries[0]["response"]["status"] for _, entries in results)
        assert firsts == ["200 OK"] * (THREADS - 1) + ["201 Created"], firsts
        found = client.get(f"/fhir/Basic?identifier={SYSTEM}|{value}").json()
        assert found["total"] == 1, found
        (rid,) = [e["resource"]["id"] for e in found["entry"]]
        for i in range(THREADS):
            ref = client.get(f"/fhir/Basic?identifier={SYSTEM}|{value}-ref-{i}").json()
            assert ref["total"] == 1
            assert ref["entry"][0]["resource"]["subject"]["reference"] == f"Basic/{rid}"


def test_conditional_delete_needs_the_right_to_delete(
    access: AccessControl, client: TestClient
) -> None:
    rid = create(client, basic("guarded"))
    reader = system_token(access, scope="system/*.rs", name="reader")
    res = client.delete(
        f"/fhir/Basic?identifier={SYSTEM}|guarded", headers={"authorization": f"Bearer {reader}"}
    )
    assert res.status_code == 403
    assert client.get(f"/fhir/Basic/{rid}").status_code == 200


def test_capability_statement_declares_single_conditional_delete(client: TestClient) -> None:
    """max_conditional_deletes = 1 (the default): one match at most, so `single`."""
    rest = client.get("/fhir/metadata").json()["rest"][0]
    basic_type = next(r for r in rest["resource"] if r["type"] == "Basic")
    assert basic_type["conditionalDelete"] == "single"
    assert {r["conditionalDelete"] for r in rest["resource"]} == {"single"}


@pytest.mark.postgres
def test_conditional_creates_across_server_processes(tmp_path: Path, pg_schema_url: str) -> None:
    """`phivault serve --workers 2` on PostgreSQL: requests land in two processes, so only
    the database (the advisory lock) can keep the conditional creates apart. (This one did
    not reproduce the race with the in-transaction match taken out; the in-process test
    above does.)"""
    data, key = init_data_dir(tmp_path, pg_schema_url)
    token = issue_token(data, key, "system/Basic.cruds", client="conditional-race")
    port = free_port()
    args = ["serve", "--data", str(data), "--key-file", str(key), "--port", str(port)]
    process = subprocess.Popen(
        [str(PHIVAULT), *args, "--workers", "2"],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S  # two workers start on a busy machine
        while True:
            assert process.poll() is None, "phivault serve exited"
            try:
                if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "phivault serve did not start"
            time.sleep(0.1)
        auth = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as http:
            for round_ in range(ROUNDS):
                value = f"proc-{round_}"
                headers = {**CT, "if-none-exist": f"identifier={SYSTEM}|{value}"}
                body = json.dumps(basic(value))

                def worker(i: int, headers: dict[str, str] = headers, body: str = body) -> Any:
                    res = http.post("/Basic", content=body, headers=headers)
                    return res.status_code, res.json().get("id")

                results = run_together(worker, PROCESS_THREADS)
                statuses = sorted(s for s, _ in results)
                assert statuses == [200] * (PROCESS_THREADS - 1) + [201], results
                assert len({rid for _, rid in results}) == 1, results
                found = http.get(f"/Basic?identifier={SYSTEM}|{value}").json()
                assert found["total"] == 1
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
