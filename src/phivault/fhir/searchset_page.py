"""A searchset page with matches and includes, as JSON bytes (stored bodies spliced in)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from phivault.fhir.resources import now_instant

Item = tuple[str, str, bytes]  # (rtype, rid, body)


def searchset_page(
    base_url: str,
    matches: Sequence[Item],
    includes: Sequence[Item],
    total: int | None,
    links: dict[str, str],
) -> bytes:
    head: dict[str, object] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": now_instant()},
    }
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    parts = [_entry(base_url, item, b"match") for item in matches]
    parts += [_entry(base_url, item, b"include") for item in includes]
    encoded = orjson.dumps(head)
    if not parts:
        return encoded
    return encoded[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


def _entry(base_url: str, item: Item, mode: bytes) -> bytes:
    rtype, rid, body = item
    full_url = orjson.dumps(f"{base_url}/{rtype}/{rid}")
    return (
        b'{"fullUrl":' + full_url + b',"resource":' + body + b',"search":{"mode":"' + mode + b'"}}'
    )
