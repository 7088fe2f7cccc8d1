"""Parsing one search parameter's value text into typed values (FHIR R4 search.html).

Escaping follows the specification: `\\,` `\\|` `\\$` and `\\\\` stand for the literal
character. Errors name the parameter, never the value (a value may be a name or an MRN).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from phivault.errors import InvalidSearchParameter
from phivault.fhir.search.index import date_range, decimal_range, normalize_string
from phivault.fhir.search.model import (
    PREFIXES,
    CompositeValue,
    DateValue,
    MissingValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from phivault.fhir.search.registry import Registry, SearchParam

MAX_OR_VALUES = 100

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_TYPED_ID = r"([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
_RELATIVE = re.compile(_TYPED_ID)
_TAIL = re.compile(r"(?:^|/)" + _TYPED_ID + "$")
_ABSOLUTE = ("http://", "https://", "urn:")
# "+01:00" arrives as " 01:00" when a client forgets to percent-encode the plus sign.
_LOST_PLUS = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not escaped by a backslash; escapes stay in the parts."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out)


def invalid(code: str, what: str = "invalid value") -> InvalidSearchParameter:
    return InvalidSearchParameter(f"{what} for search parameter {code}")


def split_or(code: str, text: str) -> list[str]:
    parts = split_escaped(text, ",")
    if len(parts) > MAX_OR_VALUES:
        raise invalid(code, f"more than {MAX_OR_VALUES} values")
    if any(p == "" for p in parts):
        raise invalid(code, "empty value")
    return parts


def _prefixed(code: str, raw: str) -> tuple[str, str]:
    head = raw[:2]
    if head in PREFIXES:
        return head, raw[2:]
    if raw[:1].isalpha():
        raise invalid(code, "unknown prefix")
    return "eq", raw


def parse_date(code: str, raw: str) -> DateValue:
    prefix, text = _prefixed(code, unescape(raw))
    text = _LOST_PLUS.sub(r"\1+\2", text)
    found = date_range(text)
    if found is None:
        raise invalid(code, "invalid date")
    return DateValue(prefix, text, found[0], found[1])


def parse_number(code: str, raw: str) -> NumberValue:
    prefix, text = _prefixed(code, unescape(raw))
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise invalid(code, "invalid number") from None
    found = decimal_range(text) if number.is_finite() else None
    if found is None or len(text) > 64:
        raise invalid(code, "invalid number")
    return NumberValue(prefix, float(number), found[0], found[1])


def parse_quantity(code: str, raw: str) -> QuantityValue:
    parts = split_escaped(raw, "|")
    if len(parts) not in (1, 3):
        raise invalid(code, "invalid quantity (number|system|code)")
    number = parse_number(code, parts[0])
    if len(parts) == 1:
        return QuantityValue(number, None, None)
    system, unit = unescape(parts[1]) or None, unescape(parts[2]) or None
    return QuantityValue(number, system, unit)


def parse_token(code: str, raw: str) -> TokenValue:
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return TokenValue(None, unescape(raw))
    if len(parts) > 2:
        # a '|' inside a code must be escaped; anything else is ambiguous
        raise invalid(code, "invalid token (system|code)")
    system, value = unescape(parts[0]), unescape(parts[1])
    if not system and not value:
        raise invalid(code, "invalid token (system|code)")
    return TokenValue(system, value or None)


def parse_of_type(code: str, raw: str) -> TokenValue:
    """`:of-type` takes the Identifier's type and value, `system|code|value`, all three; the
    index holds such identifiers with `system|code` of their type as the row's system."""
    parts = split_escaped(raw, "|")
    if len(parts) != 3 or not all(parts):
        raise invalid(code, ":of-type takes type-system|type-code|value")
    system, type_code, value = (unescape(p) for p in parts)
    return TokenValue(f"{system}|{type_code}", value)


