"""The service's ordering of steps: every access is audited, and it fails closed."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

import phivault.audit.log
from phivault.errors import AuditUnavailable, NotFound
from phivault.fhir.conditions import parse_condition
from phivault.service import Context
from phivault.store.base import HistoryQuery
from phivault.vault import Vault

CTX = Context(actor="dr-who", client="10.0.0.7", purpose="TREAT")
FAMILY = "Zzyzxfamily"
MRN = "MRN-Zzyzx-8812"
PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")


def patient(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital.example/mrn", "value": MRN}],
        "name": [{"family": FAMILY}],
        **extra,
    }


def last_entry(vault: Vault) -> dict[str, Any]:
    size = vault.store.audit_size()
    assert size > 0
    ((index, raw),) = vault.store.audit_entries(size - 1, size)
    assert index == size - 1
    entry: dict[str, Any] = orjson.loads(raw)
    return entry


def all_entries(vault: Vault) -> list[bytes]:
    return [raw for _, raw in vault.store.audit_entries(0, vault.store.audit_size())]


def test_every_access_is_audited(vault: Vault) -> None:
    svc = vault.service
    store = vault.store

    size = store.audit_size()
    created = svc.create(CTX, "Patient", patient()).version
    rid = created.rid
    assert store.audit_size() == size + 1
    entry = last_entry(vault)
    assert entry["action"] == "create"
    assert (entry["type"], entry["id"], entry["version"]) == ("Patient", rid, 1)
    assert entry["outcome"] == "0"
    assert entry["actor"] == "dr-who"
    assert entry["client"] == "10.0.0.7"
    assert entry["purpose"] == "TREAT"
    pseudonym = entry["patient"]
    assert PSEUDONYM.match(pseudonym), pseudonym
    assert rid not in pseudonym and rid.replace("-", "") not in pseudonym
    stored = store.current("Patient", rid)
    assert stored is not None and stored.body is not None
    assert entry["data_sha256"] == hashlib.sha256(stored.body).hexdigest()

    svc.read(CTX, "Patient", rid)
    assert store.audit_size() == size + 2
    entry = last_entry(vault)
    assert (entry["action"], entry["type"], entry["id"], entry["version"]) == (
        "read",
        "Patient",
        rid,
        1,
    )
    assert entry["patient"] == pseudonym

    svc.update(CTX, "Patient", rid, {**patient(gender="female"), "id": rid})
    assert store.audit_size() == size + 3
    entry = last_entry(vault)
    assert (entry["action"], entry["id"], entry["version"]) == ("update", rid, 2)
    assert entry["patient"] == pseudonym

    svc.vread(CTX, "Patient", rid, 1)
    assert store.audit_size() == size + 4
    entry = last_entry(vault)
    assert (entry["action"], entry["version"]) == ("vread", 1)

    svc.delete(CTX, "Patient", rid)
    assert store.audit_size() == size + 5
    entry = last_entry(vault)
    assert (entry["action"], entry["type"], entry["id"], entry["version"]) == (
        "delete",
        "Patient",
        rid,
        3,
    )
    assert entry["patient"] == pseudonym

    svc.history(CTX, "Patient", rid, since=None, count=10, cursor=None)
    assert store.audit_size() == size + 6
    entry = last_entry(vault)
    assert entry["action"] == "history"
    assert entry["results"] == [f"Patient/{rid}/3", f"Patient/{rid}/2", f"Patient/{rid}/1"]

    # No identifying value of the patient ever reaches the log.
    for raw in all_entries(vault):
        assert FAMILY.encode() not in raw
        assert MRN.encode() not in raw


def test_compartment_pseudonyms(vault: Vault) -> None:
    svc = vault.service
    a = svc.create(CTX, "Patient", patient()).version.rid
    pa = last_entry(vault)["patient"]
    svc.create(CTX, "Patient", patient())
    pb = last_entry(vault)["patient"]
    assert pa != pb
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{a}"},
    }
    svc.create(CTX, "Observation", obs)
    entry = last_entry(vault)
    assert entry["type"] == "Observation"
    assert entry["patient"] == pa  # the same patient, the same pseudonym
    assert a not in orjson.dumps(entry).decode()  # the patient only by pseudonym
    org = {"resourceType": "Organization", "name": "Clinic"}
    svc.create(CTX, "Organization", org)
    assert "patient" not in last_entry(vault)


def test_failed_read_is_audited(vault: Vault) -> None:
    size = vault.store.audit_size()
    with pytest.raises(NotFound):
        vault.service.read(CTX, "Patient", "nobody")
    assert vault.store.audit_size() == size + 1
    entry = last_entry(vault)
    assert entry["action"] == "read"
    assert entry["outcome"] != "0"
    assert (entry["type"], entry["id"]) == ("Patient", "nobody")


def test_search_terms_in_the_audit_log_are_keyed(vault: Vault) -> None:
    svc = vault.service
    basic = {
        "resourceType": "Basic",
        "code": {"text": "x"},
        "identifier": [{"system": "urn:ssn", "value": "123-45-6789"}],
    }
    svc.create(CTX, "Basic", basic)
    condition = parse_condition("Basic", "identifier=urn:ssn|123-45-6789")
    _, total = svc.search(CTX, "Basic", condition, count=10, offset=0)
    assert total == 1
    entry = last_entry(vault)
    assert entry["action"] == "search"
    logged = [value for _, value in entry["query"]]
    unkeyed = hashlib.sha256(b"urn:ssn|123-45-6789").hexdigest()
    assert not any(unkeyed.startswith(v) or v in unkeyed for v in logged), logged


# -- fail closed ----------------------------------------------------------------------------


def _refuse(*args: Any, **kwargs: Any) -> int:
    raise OSError("audit storage is gone")


@pytest.fixture
def broken_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phivault.audit.log, "append_entries", _refuse)


def test_failing_audit_refuses_reads(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = vault.service.create(CTX, "Patient", patient()).version.rid
    size = vault.store.audit_size()
    monkeypatch.setattr(phivault.audit.log, "append_entries", _refuse)
    with pytest.raises(AuditUnavailable):
        vault.service.read(CTX, "Patient", rid)
    with pytest.raises(AuditUnavailable):
        vault.service.vread(CTX, "Patient", rid, 1)
    with pytest.raises(AuditUnavailable):
        vault.service.history(CTX, "Patient", None, since=None, count=10, cursor=None)
    assert vault.store.audit_size() == size

    monkeypatch.undo()
    assert vault.service.read(CTX, "Patient", rid).version == 1
    assert vault.store.audit_size() == size + 1


def test_failing_audit_stores_nothing(vault: Vault, broken_audit: None) -> None:
    store = vault.store
    size = store.audit_size()
    with pytest.raises(AuditUnavailable):
        vault.service.create(CTX, "Patient", patient())
    with pytest.raises(AuditUnavailable):
        vault.service.update(CTX, "Patient", "p-put", {**patient(), "id": "p-put"})
    assert store.count_current() == 0
    assert store.history_total(HistoryQuery()) == 0
    assert store.current("Patient", "p-put") is None
    assert store.audit_size() == size


def test_failing_audit_refuses_updates_and_deletes(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = vault.service.create(CTX, "Patient", patient()).version.rid
    monkeypatch.setattr(phivault.audit.log, "append_entries", _refuse)
    with pytest.raises(AuditUnavailable):
        vault.service.update(CTX, "Patient", rid, {**patient(gender="male"), "id": rid})
    with pytest.raises(AuditUnavailable):
        vault.service.delete(CTX, "Patient", rid)
    record = vault.store.current("Patient", rid)
    assert record is not None and record.version == 1 and not record.deleted


def test_failing_audit_over_http_is_503_without_data(
    client: TestClient, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = vault.service.create(CTX, "Patient", patient()).version.rid
    monkeypatch.setattr(phivault.audit.log, "append_entries", _refuse)
    res = client.get(f"/fhir/Patient/{rid}")
    assert res.status_code == 503
    body = res.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    assert FAMILY not in res.text
    assert MRN not in res.text

    res = client.post(
        "/fhir/Patient",
        content=orjson.dumps(patient()),
        headers={"content-type": "application/fhir+json"},
    )
    assert res.status_code == 503
    assert vault.store.count_current("Patient") == 1
