"""Failed writes are audited as failed accesses; AuditEvent is never stored; every answered
interaction has its entry."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from phivault.audit.auditevent import render
from phivault.errors import (
    IdMismatch,
    InvalidResource,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    VersionConflict,
)
from phivault.vault import Vault
from tests.audit.support import CTX, patient


def last(vault: Vault, count: int = 1) -> list[dict[str, Any]]:
    size = vault.store.audit_size()
    return [orjson.loads(e) for _, e in vault.store.audit_entries(size - count, size)]


def test_failed_writes_are_recorded(vault: Vault) -> None:
    svc = vault.service
    rid = svc.create(CTX, "Patient", patient()).version.rid
    cases: list[tuple[type[Exception], Any, str]] = [
        (VersionConflict, lambda: svc.update(CTX, "Patient", rid, {**patient(), "id": rid},
                                            if_match=7), "update"),
        (InvalidResource, lambda: svc.create(CTX, "Patient", {**patient(), "gender": 5}),
         "create"),
        (IdMismatch, lambda: svc.update(CTX, "Patient", rid, {**patient(), "id": "other"}),
         "update"),
        (NotFound, lambda: svc.delete(CTX, "Patient", "never-was"), "delete"),
    ]  # fmt: skip
    for error, call, action in cases:
        size = vault.store.audit_size()
        with pytest.raises(error):
            call()
        assert vault.store.audit_size() == size + 1, error
        (entry,) = last(vault)
        assert entry["action"] == action
        assert entry["outcome"] == "4"
        assert entry["detail"] == error.__name__
        assert entry["actor"] == CTX.actor


def test_a_nested_failure_is_recorded_once(vault: Vault) -> None:
    svc = vault.service
    rid = svc.create(CTX, "Patient", patient()).version.rid
    size = vault.store.audit_size()
    with pytest.raises(VersionConflict):
        svc.conditional_update(CTX, "Patient", f"_id={rid}", patient(), if_match=9)
    assert vault.store.audit_size() == size + 1
    svc.create(CTX, "Patient", patient())
    size = vault.store.audit_size()
    with pytest.raises(PreconditionFailed):
        svc.conditional_update(CTX, "Patient", "gender=female", patient(), if_match=None)
    assert vault.store.audit_size() == size + 1


def test_client_text_does_not_reach_the_log_unless_well_formed(vault: Vault) -> None:
    with pytest.raises(Exception):  # noqa: B017 (any refusal will do)
        vault.service.update(CTX, "No Such Type!", "x y", {"resourceType": "Patient"})
    (entry,) = last(vault)
    assert "type" not in entry and "id" not in entry


def test_deleting_twice_is_answered_and_audited(vault: Vault) -> None:
    rid = vault.service.create(CTX, "Patient", patient()).version.rid
    assert vault.service.delete(CTX, "Patient", rid) is not None
    size = vault.store.audit_size()
    assert vault.service.delete(CTX, "Patient", rid) is None
    assert vault.store.audit_size() == size + 1
    (entry,) = last(vault)
    assert (entry["action"], entry["outcome"], entry["version"]) == ("delete", "0", 2)


def test_audit_event_is_never_written(vault: Vault) -> None:
    event = render(1, {"v": 1, "time": "2024-01-01T00:00:00.000Z", "action": "read",
                       "outcome": "0", "actor": "x"})  # fmt: skip
    svc = vault.service
    with pytest.raises(MethodNotAllowed):
        svc.create(CTX, "AuditEvent", event)
    with pytest.raises(MethodNotAllowed):
        svc.update(CTX, "AuditEvent", "1", event)
    with pytest.raises(MethodNotAllowed):
        svc.delete(CTX, "AuditEvent", "1")
    (stats,) = list(svc.import_resources(CTX, [event]))
    assert (stats.created, stats.failed) == (0, 1)
    assert vault.store.count_current("AuditEvent") == 0
    refused = last(vault, 3)
    assert {e["detail"] for e in refused} == {"MethodNotAllowed"}
