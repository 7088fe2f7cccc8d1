"""`_summary` and `_elements`: trimming a resource server-side (FHIR R4 search.html).

Which top-level elements are "summary" or mandatory comes from the element definitions in
the R4B models of `fhir.resources` (the same models validation uses; R4 and R4B agree on
every resource phivault stores). A trimmed resource is tagged SUBSETTED, as the
specification requires, so that nobody mistakes it for the whole record.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from phivault.types import Resource

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _fields(rtype: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a resource type, by JSON name."""
    from fhir.resources.R4B import get_fhir_model_class

    summary: set[str] = set()
    mandatory: set[str] = set()
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError, AttributeError, ImportError):
        return frozenset(), frozenset()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        json_name = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        required = extra.get("element_required") or extra.get("one_of_many_required")
        if field.is_required() or required:
            mandatory.add(json_name)
    return frozenset(summary), frozenset(mandatory)


def summary_elements(rtype: str) -> frozenset[str]:
    return _fields(rtype)[0]


def mandatory_elements(rtype: str) -> frozenset[str]:
    return _fields(rtype)[1]


def _keep(resource: Resource, names: frozenset[str]) -> Resource:
    kept: dict[str, Any] = {}
    for key, value in resource.items():
        base = key[1:] if key.startswith("_") else key  # "_birthDate" extends "birthDate"
        if key in _ALWAYS or base in names:
            kept[key] = value
    return kept


def _tag(resource: Resource) -> Resource:
    meta = dict(resource.get("meta") or {})
    tags = [
        t for t in meta.get("tag", []) if not (isinstance(t, dict) and t.get("code") == "SUBSETTED")
    ]
    meta["tag"] = [*tags, dict(SUBSETTED)]
    return {**resource, "meta": meta}


def shape(resource: Resource, summary: str | None, elements: tuple[str, ...]) -> Resource | None:
    """The trimmed resource, or None when nothing is to be trimmed."""
    rtype = str(resource.get("resourceType", ""))
    if summary == "true":
        trimmed = _keep(resource, summary_elements(rtype))
    elif summary == "text":
        trimmed = _keep(resource, mandatory_elements(rtype) | {"text"})
    elif summary == "data":
        trimmed = {k: v for k, v in resource.items() if k != "text"}
    elif elements and summary in (None, "false"):
        trimmed = _keep(resource, mandatory_elements(rtype) | set(elements))
    else:
        return None
    return _tag(trimmed)
