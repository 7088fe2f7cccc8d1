"""The admin API for alerts: /admin/alerts (list), /admin/alerts/{id} (one, with its
evidence entries), POST .../acknowledge and .../resolve.

Admin role only: a bearer token for a user holding `admin`. Every call, refused ones
included, is an audit entry. These routes live outside the FHIR base, so they check the
token themselves with the same access layer the FHIR middleware uses.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from phivault.access.principal import ADMIN, Principal
from phivault.access.runtime import AccessControl
from phivault.audit.events import MINOR_FAILURE, AccessEvent
from phivault.detect.alerts import AUDIT_READ, AlertStore
from phivault.errors import BadRequest, Forbidden, InvalidToken, PhivaultError
from phivault.store.base import Store

PREFIX = "/admin/alerts"
_NO_STORE = {"Cache-Control": "no-store"}


class AlertRoutes:
    def __init__(self, access: AccessControl, store: Store) -> None:
        self.access = access
        self.alerts = AlertStore(store, access.audit, time.time)

    def routes(self) -> list[Route]:
        return [
            Route(PREFIX, self.list_alerts, methods=["GET"]),
            Route(PREFIX + "/{alert_id}", self.show, methods=["GET"]),
            Route(PREFIX + "/{alert_id}/acknowledge", self.acknowledge, methods=["POST"]),
            Route(PREFIX + "/{alert_id}/resolve", self.resolve, methods=["POST"]),
        ]

    async def _admin(self, request: Request, action: str) -> Principal:
        """The calling admin; InvalidToken (401) or Forbidden (403), audited, otherwise."""
        address = request.client.host if request.client else None
        kind, _, token = request.headers.get("authorization", "").partition(" ")
        actor = "anonymous"
        try:
            if kind.lower() != "bearer" or not token.strip():
                raise InvalidToken()
            principal = await to_thread.run_sync(self.access.principal, token.strip())
            actor = principal.subject
            if ADMIN not in principal.roles:
                raise Forbidden("alerts are for the admin role")
        except PhivaultError as exc:
            await to_thread.run_sync(self._refused, actor, address, action, type(exc).__name__)
            raise
        return principal

    def _refused(self, actor: str, address: str | None, action: str, error: str) -> None:
        self.access.audit.record(
            AccessEvent(
                action=action, outcome=MINOR_FAILURE, actor=actor, client=address, detail=error
            )
        )

    async def list_alerts(self, request: Request) -> JSONResponse:
        admin = await self._admin(request, AUDIT_READ)
        query = request.query_params
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise BadRequest("limit must be a number") from None

        def run() -> list[dict[str, Any]]:
            found = self.alerts.list_alerts(
                status=query.get("status"), severity=query.get("severity"), limit=limit
            )
            self.alerts.audit_read(admin.subject, _address(request), "list")
            return [a.as_json() for a in found]

        return JSONResponse({"alerts": await to_thread.run_sync(run)}, headers=_NO_STORE)

    async def show(self, request: Request) -> JSONResponse:
        admin = await self._admin(request, AUDIT_READ)
        alert_id = request.path_params["alert_id"]

        def run() -> dict[str, Any]:
            alert = self.alerts.get(alert_id)
            self.alerts.audit_read(admin.subject, _address(request), alert_id)
            body = alert.as_json()
            body["evidence_entries"] = [
                {"index": i, "entry": e} for i, e in self.alerts.evidence_entries(alert)
            ]
            return body

        return JSONResponse(await to_thread.run_sync(run), headers=_NO_STORE)

    async def acknowledge(self, request: Request) -> JSONResponse:
        admin = await self._admin(request, "alert-acknowledge")
        note = await _note(request)
        alert_id = request.path_params["alert_id"]

        def run() -> dict[str, Any]:
            return self.alerts.acknowledge(alert_id, admin.subject, note).as_json()

        return JSONResponse(await to_thread.run_sync(run), headers=_NO_STORE)

    async def resolve(self, request: Request) -> JSONResponse:
        admin = await self._admin(request, "alert-resolve")
        note = await _note(request)
        alert_id = request.path_params["alert_id"]

        def run() -> dict[str, Any]:
            return self.alerts.resolve(alert_id, admin.subject, note or "").as_json()

        return JSONResponse(await to_thread.run_sync(run), headers=_NO_STORE)


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _note(request: Request) -> str | None:
    """The optional {"note": "..."} JSON body."""
    raw = await request.body()
    if len(raw) > 16_384:
        raise BadRequest("the request body is too large")
    if not raw.strip():
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest('the body must be JSON: {"note": "..."}') from None
    note = body.get("note") if isinstance(body, dict) else None
    if note is not None and not isinstance(note, str):
        raise BadRequest("note must be a string")
    return note
