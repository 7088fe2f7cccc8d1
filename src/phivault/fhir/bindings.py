"""FHIR R4 required value-set bindings (terminologies.html#required): a code outside the
bound value set makes the resource invalid. On `code` elements (Patient.gender,
Observation.status, HumanName.use, Quantity.comparator, ...) the code itself; on Coding and
CodeableConcept (Condition.clinicalStatus, AllergyIntolerance.verificationStatus, ...) at
least one coding must be from the set.

The table is derived from the R4 definitions (data/required-bindings.json; how and from
what: scripts/derive_required_bindings.py and the file's `source`). It lists, per type, the
elements that hold a bound code or lead to one through their type, so one walk of the JSON
checks every level: data types (HumanName.use), backbone elements (Patient.contact.gender),
extensions (an Extension's valueQuantity.comparator), primitive siblings (`_gender`) and
contained resources. Value sets that cannot be enumerated (mime types, currencies, UCUM
units) are not checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

MAX_FINDINGS = 20
_RESOURCE = "Resource"
_GENERIC = {"extension": "Extension", "modifierExtension": "Extension"}
_PRIMITIVE_SIBLING = "Element"  # "_gender": its id and extensions


@dataclass(frozen=True, slots=True)
class Bindings:
    types: dict[str, dict[str, dict[str, str]]]
    codes: dict[str, frozenset[str]]
    concepts: dict[str, frozenset[str]]  # "system|code" pairs, for Coding/CodeableConcept
    resource_types: frozenset[str]
    source: dict[str, Any]


@cache
def bindings() -> Bindings:
    text = (resources.files("phivault") / "data" / "required-bindings.json").read_text("utf-8")
    data = json.loads(text)
    return Bindings(
        types=data["types"],
        codes={url: frozenset(codes) for url, codes in data["valueSets"].items()},
        concepts={url: frozenset(pairs) for url, pairs in data["conceptSets"].items()},
        resource_types=frozenset(data["resourceTypes"]),
        source=data["source"],
    )


def wrong_codes(resource: dict[str, Any]) -> list[str]:
    """Paths (FHIRPath-like, `Patient.contact[0].gender`) of codes outside their required
    value set; [] when every bound code is in its set. Never the codes themselves."""
    rtype = resource.get("resourceType")
    found: list[str] = []
    if isinstance(rtype, str):
        _walk(resource, rtype, rtype, bindings(), found)
    return found[:MAX_FINDINGS]


def _has_concept(item: dict[str, Any], allowed: frozenset[str]) -> bool:
    """A Coding in the set, or a CodeableConcept with at least one such coding (a required
    binding: text alone, or only codes from elsewhere, does not do)."""
    codings = item.get("coding") if "coding" in item or "text" in item else [item]
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, dict) and f"{coding.get('system')}|{coding.get('code')}" in allowed:
            return True
    return False


def _walk(node: dict[str, Any], kind: str, path: str, table: Bindings, out: list[str]) -> None:
    if len(out) >= MAX_FINDINGS:
        return
    elements = table.types.get(kind)
    for key, value in node.items():
        if key.startswith("_"):
            child: dict[str, str] | None = {"type": _PRIMITIVE_SIBLING}
        elif key in _GENERIC:
            child = {"type": _GENERIC[key]}
        else:
            child = elements.get(key) if elements is not None else None
        if child is None:
            continue
        items = value if isinstance(value, list) else [value]
        many = isinstance(value, list)
        for n, item in enumerate(items):
            where = f"{path}.{key}[{n}]" if many else f"{path}.{key}"
            bound = child.get("codes")
            if bound is not None:
                if isinstance(item, str) and item not in table.codes[bound]:
                    out.append(where)
                continue
            concepts = child.get("concepts")
            if concepts is not None:
                if isinstance(item, dict) and not _has_concept(item, table.concepts[concepts]):
                    out.append(where)
                continue
            if not isinstance(item, dict):
                continue
            target = child["type"]
            if target == _RESOURCE:
                inner = item.get("resourceType")
                if not isinstance(inner, str) or inner not in table.resource_types:
                    continue  # structural validation reports that
                target = inner
            _walk(item, target, where, table, out)
