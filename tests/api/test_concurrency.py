"""Concurrent writers and readers of one resource, on both backends.

Workers run on daemon threads joined with a deadline, so a deadlock fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from phivault.audit.merkle import leaf_hash, root, verify_tree
from phivault.errors import VersionConflict
from phivault.fhir.resources import parse_instant
from phivault.service import Context
from phivault.store.base import HistoryQuery, WriteTx
from phivault.vault import Vault

THREADS = 8
DEADLINE_S = 30.0
CTX = Context(actor="concurrency-test")
T = TypeVar("T")


def patient(rid: str | None, family: str) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if rid is not None:
        body["id"] = rid
    return body


def run_together(worker: Callable[[int], T], n: int = THREADS) -> list[T]:
    """Run `worker(i)` for i in range(n) on n threads released at the same moment."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=DEADLINE_S)
            results[i] = worker(i)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "workers still running: deadlock?"
    if errors:
        raise errors[0]
    return results


def versions_of(vault: Vault, rtype: str, rid: str) -> list[int]:
    records = vault.store.history(HistoryQuery(rtype=rtype, rid=rid, count=1000))
    return [r.version for r in records]


class _Nodes:
    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def get_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return self.vault.store.audit_nodes(keys)

    def put_nodes(self, nodes: Any) -> None:
        raise AssertionError("read only")


def assert_audit_tree_consistent(vault: Vault) -> None:
    """The stored Merkle nodes agree with a root recomputed from every entry."""
    size = vault.store.audit_size()
    entries = vault.store.audit_entries(0, size)
    assert [i for i, _ in entries] == list(range(size))
    assert root(size, _Nodes(vault)) == verify_tree((leaf_hash(e) for _, e in entries), size)


def test_if_match_race_has_one_winner(vault: Vault) -> None:
    svc = vault.service
    assert svc.update(CTX, "Patient", "race", patient("race", "v1")).version.version == 1

    def worker(i: int) -> str:
        try:
            svc.update(CTX, "Patient", "race", patient("race", f"w{i}"), if_match=1)
        except VersionConflict:
            return "conflict"
        return "ok"

    results = run_together(worker)
    assert results.count("ok") == 1, results
    assert results.count("conflict") == THREADS - 1, results
    current = svc.read(CTX, "Patient", "race")
    assert current.version == 2
    winner = results.index("ok")
    assert json.loads(current.body or b"")["name"][0]["family"] == f"w{winner}"
    assert versions_of(vault, "Patient", "race") == [2, 1]
    assert_audit_tree_consistent(vault)


def test_if_match_race_over_http(client: TestClient, vault: Vault) -> None:
    headers = {"content-type": "application/fhir+json"}
    res = client.put("/fhir/Patient/h1", content=json.dumps(patient("h1", "v1")), headers=headers)
    assert res.status_code == 201

    def worker(i: int) -> int:
        body = json.dumps(patient("h1", f"w{i}"))
        res = client.put("/fhir/Patient/h1", content=body, headers={**headers, "if-match": 'W/"1"'})
        if res.status_code == 412:
            assert res.json()["resourceType"] == "OperationOutcome"
        return res.status_code

    statuses = run_together(worker)
    assert sorted(statuses) == [200] + [412] * (THREADS - 1), statuses
    assert client.get("/fhir/Patient/h1").headers["etag"] == 'W/"2"'
    assert versions_of(vault, "Patient", "h1") == [2, 1]


def test_concurrent_updates_get_consecutive_versions(vault: Vault) -> None:
    svc = vault.service
    svc.update(CTX, "Patient", "busy", patient("busy", "v1"))

    def worker(i: int) -> int:
        return svc.update(CTX, "Patient", "busy", patient("busy", f"w{i}")).version.version

    got = run_together(worker)
    assert sorted(got) == list(range(2, THREADS + 2)), got
    assert versions_of(vault, "Patient", "busy") == list(range(THREADS + 1, 0, -1))
    assert svc.read(CTX, "Patient", "busy").version == THREADS + 1
    # Every version is readable and holds what its writer sent.
    for i, version in enumerate(got):
        body = svc.vread(CTX, "Patient", "busy", version).body or b""
        assert json.loads(body)["name"][0]["family"] == f"w{i}"
    assert_audit_tree_consistent(vault)


