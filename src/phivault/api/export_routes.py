"""Bulk Data Access $export over HTTP: kick-off, status, cancel and download.

GET  [base]/$export, [base]/Patient/$export, [base]/Group/{id}/$export
     (Prefer: respond-async)                      -> 202, Content-Location: status URL
GET  [base]/$export-status/{job}                  -> 202 + X-Progress | 200 manifest
DELETE [base]/$export-status/{job}                -> 202 (job and files removed)
GET  [base]/$export-file/{job}/{Type}.ndjson      -> application/fhir+ndjson
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import format_datetime
from itertools import chain
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import check_accept, fhir_json
from phivault.config import Settings
from phivault.errors import BadRequest, UnsupportedSearchParameter
from phivault.fhir.outcome import information
from phivault.fhir.resources import parse_instant
from phivault.service import Service
from phivault.service.export import ExportService

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
_SUPPORTED = frozenset({"_type", "_since", "_outputFormat", "_format"})
RETRY_AFTER_S = "2"


class ExportRoutes(FhirRoutes):
    def __init__(self, service: Service, settings: Settings) -> None:
        super().__init__(service, settings)
        self.exports = ExportService(service, settings.data_dir)

    # -- kick-off -----------------------------------------------------------------------
    async def system(self, request: Request) -> Response:
        return await self._kick_off(request, "system", None)

    async def patient(self, request: Request) -> Response:
        return await self._kick_off(request, "patient", None)

    async def group(self, request: Request) -> Response:
        return await self._kick_off(request, "group", request.path_params["gid"])

    async def _kick_off(self, request: Request, level: str, group_id: str | None) -> Response:
        check_accept(request)
        prefer = _prefer_tokens(request)
        if "respond-async" not in prefer:
            raise BadRequest("$export is asynchronous: send Prefer: respond-async")
        params = request.query_params
        unsupported = sorted(k for k in params if k not in _SUPPORTED)
        if unsupported and "handling=lenient" not in prefer:
            shown = [k if k.replace("_", "").isalnum() else "(invalid)" for k in unsupported]
            raise UnsupportedSearchParameter(
                "unsupported $export parameter: " + ", ".join(shown[:5])
            )
        output_format = params.get("_outputFormat", NDJSON)
        if output_format not in OUTPUT_FORMATS:
            raise BadRequest("_outputFormat: only application/fhir+ndjson is supported")
        raw_types = ",".join(params.getlist("_type"))
        types = [t.strip() for t in raw_types.split(",") if t.strip()] or None
        ctx = self.context(request)
        job_id = await run_in_threadpool(
            lambda: self.exports.kick_off(
                ctx,
                level=level,
                request_url=self._request_url(request),
                group_id=group_id,
                types=types,
                since=params.get("_since"),
            )
        )
        location = f"{self.base_url(request)}/$export-status/{job_id}"
        return fhir_json(
            information("the export was accepted; poll the Content-Location URL"),
            status=202,
            headers={"Content-Location": location},
        )

    def _request_url(self, request: Request) -> str:
        """The kick-off URL as the client sees it (public base URL behind a proxy)."""
        tail = request.url.path[len(self.settings.base_path) :]
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{self.base_url(request)}{tail}{query}"

    # -- status, cancel -----------------------------------------------------------------
    async def status(self, request: Request) -> Response:
        job_id = request.path_params["job"]
        ctx = self.context(request)
        base_url = self.base_url(request)
        state = await run_in_threadpool(self.exports.status, ctx, job_id, base_url)
        if state.manifest is None:
            progress = state.progress or state.state
            return Response(
                status_code=202, headers={"X-Progress": progress, "Retry-After": RETRY_AFTER_S}
            )
        headers: dict[str, str] = {}
        if state.expires:
            headers["Expires"] = format_datetime(parse_instant(state.expires), usegmt=True)
        return JSONResponse(state.manifest, headers=headers)

    async def cancel(self, request: Request) -> Response:
        ctx = self.context(request)
        await run_in_threadpool(self.exports.cancel, ctx, request.path_params["job"])
        return fhir_json(information("the export was cancelled and its files deleted"), 202)

    # -- download -------------------------------------------------------------------------
    async def download(self, request: Request) -> Response:
        p = request.path_params
        ctx = self.context(request)
        chunks = await run_in_threadpool(self.exports.open_file, ctx, p["job"], p["name"])
        # The first chunk is read (and checked) before the response starts, so a missing
        # or damaged file is an OperationOutcome, not a cut connection.
        first = await run_in_threadpool(_first, chunks)
        return StreamingResponse(chain([first], chunks), media_type=NDJSON)


def _first(chunks: Iterator[bytes]) -> bytes:
    return next(chunks, b"")


def _prefer_tokens(request: Request) -> set[str]:
    raw: Any = request.headers.getlist("prefer")
    tokens: set[str] = set()
    for header in raw:
        for part in str(header).split(","):
            tokens.add(part.strip().lower().replace(" ", ""))
    return tokens
