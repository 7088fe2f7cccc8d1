"""batch-response and transaction-response Bundles, built as JSON bytes.

Resource bodies are spliced in as the stored JSON bytes (not parsed and re-serialised),
which keeps FHIR decimals exactly as they were sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from phivault.fhir import json as fhir_json
from phivault.fhir.resources import now_instant


@dataclass(frozen=True, slots=True)
class ResponseEntry:
    status: int
    full_url: str | None = None
    body: bytes | None = None  # the resource, as JSON bytes
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    outcome: dict[str, Any] | None = None  # OperationOutcome of a failed batch entry


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def response_bundle(kind: str, entries: Sequence[ResponseEntry]) -> bytes:
    """`kind`: "batch-response" or "transaction-response"; entries in request order."""
    head = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": kind,
        "meta": {"lastUpdated": now_instant()},
    }
    encoded = orjson.dumps(head)
    if not entries:
        return encoded
    parts = [_entry(e) for e in entries]
    return encoded[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


def _entry(entry: ResponseEntry) -> bytes:
    response: dict[str, Any] = {"status": status_line(entry.status)}
    if entry.location:
        response["location"] = entry.location
    if entry.etag:
        response["etag"] = entry.etag
    if entry.last_modified:
        response["lastModified"] = entry.last_modified
    if entry.outcome is not None:
        response["outcome"] = entry.outcome
    out = b"{"
    if entry.full_url:
        out += b'"fullUrl":' + orjson.dumps(entry.full_url) + b","
    if entry.body is not None:
        out += b'"resource":' + entry.body + b","
    return out + b'"response":' + fhir_json.dumps(response) + b"}"
