"""Bulk Data Access $export over HTTP: kick-off, status, cancel and download.

GET|POST [base]/$export, [base]/Patient/$export, [base]/Group/{id}/$export
     (Prefer: respond-async; POST with a Parameters body)  -> 202, Content-Location
GET  [base]/$export-status/{job}                  -> 202 + X-Progress | 200 manifest
DELETE [base]/$export-status/{job}                -> 202 (job and files removed)
GET  [base]/$export-file/{job}/{Type}.ndjson      -> application/fhir+ndjson

Kick-off parameters (Bulk Data IG v2): `_outputFormat`, `_since`, `_type`, `_typeFilter`,
and, for POST at Patient and Group level, `patient` (references). A GET takes them from
the query, a POST from the Parameters resource only (its URL carries none).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import check_accept, fhir_json, http_date, read_resource
from phivault.config import Settings
from phivault.errors import BadRequest, UnsupportedSearchParameter
from phivault.fhir.outcome import information
from phivault.service import Service
from phivault.service.export import ExportService

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
_SUPPORTED = frozenset({"_type", "_since", "_outputFormat", "_format", "_typeFilter"})
_POST_VALUES = {
    "_outputFormat": "valueString",
    "_since": "valueInstant",
    "_type": "valueString",
    "_typeFilter": "valueString",
    "patient": "valueReference",
}
RETRY_AFTER_S = "2"
MAX_PARAMETERS_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class KickOff:
    """The kick-off's parameters, from a query string or a Parameters resource."""

    output_format: str = NDJSON
    since: str | None = None
    types: tuple[str, ...] = ()
    type_filters: tuple[str, ...] = ()
    patients: tuple[str, ...] | None = None
    unsupported: tuple[str, ...] = ()


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(t.strip() for v in values for t in v.split(",") if t.strip())


def from_query(params: QueryParams) -> KickOff:
    return KickOff(
        output_format=params.get("_outputFormat", NDJSON),
        since=params.get("_since"),
        types=_split(params.getlist("_type")),
        type_filters=tuple(params.getlist("_typeFilter")),
        unsupported=tuple(sorted(k for k in params if k not in _SUPPORTED)),
    )


def from_parameters(body: Any) -> KickOff:
    """A Parameters resource: each parameter once with its value[x] of the IG's type, but
    _type, _typeFilter and patient may repeat."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("a POST $export takes a Parameters resource")
    found: dict[str, list[Any]] = {}
    unsupported: list[str] = []
    for item in body.get("parameter") or []:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise BadRequest("every parameter of the Parameters resource needs a name")
        key = _POST_VALUES.get(name)
        if key is None:
            unsupported.append(name)
            continue
        value = item.get(key)
        if value is None:
            raise BadRequest(f"the {name} parameter takes {key}")
        found.setdefault(name, []).append(value)
    for name in ("_outputFormat", "_since"):
        if len(found.get(name, [])) > 1:
            raise BadRequest(f"the {name} parameter may be given once")
    patients: tuple[str, ...] | None = None
    if "patient" in found:
        ids = []
        for ref in found["patient"]:
            reference = ref.get("reference") if isinstance(ref, dict) else None
            kind, slash, rid = str(reference or "").partition("/")
            if kind != "Patient" or not slash or not rid:
                raise BadRequest("patient takes references of the form Patient/id")
            ids.append(rid)
        patients = tuple(ids)
    strings = {n: [str(v) for v in found.get(n, [])] for n in ("_type", "_typeFilter")}
    return KickOff(
        output_format=str(found["_outputFormat"][0]) if "_outputFormat" in found else NDJSON,
        since=str(found["_since"][0]) if "_since" in found else None,
        types=_split(strings["_type"]),
        type_filters=tuple(strings["_typeFilter"]),
        patients=patients,
        unsupported=tuple(sorted(set(unsupported))),
    )


class ExportRoutes(FhirRoutes):
    def __init__(self, service: Service, settings: Settings) -> None:
        super().__init__(service, settings)
        self.exports = ExportService(service, settings.data_dir)

    def routes(self) -> list[Route]:
        base = self.settings.base_path
        get_post = ["GET", "POST"]
        return [
            Route(f"{base}/$export", self.system, methods=get_post),
            Route(f"{base}/$export-status/{{job}}", self.status, methods=["GET"]),
            Route(f"{base}/$export-status/{{job}}", self.cancel, methods=["DELETE"]),
            Route(f"{base}/$export-file/{{job}}/{{name}}", self.download, methods=["GET"]),
            Route(f"{base}/Patient/$export", self.patient, methods=get_post),
            Route(f"{base}/Group/{{gid}}/$export", self.group, methods=get_post),
        ]

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
        if request.method == "POST":
            if request.url.query:
                raise BadRequest("a POST $export takes its parameters in the body only")
            body = await read_resource(request, MAX_PARAMETERS_BYTES)
            asked = from_parameters(body)
        else:
            asked = from_query(request.query_params)
        if asked.unsupported and "handling=lenient" not in prefer:
            shown = [k if k.replace("_", "").isalnum() else "(invalid)" for k in asked.unsupported]
            raise UnsupportedSearchParameter(
                "unsupported $export parameter: " + ", ".join(shown[:5])
            )
        if asked.output_format not in OUTPUT_FORMATS:
            raise BadRequest("_outputFormat: only application/fhir+ndjson is supported")
        ctx = self.context(request)
        job_id = await run_in_threadpool(
            lambda: self.exports.kick_off(
                ctx,
                level=level,
                request_url=self._request_url(request),
                group_id=group_id,
                types=asked.types or None,
                since=asked.since,
                type_filters=asked.type_filters,
                patients=asked.patients,
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
            headers["Expires"] = http_date(state.expires)
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
