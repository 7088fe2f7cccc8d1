"""POST to the base URL: batch and transaction Bundles."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import as_resource, check_accept, fhir_json, prefer_return, read_resource
from phivault.service.bundles import BundleProcessor


class BundleRoutes:
    def __init__(self, fhir: FhirRoutes) -> None:
        self.fhir = fhir

    async def bundle(self, request: Request) -> Response:
        check_accept(request)
        body = as_resource(await read_resource(request, self.fhir.settings.max_body_bytes))
        ctx = self.fhir.context(request)
        base_url = self.fhir.base_url(request)
        prefer = prefer_return(request)
        processor = BundleProcessor(self.fhir.service)
        result = await run_in_threadpool(
            lambda: processor.process(ctx, body, base_url=base_url, prefer=prefer)
        )
        return fhir_json(result)
