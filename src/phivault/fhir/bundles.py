"""Bundles the server returns (history, searchset), built as JSON bytes.

Stored bodies are already JSON; entries are spliced in as raw bytes rather than parsed and
re-serialised, which keeps reads of large pages cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from phivault.fhir.resources import now_instant


@dataclass(frozen=True, slots=True)
class HistoryItem:
    rtype: str
    rid: str
    version: int
    last_updated: str
    deleted: bool
    body: bytes | None  # plaintext JSON of the resource, None for a delete
    method: str  # POST, PUT or DELETE: how this version came to be


def _head(kind: str, total: int | None, links: dict[str, str]) -> dict[str, object]:
    head: dict[str, object] = {
        "resourceType": "Bundle",
        "type": kind,
        "meta": {"lastUpdated": now_instant()},
    }
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    return head


def _full_url(base_url: str, rtype: str, rid: str) -> bytes:
    return orjson.dumps(f"{base_url}/{rtype}/{rid}")  # a JSON string, escaped


def history_bundle(
    base_url: str,
    items: Sequence[HistoryItem],
    total: int | None,
    links: dict[str, str],
) -> bytes:
    parts: list[bytes] = []
    for item in items:
        request = {
            "method": item.method,
            "url": f"{item.rtype}/{item.rid}" if item.method != "POST" else item.rtype,
        }
        response = {
            "status": "410 Gone"
            if item.deleted
            else ("201 Created" if item.version == 1 else "200 OK"),
            "etag": f'W/"{item.version}"',
            "lastModified": item.last_updated,
        }
        entry = b'{"fullUrl":' + _full_url(base_url, item.rtype, item.rid)
        if item.body is not None:
            entry += b',"resource":' + item.body
        entry += b',"request":' + orjson.dumps(request) + b',"response":' + orjson.dumps(response)
        entry += b"}"
        parts.append(entry)
    return _splice(_head("history", total, links), parts)


def searchset_bundle(
    base_url: str,
    matches: Sequence[tuple[str, str, bytes]],
    total: int | None,
    links: dict[str, str],
    outcome: bytes | None = None,
    included: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    """matches and included: (rtype, rid, body) in result order."""
    parts = [_search_entry(base_url, item, b"match") for item in matches]
    parts += [_search_entry(base_url, item, b"include") for item in included]
    if outcome is not None:
        parts.append(b'{"resource":' + outcome + b',"search":{"mode":"outcome"}}')
    return _splice(_head("searchset", total, links), parts)


def _search_entry(base_url: str, item: tuple[str, str, bytes], mode: bytes) -> bytes:
    rtype, rid, body = item
    return (
        b'{"fullUrl":'
        + _full_url(base_url, rtype, rid)
        + b',"resource":'
        + body
        + b',"search":{"mode":"'
        + mode
        + b'"}}'
    )


def _splice(head: dict[str, object], entries: list[bytes]) -> bytes:
    encoded = orjson.dumps(head)
    if not entries:
        return encoded
    return encoded[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