def test_concurrent_update_as_create_of_one_id(vault: Vault) -> None:
    svc = vault.service

    def worker(i: int) -> tuple[bool, int]:
        result = svc.update(CTX, "Patient", "fresh", patient("fresh", f"w{i}"))
        return result.created, result.version.version

    results = run_together(worker)
    assert [v for created, v in results if created] == [1], results
    assert sorted(v for _, v in results) == list(range(1, THREADS + 1))
    assert vault.store.count_current("Patient") == 1


def test_concurrent_creates_in_one_compartment(vault: Vault) -> None:
    svc = vault.service
    svc.update(CTX, "Patient", "owner", patient("owner", "Owner"))

    def worker(i: int) -> str:
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": f"obs {i}"},
            "subject": {"reference": "Patient/owner"},
        }
        return svc.create(CTX, "Observation", body).version.rid

    ids = run_together(worker)
    assert len(set(ids)) == THREADS
    assert vault.store.count_current("Observation") == THREADS
    for i, rid in enumerate(ids):
        body = svc.read(CTX, "Observation", rid).body or b""
        assert json.loads(body)["code"]["text"] == f"obs {i}"
    assert_audit_tree_consistent(vault)


def test_concurrent_reads_are_each_audited(vault: Vault) -> None:
    svc = vault.service
    svc.update(CTX, "Patient", "read-me", patient("read-me", "R"))
    before = vault.store.audit_size()
    reads_per_thread = 5

    def worker(i: int) -> set[bytes]:
        return {svc.read(CTX, "Patient", "read-me").body or b"" for _ in range(reads_per_thread)}

    bodies = set().union(*run_together(worker))
    assert len(bodies) == 1
    assert vault.store.audit_size() == before + THREADS * reads_per_thread
    assert_audit_tree_consistent(vault)


