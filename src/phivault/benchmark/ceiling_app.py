"""The ceiling: a bare Starlette + SQLite JSON insert/read, no FHIR, no security.

`phivault bench` runs it under uvicorn with the settings `serve` uses, next to phivault, so
the figures come from the same machine in the same run: the most a Python server on
Starlette, uvicorn and SQLite (WAL, synchronous=FULL) gets from this machine. Reads run on
the event loop (a point read is cheaper than a thread hop); inserts go to one writer
thread that commits everything queued meanwhile in one transaction (a group commit: one
fsync for many inserts, as phivault's own writer and audit log do).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import uuid

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DB = os.environ.get("CEILING_DB", "ceiling.db")
_local = threading.local()


def _conn() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, body BLOB)")
        _local.conn = conn
    return conn


class _GroupCommit:
    """One writer thread; each of its commits holds every insert queued meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    async def insert(self, doc_id: str, body: bytes) -> None:
        """Returns once the row is committed (durable: synchronous=FULL)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queue.append((doc_id, body, done))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ceiling-writer", daemon=True
                )
                self._thread.start()
        self._wake.set()
        await done

    def _run(self) -> None:
        conn = _conn()
        while True:
            self._wake.wait()
            with self._lock:
                batch, self._queue = self._queue, []
                self._wake.clear()
            if not batch:
                continue
            failed: sqlite3.Error | None = None
            try:
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO docs (id, body) VALUES (?, ?)", [(d, b) for d, b, _ in batch]
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                failed = exc
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite rolled back already: nothing is left to undo
            for _, _, done in batch:
                done.get_loop().call_soon_threadsafe(_answer, done, failed)


def _answer(done: asyncio.Future[None], failed: BaseException | None) -> None:
    if done.done():
        return
    if failed is None:
        done.set_result(None)
    else:
        done.set_exception(failed)


_writer = _GroupCommit()


def _read(doc_id: str) -> bytes | None:
    row = _conn().execute("SELECT body FROM docs WHERE id = ?", (doc_id,)).fetchone()
    return row[0] if row else None


async def create(request: Request) -> Response:
    doc = orjson.loads(await request.body())
    doc_id = doc.get("id") or str(uuid.uuid4())
    doc["id"] = doc_id
    body = orjson.dumps(doc)
    try:
        await _writer.insert(doc_id, body)
    except sqlite3.Error:
        return Response(b"{}", status_code=500, media_type="application/json")
    return Response(body, status_code=201, media_type="application/json")


async def read(request: Request) -> Response:
    # On the event loop, as phivault reads SQLite by id: a point read by primary key takes
    # microseconds, less than the hop to a worker thread (which held this "ceiling" below
    # phivault's own unguarded reads).
    body = _read(request.path_params["doc_id"])
    if body is None:
        return Response(b"{}", status_code=404, media_type="application/json")
    return Response(body, media_type="application/json")


app = Starlette(
    routes=[
        Route("/fhir/{rtype}", create, methods=["POST"]),
        Route("/fhir/{rtype}/{doc_id}", read, methods=["GET"]),
    ]
)
