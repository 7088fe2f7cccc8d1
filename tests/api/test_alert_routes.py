"""The admin API for alerts: admins only, every call audited, the review workflow."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.detect.alerts import AlertStore
from phivault.detect.model import Finding, Severity
from phivault.vault import Vault

PASSWORD = "correct horse battery staple"


def _token(access: AccessControl, role: str) -> str:
    user, _ = access.users.add(f"{role}-1", PASSWORD, [role], mfa_required=False)
    session = access.sessions.open(user.user_id, None, "user/*.rs", None)
    token, _ = access.user_token(session.session_id, user.user_id, None, "user/*.rs")
    return token


@pytest.fixture
def api(vault: Vault, access: AccessControl) -> Iterator[TestClient]:
    with TestClient(create_app(vault.service, vault.settings, access)) as client:
        yield client


def _audit(vault: Vault) -> list[dict[str, object]]:
    return [orjson.loads(e) for _, e in vault.store.audit_entries(0, vault.store.audit_size())]


def test_admins_review_alerts(vault: Vault, access: AccessControl, api: TestClient) -> None:
    store = AlertStore(vault.store, vault.audit, time.time)
    finding = Finding(
        "canary",
        "honeytoken",
        Severity.CRITICAL,
        "A honeytoken was touched",
        "g",
        (0,),
        time.time(),
        actor="u9",
    )
    alert = store.raise_findings([finding])[0]
    admin = {"Authorization": f"Bearer {_token(access, 'admin')}"}
    listed = api.get("/admin/alerts?status=open", headers=admin)
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    assert [a["id"] for a in listed.json()["alerts"]] == [alert.alert_id]
    shown = api.get(f"/admin/alerts/{alert.alert_id}", headers=admin)
    assert shown.status_code == 200 and shown.json()["severity"] == "critical"
    assert shown.json()["evidence_entries"][0]["index"] == 0
    acked = api.post(f"/admin/alerts/{alert.alert_id}/acknowledge", headers=admin)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    empty = api.post(f"/admin/alerts/{alert.alert_id}/resolve", headers=admin, content=b"")
    assert empty.status_code == 400  # a resolution needs a note
    assert empty.json()["resourceType"] == "OperationOutcome"
    done = api.post(
        f"/admin/alerts/{alert.alert_id}/resolve", headers=admin, json={"note": "drill, agreed"}
    )
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    again = api.post(f"/admin/alerts/{alert.alert_id}/acknowledge", headers=admin)
    assert again.status_code == 409
    assert api.get("/admin/alerts/nope", headers=admin).status_code == 404
    assert api.get("/admin/alerts?severity=urgent", headers=admin).status_code == 400
    actions = [e["action"] for e in _audit(vault)]
    assert actions.count("alert-read") == 2
    assert "alert-acknowledge" in actions and "alert-resolve" in actions


def test_only_admins_get_in_and_refusals_are_audited(
    vault: Vault, access: AccessControl, api: TestClient
) -> None:
    clinician = {"Authorization": f"Bearer {_token(access, 'clinician')}"}
    assert api.get("/admin/alerts", headers=clinician).status_code == 403
    assert api.get("/admin/alerts").status_code == 401
    assert api.get("/admin/alerts", headers={"Authorization": "Bearer forged"}).status_code == 401
    refused = [e for e in _audit(vault) if e["action"] == "alert-read" and e["outcome"] == "4"]
    assert [e["detail"] for e in refused] == ["Forbidden", "InvalidToken", "InvalidToken"]
    assert refused[0]["actor"] != "anonymous" and refused[1]["actor"] == "anonymous"
