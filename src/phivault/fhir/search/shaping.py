"""`_summary` and `_elements`: trimming a resource server-side (FHIR R4 search.html).

Which elements are "summary" or mandatory comes from the element definitions in the R4B
models of `fhir.resources` (the same models validation uses; R4 and R4B agree on every
resource phivault stores). A trimmed resource is tagged SUBSETTED, as the specification
requires, so that nobody mistakes it for the whole record.

`_elements` takes element names and dotted paths into them (`name.family`,
`component.valueQuantity`). A path keeps the named child in each item of its parent and
drops the parent's other children, except the parent type's mandatory ones (a trimmed
`component` keeps its `code`), as the specification asks of mandatory elements at every
level. A choice element is named by its base name (`value`) or by its typed JSON name
(`valueQuantity`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from phivault.types import Resource

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})
# Paths name children of these; the tree of wanted paths: name -> its own wanted children
# (empty: the whole element).
Tree = dict[str, "Tree"]


@dataclass(frozen=True, slots=True)
class _Fields:
    summary: frozenset[str]  # JSON names
    mandatory: frozenset[str]  # JSON names
    choice: dict[str, str]  # JSON name -> choice base name (valueQuantity -> value)
    types: dict[str, str]  # JSON name -> model name of its complex type


_MODEL_TYPE = re.compile(r"\babc\.([A-Z][A-Za-z0-9]*)Type\b")


def _type_name(annotation: Any) -> str | None:
    """`HumanName` of `Optional[List[HumanNameType]]`: the model of a complex element
    (None for primitives)."""
    found = _MODEL_TYPE.search(str(annotation))
    return found.group(1) if found else None


@cache
def _fields(model_name: str) -> _Fields:
    from fhir.resources.R4B import get_fhir_model_class

    summary: set[str] = set()
    mandatory: set[str] = set()
    choice: dict[str, str] = {}
    types: dict[str, str] = {}
    try:
        model = get_fhir_model_class(model_name)
    except (KeyError, ValueError, AttributeError, ImportError):
        return _Fields(frozenset(), frozenset(), {}, {})
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
        base = extra.get("one_of_many")
        if isinstance(base, str):
            choice[json_name] = base
        found = _type_name(field.annotation)
        if found is not None:
            types[json_name] = found
    return _Fields(frozenset(summary), frozenset(mandatory), choice, types)


def summary_elements(rtype: str) -> frozenset[str]:
    return _fields(rtype).summary


def mandatory_elements(rtype: str) -> frozenset[str]:
    return _fields(rtype).mandatory


def element_tree(paths: tuple[str, ...]) -> Tree:
    """`("name.family", "name.given", "gender")` -> {name: {family: {}, given: {}},
    gender: {}}; a whole element asked for wins over paths into it."""
    tree: Tree = {}
    whole: set[tuple[str, ...]] = set()
    for path in paths:
        parts = tuple(path.split("."))
        if any(parts[:n] in whole for n in range(1, len(parts) + 1)):
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = {}
        whole.add(parts)
    return tree


def _keep(resource: Resource, names: frozenset[str]) -> Resource:
    kept: dict[str, Any] = {}
    for key, value in resource.items():
        base = key[1:] if key.startswith("_") else key  # "_birthDate" extends "birthDate"
        if key in _ALWAYS or base in names:
            kept[key] = value
    return kept


def _wanted(key: str, tree: Tree, fields: _Fields) -> Tree | None:
    """The subtree asked for element `key` (a JSON name), or None when not asked."""
    if key in tree:
        return tree[key]
    base = fields.choice.get(key)
    if base is not None and base in tree:
        return tree[base]
    return None


def _select(node: Any, model_name: str | None, tree: Tree, always: frozenset[str]) -> Any:
    """`node` (an object, or a list of them) reduced to the elements of `tree`, plus the
    mandatory elements of its type."""
    if isinstance(node, list):
        return [_select(item, model_name, tree, always) for item in node]
    if not isinstance(node, dict) or not tree:
        return node
    fields = _fields(model_name) if model_name else _Fields(frozenset(), frozenset(), {}, {})
    kept: dict[str, Any] = {}
    for key, value in node.items():
        base = key[1:] if key.startswith("_") else key
        sub = _wanted(base, tree, fields)
        if key in always or base in fields.mandatory:
            kept[key] = value
        elif sub is not None:
            kept[key] = (
                value
                if key.startswith("_")
                else _select(value, fields.types.get(base), sub, frozenset())
            )
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
        trimmed = _select(resource, rtype, element_tree(elements), _ALWAYS)
    else:
        return None
    return _tag(trimmed)
