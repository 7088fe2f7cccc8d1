"""On PostgreSQL a read by id costs one statement besides its audit entry: the access
epochs, the version and its data key read together where the token is checked, and the
read itself made in the same worker thread, released by the read handler once its audit
entry is durable (api/read_ahead.py). SQLite reads locally, as before, without it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from phivault.api import worker_threads
from phivault.api.held import Held
from phivault.api.read_ahead import ANSWER_KEY, SCOPE_KEY, ReadAheads, answered, taken
from phivault.service import Service
from phivault.store.access_sql import AccessStore
from phivault.store.base import ReadAhead
from phivault.vault import Vault

PATIENT = {"resourceType": "Patient", "name": [{"family": "Quillfeather"}]}
PRACTITIONER = {"resourceType": "Practitioner", "name": [{"family": "Harrow"}]}


def _observation(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{patient}"},
    }


def test_a_read_by_id_reads_epochs_version_and_key_in_one_statement(
    client: TestClient, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    observation = client.post("/fhir/Observation", json=_observation(patient)).json()["id"]
    practitioner = client.post("/fhir/Practitioner", json=PRACTITIONER).json()["id"]
    urls = [
        f"/fhir/Patient/{patient}",  # the patient's data key
        f"/fhir/Observation/{observation}",  # the same, through the compartment
        f"/fhir/Practitioner/{practitioner}",  # the system key
    ]
    assert client.get(urls[0]).status_code == 200  # the token verified and cached
    keyring = vault.keyring
    keyring.refresh_interval = 3600.0  # no key state re-read in between
    keyring.refresh(force=True)
    statements: list[str] = []
    aheads: list[ReadAhead] = []
    networked = vault.service.store.backend != "sqlite"
    if networked:
        from phivault.store.pg_pool import PoolExec

        real_execute = PoolExec.execute

        def counting(self: PoolExec, sql: str, params: Any = ()) -> Any:
            statements.append(sql)
            return real_execute(self, sql, params)

        monkeypatch.setattr(PoolExec, "execute", counting)
    real_read_ahead = AccessStore.read_ahead

    def spying(self: AccessStore, rtype: str, rid: str, suffix: str | None) -> ReadAhead:
        aheads.append(real_read_ahead(self, rtype, rid, suffix))
        return aheads[-1]

    monkeypatch.setattr(AccessStore, "read_ahead", spying)
    for url in urls:
        keyring.forget_cached()  # the data key must come from the store
        statements.clear()
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == url.rsplit("/", 1)[1]
        if networked:
            assert len(statements) == 1, statements
    assert len(aheads) == (3 if networked else 0)
    for ahead in aheads:
        assert ahead.record is not None and len(ahead.wrapped) == 1
    # Unknown, and another id's read-ahead: read as always.
    assert client.get("/fhir/Patient/no-such-patient").status_code == 404


def test_a_read_ahead_serves_only_the_read_it_was_made_for() -> None:
    ahead = ReadAhead("Patient", "a", {"care": 0, "auth": 0}, None, {})
    scope: dict[str, Any] = {SCOPE_KEY: ahead}
    assert taken(scope, "Patient", "b") is None
    assert SCOPE_KEY not in scope  # used at most once
    scope[SCOPE_KEY] = ahead
    assert taken(scope, "Patient", "a") is ahead


def _spy(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """(hops to a worker thread, reads answered where the token was checked)."""
    hops: list[str] = []
    answers: list[str] = []
    executor = worker_threads._executor
    real_submit = executor.submit

    def submit(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append("hop")
        return real_submit(fn, *args, **kwargs)

    real_answer = ReadAheads.answer

    def answer(self: ReadAheads, scope: Any, ctx: Any, ahead: ReadAhead) -> None:
        answers.append(f"{ahead.rtype}/{ahead.rid}")
        real_answer(self, scope, ctx, ahead)

    monkeypatch.setattr(executor, "submit", submit)
    monkeypatch.setattr(ReadAheads, "answer", answer)
    return hops, answers


def test_a_read_by_id_is_read_in_the_worker_thread_of_its_token_check(
    client: TestClient, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    assert client.get(f"/fhir/Patient/{patient}").status_code == 200  # token now cached
    hops, answers = _spy(monkeypatch)
    size = vault.store.audit_size()
    answer = client.get(f"/fhir/Patient/{patient}")
    assert answer.status_code == 200
    assert answer.json()["name"][0]["family"] == "Quillfeather"
    assert vault.store.audit_size() == size + 1  # durable before the answer came back
    networked = vault.service.store.backend != "sqlite"
    assert hops == (["hop"] if networked else [])  # SQLite: on the event loop
    assert answers == ([f"Patient/{patient}"] if networked else [])
    # Errors of the read are released the same way: after their audit entry.
    hops.clear()
    missing = client.get("/fhir/Patient/no-such-patient")
    assert missing.status_code == 404
    assert vault.store.audit_size() == size + 2
    assert hops == (["hop"] if networked else [])


def test_requests_the_read_handler_would_not_answer_are_not_read_early(
    client: TestClient, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    assert client.get(f"/fhir/Patient/{patient}").status_code == 200
    _, answers = _spy(monkeypatch)
    reads: list[str] = []
    real_read = Service.read

    def read(self: Service, ctx: Any, rtype: str, rid: str, ahead: Any = None) -> Any:
        reads.append(rid)
        return real_read(self, ctx, rtype, rid, ahead)

    monkeypatch.setattr(Service, "read", read)
    size = vault.store.audit_size()
    # A media type the read handler refuses before reading: nothing read, nothing audited.
    xml = client.get(f"/fhir/Patient/{patient}", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 406
    assert vault.store.audit_size() == size
    # A path of the same shape that another route answers.
    assert client.get("/fhir/AuditEvent/0").status_code == 200
    # A token that fails: refused before anything is read.
    bad = client.get(f"/fhir/Patient/{patient}", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert "Quillfeather" not in bad.text
    assert answers == [] and reads == []


def test_a_read_answered_early_serves_only_the_read_it_was_made_for() -> None:
    outcome: Held[Any] = Held(None, "version", None)
    scope: dict[str, Any] = {ANSWER_KEY: ("Patient", "a", outcome)}
    assert answered(scope, "Patient", "b") is None
    assert ANSWER_KEY not in scope  # used at most once
    scope[ANSWER_KEY] = ("Patient", "a", outcome)
    assert answered(scope, "Patient", "a") is outcome
    assert answered(scope, "Patient", "a") is None
