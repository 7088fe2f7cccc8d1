"""Reading resources from files: NDJSON (Bulk Data) or JSON (a resource or a Bundle)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from phivault.errors import MalformedJson
from phivault.fhir import json as fhir_json

MAX_FILE_JSON_BYTES = 512 * 1024 * 1024


def iter_file_resources(
    path: Path, errors: list[str], progress: Callable[[int], None] | None = None
) -> Iterator[Any]:
    """Yield each resource in a file; append a PHI-free message to `errors` per bad line.

    `progress` is called with the number of bytes consumed as reading advances.
    """
    report = progress or (lambda _n: None)
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
        handle.seek(0)
        if (
            path.suffix.lower() in {".ndjson", ".jsonl"}
            or not head.startswith(b"{")
            or _looks_ndjson(head)
        ):
            yield from _ndjson(handle, path, errors, report)
            return
        if path.stat().st_size > MAX_FILE_JSON_BYTES:
            raise MalformedJson(f"{path.name}: JSON file too large; use NDJSON")
        try:
            document = fhir_json.loads(handle.read())
        except orjson.JSONDecodeError:
            raise MalformedJson(f"{path.name} is not valid JSON") from None
    report(path.stat().st_size)
    yield from unwrap_bundle(document)


def unwrap_bundle(document: Any) -> Iterator[Any]:
    """A Bundle's entries (any type), or the document itself when it is one resource."""
    if (
        isinstance(document, dict)
        and document.get("resourceType") == "Bundle"
        and document.get("type") in {"batch", "transaction", "collection", "searchset", "history"}
    ):
        for entry in document.get("entry") or []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
        return
    yield document


def _looks_ndjson(head: bytes) -> bool:
    first_line = head.split(b"\n", 1)[0].strip()
    if not first_line.endswith(b"}"):
        return False
    try:
        orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return False
    return b"\n{" in head or len(head) < 4096


def _ndjson(
    handle: Any, path: Path, errors: list[str], report: Callable[[int], None]
) -> Iterator[Any]:
    for number, line in enumerate(handle, start=1):
        report(len(line))
        if not line.strip():
            continue
        try:
            yield fhir_json.loads(line)
        except orjson.JSONDecodeError:
            errors.append(f"{path.name} line {number}: not valid JSON")
