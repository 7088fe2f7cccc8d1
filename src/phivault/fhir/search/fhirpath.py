"""Evaluate search parameter expressions with fhirpathpy (the general, slow engine).

Used for expressions outside the compiled subset (see paths.py) and as the reference the
compiled engine is tested against. Three rewrites make the published R4 expressions run
on fhirpathpy, applied the same way for every expression:

- ``Resource.x`` / ``DomainResource.x`` are rooted at the concrete type (fhirpathpy does
  not treat ``Resource`` as the supertype of a resource's type name);
- ``X.where(resolve() is T)``: fhirpathpy has no ``resolve()``; the literal reference's
  type is tested instead (``reference.matches(...)``), as the compiled engine does;
- ``(X as T)`` and ``X.as(T)`` become ``X.ofType(T)``: R4 search expressions apply ``as``
  to collections (``Observation.component.value``), which strict ``as`` rejects.

fhirpathpy converts numbers inside the resource it is given to Decimal, so callers pass a
deep copy, never the caller's resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from phivault.fhir.search.convert import CONVERTERS, TYPED_TAIL_FHIRPATH, Row, atoms, composite
from phivault.fhir.search.registry import COMMON_BASES, SearchParam, split_union

_IDENT = r"[A-Za-z][A-Za-z0-9]*"
_RESOLVE = re.compile(rf"\.where\(\s*resolve\(\)\s+is\s+({_IDENT})\s*\)")
_AS_CALL = re.compile(rf"\.as\(\s*({_IDENT})\s*\)")
_AS_PAREN = re.compile(rf"^\((.+?)\s+as\s+({_IDENT})\)", re.DOTALL)
_COMMON_ROOT = re.compile(rf"^({'|'.join(sorted(COMMON_BASES))})(?=\.)")

Compiled = Callable[..., list[Any]]


def _resolve_is(match: re.Match[str]) -> str:
    pattern = TYPED_TAIL_FHIRPATH.format(type=match.group(1))
    return f".where(reference.matches('{pattern}'))"


def rewrite(expression: str, resource_type: str) -> str:
    """The expression in the form fhirpathpy evaluates as the search specification means."""
    branches = []
    for branch in split_union(expression):
        branch = _COMMON_ROOT.sub(resource_type, branch)
        branch = _AS_PAREN.sub(lambda m: f"{m.group(1)}.ofType({m.group(2)})", branch)
        branch = _AS_CALL.sub(lambda m: f".ofType({m.group(1)})", branch)
        branch = _RESOLVE.sub(_resolve_is, branch)
        branches.append(branch)
    return " | ".join(branches)


@cache
def _model() -> dict[str, Any]:
    from fhirpathpy.models import models

    r4: dict[str, Any] = models["r4"]
    return r4


@cache
def _compile(expression: str, raw: bool) -> Compiled:
    import fhirpathpy

    options = {"returnRawData": True} if raw else None
    fn: Compiled = fhirpathpy.compile(expression, model=_model(), options=options)
    return fn


def values(expression: str, resource_type: str, root: dict[str, Any]) -> list[Any]:
    """What `expression` selects in `root` (a copy the caller does not need intact)."""
    return _compile(rewrite(expression, resource_type), False)(root, {"resource": root})


def composite_entries(
    param: SearchParam, resource_type: str, root: dict[str, Any], out: list[Row]
) -> None:
    """Composite rows: each component evaluated on the same selected element."""
    from fhirpathpy.engine.nodes import ResourceNode

    create_node: Callable[[Any, str | None], Any] = ResourceNode.create_node
    assert param.expression is not None
    context = {"resource": root}
    for branch in split_union(param.expression):
        # Evaluated branch by branch: fhirpathpy keeps an element's type only then, and
        # the components need it to resolve choice elements (value -> valueQuantity).
        for node in _compile(rewrite(branch, resource_type), True)(root, context):
            data = node.data if isinstance(node, ResourceNode) else node
            base = node.path if isinstance(node, ResourceNode) else None
            parts = []
            for comp in param.components:
                focus = create_node(data, base)
                found = _compile(rewrite(comp.expression, resource_type), False)(focus, context)
                parts.append(atoms(comp.type, found))
                if not parts[-1]:
                    break  # no combination without this component
            else:
                composite(param.code, parts, out)


def param_entries(
    param: SearchParam, resource_type: str, root: dict[str, Any], out: list[Row]
) -> None:
    """Every row of one parameter, computed with fhirpathpy alone.

    An expression that fails on this resource (fhirpathpy raises, e.g. a string function
    given a collection) indexes nothing for the parameter: a write must not fail because a
    search parameter cannot read it, and a partial result could be a wrong one.
    """
    if param.expression is None:
        return
    convert = CONVERTERS.get(param.type)
    if convert is None and param.type != "composite":
        return  # special (Location near): not indexed
    found: list[Row] = []
    try:
        if convert is None:
            composite_entries(param, resource_type, root, found)
        else:
            for node in values(param.expression, resource_type, root):
                convert(param.code, node, found)
    except Exception:  # any evaluation error means "no value" (see above)
        return
    out.extend(found)
