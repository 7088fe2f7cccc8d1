"""PostgreSQL unreachable mid-load, then back: bounded 503s, a pool that recovers by
itself, and no partial transaction.

The shared server is never touched: a TCP proxy owned by the test (tcp_proxy.py) sits
between phivault and PostgreSQL. Mid-load it resets every open connection (as when the
server restarts or the network drops) and refuses new ones for a while, then lets
connections through again. phivault is not restarted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.crypto.kek import KeyFileKeySource
from phivault.errors import Gone, NotFound
from phivault.service import Context
from phivault.vault import Vault, init_data_dir, open_vault
from tests.cli.audit_support import run
from tests.conftest import system_token
from tests.store.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

FHIR = {"content-type": "application/fhir+json"}
WRITERS = 3
READERS = 2
OUTAGE_S = 3.0
# A request during the outage must end within the pool's wait for a connection (10 s)
# plus the audit durability wait, with some slack for a busy machine: never hang.
REQUEST_BOUND_S = 25.0
RECOVERY_BOUND_S = 20.0
CTX = Context(actor="outage-test")


@dataclass
class Outcomes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: dict[int, int] = field(default_factory=dict)
    slowest: float = 0.0
    acked: list[str] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)
    acked_transactions: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def note(self, res: Any, seconds: float) -> None:
        with self.lock:
            self.statuses[res.status_code] = self.statuses.get(res.status_code, 0) + 1
            self.slowest = max(self.slowest, seconds)
            if res.status_code >= 500:
                body = res.json()
                ok = (
                    res.status_code == 503
                    and body.get("resourceType") == "OperationOutcome"
                    and body["issue"][0]["code"] == "transient"
                )
                if not ok:
                    self.bad.append(f"{res.status_code} {res.text[:200]}")


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def proxied(
    pg_schema_url: str, proxy: TcpProxy, tmp_path: Path, key_file: Path
) -> Iterator[tuple[Vault, Path]]:
    url = pg_schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != pg_schema_url
    data = tmp_path / "data"
    init_data_dir(data, KeyFileKeySource(key_file), db_url=url)
    vault = open_vault(data, KeyFileKeySource(key_file))
    yield vault, data
    vault.close()


def transaction(tx: str) -> dict[str, Any]:
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": tx},
            "request": {"method": "PUT", "url": f"Patient/{tx}"},
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": f"{tx}o",
                "status": "final",
                "code": {"text": tx},
                "subject": {"reference": f"Patient/{tx}"},
            },
            "request": {"method": "PUT", "url": f"Observation/{tx}o"},
        },
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_outage_fails_fast_and_the_pool_recovers(
    proxied: tuple[Vault, Path], proxy: TcpProxy, key_file: Path
) -> None:
    vault, data = proxied
    access = AccessControl.for_service(vault.service, vault.keyring)
    app = create_app(vault.service, vault.settings, access)
    headers = {"Authorization": f"Bearer {system_token(access)}", **FHIR}
    out = Outcomes()
    stop = threading.Event()

    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:

        def timed(method: str, url: str, body: Any = None) -> Any:
            started = time.monotonic()
            content = None if body is None else json.dumps(body)
            res = client.request(method, url, content=content)
            out.note(res, time.monotonic() - started)
            return res

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                res = timed("POST", "/fhir/Patient", {"resourceType": "Patient"})
                if res.status_code == 201:
                    with out.lock:
                        out.acked.append(res.json()["id"])
                tx = f"w{n}i{i}"
                with out.lock:
                    out.transactions.append(tx)
                if timed("POST", "/fhir", transaction(tx)).status_code == 200:
                    with out.lock:
                        out.acked_transactions.append(tx)

        def reader() -> None:
            while not stop.is_set():
                with out.lock:
                    ids = out.acked[-5:]
                for rid in ids or ["none"]:
                    timed("GET", f"/fhir/Patient/{rid}")
                time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        threads += [threading.Thread(target=reader) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        cut = proxy.cut()
        time.sleep(OUTAGE_S)
        during = dict(out.statuses)
        proxy.restore()
        restored = time.monotonic()
        # The pool recovers by itself: a write succeeds again without any restart.
        while True:
            res = client.post("/fhir/Patient", content=json.dumps({"resourceType": "Patient"}))
            if res.status_code == 201:
                break
            assert time.monotonic() - restored < RECOVERY_BOUND_S, "the pool did not recover"
            time.sleep(0.2)
        recovered_after = time.monotonic() - restored
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_BOUND_S + 10)
        assert not any(t.is_alive() for t in threads), "a request hung"
        after = client.get("/fhir/Patient?_count=1")
        assert after.status_code == 200

    print(
        f"outage: {cut} connections reset, {proxy.refused} refused during {OUTAGE_S}s; "
        f"statuses {out.statuses} (at restore: {during}); slowest {out.slowest:.1f}s; "
        f"recovered {recovered_after:.1f}s after restore; acked writes {len(out.acked)}, "
        f"transactions {len(out.transactions)} (acked {len(out.acked_transactions)})"
    )
    assert cut > 0 and proxy.refused > 0
    assert not out.bad, out.bad[:3]
    assert out.statuses.get(503, 0) > 0, "the outage was not noticed"
    assert set(out.statuses) <= {200, 201, 404, 503}, out.statuses
    assert out.slowest < REQUEST_BOUND_S

    # Nothing acknowledged was lost; no transaction is half there.
    for rid in out.acked:
        assert vault.service.read(CTX, "Patient", rid).version == 1
    for tx in out.transactions:
        parts = [_exists(vault, "Patient", tx), _exists(vault, "Observation", f"{tx}o")]
        assert all(parts) or not any(parts), f"half-written transaction {tx}"
        if tx in out.acked_transactions:
            assert all(parts)
    verified = run("audit", "verify", "--data", str(data), "--key-file", str(key_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _exists(vault: Vault, rtype: str, rid: str) -> bool:
    try:
        vault.service.read(CTX, rtype, rid)
    except (NotFound, Gone):
        return False
    return True
