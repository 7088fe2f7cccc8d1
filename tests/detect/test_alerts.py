"""Alert storage: grouping of repeats, the review workflow, and its audit trail."""

from __future__ import annotations

import time

import orjson
import pytest

from phivault.detect.alerts import AUDIT_ACK, AUDIT_RAISE, AUDIT_RESOLVE, MAX_EVIDENCE, AlertStore
from phivault.detect.model import ACKNOWLEDGED, OPEN, RESOLVED, Severity
from phivault.errors import AlertNotFound, AlertStateError, BadRequest
from phivault.vault import Vault
from tests.detect.support import finding


def _audit(vault: Vault) -> list[dict[str, object]]:
    return [orjson.loads(e) for _, e in vault.store.audit_entries(0, vault.store.audit_size())]


def test_repeats_join_one_alert_and_severity_only_rises(vault: Vault) -> None:
    alerts = AlertStore(vault.store, vault.audit, time.time)
    first = alerts.raise_findings([finding("g1", Severity.MEDIUM, evidence=(1,))])
    assert len(first) == 1
    again = alerts.raise_findings([finding("g1", Severity.LOW, evidence=(2,))])
    assert again == []  # no new alert, nothing to announce
    risen = alerts.raise_findings([finding("g1", Severity.HIGH, evidence=(3,))])
    assert len(risen) == 1 and risen[0].severity is Severity.HIGH
    other = alerts.raise_findings([finding("g2")])
    assert other[0].alert_id != first[0].alert_id
    stored = alerts.get(first[0].alert_id)
    assert stored.occurrences == 3 and stored.evidence == (1, 2, 3)
    assert stored.severity is Severity.HIGH
    raised = [e for e in _audit(vault) if e["action"] == AUDIT_RAISE]
    assert len(raised) == 2  # one per alert, not per repeat


def test_evidence_is_capped_keeping_first_and_latest(vault: Vault) -> None:
    alerts = AlertStore(vault.store, vault.audit, time.time)
    alerts.raise_findings([finding("g", evidence=tuple(range(MAX_EVIDENCE + 50)))])
    stored = alerts.list_alerts()[0]
    assert len(stored.evidence) == MAX_EVIDENCE
    assert stored.evidence[0] == 0 and stored.evidence[-1] == MAX_EVIDENCE + 49


def test_review_workflow_is_audited(vault: Vault) -> None:
    alerts = AlertStore(vault.store, vault.audit, time.time)
    alert = alerts.raise_findings([finding()])[0]
    assert alert.status == OPEN
    acked = alerts.acknowledge(alert.alert_id, "admin-1")
    assert acked.status == ACKNOWLEDGED and acked.reviewer == "admin-1"
    with pytest.raises(AlertStateError):
        alerts.acknowledge(alert.alert_id, "admin-1")
    with pytest.raises(BadRequest):
        alerts.resolve(alert.alert_id, "admin-1", "  ")
    done = alerts.resolve(alert.alert_id, "admin-2", "nurse covering a colleague; confirmed")
    assert done.status == RESOLVED and done.note and done.reviewer == "admin-2"
    with pytest.raises(AlertStateError):
        alerts.resolve(alert.alert_id, "admin-2", "again")
    with pytest.raises(AlertNotFound):
        alerts.get("nope")
    steps = [e for e in _audit(vault) if e["action"] in (AUDIT_ACK, AUDIT_RESOLVE)]
    assert [(e["action"], e["actor"]) for e in steps] == [
        (AUDIT_ACK, "admin-1"),
        (AUDIT_RESOLVE, "admin-2"),
    ]
    assert all(e["extra"]["alert"] == alert.alert_id for e in steps)  # type: ignore[index]
    assert "confirmed" not in str(steps)  # the note stays out of the log


def test_resolved_group_opens_a_new_alert(vault: Vault) -> None:
    alerts = AlertStore(vault.store, vault.audit, time.time)
    first = alerts.raise_findings([finding("g")])[0]
    alerts.resolve(first.alert_id, "admin", "reviewed")
    second = alerts.raise_findings([finding("g")])
    assert len(second) == 1 and second[0].alert_id != first.alert_id


def test_list_filters(vault: Vault) -> None:
    alerts = AlertStore(vault.store, vault.audit, time.time)
    alerts.raise_findings([finding("a", Severity.LOW), finding("b", Severity.CRITICAL)])
    assert [a.group_key for a in alerts.list_alerts(severity="high")] == ["b"]
    assert len(alerts.list_alerts(status=OPEN)) == 2
    assert alerts.list_alerts(status=RESOLVED) == []
    with pytest.raises(BadRequest):
        alerts.list_alerts(status="closed")
    with pytest.raises(BadRequest):
        alerts.list_alerts(severity="urgent")
