"""Search conditions of conditional create, update, patch and delete.

A condition is an ordinary search, parsed by the real parser in strict mode: conditional
interactions must never guess, and a parameter the server ignored would silently widen
the match (and update or delete the wrong record). Result parameters (_sort, _count, ...)
have no meaning in a condition and are refused too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from phivault.errors import BadRequest
from phivault.fhir.search.model import SearchRequest
from phivault.fhir.search.query import MAX_PARAMS, parse_search


@dataclass(frozen=True, slots=True)
class Condition:
    request: SearchRequest


def parse_condition(rtype: str, query: str) -> Condition:
    query = query.lstrip("?")
    if "?" in query:
        # "Patient?identifier=..." as sent in If-None-Exist by some clients
        head, query = query.split("?", 1)
        if head and head != rtype:
            raise BadRequest("the condition names another resource type")
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_PARAMS
        )
    except ValueError:
        raise BadRequest("the condition is not a valid query string") from None
    if not pairs:
        raise BadRequest("the condition is empty")
    request = parse_search(rtype, pairs, strict=True)
    if request.has_results_controls:
        raise BadRequest("a condition takes search parameters only (no _sort, _count, ...)")
    if not request.filters:
        raise BadRequest("the condition is empty")
    return Condition(request)
