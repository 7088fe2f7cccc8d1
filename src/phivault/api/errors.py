"""The one outer layer that turns errors into OperationOutcome responses."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from phivault.api.http import fhir_json
from phivault.api.middleware.security_headers import HEADERS as SECURITY_HEADERS
from phivault.errors import PhivaultError
from phivault.fhir.outcome import issue, operation_outcome

log = logging.getLogger("phivault.api")


def outcome_response(error: PhivaultError) -> Response:
    body = operation_outcome([issue("error", error.issue_code, error.message, error.expression)])
    return fhir_json(body, status=error.http_status)


async def phivault_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PhivaultError)
    if exc.http_status >= 500:
        # Class name only: messages are PHI-free by contract, but the log stays minimal.
        log.warning("request failed: %s %s", type(exc).__name__, request.method)
    return outcome_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    message = {404: "no such endpoint", 405: "method not allowed"}.get(
        exc.status_code, "request failed"
    )
    return fhir_json(operation_outcome([issue("error", code, message)]), status=exc.status_code)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # Never echo the exception: its text may hold PHI or internals. The type is enough to
    # find it in a debugger; the full trace is deliberately not logged.
    log.error("unexpected error: %s", type(exc).__name__)
    response = fhir_json(
        operation_outcome([issue("fatal", "exception", "internal server error")]), status=500
    )
    # Starlette answers unexpected errors outside the middleware stack, so the security
    # headers are added here too.
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    return response
