"""The CapabilityStatement: what this server really supports, and nothing more."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from phivault import __version__
from phivault.fhir.resources import STORABLE_TYPES
from phivault.fhir.search import default_registry
from phivault.fhir.search.query import MODIFIERS

_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]

_BULK = "http://hl7.org/fhir/uv/bulkdata"
# Operations per resource type (Patient $everything; Bulk Data $export at Patient and
# Group level); the system-level $export is declared on rest.operation.
_TYPE_OPERATIONS: dict[str, list[dict[str, str]]] = {
    "Patient": [
        {
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        },
        {"name": "export", "definition": f"{_BULK}/OperationDefinition/patient-export"},
    ],
    "Group": [{"name": "export", "definition": f"{_BULK}/OperationDefinition/group-export"}],
}


def _with_operations(rtype: str, resource: dict[str, Any]) -> dict[str, Any]:
    operations = _TYPE_OPERATIONS.get(rtype)
    return {**resource, "operation": operations} if operations else resource


_PREFIXES = "prefixes eq ne gt lt ge le sa eb ap"
_SEARCH_DOC = (
    "Search: OR with commas, AND by repeating a parameter; chained parameters and _has one "
    "level deep; _include/_revinclude (with :iterate); _sort, _count, _summary, _elements, "
    "_total; system-level search across _type with the parameters common to the types; "
    "token :in/:not-in against ValueSets stored here, :of-type on identifiers; quantities "
    "compared across UCUM units; paging by opaque cursors. Unknown parameters are ignored "
    "and reported unless Prefer: handling=strict. Identifying parameters of Patient, "
    "RelatedPerson, Practitioner and Person (names, identifiers, telecom, address, birth "
    "and death dates) are encrypted blind indexes: they support starts-with, :exact, "
    ":missing and token equality, and refuse :contains, :text, date ranges and sorting."
)


def _common_params() -> list[dict[str, Any]]:
    """System-level search: the parameters every resource type has."""
    types = sorted(STORABLE_TYPES)
    shared = set(default_registry().params_for(types[0]))
    for rtype in types[1:]:
        shared &= set(default_registry().params_for(rtype))
    return [p for p in _search_params(types[0]) if p["name"] in shared]


def _search_params(rtype: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for code, param in default_registry().params_for(rtype).items():
        modifiers = MODIFIERS.get(param.type)
        if modifiers is None:
            continue  # special parameters (near) are not supported
        names = sorted(modifiers) + (["[type]"] if param.type == "reference" else [])
        doc = "modifiers " + " ".join(f":{m}" for m in names)
        if param.type in ("date", "number", "quantity"):
            doc += "; " + _PREFIXES
        entry = {"name": code, "definition": param.url, "type": param.type}
        found.append({**entry, "documentation": doc})
    return found


@lru_cache(maxsize=1)
def _rev_includes() -> dict[str, list[str]]:
    """Target type -> the "Source:param" references that can point at it."""
    registry = default_registry()
    found: dict[str, list[str]] = {}
    for source in sorted(STORABLE_TYPES):
        for code, param in registry.params_for(source).items():
            if param.type == "reference":
                for target in param.targets:
                    found.setdefault(target, []).append(f"{source}:{code}")
    return found


def _includes(rtype: str) -> list[str]:
    params = default_registry().params_for(rtype)
    return ["*"] + [f"{rtype}:{c}" for c, p in params.items() if p.type == "reference"]


# AuditEvent is a view of the audit log: it can be read and searched, never written.
_READ_ONLY_TYPES = {"AuditEvent"}
_READ_INTERACTIONS = {"read", "vread", "search-type", "history-instance", "history-type"}


def _allowed(rtype: str, code: str) -> bool:
    return rtype not in _READ_ONLY_TYPES or code in _READ_INTERACTIONS


def conditional_delete(max_conditional_deletes: int) -> str:
    """The conditionalDelete code: `multiple` when the server deletes several matches
    (the `max_conditional_deletes` setting above 1), `single` otherwise."""
    return "multiple" if max_conditional_deletes > 1 else "single"


@lru_cache(maxsize=8)
def _resources(conditional_deletes: str) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "type": rtype,
            "interaction": [{"code": code} for code in _INTERACTIONS if _allowed(rtype, code)],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalRead": "not-supported",
            "conditionalDelete": conditional_deletes,
            "searchInclude": _includes(rtype),
            "searchRevInclude": _rev_includes().get(rtype, []),
            "searchParam": _search_params(rtype),
        }
        for rtype in sorted(STORABLE_TYPES)
    )


def capability_statement(base_url: str, *, max_conditional_deletes: int = 1) -> dict[str, Any]:
    """`max_conditional_deletes`: the server's setting (config.py), which decides whether
    conditional deletes are `single` or `multiple`."""
    deletes = conditional_delete(max_conditional_deletes)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-29",
        "kind": "instance",
        "software": {"name": "phivault", "version": __version__},
        "implementation": {"description": "phivault FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "instantiates": [f"{_BULK}/CapabilityStatement/bulk-data"],
        "rest": [
            {
                "mode": "server",
                "documentation": _SEARCH_DOC,
                "resource": [_with_operations(r["type"], r) for r in _resources(deletes)],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                    {"code": "search-system"},
                ],
                "searchParam": _common_params(),
                "operation": [
                    {"name": "export", "definition": f"{_BULK}/OperationDefinition/export"}
                ],
            }
        ],
    }
