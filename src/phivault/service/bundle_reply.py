"""The response entry of each request entry of a batch or transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phivault.errors import PhivaultError
from phivault.fhir.bundle_entries import EntryRequest
from phivault.fhir.outcome import information, issue, operation_outcome
from phivault.fhir.transaction_response import ResponseEntry

if TYPE_CHECKING:
    from phivault.service.bundles import EntryResult

_WRITES = frozenset({"POST", "PUT", "PATCH"})


def reply_entry(
    entry: EntryRequest, result: EntryResult, base_url: str, prefer: str
) -> ResponseEntry:
    """`prefer`: the Prefer return= choice (representation, minimal, operationoutcome)."""
    if result.error is not None:
        return failure_entry(result.error)
    if result.searchset is not None:
        return ResponseEntry(result.status, body=result.searchset)
    version = result.version
    if version is None:
        return ResponseEntry(result.status)
    full_url = f"{base_url}/{version.rtype}/{version.rid}"
    etag = f'W/"{version.version}"'
    if entry.method == "DELETE":
        return ResponseEntry(result.status, etag=etag)
    is_write = entry.method in _WRITES
    body = version.body
    outcome = None
    if entry.method == "HEAD" or (is_write and prefer != "representation"):
        body = None
    if is_write and prefer == "operationoutcome":
        word = {201: "created", 200: "updated"}.get(result.status, "processed")
        outcome = information(f"{version.rtype}/{version.rid} {word}")
    return ResponseEntry(
        result.status,
        full_url=full_url,
        body=body,
        location=f"{full_url}/_history/{version.version}" if is_write else None,
        etag=etag,
        last_modified=version.last_updated,
        outcome=outcome,
    )


def failure_entry(error: PhivaultError) -> ResponseEntry:
    outcome = operation_outcome([issue("error", error.issue_code, error.message, error.expression)])
    return ResponseEntry(error.http_status, outcome=outcome)
