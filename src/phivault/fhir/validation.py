"""FHIR R4 structural validation, behind one function.

Uses the R4B pydantic models of `fhir.resources` (R4 and R4B share every resource that
phivault stores; the few R4 types R4B dropped are refused, see `resources.NOT_VALIDATABLE`).
The models are used only to check: the body that is stored is the client's JSON, not a
re-serialisation, so what a client sends is what it reads back.

Error messages name element paths and the rule broken, never the offending value (it may
be PHI).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from phivault.errors import InvalidResource
from phivault.fhir.bindings import wrong_codes
from phivault.fhir.json_types import type_errors
from phivault.fhir.narrative import unsafe_narratives
from phivault.fhir.resources import NOT_VALIDATABLE, R4_TYPES
from phivault.types import Resource

MAX_ISSUES = 20


@cache
def _model(rtype: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(rtype)


def validate_resource(resource: Any) -> Resource:
    """Check that `resource` is a FHIR R4 resource; return it unchanged.

    Raises InvalidResource with one expression per problem (at most MAX_ISSUES).
    """
    if not isinstance(resource, dict):
        raise InvalidResource("the body must be a JSON object holding one FHIR resource")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in R4_TYPES:
        raise InvalidResource(
            "resourceType is missing or is not a FHIR R4 resource type", expression=["resourceType"]
        )
    if rtype in NOT_VALIDATABLE:
        raise InvalidResource(f"{rtype} cannot be validated by this server and is not accepted")
    model = _model(rtype)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        raise _to_invalid(rtype, exc) from None
    except (ValueError, TypeError):
        # Model code outside pydantic's own checks; its message may quote the input.
        raise InvalidResource(f"the {rtype} resource is not valid FHIR R4") from None
    wrong: list[str] = []
    type_errors(resource, model, rtype, wrong)
    if wrong:
        raise InvalidResource(
            "invalid FHIR R4 resource: "
            + "; ".join(f"{path}: wrong JSON type for this element" for path in wrong),
            expression=wrong,
        )
    outside = wrong_codes(resource)  # required value-set bindings (fhir/bindings.py)
    if outside:
        raise InvalidResource(
            "invalid FHIR R4 resource: "
            + "; ".join(f"{path}: code outside the required value set" for path in outside),
            expression=outside,
        )
    unsafe = unsafe_narratives(resource)  # txt-1: no script in stored XHTML
    if unsafe:
        raise InvalidResource(
            "invalid FHIR R4 resource: " + "; ".join(unsafe),
            expression=[problem.split(":", 1)[0] for problem in unsafe],
        )
    return resource


def _to_invalid(rtype: str, exc: ValidationError) -> InvalidResource:
    paths: list[str] = []
    reasons: list[str] = []
    for error in exc.errors(include_input=False, include_url=False)[:MAX_ISSUES]:
        path = _path(rtype, error.get("loc", ()))
        paths.append(path)
        reasons.append(f"{path}: {_reason(error)}")
    message = "invalid FHIR R4 resource: " + "; ".join(reasons)
    return InvalidResource(message, expression=paths)


def _path(rtype: str, loc: tuple[Any, ...]) -> str:
    out = rtype
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("function-"):
            out += "." + part
    return out


# Pydantic error types and a fixed description: never the model's own text, which for
# some custom validators quotes the value.
_REASONS = {
    "missing": "required element is missing",
    "extra_forbidden": "unknown element",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "string_type": "must be a string",
    "string_pattern_mismatch": "does not match the FHIR data type's format",
    "string_too_short": "must not be empty",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "decimal_type": "must be a decimal number",
    "decimal_parsing": "must be a decimal number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "greater_than_equal": "is below the allowed minimum",
    "greater_than": "is below the allowed minimum",
    "literal_error": "is not an allowed value",
    "enum": "is not an allowed value",
    "too_short": "has too few items",
    "too_long": "has too many items",
}


def _reason(error: Any) -> str:
    # fhir_core namespaces some types ("model_field_validation.missing"): the last part is
    # pydantic's own error type.
    kind = str(error.get("type", "")).rsplit(".", 1)[-1]
    if kind in _REASONS:
        return _REASONS[kind]
    if kind == "value_error":
        msg = str(error.get("msg", ""))
        # fhir_core's value errors describe rules ("does not match spec regex", "choice
        # type ... one of"), not values; keep a bounded, value-free form of them.
        if "regex" in msg:
            return "does not match the FHIR data type's format"
        if "choice" in msg.lower() or "one of" in msg.lower():
            return "choice element: exactly one of its types must be given"
        return "invalid value"
    return "invalid"
