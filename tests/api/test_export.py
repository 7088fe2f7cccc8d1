"""Bulk Data Access $export: the async kick-off / status / download cycle, levels,
_type and _since, cancellation, encryption at rest, audit, and the import round trip."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.cli.main import cli
from phivault.crypto.kek import KeyFileKeySource
from phivault.fhir.resources import now_instant
from phivault.store.export_jobs import FAILED, RUNNING, ExportJobRecord
from phivault.vault import Vault, init_data_dir, open_vault

CT = {"content-type": "application/fhir+json"}
ASYNC = {"prefer": "respond-async", "accept": "application/fhir+json"}
FAMILY = "Wojciechowska"


def create(client: TestClient, body: dict[str, Any]) -> str:
    res = client.post(f"/fhir/{body['resourceType']}", content=json.dumps(body), headers=CT)
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    return rid


def clinic(client: TestClient) -> dict[str, str]:
    doc = create(client, {"resourceType": "Practitioner", "name": [{"family": "Lind"}]})
    ids = {"doc": doc}
    for key, family in (("a", FAMILY), ("b", "Berg")):
        pid = create(client, {"resourceType": "Patient", "name": [{"family": family}]})
        ids[key] = pid
        ids[f"obs_{key}"] = create(
            client,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "pulse"},
                "subject": {"reference": f"Patient/{pid}"},
                "performer": [{"reference": f"Practitioner/{doc}"}],
                "valueQuantity": {"value": 72.50, "unit": "/min"},
            },
        )
    return ids


def kick_off(client: TestClient, path: str, **params: str) -> str:
    res = client.get(f"/fhir/{path}", params=params, headers=ASYNC)
    assert res.status_code == 202, res.text
    location: str = res.headers["content-location"]
    assert "/$export-status/" in location
    return location


def wait(client: TestClient, status_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        res = client.get(status_url)
        if res.status_code == 200:
            manifest: dict[str, Any] = res.json()
            return manifest
        assert res.status_code == 202, res.text
        assert res.headers["x-progress"]
        time.sleep(0.02)
    raise AssertionError("the export did not finish")


def download(client: TestClient, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        res = client.get(item["url"])
        assert res.status_code == 200, res.text
        assert res.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in res.text.splitlines() if line]
        assert len(lines) == item["count"]
        assert all(r["resourceType"] == item["type"] for r in lines)
        files[item["type"]] = lines
    return files


def ids(files: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for rs in files.values() for r in rs}


def test_system_export_cycle(client: TestClient, vault: Vault) -> None:
    known = clinic(client)
    status_url = kick_off(client, "$export")
    manifest = wait(client, status_url)
    assert manifest["request"].endswith("/fhir/$export")
    # access control is on: every file URL needs the bearer token (Bulk Data IG)
    assert manifest["requiresAccessToken"] is True
    assert manifest["transactionTime"]
    assert manifest["error"] == []
    files = download(client, manifest)
    assert set(files) == {"Patient", "Observation", "Practitioner"}
    assert ids(files) == {
        f"Patient/{known['a']}",
        f"Patient/{known['b']}",
        f"Observation/{known['obs_a']}",
        f"Observation/{known['obs_b']}",
        f"Practitioner/{known['doc']}",
    }
    # Encrypted at rest: no patient's name in any file the export wrote.
    written = list((vault.settings.data_dir / "exports").rglob("*.enc"))
    assert written
    for path in written:
        assert FAMILY.encode() not in path.read_bytes()
        assert path.stat().st_mode & 0o077 == 0
    size = vault.store.audit_size()
    events = [json.loads(e) for _, e in vault.store.audit_entries(0, size)]
    steps = [(e["action"], e["extra"]["step"]) for e in events if e["action"].startswith("export")]
    assert ("export", "kick-off") in steps
    assert ("export", "status") in steps
    assert ("export", "completed") in steps
    assert steps.count(("export-download", "download")) == 3


def test_type_since_and_patient_level(client: TestClient) -> None:
    known = clinic(client)
    manifest = wait(client, kick_off(client, "$export", _type="Patient"))
    assert [o["type"] for o in manifest["output"]] == ["Patient"]

    time.sleep(0.01)
    mark = now_instant()
    time.sleep(0.01)
    late = create(client, {"resourceType": "Patient", "name": [{"family": "Late"}]})
    manifest = wait(client, kick_off(client, "$export", _since=mark))
    assert ids(download(client, manifest)) == {f"Patient/{late}"}

    # Patient level: only what lies in patient compartments (no Practitioner).
    manifest = wait(client, kick_off(client, "Patient/$export"))
    exported = ids(download(client, manifest))
    assert f"Practitioner/{known['doc']}" not in exported
    assert {f"Patient/{known['a']}", f"Observation/{known['obs_b']}"} <= exported


def test_group_export(client: TestClient) -> None:
    known = clinic(client)
    group = create(
        client,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{known['b']}"}}],
        },
    )
    manifest = wait(client, kick_off(client, f"Group/{group}/$export"))
    exported = ids(download(client, manifest)) - {f"Group/{group}"}  # Group.member: in B's
    assert exported == {f"Patient/{known['b']}", f"Observation/{known['obs_b']}"}
    res = client.get("/fhir/Group/missing/$export", headers=ASYNC)
    assert res.status_code == 404


def test_cancel_deletes_job_and_files(client: TestClient, vault: Vault) -> None:
    clinic(client)
    status_url = kick_off(client, "$export")
    wait(client, status_url)
    job = status_url.rsplit("/", 1)[-1]
    folder = vault.settings.data_dir / "exports" / job
    assert any(folder.iterdir())
    res = client.delete(status_url)
    assert res.status_code == 202
    assert not folder.exists()
    assert client.get(status_url).status_code == 404


def test_expired_jobs_are_swept(client: TestClient, vault: Vault) -> None:
    clinic(client)
    status_url = kick_off(client, "$export")
    wait(client, status_url)
    job = status_url.rsplit("/", 1)[-1]
    record = vault.store.export_job(job)
    assert record is not None and record.expires is not None
    with vault.store.write() as tx:
        tx.export_job_update(replace(record, expires="2000-01-01T00:00:00.000Z"))
    wait(client, kick_off(client, "$export", _type="Practitioner"))  # kick-off sweeps
    assert vault.store.export_job(job) is None
    assert not (vault.settings.data_dir / "exports" / job).exists()


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({}, {"accept": "application/fhir+json"}),  # no Prefer: respond-async
        ({"_outputFormat": "text/csv"}, ASYNC),
        ({"_typeFilter": "Patient?no-such-param=1"}, ASYNC),  # strict: never ignored
        ({"_typeFilter": "Patient?_count=5"}, ASYNC),
        ({"_typeFilter": "Patient"}, ASYNC),
        ({"_type": "Observation", "_typeFilter": "Patient?active=true"}, ASYNC),
        ({"_typeFilter": "NotAType?x=1"}, ASYNC),
        ({"_type": "NotAType"}, ASYNC),
    ],
)
def test_kick_off_refusals(
    client: TestClient, params: dict[str, str], headers: dict[str, str]
) -> None:
    res = client.get("/fhir/$export", params=params, headers=headers)
    assert res.status_code in (400, 404), res.text
    assert res.json()["resourceType"] == "OperationOutcome"


def test_unknown_job_and_file(client: TestClient) -> None:
    assert client.get("/fhir/$export-status/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.get("/fhir/$export-status/..%2F..%2Fetc").status_code == 404
    clinic(client)
    status_url = kick_off(client, "$export")
    wait(client, status_url)
    job = status_url.rsplit("/", 1)[-1]
    assert client.get(f"/fhir/$export-file/{job}/Secret.ndjson").status_code == 404


def test_export_then_import_gives_the_same_resources(
    client: TestClient, tmp_path: Path, key_file: Path
) -> None:
    clinic(client)
    manifest = wait(client, kick_off(client, "$export"))
    exported = download(client, manifest)
    paths: list[str] = []
    for item in manifest["output"]:
        path = tmp_path / f"{item['type']}.ndjson"
        path.write_bytes(client.get(item["url"]).content)
        paths.append(str(path))
    fresh = tmp_path / "fresh"
    init_data_dir(fresh, KeyFileKeySource(key_file))
    result = CliRunner().invoke(
        cli, ["import", "--data", str(fresh), "--key-file", str(key_file), *paths]
    )
    assert result.exit_code == 0, result.output
    assert "failed 0" in result.output
    imported = open_vault(fresh, KeyFileKeySource(key_file))
    try:
        for rtype, resources in exported.items():
            assert imported.store.count_current(rtype) == len(resources)
            for resource in resources:
                record = imported.store.current(rtype, resource["id"])
                assert record is not None
                body = json.loads(imported.service._open(record).body or b"{}")
                strip = {k: v for k, v in body.items() if k != "meta"}
                assert strip == {k: v for k, v in resource.items() if k != "meta"}
    finally:
        imported.close()


def test_a_job_whose_worker_is_gone_is_reported_failed(
    client: TestClient, vault: Vault, access: AccessControl
) -> None:
    script = access.store.client_by_name("test-suite")  # the `client` fixture's caller
    assert script is not None
    job = ExportJobRecord(
        job_id="ab" * 16,
        state=RUNNING,
        owner=script.client_id,
        request_url="http://testserver/fhir/$export",
        params='{"level": "system"}',
        transaction_time="2000-01-01T00:00:00.000Z",
        created="2000-01-01T00:00:00.000Z",
        updated="2000-01-01T00:00:00.000Z",  # no heartbeat for years
    )
    with vault.store.write() as tx:
        tx.export_job_insert(job)
    res = client.get(f"/fhir/$export-status/{job.job_id}")
    assert res.status_code == 500
    assert res.json()["resourceType"] == "OperationOutcome"
    stored = vault.store.export_job(job.job_id)
    assert stored is not None and stored.state == FAILED and stored.expires is not None


# -- POST kick-off, _typeFilter, patient, requiresAccessToken -----------------------------------


def parameters(*items: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, key: value} for name, key, value in items],
    }


def post_kick_off(client: TestClient, path: str, body: dict[str, Any]) -> str:
    res = client.post(f"/fhir/{path}", content=json.dumps(body), headers={**ASYNC, **CT})
    assert res.status_code == 202, res.text
    location: str = res.headers["content-location"]
    return location


def test_post_kick_off_with_parameters(client: TestClient) -> None:
    known = clinic(client)
    body = parameters(
        ("_type", "valueString", "Patient,Observation"),
        ("_outputFormat", "valueString", "application/fhir+ndjson"),
    )
    manifest = wait(client, post_kick_off(client, "$export", body))
    assert manifest["request"].endswith("/fhir/$export")  # a POST's URL has no parameters
    assert ids(download(client, manifest)) == {
        f"Patient/{known['a']}",
        f"Patient/{known['b']}",
        f"Observation/{known['obs_a']}",
        f"Observation/{known['obs_b']}",
    }
    # Patient level, limited to named patients
    body = parameters(("patient", "valueReference", {"reference": f"Patient/{known['a']}"}))
    manifest = wait(client, post_kick_off(client, "Patient/$export", body))
    assert ids(download(client, manifest)) == {
        f"Patient/{known['a']}",
        f"Observation/{known['obs_a']}",
    }
    # _since as valueInstant: nothing changed after now
    body = parameters(("_since", "valueInstant", now_instant()))
    time.sleep(0.01)
    assert wait(client, post_kick_off(client, "$export", body))["output"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient"},
        parameters(("_type", "valueInteger", 3)),
        parameters(("patient", "valueReference", {"reference": "Group/1"})),
        parameters(("patient", "valueReference", {"reference": "Patient/x"})),  # system level
        parameters(("_since", "valueInstant", "2020"), ("_since", "valueInstant", "2021")),
        parameters(("includeAssociatedData", "valueCode", "LatestProvenanceResources")),
    ],
)
def test_post_kick_off_refusals(client: TestClient, body: dict[str, Any]) -> None:
    res = client.post("/fhir/$export", content=json.dumps(body), headers={**ASYNC, **CT})
    assert res.status_code == 400, res.text
    assert res.json()["resourceType"] == "OperationOutcome"


def test_type_filter(client: TestClient) -> None:
    known = clinic(client)
    extra = create(
        client,
        {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{known['a']}"},
        },
    )
    # only the Observations of patient b, and the preliminary ones (the filters of one
    # type are ORed); the types without a filter in full
    manifest = wait(
        client,
        kick_off(
            client,
            "$export",
            _type="Patient,Observation",
            _typeFilter=[  # type: ignore[arg-type]
                f"Observation?subject=Patient/{known['b']}",
                "Observation?status=preliminary",
            ],
        ),
    )
    assert ids(download(client, manifest)) == {
        f"Patient/{known['a']}",
        f"Patient/{known['b']}",
        f"Observation/{known['obs_b']}",
        f"Observation/{extra}",
    }
    # at Group level: within the members' compartments only
    group = create(
        client,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{known['a']}"}}],
        },
    )
    body = parameters(("_typeFilter", "valueString", "Observation?status=preliminary"))
    manifest = wait(client, post_kick_off(client, f"Group/{group}/$export", body))
    exported = ids(download(client, manifest)) - {f"Group/{group}"}
    assert exported == {f"Patient/{known['a']}", f"Observation/{extra}"}


def test_requires_access_token_follows_access_control(
    vault: Vault, client: TestClient, anon_client: TestClient
) -> None:
    clinic(client)
    manifest = wait(client, kick_off(client, "$export", _type="Patient"))
    assert manifest["requiresAccessToken"] is True
    # and indeed: the file URL without the token is refused
    assert anon_client.get(manifest["output"][0]["url"]).status_code == 401
    # without access control (in-process tools, loopback-only serve) no token is needed
    with TestClient(create_app(vault.service, vault.settings)) as trusted:
        res = trusted.get("/fhir/$export", params={"_type": "Patient"}, headers=ASYNC)
        assert res.status_code == 202
        local = res.headers["content-location"].replace("http://testserver", "")
        assert wait(trusted, local)["requiresAccessToken"] is False
