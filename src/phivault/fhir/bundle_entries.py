"""The entries of a batch or transaction Bundle: what each one asks for, and the
references between them.

Pure FHIR logic: no store, no keys. The service decides what the requests do.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from phivault.errors import BadRequest, MethodNotAllowed, PhivaultError
from phivault.fhir import json as fhir_json
from phivault.fhir.resources import check_id, check_type, small_int
from phivault.types import Resource

MAX_ENTRIES = 5000
METHODS = ("DELETE", "POST", "PUT", "PATCH", "GET", "HEAD")
# The processing order of the FHIR RESTful API (http.html#trules): DELETE, then POST,
# then PUT and PATCH, then GET and HEAD.
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
JSON_PATCH = "application/json-patch+json"
_TYPE_QUERY = re.compile(r"^([A-Z][A-Za-z]{0,63})\?(.+)$")
_LINK_ATTR = re.compile(r'(href|src)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class EntryRequest:
    """One entry of a batch or transaction, as the client asked for it."""

    index: int
    method: str
    rtype: str | None  # None for a request on the whole server (not supported)
    rid: str | None
    version: int | None  # GET .../_history/N
    query: str | None  # conditional operations and searches ("identifier=s|v")
    full_url: str | None
    resource: Resource | None
    if_match: int | None
    if_none_exist: str | None
    patch: object | None  # the JSON Patch document of a PATCH entry

    @property
    def order(self) -> int:
        return _ORDER[self.method]


class EntryError(Exception):
    """Marks a PhivaultError with the index of the entry that caused it."""

    def __init__(self, index: int, error: PhivaultError) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error


def at_entry(index: int, error: PhivaultError) -> PhivaultError:
    """The same error (same class, so the same status and issue code) naming the entry."""
    where = f"Bundle.entry[{index}]"
    tagged = type(error)(f"{where}: {error.message}", expression=[where, *error.expression])
    return tagged


def bundle_kind(bundle: object) -> str:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base URL takes a Bundle of type batch or transaction")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest("only batch and transaction Bundles can be processed")
    return str(kind)


def raw_entries(bundle: Resource) -> list[object]:
    """Bundle.entry as sent: an absent entry is an empty Bundle; anything but an array
    (an object, even an empty one, or null) is refused, never read as empty."""
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise BadRequest("Bundle.entry must be an array", expression=["Bundle.entry"])
    return raw


def parse_entries(bundle: Resource, base_url: str) -> list[EntryRequest]:
    raw = raw_entries(bundle)
    if len(raw) > MAX_ENTRIES:
        raise BadRequest(f"a Bundle may hold at most {MAX_ENTRIES} entries")
    return [parse_entry(i, e, base_url) for i, e in enumerate(raw)]


def parse_entry(index: int, entry: object, base_url: str) -> EntryRequest:
    """One entry; errors are tagged with the entry's index."""
    try:
        return _parse_entry(index, entry, base_url)
    except PhivaultError as exc:
        raise EntryError(index, exc) from None


def _parse_entry(index: int, entry: object, base_url: str) -> EntryRequest:
    if not isinstance(entry, dict):
        raise BadRequest("a Bundle entry must be an object")
    request = entry.get("request")
    if not isinstance(request, dict):
        raise BadRequest("a batch or transaction entry needs a request")
    method = request.get("method")
    url = request.get("url")
    if method not in METHODS:
        raise BadRequest("request.method must be one of " + ", ".join(METHODS))
    if not isinstance(url, str) or not url:
        raise BadRequest("request.url is required")
    resource = entry.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise BadRequest("entry.resource must be a resource")
    full_url = entry.get("fullUrl")
    rtype, rid, version, query = _split_url(_relative(url, base_url))
    if method != "GET" and method != "HEAD" and version is not None:
        raise MethodNotAllowed("only GET may address a version (_history)")
    if method in ("POST", "PUT") and resource is None:
        raise BadRequest(f"a {method} entry needs a resource")
    if method == "POST" and (rid is not None or rtype is None):
        raise BadRequest("a POST entry's url is the resource type")
    if method in ("PUT", "PATCH", "DELETE") and (rtype is None or (rid is None and not query)):
        raise BadRequest(f"a {method} entry's url needs an id or a search condition")
    patch = _patch_document(resource) if method == "PATCH" else None
    return EntryRequest(
        index=index,
        method=method,
        rtype=rtype,
        rid=rid,
        version=version,
        query=query,
        full_url=full_url if isinstance(full_url, str) and full_url else None,
        resource=resource if method in ("POST", "PUT") else None,
        if_match=_etag(request.get("ifMatch")),
        if_none_exist=_text(request.get("ifNoneExist"), "request.ifNoneExist"),
        patch=patch,
    )


