"""One GET through an ASGI app on the running event loop, without sockets: how
bench/bench_access_cpu.py drives the app in process, and how tests schedule requests on
one loop in an exact order."""

from __future__ import annotations

import asyncio
from typing import Any


async def asgi_get(app: Any, path: str, token: str | None = None) -> int:
    """GET `path` (with its query, if any) with an optional bearer token; the status."""
    route, _, query = path.partition("?")
    headers = [(b"host", b"127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": route, "raw_path": route.encode(),
        "query_string": query.encode(), "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    status: list[int] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]
