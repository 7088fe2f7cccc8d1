"""Authentication of the FHIR API: a Bearer token becomes the request's service Context.

Every request under the FHIR base path except the CapabilityStatement (and the SMART
configuration) needs a valid access token. Any failure (no token, expired, wrong
audience or issuer, `alg: none`, tampered, another key, revoked session) gets the same
401 OperationOutcome and
`WWW-Authenticate: Bearer error="invalid_token"`, and is audited as a denied access.

Before each request is decided, the access caches are checked against the store's epochs
(AccessControl.refresh), so a revoked session, a removed care relationship or a revoked
Consent takes effect from the next request on. On the event loop, requests that were
already waiting when the epochs were read share that read (`_EpochTurn`). On a networked
store a read by id reads those epochs together with the version it is about to open
(api/read_ahead.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from phivault.access.principal import Principal
from phivault.access.runtime import AccessControl
from phivault.api.errors import outcome_response
from phivault.api.read_ahead import SCOPE_KEY as READ_AHEAD_KEY
from phivault.api.read_ahead import ReadAheads
from phivault.api.worker_threads import run_blocking
from phivault.audit.events import MINOR_FAILURE, AccessEvent
from phivault.errors import InvalidToken, PhivaultError
from phivault.service import Context

CONTEXT_KEY = "phivault.context"
_PUBLIC = ("/metadata", "/.well-known/smart-configuration")
_NEEDS_TOKEN = ("/oauth/break-glass", "/audit/leaves")
_CONTEXTS_KEPT = 16  # per principal: the addresses one token is used from


class BearerAuth:
    def __init__(
        self,
        app: ASGIApp,
        access: AccessControl,
        base_path: str,
        read_ahead: ReadAheads | None = None,
    ) -> None:
        self.app = app
        self.access = access
        self.base_path = base_path.rstrip("/")
        self.read_ahead = read_ahead
        self._turn = _EpochTurn()
        self._local_reads = access.store.local_reads  # the store's kind never changes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not self._protected(path):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else None
        token = _bearer(scope)
        try:
            if token is None:
                raise InvalidToken()
            principal = None
            if self._local_reads:
                # A token seen before costs a dictionary lookup and at most one small read
                # of the cache epochs: cheaper inline than the hop to a worker thread.
                self._turn.refreshed(self.access.refresh)
                principal = self.access.cached(token, refresh=False)
            target = self.read_ahead.target(scope) if self.read_ahead is not None else None
            if target is not None:
                ctx = await run_blocking(self._authenticate_reading, token, address, scope, target)
            else:
                if principal is None:
                    principal = await run_blocking(self.access.authenticate, token)
                ctx = self._context(principal, address)
        except InvalidToken as exc:
            await to_thread.run_sync(self._audit_denied, address)
            response = outcome_response(exc)
            response.headers["WWW-Authenticate"] = 'Bearer realm="phivault", error="invalid_token"'
            await response(scope, receive, send)
            return
        except PhivaultError as exc:
            await outcome_response(exc)(scope, receive, send)
            return
        scope[CONTEXT_KEY] = ctx
        await self.app(scope, receive, send)

    def _context(self, principal: Principal, address: str | None) -> Context:
        """The request's Context: made once per principal and address unless its purpose
        of use depends on the time (break-glass, which ends). The principal stands for its
        token only while the token cache keeps it (a revocation empties the cache), so a
        Context kept with it is never used for a caller it no longer describes."""
        kept = principal.contexts.get(address)
        if isinstance(kept, Context):
            return kept
        made = Context(
            actor=principal.subject,
            client=address,
            purpose=self.access.purpose(principal),
            principal=principal,
        )
        if principal.break_glass_until is None:
            if len(principal.contexts) >= _CONTEXTS_KEPT:
                principal.contexts.clear()  # addresses are the network's choice: bounded
            principal.contexts[address] = made
        return made

    def _authenticate_reading(
        self, token: str, address: str | None, scope: Scope, target: tuple[str, str]
    ) -> Context:
        """`authenticate` with the epochs read along with the version a read by id is
        about to open (api/read_ahead.py). The read itself follows in this thread when
        the read handler is sure to answer the request, its answer held in the scope
        until its audit entry is durable; otherwise the read-ahead is left in the scope
        for whichever handler answers. Nothing is read for a token that fails."""
        assert self.read_ahead is not None
        ahead = self.read_ahead.read(*target)
        principal = self.access.authenticate(token, ahead.epochs)
        ctx = self._context(principal, address)
        if self.read_ahead.answerable(scope, *target):
            self.read_ahead.answer(scope, ctx, ahead)
        else:
            scope[READ_AHEAD_KEY] = ahead
        return ctx

    def _protected(self, path: str) -> bool:
        if path in _NEEDS_TOKEN:
            return True
        if path != self.base_path and not path.startswith(self.base_path + "/"):
            return False
        return path[len(self.base_path) :] not in _PUBLIC

    def _audit_denied(self, address: str | None) -> None:
        self.access.audit.record(
            AccessEvent(
                action="authenticate",
                outcome=MINOR_FAILURE,
                actor="anonymous",
                client=address,
                detail="InvalidToken",
            )
        )


class _EpochTurn:
    """Reads the access epochs for a request decided on the event loop, unless a read
    made on this loop since the request arrived already covers it.

    The guarantee kept is the one a read per request gives: a write committed before a
    request arrived decides that request. Just before a read, `refreshed` has the loop
    clear the mark it sets after it (`call_soon`). The loop runs callbacks in the order
    they were scheduled, from whatever thread, so a request step that finds the mark was
    scheduled before the read began, and its request had arrived by then. A step
    scheduled later runs after the reset and reads the epochs again. So a write the
    client saw committed is never missed: its next request arrives, and is scheduled,
    after the commit. Only requests that had arrived before a write committed can share a
    read made before it: they were concurrent with the write and could as well have been
    decided first.

    The mark is per thread (one loop each), names its loop, and is set only once a read
    succeeded."""

    def __init__(self) -> None:
        self._local = threading.local()

    def refreshed(self, read: Callable[[], None]) -> None:
        """Call `read` (AccessControl.refresh) unless this loop turn has done so."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            read()  # no loop: every request reads for itself
            return
        if getattr(self._local, "loop", None) is loop:
            return
        loop.call_soon(self._expire, loop)  # before the read: see the class docstring
        read()
        self._local.loop = loop  # the loop, not a bool: a stopped loop's mark never counts

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        if getattr(self._local, "loop", None) is loop:
            self._local.loop = None


def _bearer(scope: Scope) -> str | None:
    """The token of the first Authorization header if it is a Bearer one (the scheme in
    any case; spaces and tabs around the token are not part of it)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = bytes(value).partition(b" ")
            if kind.lower() == b"bearer":
                token = token.strip(b" \t")
                if token:
                    return token.decode("latin-1")
            return None
    return None
