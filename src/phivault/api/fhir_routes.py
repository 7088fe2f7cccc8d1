"""FHIR RESTful interactions under the base path: one handler per interaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from phivault.api import read_ahead
from phivault.api.held import held
from phivault.api.http import (
    as_resource,
    check_accept,
    fhir_json,
    parse_etag,
    prefer_return,
    read_headers,
    read_resource,
    version_headers,
)
from phivault.api.worker_threads import run_blocking
from phivault.config import Settings
from phivault.errors import BadRequest, MethodNotAllowed
from phivault.fhir.bundles import HistoryItem, history_bundle
from phivault.fhir.capability import capability_statement
from phivault.fhir.outcome import information
from phivault.fhir.resources import small_int
from phivault.service import Context, Service, Version, WriteResult

_BASE_URLS_KEPT = 256
T = TypeVar("T")


class FhirRoutes:
    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        # A point read on SQLite (WAL: readers never wait for the writer) costs less than
        # the hop to a worker thread; PostgreSQL reads wait on the network and the pool.
        self._read_inline = service.store.backend == "sqlite"
        self._base_urls: dict[tuple[Any, ...], str] = {}

    # -- helpers ------------------------------------------------------------------------
    def base_url(self, request: Request) -> str:
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/")
        # Starlette builds the base URL from these parts of the scope, parsing and
        # formatting a URL on every call: the answer is kept per distinct set of parts.
        scope = request.scope
        host = next((value for name, value in scope["headers"] if name == b"host"), None)
        root = scope.get("app_root_path", scope.get("root_path", ""))
        server = scope.get("server")
        key = (scope.get("scheme", "http"), tuple(server) if server else None, root, host)
        found = self._base_urls.get(key)
        if found is None:
            found = str(request.base_url).rstrip("/") + self.settings.base_path
            if len(self._base_urls) >= _BASE_URLS_KEPT:
                self._base_urls.clear()  # Host headers are the client's choice: bounded
            self._base_urls[key] = found
        return found

    def context(self, request: Request) -> Context:
        ctx = request.scope.get("phivault.context")
        if isinstance(ctx, Context):
            return ctx
        client = request.client.host if request.client else None
        return Context(actor="anonymous", client=client)

    def _count(self, request: Request) -> int:
        raw = request.query_params.get("_count")
        if raw is None:
            return self.settings.default_page_size
        count = small_int(raw)
        if count is None:
            raise BadRequest("_count must be a non-negative integer")
        return max(1, min(count, self.settings.max_page_size))

    def _version_response(self, version: Version, status: int = 200) -> Response:
        headers = read_headers(version.version, version.last_updated)
        return fhir_json(version.body or b"", status=status, headers=headers)

    def _write_response(self, request: Request, result: WriteResult) -> Response:
        v = result.version
        headers = version_headers(self.base_url(request), v.rtype, v.rid, v.version, v.last_updated)
        status = 201 if result.created else 200
        choice = prefer_return(request)
        if choice == "minimal":
            return Response(status_code=status, headers=headers)
        if choice == "operationoutcome":
            word = "created" if result.created else ("updated" if result.changed else "matched")
            return fhir_json(
                information(f"{v.rtype}/{v.rid} {word}"), status=status, headers=headers
            )
        return fhir_json(v.body or b"", status=status, headers=headers)

    async def released(self, work: Callable[[], T], *, inline: bool = False) -> T:
        """Run `work` (a read, a search, `$everything`), and hand its answer over only once
        every audit entry it made (the access, or the refusal) is durable (api/held.py).

        `inline` runs the work on the event loop itself, for work cheaper than the hop to
        a worker thread and back."""
        audit = self.service.audit
        outcome = held(audit, work) if inline else await run_blocking(held, audit, work)
        return await outcome.released()

    def capability_statement(self, request: Request) -> dict[str, Any]:
        """The CapabilityStatement as this server's settings make it."""
        return capability_statement(
            self.base_url(request),
            max_conditional_deletes=self.settings.max_conditional_deletes,
        )

    # -- interactions -------------------------------------------------------------------
    async def metadata(self, request: Request) -> Response:
        check_accept(request)
        return fhir_json(self.capability_statement(request))

    async def read(self, request: Request) -> Response:
        check_accept(request)
        p = request.path_params
        early = read_ahead.answered(request.scope, p["rtype"], p["rid"])
        if early is not None:  # read where the token was checked: release it here
            return self._version_response(await early.released())
        ctx = self.context(request)
        ahead = read_ahead.taken(request.scope, p["rtype"], p["rid"])
        version = await self.released(
            lambda: self.service.read(ctx, p["rtype"], p["rid"], ahead), inline=self._read_inline
        )
        return self._version_response(version)

    async def vread(self, request: Request) -> Response:
        check_accept(request)
        p = request.path_params
        vid = small_int(p["vid"])
        if vid is None:
            raise BadRequest("version ids are positive integers")
        ctx = self.context(request)
        number = int(vid)
        version = await self.released(
            lambda: self.service.vread(ctx, p["rtype"], p["rid"], number), inline=self._read_inline
        )
        return self._version_response(version)

    async def create(self, request: Request) -> Response:
        check_accept(request)
        rtype = request.path_params["rtype"]
        body = as_resource(await read_resource(request, self.settings.max_body_bytes))
        result = await run_in_threadpool(
            lambda: self.service.create(
                self.context(request),
                rtype,
                body,
                if_none_exist=request.headers.get("if-none-exist"),
            )
        )
        return self._write_response(request, result)

    async def update(self, request: Request) -> Response:
        check_accept(request)
        p = request.path_params
        body = as_resource(await read_resource(request, self.settings.max_body_bytes))
        if_match = parse_etag(request.headers.get("if-match"))
        result = await run_in_threadpool(
            lambda: self.service.update(
                self.context(request), p["rtype"], p["rid"], body, if_match=if_match
            )
        )
        return self._write_response(request, result)

    async def conditional_update(self, request: Request) -> Response:
        check_accept(request)
        rtype = request.path_params["rtype"]
        query = request.url.query
        if not query:
            raise MethodNotAllowed("PUT needs a resource id or a search condition")
        body = as_resource(await read_resource(request, self.settings.max_body_bytes))
        if_match = parse_etag(request.headers.get("if-match"))
        result = await run_in_threadpool(
            lambda: self.service.conditional_update(
                self.context(request), rtype, query, body, if_match=if_match
            )
        )
        return self._write_response(request, result)

    async def delete(self, request: Request) -> Response:
        check_accept(request)
        p = request.path_params
        result = await run_in_threadpool(
            self.service.delete, self.context(request), p["rtype"], p["rid"]
        )
        headers = {"ETag": f'W/"{result.version.version}"'} if result else {}
        return Response(status_code=204, headers=headers)

    async def history(self, request: Request) -> Response:
        check_accept(request)
        p = request.path_params
        rtype: str | None = p.get("rtype")
        rid: str | None = p.get("rid")
        count = self._count(request)
        raw_cursor = request.query_params.get("_cursor")
        cursor = small_int(raw_cursor) if raw_cursor else None
        if raw_cursor is not None and cursor is None:
            raise BadRequest("invalid paging cursor")
        since = request.query_params.get("_since")
        page = await run_in_threadpool(
            lambda: self.service.history(
                self.context(request), rtype, rid, since=since, count=count, cursor=cursor
            )
        )
        base = self.base_url(request)
        path = "/".join(x for x in (base, rtype, rid, "_history") if x)
        keep: dict[str, Any] = {"_count": count}
        if since:
            keep["_since"] = since
        links = {"self": f"{path}?{urlencode({**keep, **({'_cursor': cursor} if cursor else {})})}"}
        if page.next_cursor is not None:
            links["next"] = f"{path}?{urlencode({**keep, '_cursor': page.next_cursor})}"
        items = [
            HistoryItem(
                rtype=v.rtype,
                rid=v.rid,
                version=v.version,
                last_updated=v.last_updated,
                deleted=v.deleted,
                body=v.body,
                method=v.method,
            )
            for v in page.items
        ]
        return fhir_json(history_bundle(base, items, page.total, links))
