"""HTTP details of FHIR's RESTful API: media types, bodies, ETags, Prefer, headers."""

from __future__ import annotations

import functools
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from phivault.errors import (
    BadRequest,
    MalformedJson,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from phivault.fhir import json as fhirjson
from phivault.fhir.resources import parse_instant, small_int
from phivault.types import Resource

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"}
MAX_JSON_DEPTH = 64


def fhir_json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = content if isinstance(content, bytes) else fhirjson.dumps(content)
    return Response(body, status_code=status, headers=headers, media_type=FHIR_JSON)


async def read_resource(
    request: Request, limit: int, *, media_types: set[str] | None = None
) -> Any:
    """Read and parse a JSON body, refusing it early when it is too large or not JSON."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    allowed = media_types or _JSON_TYPES
    if ctype in _XML_TYPES:
        raise UnsupportedMediaType()
    if ctype not in allowed:
        raise UnsupportedMediaType("unsupported media type: send " + " or ".join(sorted(allowed)))
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge()
        except ValueError:
            raise BadRequest("invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise MalformedJson("the request body is empty")
    try:
        parsed = fhirjson.loads(raw)
    except ValueError:
        raise MalformedJson() from None
    _check_depth(parsed)
    return parsed


def _check_depth(value: Any) -> None:
    """Reject absurdly nested JSON before any recursive code walks it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise MalformedJson(f"JSON nesting deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))


def as_resource(value: Any) -> Resource:
    if not isinstance(value, dict):
        raise MalformedJson("the body must be a JSON object holding one FHIR resource")
    return value


def parse_etag(value: str | None) -> int | None:
    """W/"3" -> 3. Anything else in If-Match is a client error, not a silent no-op."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    version = small_int(text.strip('"'))
    if version is None:
        raise BadRequest('If-Match must be a version ETag such as W/"1"')
    return version


def prefer_return(request: Request) -> str:
    prefer = request.headers.get("prefer", "")
    for part in prefer.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "return":
            choice = value.strip().strip('"').lower()
            if choice in {"minimal", "representation", "operationoutcome"}:
                return choice
    return "representation"


@functools.lru_cache(maxsize=4096)
def http_date(instant: str) -> str:
    """A FHIR instant as an HTTP date (Last-Modified, Expires). Remembered: every read
    answers with its version's, and formatting one costs more than the rest of the
    headers together. Instants are times, not patient data."""
    return format_datetime(parse_instant(instant), usegmt=True)


def read_headers(version: int, last_updated: str) -> dict[str, str]:
    """ETag and Last-Modified of a version (a read's answer has no Location)."""
    return {"ETag": f'W/"{version}"', "Last-Modified": http_date(last_updated)}


def version_headers(
    base_url: str, rtype: str, rid: str, version: int, last_updated: str
) -> dict[str, str]:
    return {
        **read_headers(version, last_updated),
        "Location": f"{base_url}/{rtype}/{rid}/_history/{version}",
    }


def query_text(request: Request) -> str:
    """`request.url.query` without building and parsing the whole URL: the raw query string
    decoded as Starlette decodes it. A query holding a fragment mark or the characters
    URL parsing drops (tab, CR, LF) still takes Starlette's own way, so the answer is
    always the same."""
    text: str = request.scope.get("query_string", b"").decode()
    if "#" in text or "\t" in text or "\r" in text or "\n" in text:
        return request.url.query
    return text


def _first_header(scope: Scope, name: bytes) -> str:
    """The first `name` header's value ("" if none), as `request.headers.get` gives it,
    without building the Headers object."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def check_accept(request: Request) -> None:
    accept = _first_header(request.scope, b"accept")
    # Parsing the query costs more than the rest of this check: only a query that could
    # name `_format` (literally or percent-encoded) is parsed.
    query: bytes = request.scope.get("query_string", b"")
    fmt = request.query_params.get("_format", "") if b"format" in query or b"%" in query else ""
    if fmt and fmt.lower() in {"xml", "text/xml", "application/xml", "application/fhir+xml"}:
        raise NotAcceptable("XML is not supported: use _format=json")
    if not accept:
        return
    wanted = [p.split(";", 1)[0].strip().lower() for p in accept.split(",")]
    if any(w in _JSON_TYPES or w in {"*/*", "application/*"} or not w for w in wanted):
        return
    if any(w in _XML_TYPES for w in wanted):
        raise NotAcceptable("XML is not supported: ask for application/fhir+json")
