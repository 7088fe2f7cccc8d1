"""SIGKILL under load, several rounds, on both backends.

Each round starts the real `phivault serve`, drives concurrent creates, updates,
transactions and reads over HTTP, kills the server with SIGKILL at a random moment, and
then checks the data directory:

- every write a client saw acknowledged (2xx) is there, with the body that client sent;
- nothing half-written is visible: each transaction (three resources) is all there or
  not at all, and no version exists that is newer than the current pointer;
- `phivault audit verify` passes.

The next round restarts the server on the same data directory, so recovery from the
previous kill is itself under test. The middle round runs two worker processes (every
one of them is killed), so writes from several processes are in flight at the kill. The kill points are random (seeded per run; the seed
is printed so a failure can be replayed).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from phivault.crypto.kek import KeyFileKeySource
from phivault.errors import Gone, NotFound
from phivault.service import Context
from phivault.store.base import HistoryQuery
from phivault.vault import open_vault
from tests.cli.audit_support import run
from tests.server_support import Server, init_data_dir, issue_token

ROUNDS = 3
WRITERS = 3
READERS = 2
LOAD_S = (0.2, 2.0)  # the kill comes this long after the round's first acknowledged write
WARM_UP_S = 30.0
CTX = Context(actor="crash-test")
FHIR = {"content-type": "application/fhir+json"}


@dataclass
class Ledger:
    """What clients sent and what the server acknowledged."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[tuple[str, str, int], str] = field(default_factory=dict)  # -> family
    transactions: list[str] = field(default_factory=list)  # every one sent
    acked_transactions: set[str] = field(default_factory=set)
    reads: int = 0
    errors: int = 0


class Load:
    def __init__(self, base: str, token: str, ledger: Ledger, tag: str) -> None:
        self.base = base
        self.headers = {"authorization": f"Bearer {token}", **FHIR}
        self.ledger = ledger
        self.tag = tag
        self.stop = threading.Event()

    def writer(self, n: int) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    self._one_round(client, f"{self.tag}w{n}i{i}")
                except httpx.HTTPError:
                    return  # the server is gone

    def _one_round(self, client: httpx.Client, name: str) -> None:
        ledger = self.ledger
        body = {"resourceType": "Patient", "name": [{"family": name}]}
        res = client.post(f"{self.base}/Patient", content=orjson.dumps(body))
        if res.status_code != 201:
            with ledger.lock:
                ledger.errors += 1
            return
        rid = res.json()["id"]
        with ledger.lock:
            ledger.acked[("Patient", rid, 1)] = name
        body = {"resourceType": "Patient", "id": rid, "name": [{"family": name + "u"}]}
        res = client.put(f"{self.base}/Patient/{rid}", content=orjson.dumps(body))
        if res.status_code == 200:
            with ledger.lock:
                ledger.acked[("Patient", rid, int(res.json()["meta"]["versionId"]))] = name + "u"
        tx = f"{name}t"
        with ledger.lock:
            ledger.transactions.append(tx)
        res = client.post(f"{self.base}", content=orjson.dumps(transaction(tx)))
        if res.status_code == 200:
            with ledger.lock:
                ledger.acked_transactions.add(tx)

    def reader(self) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self.stop.is_set():
                with self.ledger.lock:
                    keys = list(self.ledger.acked)[-10:]
                if not keys:
                    time.sleep(0.01)
                    continue
                for rtype, rid, _ in keys:
                    try:
                        res = client.get(f"{self.base}/{rtype}/{rid}")
                    except httpx.HTTPError:
                        return
                    if res.status_code == 200:
                        with self.ledger.lock:
                            self.ledger.reads += 1


