"""GET Patient/{id}/$everything: the patient's record as a paged searchset."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import check_accept, fhir_json
from phivault.errors import BadRequest
from phivault.fhir.bundles import searchset_bundle
from phivault.service.everything import EverythingQuery, everything

# The operation's care-date window: refused rather than ignored, because ignoring a
# filter would release more of the record than was asked for.
_UNSUPPORTED = ("start", "end")


class EverythingRoutes(FhirRoutes):
    async def everything(self, request: Request) -> Response:
        check_accept(request)
        rid = request.path_params["rid"]
        params = request.query_params
        for name in _UNSUPPORTED:
            if name in params:
                raise BadRequest(f"$everything does not support the {name} parameter")
        raw_types = params.get("_type")
        types = [t.strip() for t in raw_types.split(",") if t.strip()] if raw_types else None
        query = EverythingQuery(
            count=self._count(request),
            cursor=params.get("_cursor"),
            since=params.get("_since"),
            types=types,
        )
        ctx = self.context(request)
        page = await self.released(lambda: everything(self.service, ctx, rid, query))
        base = self.base_url(request)
        path = f"{base}/Patient/{rid}/$everything"
        keep: dict[str, str | int] = {"_count": query.count}
        if query.since:
            keep["_since"] = query.since
        if raw_types:
            keep["_type"] = raw_types
        links = {"self": f"{path}?{urlencode({**keep, **_cursor(query.cursor)})}"}
        if page.next_cursor is not None:
            links["next"] = f"{path}?{urlencode({**keep, '_cursor': page.next_cursor})}"
        matches = [(v.rtype, v.rid, v.body or b"{}") for v in page.matches]
        includes = [(v.rtype, v.rid, v.body or b"{}") for v in page.includes]
        return fhir_json(searchset_bundle(base, matches, page.total, links, included=includes))


def _cursor(cursor: str | None) -> dict[str, str]:
    return {"_cursor": cursor} if cursor else {}
