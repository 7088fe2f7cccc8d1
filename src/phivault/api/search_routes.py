"""FHIR search over HTTP: GET /{type}?..., POST /{type}/_search, system-level search
GET /?_type=...&... and POST /_search, Patient compartment search
GET /Patient/{id}/{type}?..., and the search-driven conditional delete DELETE /{type}?...

`create_app` registers these before the generic `{rtype}/{rid}` routes. Type segments
only match resource-type-shaped names (`{rtype:fhirtype}`), so `_history`, `metadata`,
`Patient/{id}/_history` and `Patient/{id}/$everything` still reach their own handlers.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import check_accept, fhir_json, query_text
from phivault.errors import (
    BadRequest,
    InvalidSearchParameter,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from phivault.fhir import json as fhirjson
from phivault.fhir.bundles import searchset_bundle
from phivault.fhir.outcome import information, issue, operation_outcome
from phivault.fhir.search.query import MAX_PARAMS
from phivault.service.search import SearchResult

MAX_FORM_BYTES = 256 * 1024
_FORM = "application/x-www-form-urlencoded"


class ResourceTypeConvertor(Convertor[str]):
    regex = "[A-Z][A-Za-z]{1,63}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fhirtype", ResourceTypeConvertor())


def query_pairs(text: str) -> list[tuple[str, str]]:
    """(name, value) pairs of a query string or form body, bounded."""
    try:
        # one spare field, so that "too many" is reported by the search parser's own check
        return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARAMS + 1)
    except ValueError:
        raise InvalidSearchParameter(f"more than {MAX_PARAMS} search parameters") from None


def handling_strict(request: Request) -> bool:
    """`Prefer: handling=strict` (lenient is the default)."""
    for part in re.split(r"[,;]", request.headers.get("prefer", "")):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "handling":
            return value.strip().strip('"').lower() == "strict"
    return False


class SearchRoutes:
    def __init__(self, fhir: FhirRoutes) -> None:
        self.fhir = fhir
        self.service = fhir.service
        self.settings = fhir.settings

    def routes(self) -> list[Route]:
        base = self.settings.base_path
        return [
            Route(base, self.system_get, methods=["GET"]),
            Route(f"{base}/", self.system_get, methods=["GET"]),
            Route(f"{base}/_search", self.system_post, methods=["POST"]),
            Route(f"{base}/{{rtype:fhirtype}}/_search", self.search_post, methods=["POST"]),
            Route(f"{base}/Patient/{{pid}}/{{ctype:fhirtype}}", self.compartment, methods=["GET"]),
            Route(f"{base}/{{rtype:fhirtype}}", self.search_get, methods=["GET"]),
            Route(f"{base}/{{rtype:fhirtype}}", self.conditional_delete, methods=["DELETE"]),
        ]

    # -- handlers -----------------------------------------------------------------------------
    async def search_get(self, request: Request) -> Response:
        check_accept(request)
        rtype = request.path_params["rtype"]
        return await self._run(request, rtype, query_pairs(query_text(request)), None)

    async def search_post(self, request: Request) -> Response:
        check_accept(request)
        pairs = await self._form_pairs(request)
        return await self._run(request, request.path_params["rtype"], pairs, None)

    async def system_get(self, request: Request) -> Response:
        check_accept(request)
        return await self._run_system(request, query_pairs(query_text(request)))

    async def system_post(self, request: Request) -> Response:
        check_accept(request)
        return await self._run_system(request, await self._form_pairs(request))

    async def _form_pairs(self, request: Request) -> list[tuple[str, str]]:
        """The query's pairs and the form body's, in that order."""
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != _FORM:
            raise UnsupportedMediaType(f"_search takes {_FORM}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise PayloadTooLarge()
        try:
            form = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the form is not UTF-8") from None
        return query_pairs(query_text(request)) + query_pairs(form)

    async def _run_system(self, request: Request, pairs: list[tuple[str, str]]) -> Response:
        base = self.fhir.base_url(request)
        strict = handling_strict(request)
        result = await self.fhir.released(
            lambda: self.service.search_system(
                self.fhir.context(request),
                pairs,
                strict=strict,
                default_count=self.settings.default_page_size,
                max_count=self.settings.max_page_size,
                base_url=base,
            )
        )
        return fhir_json(searchset(base, base, result))

    async def compartment(self, request: Request) -> Response:
        check_accept(request)
        p = request.path_params
        pairs = query_pairs(query_text(request))
        return await self._run(request, p["ctype"], pairs, p["pid"])

    async def conditional_delete(self, request: Request) -> Response:
        """0 matches: 200 with an OperationOutcome; 1: deleted, 204; several: 412 unless
        `max_conditional_deletes` allows them (then all deleted, 200 with the count)."""
        check_accept(request)
        rtype = request.path_params["rtype"]
        query = query_text(request)
        if not query:
            raise MethodNotAllowed("DELETE needs a resource id or a search condition")
        ctx = self.fhir.context(request)
        most = self.settings.max_conditional_deletes
        results = await run_in_threadpool(
            lambda: self.service.conditional_delete(ctx, rtype, query, max_matches=most)
        )
        if not results:
            return fhir_json(information("no resource matched the condition; nothing deleted"))
        if len(results) == 1:
            first = results[0]
            headers = {"ETag": f'W/"{first.version.version}"'} if first else {}
            return Response(status_code=204, headers=headers)
        return fhir_json(information(f"{len(results)} {rtype} resources deleted"))

    async def _run(
        self,
        request: Request,
        rtype: str,
        pairs: list[tuple[str, str]],
        patient: str | None,
    ) -> Response:
        base = self.fhir.base_url(request)
        strict = handling_strict(request)
        result = await self.fhir.released(
            lambda: self.service.search(
                self.fhir.context(request),
                rtype,
                pairs,
                strict=strict,
                default_count=self.settings.default_page_size,
                max_count=self.settings.max_page_size,
                base_url=base,
                compartment=patient,
            )
        )
        path = f"{base}/Patient/{patient}/{rtype}" if patient is not None else f"{base}/{rtype}"
        return fhir_json(searchset(base, path, result))


def searchset(base: str, path: str, result: SearchResult) -> bytes:
    """The Bundle: matches, included resources, links, and what was ignored."""
    kept = [(k, v) for k, v in result.request.used if k != "_cursor"]

    def link(cursor: str | None) -> str:
        pairs = kept + ([("_cursor", cursor)] if cursor else [])
        return f"{path}?{urlencode(pairs)}" if pairs else path

    links = {"self": link(result.request.cursor)}
    if result.next_cursor is not None:
        links["next"] = link(result.next_cursor)
    if result.previous_cursor is not None:
        links["previous"] = link(result.previous_cursor)
    outcome = None
    if result.warnings:
        issues = [issue("warning", "not-supported", w) for w in result.warnings]
        outcome = fhirjson.dumps(operation_outcome(issues))
    return searchset_bundle(
        base,
        [(e.rtype, e.rid, e.body) for e in result.matches],
        result.total,
        links,
        outcome,
        [(e.rtype, e.rid, e.body) for e in result.included],
    )
