"""The ceiling: a bare Starlette + SQLite JSON insert/read, no FHIR, no security.

`phivault bench` runs it under uvicorn with the settings `serve` uses, next to phivault, so
the figures come from the same machine in the same run: the most a Python server on
Starlette, uvicorn and SQLite (WAL, synchronous=FULL) gets from this machine.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DB = os.environ.get("CEILING_DB", "ceiling.db")
_local = threading.local()
_write_lock = threading.Lock()


def _conn() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, body BLOB)")
        _local.conn = conn
    return conn


def _insert(doc_id: str, body: bytes) -> None:
    with _write_lock:
        _conn().execute("INSERT INTO docs (id, body) VALUES (?, ?)", (doc_id, body))


def _read(doc_id: str) -> bytes | None:
    row = _conn().execute("SELECT body FROM docs WHERE id = ?", (doc_id,)).fetchone()
    return row[0] if row else None


async def create(request: Request) -> Response:
    doc = orjson.loads(await request.body())
    doc_id = doc.get("id") or str(uuid.uuid4())
    doc["id"] = doc_id
    body = orjson.dumps(doc)
    await run_in_threadpool(_insert, doc_id, body)
    return Response(body, status_code=201, media_type="application/json")


async def read(request: Request) -> Response:
    body = await run_in_threadpool(_read, request.path_params["doc_id"])
    if body is None:
        return Response(b"{}", status_code=404, media_type="application/json")
    return Response(body, media_type="application/json")


app = Starlette(
    routes=[
        Route("/fhir/{rtype}", create, methods=["POST"]),
        Route("/fhir/{rtype}/{doc_id}", read, methods=["GET"]),
    ]
)
