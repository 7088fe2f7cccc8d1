"""The ASGI application: routes, middleware and the error layer."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from phivault.api import errors
from phivault.api.fhir_routes import FhirRoutes
from phivault.api.middleware.security_headers import SecurityHeaders
from phivault.config import Settings
from phivault.errors import PhivaultError
from phivault.service import Service


def create_app(service: Service, settings: Settings) -> Starlette:
    fhir = FhirRoutes(service, settings)
    base = settings.base_path
    routes = [
        Route(f"{base}/metadata", fhir.metadata, methods=["GET"]),
        Route(f"{base}/_history", fhir.history, methods=["GET"]),
        Route(f"{base}/{{rtype}}/_history", fhir.history, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}/_history/{{vid}}", fhir.vread, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}/_history", fhir.history, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}", fhir.read, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}", fhir.update, methods=["PUT"]),
        Route(f"{base}/{{rtype}}/{{rid}}", fhir.delete, methods=["DELETE"]),
        Route(f"{base}/{{rtype}}", fhir.create, methods=["POST"]),
        Route(f"{base}/{{rtype}}", fhir.conditional_update, methods=["PUT"]),
        Route(f"{base}/{{rtype}}", fhir.search, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            PhivaultError: errors.phivault_error,
            HTTPException: errors.http_error,
            Exception: errors.unexpected_error,
        },
    )
