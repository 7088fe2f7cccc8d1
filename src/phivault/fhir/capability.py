"""The CapabilityStatement: what this server really supports, and nothing more."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from phivault import __version__
from phivault.fhir.conditions import TOKEN_PARAMS
from phivault.fhir.resources import STORABLE_TYPES

_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]


@lru_cache(maxsize=8)
def _resources() -> tuple[dict[str, Any], ...]:
    params = [{"name": name, "type": "token"} for name in sorted(TOKEN_PARAMS)]
    return tuple(
        {
            "type": rtype,
            "interaction": [{"code": code} for code in _INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalRead": "not-supported",
            "conditionalDelete": "not-supported",
            "searchParam": params,
        }
        for rtype in sorted(STORABLE_TYPES)
    )


def capability_statement(base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-29",
        "kind": "instance",
        "software": {"name": "phivault", "version": __version__},
        "implementation": {"description": "phivault FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": list(_resources()),
                "interaction": [{"code": "history-system"}],
            }
        ],
    }