def test_new_patient_key_while_another_write_is_open(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write transaction that is sealing a body, and a second request that needs a new
    patient data key, must not wait on each other forever.

    The interleaving is forced: writer A is held inside its transaction (just before it
    seals) until writer B has started creating the key of a new patient. A key ring that
    did store I/O under its own lock deadlocked here on SQLite.
    """
    svc = vault.service
    a_sealing = threading.Event()
    b_creating_key = threading.Event()
    real_seal = svc.codec.seal
    real_write = vault.store.write

    def seal(*args: Any) -> bytes:
        if threading.current_thread().name == "writer-a" and not a_sealing.is_set():
            a_sealing.set()
            b_creating_key.wait(DEADLINE_S)
            time.sleep(0.2)  # let B reach the store's write lock
        return real_seal(*args)

    def write(**kwargs: Any) -> AbstractContextManager[WriteTx]:
        if threading.current_thread().name == "writer-b":
            b_creating_key.set()
        return real_write(**kwargs)

    monkeypatch.setattr(svc.codec, "seal", seal)
    monkeypatch.setattr(vault.store, "write", write)
    results: dict[str, str] = {}

    def create(name: str) -> None:
        results[name] = svc.create(CTX, "Patient", patient(None, name)).version.rid

    a = threading.Thread(target=create, args=("a",), name="writer-a", daemon=True)
    b = threading.Thread(target=create, args=("b",), name="writer-b", daemon=True)
    a.start()
    assert a_sealing.wait(DEADLINE_S)
    b.start()
    deadline = time.monotonic() + 2.5
    a.join(max(0.0, deadline - time.monotonic()))
    b.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in (a, b) if t.is_alive()]
    assert not stuck, f"deadlocked: {stuck}"
    assert set(results) == {"a", "b"}
    monkeypatch.undo()
    for name, rid in results.items():
        assert json.loads(svc.read(CTX, "Patient", rid).body or b"")["name"][0]["family"] == name


def test_last_updated_never_goes_back(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writer A starts first but reaches the store after writer B: A's version is the
    newer one and must not look older than B's (lastUpdated is stamped inside the write
    transaction, or `_since` polling would miss versions)."""
    svc = vault.service
    svc.update(CTX, "Patient", "clock", patient("clock", "v1"))
    a_at_store = threading.Event()
    b_done = threading.Event()
    real_write = vault.store.write

    def write(**kwargs: Any) -> AbstractContextManager[WriteTx]:
        if threading.current_thread().name == "slow-writer" and not b_done.is_set():
            a_at_store.set()
            b_done.wait(DEADLINE_S)
        return real_write(**kwargs)

    monkeypatch.setattr(vault.store, "write", write)
    a = threading.Thread(
        target=lambda: svc.update(CTX, "Patient", "clock", patient("clock", "A")),
        name="slow-writer",
        daemon=True,
    )
    a.start()
    assert a_at_store.wait(DEADLINE_S)
    time.sleep(0.01)  # lastUpdated has millisecond precision
    second = svc.update(CTX, "Patient", "clock", patient("clock", "B")).version
    b_done.set()
    a.join(DEADLINE_S)
    assert not a.is_alive()

    third = svc.read(CTX, "Patient", "clock")
    assert (second.version, third.version) == (2, 3)
    assert json.loads(third.body or b"")["name"][0]["family"] == "A"
    assert parse_instant(third.last_updated) >= parse_instant(second.last_updated)
    since = HistoryQuery(rtype="Patient", rid="clock", since=second.last_updated)
    assert [r.version for r in vault.store.history(since)] == [3, 2]


def _pair_bundle(worker: int, reverse: bool, if_match: int | None = None) -> dict[str, Any]:
    """One transaction writing Patient/pair-a and Observation/pair-b with the worker's mark."""
    a: dict[str, Any] = {
        "resource": patient("pair-a", f"w{worker}"),
        "request": {"method": "PUT", "url": "Patient/pair-a"},
    }
    if if_match is not None:
        a["request"]["ifMatch"] = f'W/"{if_match}"'
    b = {
        "resource": {
            "resourceType": "Observation",
            "id": "pair-b",
            "status": "final",
            "code": {"text": f"w{worker}"},
            "subject": {"reference": "Patient/pair-a"},
        },
        "request": {"method": "PUT", "url": "Observation/pair-b"},
    }
    entries = [b, a] if reverse else [a, b]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _marks(vault: Vault, rtype: str, rid: str) -> dict[int, str]:
    """version -> the worker mark that version holds."""
    svc = vault.service
    out = {}
    for version in versions_of(vault, rtype, rid):
        body = json.loads(svc.vread(CTX, rtype, rid, version).body or b"")
        out[version] = body["name"][0]["family"] if rtype == "Patient" else body["code"]["text"]
    return out


def test_transactions_are_atomic_and_serial_under_contention(
    client: TestClient, vault: Vault
) -> None:
    """Every worker's transaction writes the same two resources, half of them in the
    opposite entry order (a deadlock if locks were taken in entry order). Each version
    of the one must pair with the same version of the other: no transaction is seen half
    applied, none interleaves with another."""
    headers = {"content-type": "application/fhir+json"}
    res = client.post("/fhir", content=json.dumps(_pair_bundle(-1, False)), headers=headers)
    assert res.status_code == 200, res.text
    rounds = 3

    def worker(i: int) -> list[int]:
        statuses = []
        for _ in range(rounds):
            bundle = _pair_bundle(i, reverse=i % 2 == 1)
            res = client.post("/fhir", content=json.dumps(bundle), headers=headers)
            statuses.append(res.status_code)
        return statuses

    results = run_together(worker)
    assert all(s == 200 for statuses in results for s in statuses), results
    a, b = _marks(vault, "Patient", "pair-a"), _marks(vault, "Observation", "pair-b")
    assert len(a) == len(b) == THREADS * rounds + 1
    assert a == b, "a transaction's two writes landed in different orders"
    assert_audit_tree_consistent(vault)


def test_if_match_in_contending_transactions_has_one_winner(
    client: TestClient, vault: Vault
) -> None:
    headers = {"content-type": "application/fhir+json"}
    res = client.post("/fhir", content=json.dumps(_pair_bundle(-1, False)), headers=headers)
    assert res.status_code == 200

    def worker(i: int) -> int:
        bundle = _pair_bundle(i, reverse=i % 2 == 1, if_match=1)
        res = client.post("/fhir", content=json.dumps(bundle), headers=headers)
        if res.status_code != 200:
            assert res.json()["resourceType"] == "OperationOutcome"
        return res.status_code

    statuses = run_together(worker)
    assert sorted(statuses) == [200] + [412] * (THREADS - 1), statuses
    # The losers changed nothing: both resources are at version 2, from the winner.
    a, b = _marks(vault, "Patient", "pair-a"), _marks(vault, "Observation", "pair-b")
    assert sorted(a) == sorted(b) == [1, 2]
    assert a[2] == b[2] == f"w{statuses.index(200)}"
