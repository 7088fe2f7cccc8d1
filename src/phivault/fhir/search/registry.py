"""The FHIR R4 search parameters phivault knows, and the Patient compartment.

Loaded once, lazily, from the derived package data (``phivault/data/search-parameters.json``
and ``compartment-patient.json``, made by ``scripts/derive_search_parameters.py`` from the
official R4 definitions). A definition shared by several resource types (``clinical-code``
covers fifteen) is specialised per type: its `SearchParam.expression` keeps only the union
branches that apply to that type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from phivault.errors import UnknownResourceType

COMMON_BASES = frozenset({"Resource", "DomainResource"})
_ROOT = re.compile(r"\(*\s*(%?[A-Za-z][A-Za-z0-9]*)")


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a composite parameter, evaluated relative to the composite's element."""

    definition: str  # url of the component's own SearchParameter
    code: str
    type: str
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParam:
    code: str
    type: str  # token|string|date|reference|quantity|number|uri|composite|special
    base: tuple[str, ...]
    expression: str | None  # FHIRPath; for a resource type only that type's branches
    url: str
    targets: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None
    components: tuple[Component, ...] = ()

    @property
    def common(self) -> bool:
        """True for the parameters every resource has (_id, _lastUpdated, _tag, ...)."""
        return not COMMON_BASES.isdisjoint(self.base)


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` branches of a FHIRPath expression (not inside parentheses or
    string literals)."""
    branches: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            branches.append(expression[start:i].strip())
            start = i + 1
    branches.append(expression[start:].strip())
    return [b for b in branches if b]


def branch_root(branch: str) -> str | None:
    match = _ROOT.match(branch)
    return match.group(1) if match else None


def _param(raw: dict[str, Any]) -> SearchParam:
    return SearchParam(
        code=raw["code"],
        type=raw["type"],
        base=tuple(raw["base"]),
        expression=raw.get("expression"),
        url=raw["url"],
        targets=tuple(raw.get("target", ())),
        modifiers=tuple(raw.get("modifier", ())),
        comparators=tuple(raw.get("comparator", ())),
        multiple_or=raw.get("multipleOr"),
        multiple_and=raw.get("multipleAnd"),
        components=tuple(
            Component(c["definition"], c["code"], c["type"], c["expression"])
            for c in raw.get("component", ())
        ),
    )


class Registry:
    """Search parameters by resource type; the Patient compartment's linking parameters."""

    def __init__(
        self,
        definitions: list[SearchParam],
        compartment: dict[str, list[str]],
        provenance: dict[str, Any] | None = None,
        resource_types: list[str] | None = None,
    ) -> None:
        self.definitions = tuple(definitions)
        self.provenance = provenance or {}
        self._compartment = {k: list(v) for k, v in compartment.items()}
        types = {b for d in definitions for b in d.base} | set(compartment)
        types |= set(resource_types or ())
        self._types = sorted(types - COMMON_BASES)
        self._type_set = frozenset(self._types)
        self._by_type: dict[str, dict[str, SearchParam]] = {}

    @classmethod
    def load(cls) -> Registry:
        """Read the registry shipped in the package data."""
        data = resources.files("phivault") / "data"
        params = json.loads((data / "search-parameters.json").read_text(encoding="utf-8"))
        compartment = json.loads((data / "compartment-patient.json").read_text(encoding="utf-8"))
        provenance = {
            "search-parameters": params["source"],
            "compartment-patient": compartment["source"],
            "corrections": params.get("corrections", []),
        }
        definitions = [_param(raw) for raw in params["parameters"]]
        return cls(definitions, compartment["resourceTypes"], provenance, params["resourceTypes"])

    def resource_types(self) -> list[str]:
        """Every R4 resource type (146), sorted."""
        return list(self._types)

    def is_resource_type(self, name: str) -> bool:
        return name in self._type_set

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        """Code -> parameter for one resource type, the common ones (_id, ...) included.

        Definitions without an expression (_text, _content, _query) cannot be indexed and
        are left out. Raises UnknownResourceType for a name that is not an R4 type.
        """
        return dict(self._params(resource_type))

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        if resource_type not in self._type_set:
            return None
        return self._params(resource_type).get(code)

    def compartment_params(self, resource_type: str) -> list[str]:
        """Codes of the parameters that put a resource of this type in a patient's
        compartment (Patient CompartmentDefinition); empty when it never is."""
        return list(self._compartment.get(resource_type, ()))

    def _params(self, resource_type: str) -> dict[str, SearchParam]:
        found = self._by_type.get(resource_type)
        if found is None:
            if resource_type not in self._type_set:
                raise UnknownResourceType()
            found = self._build(resource_type)
            self._by_type[resource_type] = found  # callers only get copies
        return found

    def _build(self, resource_type: str) -> dict[str, SearchParam]:
        found: dict[str, SearchParam] = {}
        for definition in self.definitions:
            if definition.expression is None:
                continue
            if resource_type in definition.base:
                expression = self._specialise(definition.expression, resource_type)
                if expression is not None:
                    found[definition.code] = replace(definition, expression=expression)
            elif definition.common and definition.code not in found:
                found[definition.code] = definition
        return dict(sorted(found.items()))

    def _specialise(self, expression: str, resource_type: str) -> str | None:
        kept = []
        for branch in split_union(expression):
            root = branch_root(branch)
            # A branch rooted at another resource type belongs to that type's parameter.
            if root is None or root == resource_type or root not in self._type_set:
                kept.append(branch)
        return " | ".join(kept) if kept else None


@cache
def default_registry() -> Registry:
    """The registry from the package data, loaded on first use and then shared."""
    return Registry.load()
