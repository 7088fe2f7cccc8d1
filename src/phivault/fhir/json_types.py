"""JSON types of FHIR primitives, checked strictly.

The `fhir.resources` models validate in pydantic's lax mode: `"active": "true"` and
`"multipleBirthInteger": "3"` pass, and since phivault stores the client's JSON as sent,
invalid FHIR JSON would be stored and served. This walk checks every primitive element's
JSON type against the model's declared type (boolean -> true/false, integer -> integer,
decimal -> number, everything else -> string). The element tree is read from the models
once per type and cached.
"""

from __future__ import annotations

import datetime
import sys
import types
import typing
from decimal import Decimal
from functools import cache
from typing import Any

# kind codes
BOOL, INT, DECIMAL, STRING, COMPLEX, RESOURCE, SKIP = range(7)

Shape = dict[str, tuple[int, Any]]  # JSON name -> (kind, model class for COMPLEX)


def type_errors(resource: dict[str, Any], model: Any, path: str, out: list[str]) -> None:
    """Append the path of every element whose JSON type is wrong (at most 20)."""
    shape = _shape(model)
    for key, value in resource.items():
        spec = shape.get(key)
        if spec is None:
            continue  # unknown elements are the model's business (extra_forbidden)
        kind, sub = spec
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            where = f"{path}.{key}" + (f"[{index}]" if isinstance(value, list) else "")
            if item is None:
                continue
            if not _ok(kind, item):
                out.append(where)
            elif kind == COMPLEX and isinstance(item, dict):
                type_errors(item, sub, where, out)
            elif kind == RESOURCE and isinstance(item, dict):
                nested = _resource_model(item.get("resourceType"))
                if nested is not None:
                    type_errors(item, nested, where, out)
            if len(out) >= 20:
                return


def _ok(kind: int, value: Any) -> bool:
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == DECIMAL:
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if kind == STRING:
        return isinstance(value, str)
    if kind in (COMPLEX, RESOURCE):
        return isinstance(value, dict)
    return True


def _resource_model(rtype: Any) -> Any:
    if not isinstance(rtype, str):
        return None
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(rtype)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None


@cache
def _shape(model: Any) -> Shape:
    shape: Shape = {}
    module = sys.modules.get(model.__module__)
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if alias.startswith("_") or name == "fhir_comments" or name == "resource_type":
            continue
        shape[alias] = _classify(field.annotation, module)
    return shape


def _classify(annotation: Any, module: Any) -> tuple[int, Any]:
    base = _unwrap(annotation)
    if base is bool:
        return BOOL, None
    if base is int:
        return INT, None
    if base is Decimal or base is float:
        return DECIMAL, None
    if base in (str, datetime.date, datetime.datetime, datetime.time):
        return STRING, None
    name = getattr(base, "__name__", "")
    if name == "ResourceType":
        return RESOURCE, None
    if name.endswith("Type") and getattr(base, "__module__", "") == "abc":
        return COMPLEX, _LazyModel(name[: -len("Type")], module)
    return SKIP, None


def _unwrap(annotation: Any) -> Any:
    """Optional[List[Annotated[X, ...]]] and friends -> X."""
    current = annotation
    for _ in range(6):
        origin = typing.get_origin(current)
        if origin is typing.Annotated:
            current = typing.get_args(current)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            if len(args) != 1:
                return None
            current = args[0]
        elif origin in (list, typing.List):  # noqa: UP006 - the models use typing.List
            current = typing.get_args(current)[0]
        else:
            return current
    return current


class _LazyModel:
    """The model class of a complex type, resolved on first use (models import lazily)."""

    __slots__ = ("_module", "_name", "_resolved")

    def __init__(self, name: str, module: Any) -> None:
        self._name = name
        self._module = module
        self._resolved: Any = None

    def resolve(self) -> Any:
        if self._resolved is None:
            found = getattr(self._module, self._name, None)
            if found is None:
                from fhir.resources.R4B import get_fhir_model_class

                found = get_fhir_model_class(self._name)
            self._resolved = found
        return self._resolved

    # Behave like the model class where type_errors and _shape use it.
    @property
    def model_fields(self) -> Any:
        return self.resolve().model_fields

    @property
    def __module__(self) -> str:  # type: ignore[override]
        return str(self.resolve().__module__)

    def __hash__(self) -> int:
        return hash((self._name, id(self._module)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LazyModel) and (self._name, self._module) == (
            other._name,
            other._module,
        )
