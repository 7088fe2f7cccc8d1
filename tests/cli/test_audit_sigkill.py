"""SIGKILL under load: the real `phivault serve` is killed while threads write and read over
HTTP. Afterwards `audit verify` passes, every response a client got (2xx) has its audit
entry, and a witness that watched the server before the crash accepts the log after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from phivault.store.factory import open_store
from tests.cli.audit_support import PHIVAULT, free_port, run, subprocess_env

WRITERS = 4
READERS = 4
LOAD_SECONDS = 2.0


def start_server(data: Path, key: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(PHIVAULT), "serve", "--data", str(data), "--key-file", str(key), "--port", str(port)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("phivault serve did not start")


class Load:
    """Writer and reader threads that remember every 2xx they were given."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"authorization": f"Bearer {token}"}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.written: list[tuple[str, int]] = []  # (id, version) acknowledged
        self.read: list[str] = []  # ids whose read was answered 200

    def writer(self, n: int) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                body = {"resourceType": "Patient", "name": [{"family": f"Kill{n}x{i}"}]}
                try:
                    res = client.post(
                        f"{self.base}/Patient",
                        content=orjson.dumps(body),
                        headers={"content-type": "application/fhir+json"},
                    )
                    if res.status_code == 201:
                        rid = res.json()["id"]
                        with self.lock:
                            self.written.append((rid, 1))
                        update = {**body, "id": rid, "gender": "other"}
                        res = client.put(
                            f"{self.base}/Patient/{rid}",
                            content=orjson.dumps(update),
                            headers={"content-type": "application/fhir+json"},
                        )
                        if res.status_code == 200:
                            with self.lock:
                                self.written.append((rid, int(res.json()["meta"]["versionId"])))
                except httpx.HTTPError:
                    return  # the server is gone

    def reader(self) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self.stop.is_set():
                with self.lock:
                    ids = [rid for rid, _ in self.written[-20:]]
                if not ids:
                    time.sleep(0.01)
                    continue
                for rid in ids:
                    try:
                        res = client.get(f"{self.base}/Patient/{rid}")
                    except httpx.HTTPError:
                        return
                    if res.status_code == 200:
                        with self.lock:
                            self.read.append(rid)


def entries(data: Path, db_url: str | None) -> list[dict[str, Any]]:
    store = open_store(data, db_url)
    try:
        return [orjson.loads(e) for _, e in store.audit_entries(0, store.audit_size())]
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_under_load_leaves_a_verifiable_complete_log(
    tmp_path: Path, db_url: str | None
) -> None:
    data, key, state = tmp_path / "data", tmp_path / "kek.key", tmp_path / "witness.json"
    init = ["init", "--data", str(data), "--generate-key-file", str(key)]
    done = run(*init, *(["--db", db_url] if db_url else []))
    assert done.returncode == 0, done.stderr
    issued = run(*("token", "issue", "--data", str(data), "--key-file", str(key)),
                 *("--client", "load-test", "--scope", "system/Patient.cruds"))  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    port = free_port()
    server = start_server(data, key, port)
    try:
        load = Load(f"http://127.0.0.1:{port}/fhir", issued.stdout.strip())
        threads = [threading.Thread(target=load.writer, args=(n,)) for n in range(WRITERS)]
        threads += [threading.Thread(target=load.reader) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        time.sleep(LOAD_SECONDS / 2)
        watched = run(
            "audit", "witness", "--url", f"http://127.0.0.1:{port}", "--state", str(state)
        )
        assert watched.returncode == 0, watched.stdout + watched.stderr
        time.sleep(LOAD_SECONDS / 2)
        os.kill(server.pid, signal.SIGKILL)  # mid-load: requests are in flight
        server.wait(timeout=10)
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert len(load.written) > 20 and len(load.read) > 20

    verified = run("audit", "verify", "--data", str(data), "--key-file", str(key))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout

    logged = entries(data, db_url)
    writes = {(e["id"], e["version"]) for e in logged if e["action"] in ("create", "update")}
    reads = {e["id"] for e in logged if e["action"] == "read" and e["outcome"] == "0"}
    assert set(load.written) <= writes
    assert set(load.read) <= reads

    # The checkpoint the witness saw before the crash is a prefix of the log after it.
    after = run(
        "audit", "witness", "--data", str(data), "--state", str(state), "--key-file", str(key)
    )
    assert after.returncode == 0, after.stdout + after.stderr
    assert json.loads(state.read_text())["public_key"]
