"""Request limits every route gets: URL and header size, and a deadline for the body.

A request over a limit is answered with an OperationOutcome (414, 431 or 408) before any
route sees it. The body deadline covers slow clients (slowloris-style trickling): the whole
body must arrive within `body_timeout_s` of the first read, or the request is refused and
the connection closed. The server's connection guard (api/connection_limits.py) enforces
the same header limits and a header deadline before the request reaches the app at all;
these checks make the app safe under any ASGI server and in-process clients.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phivault.api.errors import outcome_response
from phivault.config import Settings
from phivault.errors import HeadersTooLarge, PhivaultError, RequestTimeout, UriTooLong


class RequestLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check_head(scope)
        if refusal is not None:
            await _refuse(refusal, scope, receive, send)
            return
        body = _BodyDeadline(receive, self.settings.body_timeout_s)

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and body.timed_out:
                # The rest of the body may still trickle in: do not keep the connection.
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, body.receive, send_closing)

    def _check_head(self, scope: Scope) -> PhivaultError | None:
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(
            scope.get("query_string", b"")
        )
        if target > self.settings.max_url_bytes:
            return UriTooLong()
        headers = scope.get("headers", [])
        if len(headers) > self.settings.max_header_count:
            return HeadersTooLarge("too many request headers")
        if sum(len(n) + len(v) for n, v in headers) > self.settings.max_header_bytes:
            return HeadersTooLarge()
        return None


class _BodyDeadline:
    """`receive` with one deadline for the whole body; disconnect waits are not timed."""

    def __init__(self, receive: Receive, seconds: float) -> None:
        self._receive = receive
        self._seconds = seconds
        self._deadline: float | None = None
        self._body_done = False
        self.timed_out = False

    async def receive(self) -> Message:
        if self._body_done:
            return await self._receive()
        now = anyio.current_time()
        if self._deadline is None:
            self._deadline = now + self._seconds
        try:
            with anyio.fail_after(max(0.0, self._deadline - now)):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            raise RequestTimeout("the request body was not received in time") from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._body_done = True
        return message


async def _refuse(error: PhivaultError, scope: Scope, receive: Receive, send: Send) -> None:
    response = outcome_response(error)
    response.headers["connection"] = "close"
    await response(scope, receive, send)