def _relative(url: str, base_url: str) -> str:
    if url.startswith(base_url.rstrip("/") + "/"):
        return url[len(base_url.rstrip("/")) + 1 :]
    if urlsplit(url).scheme:
        raise BadRequest("request.url must be relative to this server's base URL")
    return url.lstrip("/")


def _split_url(url: str) -> tuple[str | None, str | None, int | None, str | None]:
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise BadRequest("operations on the whole server are not supported in a Bundle")
    rtype = check_type(parts[0])
    rid: str | None = None
    version: int | None = None
    if len(parts) >= 2:
        rid = check_id(parts[1])
    if len(parts) == 4 and parts[2] == "_history" and small_int(parts[3]) is not None:
        version = small_int(parts[3])
    elif len(parts) > 2:
        raise BadRequest("this kind of request url is not supported in a Bundle")
    if rid is not None and query:
        raise BadRequest("a request url has either an id or a search condition")
    return rtype, rid, version, query or None


def _etag(value: object) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    text = text[2:] if text.startswith("W/") else text
    version = small_int(text.strip('"'))
    if version is None:
        raise BadRequest('request.ifMatch must be a version ETag such as W/"1"')
    return version


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def _patch_document(resource: object) -> object:
    """A PATCH entry carries its JSON Patch as a Binary (FHIRPath Patch is not supported)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise BadRequest("a PATCH entry needs a Binary resource holding a JSON Patch")
    if resource.get("contentType") != JSON_PATCH:
        raise BadRequest(f"a PATCH entry's Binary.contentType must be {JSON_PATCH}")
    data = resource.get("data")
    if not isinstance(data, str):
        raise BadRequest("a PATCH entry's Binary.data is missing")
    try:
        return fhir_json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise BadRequest("a PATCH entry's Binary.data is not a base64 JSON document") from None


def processing_order(entries: list[EntryRequest]) -> list[EntryRequest]:
    return sorted(entries, key=lambda e: (e.order, e.index))


# -- references --------------------------------------------------------------------------


def conditional_reference(reference: str) -> tuple[str, str] | None:
    """("Patient", "identifier=s|v") for "Patient?identifier=s|v", else None."""
    match = _TYPE_QUERY.match(reference)
    return (match.group(1), match.group(2)) if match else None


def iter_references(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(FHIRPath-like location, reference) of every Reference.reference in a resource."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key == "reference" and isinstance(item, str):
                yield where, item
            elif isinstance(item, (dict, list)):
                yield from iter_references(item, where)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from iter_references(item, f"{path}[{position}]")


def rewrite_references(value: Any, resolve: Callable[[str, str], str | None]) -> Any:
    """A copy of `value` where every Reference.reference `r` at location `p` for which
    `resolve(p, r)` gives a new value is replaced, and so are links to the same targets in
    the narrative (<a href>, <img src>)."""
    return _rewrite(value, "", resolve)


def _rewrite(value: Any, path: str, resolve: Callable[[str, str], str | None]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key == "reference" and isinstance(item, str):
                replaced = resolve(where, item)
                out[key] = item if replaced is None else replaced
            elif key == "div" and isinstance(item, str) and "=" in item:
                out[key] = _relink_narrative(item, where, resolve)
            else:
                out[key] = _rewrite(item, where, resolve)
        return out
    if isinstance(value, list):
        return [_rewrite(item, f"{path}[{i}]", resolve) for i, item in enumerate(value)]
    return value


def _relink_narrative(div: str, where: str, resolve: Callable[[str, str], str | None]) -> str:
    def relink(match: re.Match[str]) -> str:
        target = match.group(2)
        if not target.startswith("urn:"):
            return match.group(0)
        replaced = resolve(where, target)
        return match.group(0) if replaced is None else f'{match.group(1)}="{replaced}"'

    return _LINK_ATTR.sub(relink, div)
