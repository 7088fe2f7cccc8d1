"""Index entries for every search parameter of a resource.

`extract(resource)` is what the store calls on each write. Per resource type it builds,
once, a plan: each parameter's expression compiled to Python (paths.py) with its converter
(convert.py). Parameters outside the compiled subset are evaluated with fhirpathpy
(fhirpath.py); `extract_with_fhirpath` evaluates everything that way and is the reference
the compiled plans are tested against.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from phivault.errors import InvalidResource
from phivault.fhir.search import fhirpath
from phivault.fhir.search.convert import CONVERTERS, Converter, Row, atoms, composite
from phivault.fhir.search.index import IndexEntry
from phivault.fhir.search.paths import Getter, Unsupported, compile_expression, union
from phivault.fhir.search.registry import Registry, SearchParam, default_registry
from phivault.types import index_row

_ComponentPlan = tuple[str, Getter]  # (component type, getter on the composite's element)
_CompositeBranch = tuple[Getter, tuple[_ComponentPlan, ...]]


@dataclass(slots=True)
class TypePlan:
    """How to index one resource type."""

    simple: list[tuple[str, Getter, Converter]] = field(default_factory=list)
    composites: list[tuple[str, tuple[_CompositeBranch, ...]]] = field(default_factory=list)
    fallback: list[SearchParam] = field(default_factory=list)  # evaluated by fhirpathpy
    not_indexed: list[str] = field(default_factory=list)  # special parameters (near)


@dataclass(frozen=True, slots=True)
class CompileReport:
    """How the registry's definitions are evaluated (counted once per definition)."""

    compiled: int
    fallback: tuple[str, ...]  # urls evaluated with fhirpathpy
    not_indexed: tuple[str, ...]  # urls with no expression, or of type special


def _compile_param(
    param: SearchParam, resource_type: str, registry: Registry
) -> Getter | tuple[_CompositeBranch, ...]:
    """Compiled getter (composite: branches with component getters); raises Unsupported."""
    assert param.expression is not None
    is_type = registry.is_resource_type
    branches = compile_expression(param.expression, resource_type, resource_type, is_type)
    if param.type != "composite":
        return union(branches)
    compiled: list[_CompositeBranch] = []
    for branch in branches:
        if branch.context is None:
            raise Unsupported(param.expression)
        context = branch.context
        components = tuple(
            (c.type, union(compile_expression(c.expression, context, resource_type, is_type)))
            for c in param.components
        )
        compiled.append((branch.getter, components))
    return tuple(compiled)


def build_plan(registry: Registry, resource_type: str, *, compiled: bool = True) -> TypePlan:
    plan = TypePlan()
    for code, param in registry.params_for(resource_type).items():
        if param.type != "composite" and param.type not in CONVERTERS:
            plan.not_indexed.append(code)
            continue
        if not compiled:
            plan.fallback.append(param)
            continue
        try:
            getter = _compile_param(param, resource_type, registry)
        except Unsupported:
            plan.fallback.append(param)
            continue
        if isinstance(getter, tuple):
            plan.composites.append((code, getter))
        else:
            plan.simple.append((code, getter, CONVERTERS[param.type]))
    return plan


def narrowed(plan: TypePlan, codes: frozenset[str]) -> TypePlan:
    """The part of `plan` that computes the parameters `codes`, in the same order."""
    return TypePlan(
        simple=[item for item in plan.simple if item[0] in codes],
        composites=[item for item in plan.composites if item[0] in codes],
        fallback=[param for param in plan.fallback if param.code in codes],
        not_indexed=[code for code in plan.not_indexed if code in codes],
    )


class Extractor:
    """Computes index entries; holds the per-type plans (built on first use of a type)."""

    def __init__(self, registry: Registry | None = None, *, compiled: bool = True) -> None:
        self.registry = registry or default_registry()
        self.compiled = compiled
        self._plans: dict[str, TypePlan] = {}
        self._narrowed: dict[tuple[str, frozenset[str]], TypePlan] = {}

    def plan(self, resource_type: str) -> TypePlan:
        found = self._plans.get(resource_type)
        if found is None:
            found = build_plan(self.registry, resource_type, compiled=self.compiled)
            self._plans[resource_type] = found
        return found

    def extract(
        self, resource: dict[str, Any], codes: frozenset[str] | None = None
    ) -> list[IndexEntry]:
        """Every index entry of `resource`, without duplicates, in a stable order; with
        `codes`, only those parameters' entries (the same, in the same order)."""
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(resource_type, str):
            raise InvalidResource("resourceType is missing", expression=["resourceType"])
        plan = self.plan(resource_type)  # UnknownResourceType for a name R4 lacks
        if codes is not None:
            key = (resource_type, codes)
            found = self._narrowed.get(key)
            if found is None:
                found = self._narrowed[key] = narrowed(plan, codes)
            plan = found
        out: list[Row] = []
        for code, getter, convert in plan.simple:
            for node in getter(resource, resource):
                convert(code, node, out)
        for code, branches in plan.composites:
            for getter, components in branches:
                for element in getter(resource, resource):
                    _composite(code, element, resource, components, out)
        if plan.fallback:
            root = copy.deepcopy(resource)  # fhirpathpy rewrites numbers in place
            for param in plan.fallback:
                fhirpath.param_entries(param, resource_type, root, out)
        return [index_row(row) for row in dict.fromkeys(out)]

    def report(self) -> CompileReport:
        """Which definitions compile, checked for every resource type each applies to."""
        compiled = 0
        fallback: list[str] = []
        not_indexed: list[str] = []
        types = self.registry.resource_types()
        for definition in self.registry.definitions:
            if definition.expression is None or definition.type == "special":
                not_indexed.append(definition.url)
                continue
            applies = types if definition.common else definition.base
            try:
                for resource_type in applies:
                    param = self.registry.params_for(resource_type).get(definition.code)
                    if param is not None and param.url == definition.url:
                        _compile_param(param, resource_type, self.registry)
            except Unsupported:
                fallback.append(definition.url)
                continue
            compiled += 1
        return CompileReport(compiled, tuple(fallback), tuple(not_indexed))


def _composite(
    code: str,
    element: Any,
    root: dict[str, Any],
    components: tuple[_ComponentPlan, ...],
    out: list[Row],
) -> None:
    found = []
    for kind, get in components:
        nodes = get(element, root)
        if not nodes:
            return  # no combination without this component: skip converting the others
        found.append((kind, nodes))
    composite(code, [atoms(kind, nodes) for kind, nodes in found], out)


_default: dict[bool, Extractor] = {}


def _extractor(compiled: bool) -> Extractor:
    found = _default.get(compiled)
    if found is None:
        found = _default[compiled] = Extractor(compiled=compiled)
    return found


def extract(resource: dict[str, Any]) -> list[IndexEntry]:
    """Index entries for every search parameter of the resource's type (compiled engine)."""
    return _extractor(True).extract(resource)


def extract_params(resource: dict[str, Any], codes: frozenset[str]) -> list[IndexEntry]:
    """The entries `extract` gives for the parameters `codes` only, at a fraction of the
    cost when they are few (e.g. the compartment parameters)."""
    return _extractor(True).extract(resource, codes)


def extract_with_fhirpath(resource: dict[str, Any]) -> list[IndexEntry]:
    """The same entries computed with fhirpathpy alone (reference engine; slow)."""
    return _extractor(False).extract(resource)