def parse_valueset(code: str, raw: str) -> UriValue:
    """`:in` / `:not-in` name a ValueSet by its canonical url (`url|version` allowed) or
    as `ValueSet/id`."""
    text = unescape(raw)
    local = text.startswith("ValueSet/") and _ID.fullmatch(text[len("ValueSet/") :])
    if not (local or text.startswith(("http://", "https://", "urn:"))):
        raise invalid(code, ":in and :not-in take a ValueSet's url (or ValueSet/id)")
    return UriValue(text)


def parse_string(code: str, raw: str) -> StringValue:
    text = unescape(raw)
    if not normalize_string(text):
        raise invalid(code, "empty value")
    return StringValue(text)


def parse_reference(
    code: str, raw: str, param: SearchParam, type_modifier: str | None, registry: Registry
) -> ReferenceValue:
    text = unescape(raw)
    single = param.targets[0] if len(param.targets) == 1 else None
    if text.startswith(_ABSOLUTE):
        tail = _TAIL.search(text)
        if tail is not None and registry.is_resource_type(tail.group(1)):
            return ReferenceValue(tail.group(1), tail.group(2), text)
        return ReferenceValue(None, None, text)
    if "/" in text:
        match = _RELATIVE.fullmatch(text)
        if match is None or not registry.is_resource_type(match.group(1)):
            raise invalid(code, "invalid reference")
        rtype = match.group(1)
        if type_modifier is not None and rtype != type_modifier:
            raise invalid(code, "reference type differs from the type modifier")
        return ReferenceValue(rtype, match.group(2))
    if not _ID.fullmatch(text):
        raise invalid(code, "invalid reference id")
    return ReferenceValue(type_modifier or single, text)


def parse_id(code: str, raw: str) -> TokenValue:
    text = unescape(raw)
    if not _ID.fullmatch(text):
        raise invalid(code, "invalid resource id")
    return TokenValue(None, text)


def parse_missing(code: str, raw: str) -> MissingValue:
    if raw not in ("true", "false"):
        raise invalid(code, ":missing takes true or false")
    return MissingValue(raw == "true")


def is_type_name(text: str) -> bool:
    return _TYPE.fullmatch(text) is not None


def parse_simple(
    param: SearchParam,
    raw: str,
    modifier: str | None,
    registry: Registry,
) -> Value:
    """One value (already split from its OR list) of a non-composite parameter."""
    code, kind = param.code, param.type
    if kind == "token":
        if modifier == "text":
            return parse_string(code, raw)
        if modifier in ("in", "not-in"):
            return parse_valueset(code, raw)
        if modifier == "of-type":
            return parse_of_type(code, raw)
        if code == "_id":
            return parse_id(code, raw)
        return parse_token(code, raw)
    if kind == "string":
        return parse_string(code, raw)
    if kind == "date":
        return parse_date(code, raw)
    if kind == "number":
        return parse_number(code, raw)
    if kind == "quantity":
        return parse_quantity(code, raw)
    if kind == "reference":
        if modifier == "identifier":
            token = parse_token(code, raw)
            if token.code is None:
                raise invalid(code, ":identifier needs a value")
            return token
        return parse_reference(code, raw, param, modifier, registry)
    if kind == "uri":
        text = unescape(raw)
        if not text:
            raise invalid(code, "empty value")
        return UriValue(text)
    raise invalid(code, "unsupported parameter type")


def parse_composite(param: SearchParam, raw: str, registry: Registry) -> CompositeValue:
    code = param.code
    pieces = split_escaped(raw, "$")
    kinds = tuple(c.type for c in param.components)
    if len(pieces) != len(kinds):
        raise invalid(code, f"a composite value has {len(kinds)} parts joined by $")
    parts: list[Value] = []
    for kind, piece in zip(kinds, pieces, strict=True):
        if not piece:
            raise invalid(code, "empty composite part")
        component = SearchParam(code=code, type=kind, base=param.base, expression=None, url="")
        parts.append(parse_simple(component, piece, None, registry))
    return CompositeValue(kinds, tuple(parts))