def transaction(tx: str) -> dict[str, Any]:
    """A Patient and two Observations about it, with ids derived from `tx`."""
    subject = {"reference": f"Patient/{tx}"}
    entries: list[dict[str, Any]] = [
        {
            "resource": {"resourceType": "Patient", "id": tx, "name": [{"family": tx}]},
            "request": {"method": "PUT", "url": f"Patient/{tx}"},
        }
    ]
    for k in (1, 2):
        obs = {
            "resourceType": "Observation",
            "id": f"{tx}o{k}",
            "status": "final",
            "code": {"text": f"{tx} {k}"},
            "subject": subject,
        }
        entries.append(
            {"resource": obs, "request": {"method": "PUT", "url": f"Observation/{tx}o{k}"}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _exists(svc: Any, rtype: str, rid: str) -> bool:
    try:
        svc.read(CTX, rtype, rid)
    except (NotFound, Gone):
        return False
    return True


def check_after_kill(data: Path, key: Path, ledger: Ledger) -> dict[str, int]:
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        svc = vault.service
        for (rtype, rid, version), family in ledger.acked.items():
            got = svc.vread(CTX, rtype, rid, version)
            assert json.loads(got.body or b"")["name"][0]["family"] == family
        present = absent = 0
        for tx in ledger.transactions:
            parts = [
                _exists(svc, "Patient", tx),
                _exists(svc, "Observation", f"{tx}o1"),
                _exists(svc, "Observation", f"{tx}o2"),
            ]
            assert all(parts) or not any(parts), f"half-written transaction {tx}: {parts}"
            if tx in ledger.acked_transactions:
                assert all(parts), f"acknowledged transaction {tx} lost"
            present += all(parts)
            absent += not any(parts)
        # No version beyond the current one of any resource a client wrote.
        for rtype, rid in {(t, i) for t, i, _ in ledger.acked}:
            current = svc.read(CTX, rtype, rid).version
            history = vault.store.history(HistoryQuery(rtype=rtype, rid=rid, count=100))
            assert max(r.version for r in history) == current
        return {"tx_present": present, "tx_absent": absent}
    finally:
        vault.close()


@pytest.mark.slow
def test_sigkill_rounds_lose_no_acknowledged_write(tmp_path: Path, db_url: str | None) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"crash-recovery seed {seed}")
    data, key = init_data_dir(tmp_path, db_url)
    token = issue_token(data, key, "system/Patient.cruds system/Observation.cruds")
    ledger = Ledger()
    kills = 0
    per_round: list[int] = []
    for round_no in range(ROUNDS):
        workers = 1 + round_no % 2  # the middle round runs `serve --workers 2`
        server = Server(data, key, workers=workers).start()
        load = Load(server.base, token, ledger, f"r{round_no}")
        threads = [threading.Thread(target=load.writer, args=(n,)) for n in range(WRITERS)]
        threads += [threading.Thread(target=load.reader) for _ in range(READERS)]
        try:
            acked_before = len(ledger.acked)
            for thread in threads:
                thread.start()
            # The kill comes at a random moment once this round's writes are flowing (a
            # first request can take a while on a busy machine: validation warms up).
            warm = time.monotonic() + WARM_UP_S
            while len(ledger.acked) == acked_before and time.monotonic() < warm:
                time.sleep(0.02)
            time.sleep(rng.uniform(*LOAD_S))
            server.kill()  # requests are in flight
            kills += 1
        finally:
            load.stop.set()
            server.kill()
            for thread in threads:
                thread.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        per_round.append(len(ledger.acked) - acked_before)
        outcome = check_after_kill(data, key, ledger)
        verified = run("audit", "verify", "--data", str(data), "--key-file", str(key))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        print(
            f"round {round_no} ({workers} worker(s)): acked writes {len(ledger.acked)}, transactions sent "
            f"{len(ledger.transactions)} (acked {len(ledger.acked_transactions)}, "
            f"after the kill present {outcome['tx_present']}, absent {outcome['tx_absent']}), "
            f"reads {ledger.reads}"
        )
    assert kills == ROUNDS
    assert len(ledger.acked) > 5 * ROUNDS and ledger.reads > 10
    assert all(n > 0 for n in per_round), per_round  # every round had writes to lose
    assert ledger.acked_transactions
