from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import orjson

from phivault.benchmark.loadgen import run_load_in_process
from phivault.benchmark.servers import start_ceiling
from phivault.benchmark.workloads import ceiling_create


def _post(port: int, doc: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/fhir/Patient", data=orjson.dumps(doc), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _get(port: int, doc_id: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/Patient/{doc_id}") as found:
            return int(found.status), found.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_concurrent_inserts_are_all_committed_before_their_answer(tmp_path: Path) -> None:
    db = tmp_path / "ceiling.db"
    server = start_ceiling(db)
    try:
        created = run_load_in_process(server.port, ceiling_create(64, "g"), 64, 16)
        assert created.statuses == {201: 64}
    finally:
        server.stop()
    # Answered 201 only once committed: every row is in the file after the server is gone.
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM docs WHERE id LIKE 'g%'").fetchone() == (64,)


def test_a_failed_commit_answers_500_and_the_writer_goes_on(tmp_path: Path) -> None:
    server = start_ceiling(tmp_path / "ceiling.db")
    try:
        assert _post(server.port, {"id": "same", "n": "1"}) == 201
        assert _post(server.port, {"id": "same", "n": "2"}) == 500  # the primary key refuses it
        assert _post(server.port, {"id": "next", "n": "3"}) == 201
        status, body = _get(server.port, "same")
        assert status == 200 and orjson.loads(body)["n"] == "1"  # the first one stands
        assert _get(server.port, "next")[0] == 200
        assert _get(server.port, "never")[0] == 404
    finally:
        server.stop()
