"""The ASGI application: routes, middleware and the error layer."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from phivault.access.runtime import AccessControl
from phivault.api import errors
from phivault.api.alert_routes import AlertRoutes
from phivault.api.audit_routes import AuditRoutes
from phivault.api.fhir_routes import FhirRoutes
from phivault.api.interaction_routes import interaction_routes
from phivault.api.middleware.auth import BearerAuth
from phivault.api.middleware.limits import RequestLimits
from phivault.api.middleware.security_headers import SecurityHeaders
from phivault.api.oauth_routes import OAuthRoutes
from phivault.api.openapi import openapi_route
from phivault.api.read_ahead import ReadAheads
from phivault.api.routing import SegmentRouter
from phivault.api.search_routes import SearchRoutes
from phivault.api.smart_metadata import secured_metadata
from phivault.config import Settings
from phivault.errors import PhivaultError
from phivault.service import Service


def create_app(
    service: Service, settings: Settings, access: AccessControl | None = None
) -> Starlette:
    """With `access`, every FHIR route needs a bearer token and the access policy
    decides each interaction; without it (in-process tools, loopback-only serve), neither."""
    fhir = FhirRoutes(service, settings)
    base = settings.base_path
    routes = [
        # AuditEvent (every method: writes are refused, never stored) and /audit/...
        # before anything that could match /fhir/AuditEvent as a generic type.
        *AuditRoutes(service, settings).routes(),
        # Bundles, PATCH, $everything and $export first: the generic {rtype}/{rid}
        # routes below would otherwise match their paths.
        *interaction_routes(service, settings),
        # Search before {rtype}/{rid}: POST {rtype}/_search, GET Patient/{id}/{type}.
        *SearchRoutes(fhir).routes(),
        Route(f"{base}/metadata", fhir.metadata, methods=["GET"]),
        Route("/openapi.json", openapi_route(base), methods=["GET"]),
        Route(f"{base}/_history", fhir.history, methods=["GET"]),
        Route(f"{base}/{{rtype}}/_history", fhir.history, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}/_history/{{vid}}", fhir.vread, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}/_history", fhir.history, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}", fhir.read, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}", fhir.update, methods=["PUT"]),
        Route(f"{base}/{{rtype}}/{{rid}}", fhir.delete, methods=["DELETE"]),
        Route(f"{base}/{{rtype}}", fhir.create, methods=["POST"]),
        Route(f"{base}/{{rtype}}", fhir.conditional_update, methods=["PUT"]),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(RequestLimits, settings=settings)]
    if access is not None:
        service.policy = access.policy
        metadata = Route(f"{base}/metadata", secured_metadata(fhir), methods=["GET"])
        alerts = AlertRoutes(access, service.store).routes()  # /admin/alerts: admins only
        routes = [*OAuthRoutes(access, base).routes(), *alerts, metadata, *routes]
    router = SegmentRouter(routes)  # the plain Router tried every route's regex in turn
    if access is not None:
        # A networked store's read by id: epochs, version and key in one round trip, and
        # the read in the same worker thread as the token check.
        ahead = None
        if not access.store.local_reads:
            ahead = ReadAheads(access, service, base, router, fhir.read)
        middleware.append(Middleware(BearerAuth, access=access, base_path=base, read_ahead=ahead))
    app = Starlette(
        middleware=middleware,
        exception_handlers={
            PhivaultError: errors.phivault_error,
            HTTPException: errors.http_error,
            Exception: errors.unexpected_error,
        },
    )
    app.router = router
    return app
