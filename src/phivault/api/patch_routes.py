"""PATCH with a JSON Patch document (application/json-patch+json).

FHIRPath Patch (a Parameters resource in application/fhir+json) is not supported and is
refused with 415, as the CapabilityStatement says.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import check_accept, parse_etag, read_resource
from phivault.errors import MethodNotAllowed

JSON_PATCH = "application/json-patch+json"


class PatchRoutes(FhirRoutes):
    async def patch(self, request: Request) -> Response:
        check_accept(request)
        p = request.path_params
        operations = await read_resource(
            request, self.settings.max_body_bytes, media_types={JSON_PATCH}
        )
        if_match = parse_etag(request.headers.get("if-match"))
        ctx = self.context(request)
        result = await run_in_threadpool(
            lambda: self.service.patch(ctx, p["rtype"], p["rid"], operations, if_match=if_match)
        )
        return self._write_response(request, result)

    async def conditional_patch(self, request: Request) -> Response:
        check_accept(request)
        rtype = request.path_params["rtype"]
        query = request.url.query
        if not query:
            raise MethodNotAllowed("PATCH needs a resource id or a search condition")
        operations = await read_resource(
            request, self.settings.max_body_bytes, media_types={JSON_PATCH}
        )
        if_match = parse_etag(request.headers.get("if-match"))
        ctx = self.context(request)
        result = await run_in_threadpool(
            lambda: self.service.conditional_patch(ctx, rtype, query, operations, if_match=if_match)
        )
        return self._write_response(request, result)
