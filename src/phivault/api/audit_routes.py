"""HTTP for the audit log: the AuditEvent view under the FHIR base, and the verification
endpoints outside it (`/audit/...`: checkpoint, public key, proofs, raw leaves).

Register these before the generic `/fhir/{rtype}` routes: every method of
`/fhir/AuditEvent...` must land here, so that writes are refused (405) instead of being
stored as resources that could contradict the log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from phivault.access.policy import AllowAll
from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import check_accept, fhir_json
from phivault.audit.checkpoint import public_key_document
from phivault.audit.events import AccessEvent
from phivault.audit.log import AuditLog
from phivault.audit.reader import LogReader, b64
from phivault.config import Settings
from phivault.errors import AuditUnavailable, BadRequest, MethodNotAllowed, NotFound, Unauthorized
from phivault.fhir.bundles import searchset_bundle
from phivault.fhir.resources import small_int
from phivault.service import Service, authorize
from phivault.service.audit_view import AUDIT_EVENT, AuditView

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
JSON = "application/json"
_READ_ONLY = "AuditEvent is a view of the audit log: it cannot be created, changed or deleted"


def _json(content: Any) -> Response:
    body = content if isinstance(content, bytes) else orjson.dumps(content)
    return Response(body, media_type=JSON, headers={"Cache-Control": "no-store"})


def _int(request: Request, name: str, *, required: bool = True) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    value = small_int(raw)
    if value is None:
        raise BadRequest(f"{name} must be a non-negative integer")
    return value


class AuditRoutes:
    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.fhir = FhirRoutes(service, settings)
        self.view = AuditView(service)

    @property
    def reader(self) -> LogReader:
        return LogReader(self.service.store)

    def routes(self) -> list[Route]:
        base = self.settings.base_path
        return [
            Route(f"{base}/{AUDIT_EVENT}", self.events, methods=ALL_METHODS),
            Route(f"{base}/{AUDIT_EVENT}/{{rest:path}}", self.event, methods=ALL_METHODS),
            Route(f"{base}/Patient/{{pid}}/{AUDIT_EVENT}", self.patient_events, methods=["GET"]),
            Route("/audit/checkpoint", self.checkpoint, methods=["GET"]),
            Route("/audit/public-key", self.public_key, methods=["GET"]),
            Route("/audit/proof/inclusion", self.inclusion, methods=["GET"]),
            Route("/audit/proof/consistency", self.consistency, methods=["GET"]),
            Route("/audit/leaves", self.leaves, methods=["GET"]),
        ]

    def _log(self) -> AuditLog:
        audit = self.service.audit
        if not isinstance(audit, AuditLog) or audit.signer is None:
            raise AuditUnavailable("this server has no signed audit log")
        return audit

    # -- AuditEvent (FHIR) ------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        if request.method != "GET":
            raise MethodNotAllowed(_READ_ONLY)
        return await self._search(request, [])

    async def patient_events(self, request: Request) -> Response:
        return await self._search(request, [("patient", f"Patient/{request.path_params['pid']}")])

    async def _search(self, request: Request, fixed: list[tuple[str, str]]) -> Response:
        check_accept(request)
        count = self.fhir._count(request)
        cursor = _int(request, "_cursor", required=False)
        pairs = [*request.query_params.multi_items(), *fixed]
        ctx = self.fhir.context(request)
        page = await run_in_threadpool(
            lambda: self.view.search(ctx, pairs, count=count, cursor=cursor)
        )
        base = self.fhir.base_url(request)
        keep = [(k, v) for k, v in request.query_params.multi_items() if k[:2] != "_c"]
        path = base + request.url.path.removeprefix(self.settings.base_path)
        keep.append(("_count", str(count)))
        links = {"self": f"{path}?{urlencode(keep)}"}
        if page.next_cursor is not None:
            links["next"] = f"{path}?{urlencode([*keep, ('_cursor', str(page.next_cursor))])}"
        matches = [(AUDIT_EVENT, e["id"], orjson.dumps(e)) for e in page.events]
        return fhir_json(searchset_bundle(base, matches, None, links))

    async def event(self, request: Request) -> Response:
        if request.method != "GET":
            raise MethodNotAllowed(_READ_ONLY)
        check_accept(request)
        parts = request.path_params["rest"].split("/")
        if len(parts) == 3 and parts[1] == "_history":
            if parts[2] != "1":  # an entry never changes: version 1 is its only version
                raise NotFound("AuditEvent version is not known")
            parts = parts[:1]
        if len(parts) != 1 or not parts[0]:
            raise NotFound("no such AuditEvent endpoint")
        ctx = self.fhir.context(request)
        event = await run_in_threadpool(self.view.read, ctx, parts[0])
        return fhir_json(event, headers={"ETag": 'W/"1"'})

    # -- verification material ------------------------------------------------------------
    # Open to anyone who can reach the server (today: loopback only): checkpoints, the
    # public key and proofs hold sizes and hashes, never an entry, and witnesses outside
    # the clinic must be able to fetch them without an account.

    async def checkpoint(self, request: Request) -> Response:
        log = self._log()

        def latest() -> bytes | None:
            return self.reader.latest_checkpoint() or log.checkpoint()

        blob = await run_in_threadpool(latest)
        if blob is None:
            raise NotFound("the audit log is empty: no checkpoint yet")
        return _json(blob)

    async def public_key(self, request: Request) -> Response:
        signer = self._log().signer
        assert signer is not None
        return _json(public_key_document(signer.public_key))

    async def inclusion(self, request: Request) -> Response:
        index = _int(request, "index")
        size = _int(request, "size", required=False)
        assert index is not None
        return _json(await run_in_threadpool(self.reader.inclusion, index, size))

    async def consistency(self, request: Request) -> Response:
        first = _int(request, "first")
        second = _int(request, "second", required=False)
        assert first is not None
        return _json(await run_in_threadpool(self.reader.consistency, first, second))

    async def leaves(self, request: Request) -> Response:
        start = _int(request, "from")
        stop = _int(request, "to")
        assert start is not None and stop is not None
        ctx = self.fhir.context(request)

        def read() -> list[bytes]:
            # The entries themselves: auditors only (the policy's AuditEvent rules), and
            # the access is audited like any other read of the log. With access control
            # on, a caller without a principal is refused outright: the bearer middleware
            # only authenticates paths it protects (/audit/leaves must be listed there
            # for auditors to use it; until then they read /fhir/AuditEvent).
            if ctx.principal is None and not isinstance(self.service.policy, AllowAll):
                raise Unauthorized()
            authorize.type_level(self.service, ctx, "search", AUDIT_EVENT)
            entries = self.reader.leaves(start, stop)
            self.service.audit.record(
                AccessEvent(
                    action="audit-leaves",
                    actor=ctx.actor,
                    client=ctx.client,
                    purpose=ctx.purpose,
                    extra={"from": str(start), "to": str(stop)},
                )
            )
            return entries

        entries = await run_in_threadpool(read)
        return _json({"from": start, "to": stop, "entries": [b64(e) for e in entries]})
