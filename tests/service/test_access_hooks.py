"""The access policy on bundles, PATCH, $everything and $export: hidden resources are
answered as not found and left out of pages and export files; type-level refusals are
403. A stand-in policy hides one patient's compartment and refuses Practitioner."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from phivault.access.policy import Decision, Target
from phivault.errors import Forbidden, NotFound
from phivault.service import Context
from phivault.service.bundles import BundleProcessor
from phivault.service.everything import EverythingQuery, everything
from phivault.service.export import ExportService
from phivault.store.export_jobs import COMPLETED
from phivault.vault import Vault

T = TypeVar("T")
BASE = "http://testserver/fhir"


class HidePatient:
    def __init__(self) -> None:
        self.hidden = ""

    def decide_type(self, principal: object, interaction: str, rtype: str) -> Decision:
        return Decision.DENY if rtype == "Practitioner" else Decision.ALLOW

    def decide(self, ctx: Any, interaction: str, target: Target) -> Decision:
        if self.decide_type(ctx.principal, interaction, target.rtype) is Decision.DENY:
            return Decision.DENY
        if target.compartment == f"Patient/{self.hidden}":
            return Decision.HIDE
        return Decision.ALLOW

    def check(self, ctx: Any, interaction: str, target: Target) -> None:
        if self.decide(ctx, interaction, target) is not Decision.ALLOW:
            raise Forbidden()

    def filter(
        self,
        ctx: Any,
        interaction: str,
        candidates: Sequence[T],
        describe: Callable[[T], Target],
    ) -> list[T]:
        return [
            c for c in candidates if self.decide(ctx, interaction, describe(c)) is Decision.ALLOW
        ]


def as_user(actor: str) -> Context:
    return Context(actor=actor, principal=object())  # type: ignore[arg-type]


@pytest.fixture
def setup(vault: Vault) -> tuple[Vault, HidePatient, dict[str, str]]:
    service = vault.service
    trusted = Context(actor="test")
    ids: dict[str, str] = {}
    ids["doc"] = service.create(
        trusted, "Practitioner", {"resourceType": "Practitioner"}
    ).version.rid
    for key in ("seen", "hidden"):
        pid = service.create(
            trusted, "Patient", {"resourceType": "Patient", "name": [{"family": key}]}
        ).version.rid
        ids[key] = pid
        ids[f"obs_{key}"] = service.create(
            trusted,
            "Observation",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "bp"},
                "subject": {"reference": f"Patient/{pid}"},
                "performer": [{"reference": f"Practitioner/{ids['doc']}"}],
            },
        ).version.rid
    policy = HidePatient()
    policy.hidden = ids["hidden"]
    service.policy = policy
    return vault, policy, ids


def test_everything(setup: tuple[Vault, HidePatient, dict[str, str]]) -> None:
    vault, _, ids = setup
    ctx = as_user("alice")
    with pytest.raises(NotFound):
        everything(vault.service, ctx, ids["hidden"], EverythingQuery(count=10))
    page = everything(vault.service, ctx, ids["seen"], EverythingQuery(count=10))
    assert {v.rid for v in page.matches} == {ids["seen"], ids["obs_seen"]}
    assert page.includes == []  # Practitioner: refused at type level, so not included
    assert page.total == 2  # one page holds all the caller may see: counted from it
    first = everything(vault.service, ctx, ids["seen"], EverythingQuery(count=1))
    assert first.total is None  # more pages: the store's count would include hidden ones


def test_bundle_entries(setup: tuple[Vault, HidePatient, dict[str, str]]) -> None:
    vault, _, ids = setup
    processor = BundleProcessor(vault.service)
    ctx = as_user("alice")

    def tx(*entries: dict[str, Any]) -> None:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}
        processor.process(ctx, bundle, base_url=BASE, prefer="representation")

    with pytest.raises(NotFound):
        tx({"request": {"method": "GET", "url": f"Patient/{ids['hidden']}"}})
    # A hidden DELETE answers exactly like one of an unknown id (a bundle DELETE of an
    # unknown id succeeds, 204): it goes through and deletes nothing (asserted below).
    tx({"request": {"method": "DELETE", "url": f"Observation/{ids['obs_hidden']}"}})
    moved = {
        "resourceType": "Observation",
        "id": ids["obs_seen"],
        "status": "final",
        "code": {"text": "bp"},
        "subject": {"reference": f"Patient/{ids['hidden']}"},
    }
    with pytest.raises(NotFound):  # moving a record into a hidden compartment
        tx(
            {
                "request": {"method": "PUT", "url": f"Observation/{ids['obs_seen']}"},
                "resource": moved,
            }
        )
    with pytest.raises(Forbidden):
        tx(
            {
                "request": {"method": "POST", "url": "Practitioner"},
                "resource": {"resourceType": "Practitioner"},
            }
        )
    assert vault.store.current("Observation", ids["obs_hidden"]).deleted is False  # type: ignore[union-attr]


def test_patch(setup: tuple[Vault, HidePatient, dict[str, str]]) -> None:
    vault, _, ids = setup
    op = [{"op": "add", "path": "/active", "value": True}]
    with pytest.raises(NotFound):
        vault.service.patch(as_user("alice"), "Patient", ids["hidden"], op)
    assert vault.service.patch(as_user("alice"), "Patient", ids["seen"], op).version.version == 2


def test_export(setup: tuple[Vault, HidePatient, dict[str, str]]) -> None:
    vault, _, ids = setup
    exports = ExportService(vault.service, vault.settings.data_dir)
    alice = as_user("alice")
    with pytest.raises(Forbidden):
        exports.kick_off(alice, level="system", request_url=BASE, types=["Practitioner"])
    job = exports.kick_off(alice, level="system", request_url=BASE)
    deadline = time.monotonic() + 20
    while (record := vault.store.export_job(job)) is None or record.state != COMPLETED:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(NotFound):  # another user does not see alice's job
        exports.status(as_user("bob"), job, BASE)
    manifest = exports.status(alice, job, BASE).manifest
    assert manifest is not None
    exported: set[str] = set()
    for item in manifest["output"]:
        name = item["url"].rsplit("/", 1)[-1]
        text = b"".join(exports.open_file(alice, job, name)).decode()
        exported |= {f"{r['resourceType']}/{r['id']}" for r in map(json.loads, text.splitlines())}
    assert exported == {f"Patient/{ids['seen']}", f"Observation/{ids['obs_seen']}"}
