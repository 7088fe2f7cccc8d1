"""The stored alerts: raising (with grouping of repeats) and the review workflow.

An alert is open until a reviewer acknowledges it ("I am looking") and resolves it with a
note ("what it was"). Every step, and the raising itself, is an audit entry written in the
same transaction as the alert row, so the review of an alert is as tamper-evident as the
access that caused it. The entries name the alert id, never the note (a reviewer may write
what they found in it).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from phivault.audit.entry import decode_entry
from phivault.audit.events import AccessEvent, AuditSink
from phivault.detect.model import (
    ACKNOWLEDGED,
    OPEN,
    RESOLVED,
    STATUSES,
    Alert,
    Finding,
    Severity,
)
from phivault.detect.sql import ALERT_COLUMNS, DetectSql
from phivault.errors import AlertNotFound, AlertStateError, AuditUnavailable, BadRequest
from phivault.store.base import Store, WriteTx

log = logging.getLogger("phivault.detect")

ENGINE_ACTOR = "system:detect"
MAX_EVIDENCE = 200  # per alert: the first ones and the latest ones are kept
MAX_NOTE = 2000
AUDIT_RAISE = "alert-raise"
AUDIT_ACK = "alert-acknowledge"
AUDIT_RESOLVE = "alert-resolve"
AUDIT_READ = "alert-read"


def _alert(row: Sequence[Any]) -> Alert:
    values = dict(zip(ALERT_COLUMNS, row, strict=True))
    return Alert(
        alert_id=str(values["alert_id"]),
        detector=str(values["detector"]),
        kind=str(values["kind"]),
        severity=Severity(values["severity"]),
        title=str(values["title"]),
        group_key=str(values["group_key"]),
        actor=values["actor"],
        patient=values["patient"],
        status=str(values["status"]),
        first_seen=float(values["first_seen"]),
        last_seen=float(values["last_seen"]),
        created=float(values["created"]),
        updated=float(values["updated"]),
        occurrences=int(values["occurrences"]),
        evidence=tuple(int(i) for i in orjson.loads(values["evidence"])),
        details={str(k): str(v) for k, v in orjson.loads(values["details"]).items()},
        note=values["note"],
        reviewer=values["reviewer"],
    )


def _row(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.alert_id,
        alert.detector,
        alert.kind,
        alert.severity.value,
        alert.title,
        alert.group_key,
        alert.actor,
        alert.patient,
        alert.status,
        alert.first_seen,
        alert.last_seen,
        alert.created,
        alert.updated,
        alert.occurrences,
        orjson.dumps(list(alert.evidence)).decode(),
        orjson.dumps(alert.details, option=orjson.OPT_SORT_KEYS).decode(),
        alert.note,
        alert.reviewer,
    )


def merge_evidence(old: Sequence[int], new: Sequence[int]) -> tuple[int, ...]:
    merged = list(dict.fromkeys([*old, *new]))
    if len(merged) > MAX_EVIDENCE:
        half = MAX_EVIDENCE // 2
        merged = merged[:half] + merged[-half:]
    return tuple(merged)


class AlertStore:
    def __init__(self, store: Store, audit: AuditSink, clock: Callable[[], float]) -> None:
        self.sql = DetectSql(store)
        self.store = store
        self.audit = audit
        self.clock = clock

    # -- raising --------------------------------------------------------------------------------
    def raise_findings(self, findings: Sequence[Finding]) -> list[Alert]:
        """Store findings; returns the alerts that are new or rose in severity (what the
        outputs announce). Repeats of an open or acknowledged alert's group add evidence."""
        if not findings:
            return []
        try:
            return self._raise(findings, audited=True)
        except AuditUnavailable:
            # The log refuses appends (its seal is broken: exactly when an alert matters
            # most). The alerts are still stored and announced, without their entry.
            log.error("security: alerts stored without audit entries (the audit log refuses)")
            return self._raise(findings, audited=False)

    def _raise(self, findings: Sequence[Finding], *, audited: bool) -> list[Alert]:
        announced: list[Alert] = []
        now = self.clock()
        with self.store.write() as tx:
            for finding in findings:
                found = self.sql.alerts_in(
                    tx, "group_key = ? AND status <> ?", (finding.group, RESOLVED)
                )
                if found:
                    old = _alert(found[0])
                    severity = max(old.severity, finding.severity, key=lambda s: s.rank)
                    alert = replace(
                        old,
                        severity=severity,
                        title=finding.title if severity != old.severity else old.title,
                        last_seen=max(old.last_seen, finding.at),
                        updated=now,
                        occurrences=old.occurrences + 1,
                        evidence=merge_evidence(old.evidence, finding.evidence),
                        details={**old.details, **finding.details},
                    )
                    self.sql.update_alert(
                        tx,
                        old.alert_id,
                        severity=alert.severity.value,
                        title=alert.title,
                        last_seen=alert.last_seen,
                        updated=now,
                        occurrences=alert.occurrences,
                        evidence=_row(alert)[14],
                        details=_row(alert)[15],
                    )
                    if severity != old.severity:
                        announced.append(alert)
                    continue
                alert = Alert(
                    alert_id=secrets.token_hex(8),
                    detector=finding.detector,
                    kind=finding.kind,
                    severity=finding.severity,
                    title=finding.title,
                    group_key=finding.group,
                    actor=finding.actor,
                    patient=finding.patient,
                    status=OPEN,
                    first_seen=finding.at,
                    last_seen=finding.at,
                    created=now,
                    updated=now,
                    occurrences=1,
                    evidence=merge_evidence((), finding.evidence),
                    details=dict(finding.details),
                )
                self.sql.insert_alert(tx, _row(alert))
                if audited:
                    self._audit(tx, AUDIT_RAISE, ENGINE_ACTOR, alert)
                announced.append(alert)
        return announced

    # -- reading --------------------------------------------------------------------------------
    def list_alerts(
        self, *, status: str | None = None, severity: str | None = None, limit: int = 100
    ) -> list[Alert]:
        where, params = ["1 = 1"], []
        if status is not None:
            if status not in STATUSES:
                raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
            where.append("status = ?")
            params.append(status)
        if severity is not None:
            try:
                floor = Severity(severity)
            except ValueError:
                raise BadRequest("severity must be low, medium, high or critical") from None
            allowed = [s.value for s in Severity if s.rank >= floor.rank]
            where.append(f"severity IN ({', '.join('?' for _ in allowed)})")
            params.extend(allowed)
        if not 1 <= limit <= 1000:
            raise BadRequest("limit must be between 1 and 1000")
        return [_alert(r) for r in self.sql.alerts(" AND ".join(where), params, limit)]

    def get(self, alert_id: str) -> Alert:
        rows = self.sql.alerts("alert_id = ?", (alert_id,), 1)
        if not rows:
            raise AlertNotFound()
        return _alert(rows[0])

    # -- review workflow --------------------------------------------------------------------------
    def acknowledge(self, alert_id: str, reviewer: str, note: str | None = None) -> Alert:
        return self._transition(alert_id, reviewer, note, ACKNOWLEDGED, (OPEN,), AUDIT_ACK)

    def resolve(self, alert_id: str, reviewer: str, note: str) -> Alert:
        if not note or not note.strip():
            raise BadRequest("resolving an alert needs a note saying what it was")
        return self._transition(
            alert_id, reviewer, note, RESOLVED, (OPEN, ACKNOWLEDGED), AUDIT_RESOLVE
        )

    def _transition(
        self,
        alert_id: str,
        reviewer: str,
        note: str | None,
        status: str,
        allowed_from: tuple[str, ...],
        action: str,
    ) -> Alert:
        if note is not None and len(note) > MAX_NOTE:
            raise BadRequest(f"the note is longer than {MAX_NOTE} characters")
        now = self.clock()
        with self.store.write() as tx:
            rows = self.sql.alerts_in(tx, "alert_id = ?", (alert_id,))
            if not rows:
                raise AlertNotFound()
            old = _alert(rows[0])
            if old.status not in allowed_from:
                raise AlertStateError(f"the alert is {old.status}")
            note_text = note.strip() if note else old.note
            alert = replace(old, status=status, updated=now, note=note_text, reviewer=reviewer)
            self.sql.update_alert(
                tx, alert_id, status=status, updated=now, note=note_text, reviewer=reviewer
            )
            self._audit(tx, action, reviewer, alert)
        return alert

    def _audit(self, tx: WriteTx, action: str, actor: str, alert: Alert) -> None:
        self.audit.record(
            AccessEvent(
                action=action,
                actor=actor,
                extra={
                    "alert": alert.alert_id,
                    "detector": alert.detector,
                    "severity": alert.severity.value,
                    "status": alert.status,
                },
            ),
            tx,
        )

    def evidence_entries(self, alert: Alert, limit: int = 20) -> list[tuple[int, dict[str, Any]]]:
        """The audit entries an alert names (patients appear as pseudonyms only)."""
        found: list[tuple[int, dict[str, Any]]] = []
        for index in alert.evidence[:limit]:
            for idx, raw in self.store.audit_entries(index, index + 1):
                found.append((idx, decode_entry(bytes(raw))))
        return found

    def audit_read(self, actor: str, client: str | None, what: str) -> None:
        """Reading alerts (CLI, admin API) is itself audited."""
        self.audit.record(
            AccessEvent(action=AUDIT_READ, actor=actor, client=client, extra={"alerts": what})
        )
