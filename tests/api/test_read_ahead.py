"""On PostgreSQL a read by id costs one statement besides its audit entry: the access
epochs, the version and its data key read together where the token is checked
(api/read_ahead.py). SQLite reads locally, as before, without it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from phivault.api.read_ahead import SCOPE_KEY, taken
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
        from phivault.store.postgres import _PoolExec

        real_execute = _PoolExec.execute

        def counting(self: _PoolExec, sql: str, params: Any = ()) -> Any:
            statements.append(sql)
            return real_execute(self, sql, params)

        monkeypatch.setattr(_PoolExec, "execute", counting)
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
