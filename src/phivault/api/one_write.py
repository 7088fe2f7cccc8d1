"""uvicorn's httptools protocol, writing each response's head with its body.

uvicorn writes a response's status line and headers as soon as the app starts the
response, and the body when it comes: two socket writes, two TCP segments and two reads
on the client for every response, where one would do. HeadWithBodyProtocol holds the head
back until the first part of the body (or the end of the response, or the connection's
close) and sends both in one write. Nothing else changes: the bytes on the wire are the
same, in the same order. `phivault serve` runs it under its connection guard
(api/connection_limits.py); the bench's unguarded server runs it alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class HeadWithBodyProtocol(HttpToolsProtocol):
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        hold_head(cycle)
        super()._start_asgi_task(cycle, app)


class _HeadWithBody(asyncio.Transport):
    """One response's view of the connection: the head (the write made when the response
    starts) is held until the first part of the body, the end of the response (a HEAD
    request or an empty body writes nothing) or the connection's close."""

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        super().__init__()
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._head_seen and self._cycle.response_started:
            self._head_seen = True  # uvicorn's first write once the response has started
            self._head = bytes(data)
            return
        if self._head is not None:
            data, self._head = self._head + bytes(data), None
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


def hold_head(cycle: RequestResponseCycle) -> None:
    if isinstance(cycle.transport, _HeadWithBody):
        return  # a pipelined request's cycle, started a second time: never
    held = _HeadWithBody(cycle.transport, cycle)
    cycle.transport = held
    done = cycle.on_response

    def on_response() -> None:
        held.flush()  # a response without body bytes (HEAD, 204, empty): its head now
        done()

    cycle.on_response = on_response
