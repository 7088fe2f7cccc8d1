"""The HTTP/1.1 connection guard `phivault serve` runs uvicorn with.

uvicorn's httptools protocol has no deadline for a request's head and no bound on its
size: a client that trickles header lines (slowloris) or sends megabytes of headers holds
a connection and memory for as long as it likes. This protocol adds both, before the
request reaches the app:

- the request line and headers must arrive within `header_timeout_s` of the connection
  opening (or of the first bytes of a later request on a kept-alive connection): 408 and
  the connection is closed;
- the request target may hold at most `max_url_bytes` (414), the headers at most
  `max_header_bytes` and `max_header_count` (431);
- any request the HTTP parser refuses gets a 400 OperationOutcome instead of plain text,
  and one beyond `max_connections` a 503 OperationOutcome.

It builds on HeadWithBodyProtocol (api/one_write.py): a response's head and body leave
in one write.

Limits come from the data directory's settings; `configure` is called by the ASGI
factory (api/asgi.py) in each worker process before it accepts connections.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable

from phivault.api.errors import outcome_response
from phivault.api.middleware.security_headers import HEADERS as SECURITY_HEADERS
from phivault.api.one_write import HeadWithBodyProtocol
from phivault.config import Settings
from phivault.errors import (
    BadRequest,
    HeadersTooLarge,
    PhivaultError,
    RequestTimeout,
    ServerBusy,
    UriTooLong,
)
from phivault.fhir import json as fhirjson
from phivault.fhir.outcome import issue, operation_outcome


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float
    max_url_bytes: int
    max_header_bytes: int
    max_header_count: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
        )


_limits = ConnectionLimits.of(Settings(data_dir=Path()))


def configure(settings: Settings) -> None:
    global _limits
    _limits = ConnectionLimits.of(settings)


class _Refused(Exception):
    """Stops the HTTP parser once the request has been answered."""


def error_bytes(error: PhivaultError) -> bytes:
    """A complete HTTP/1.1 response holding the error's OperationOutcome; closes."""
    body = fhirjson.dumps(
        operation_outcome([issue("error", error.issue_code, error.message, error.expression)])
    )
    reason = {400: b"Bad Request", 408: b"Request Timeout", 414: b"URI Too Long"}.get(
        error.http_status, b"Request Header Fields Too Large"
    )
    head = [
        b"HTTP/1.1 %d %s" % (error.http_status, reason),
        b"content-type: application/fhir+json",
        b"content-length: %d" % len(body),
        b"connection: close",
        *(name + b": " + value for name, value in SECURITY_HEADERS),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedHttpToolsProtocol(HeadWithBodyProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._answered = False

    # -- the head deadline ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # uvicorn's keep-alive timer closes a connection idle between requests; once the
        # first bytes of a next request arrive, that timer stops and this one starts.
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        super().data_received(data)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self._limits.header_timeout_s, self._head_timed_out
            )

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; its head arrived in time
        self._answer(RequestTimeout("the request headers were not received in time"))

    # -- over the connection limit ---------------------------------------------------------
    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # uvicorn answers requests beyond `limit_concurrency` (max_connections) with a
        # plain-text 503 of its own; answer them like every other refusal instead.
        chosen: Any = _busy if app is service_unavailable else app
        super()._start_asgi_task(cycle, chosen)

    # -- head size --------------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self._limits.max_url_bytes:
            self._refuse(UriTooLong())
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_count > self._limits.max_header_count:
            self._refuse(HeadersTooLarge("too many request headers"))
        if self._header_bytes > self._limits.max_header_bytes:
            self._refuse(HeadersTooLarge())
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn when the parser fails, including after _refuse stopped it.
        if not self._answered:
            self._answer(BadRequest("the HTTP request could not be parsed"))

    def _refuse(self, error: PhivaultError) -> None:
        self._answer(error)
        raise _Refused()

    def _answer(self, error: PhivaultError) -> None:
        self._disarm()
        self._answered = True
        if not self.transport.is_closing():
            self.transport.write(error_bytes(error))
            self.transport.close()


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    response = outcome_response(ServerBusy())
    response.headers["retry-after"] = "1"
    response.headers["connection"] = "close"
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    await response(scope, receive, send)
