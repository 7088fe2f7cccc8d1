"""Turn the elements a search parameter's expression selects into index entries.

One converter per parameter type. Converters look at the JSON shape of each element, so
they work the same on what the compiled paths select and on what fhirpathpy returns; they
never raise on malformed input (wrongly typed values are skipped, not indexed).

Converters append plain `Row` tuples, in `IndexEntry` field order: tuples hash and compare
in C, so removing duplicates is cheap, and only the distinct rows become IndexEntry objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from phivault.fhir.search import ucum
from phivault.fhir.search.index import date_range, decimal_range, normalize_string

Row = tuple[str, str, str | None, str | None, str | None, float | None, float | None]
"""(param, kind, system, value, text, lo, hi): an IndexEntry's fields."""
Converter = Callable[[str, Any, list[Row]], None]
"""(parameter code, selected element, output rows) -> None; appends the element's rows."""

_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE = re.compile(rf"([A-Z][A-Za-z]+)/({_ID})(?:/_history/{_ID})?")
_TYPED_TAIL = re.compile(rf"(?:^|/)([A-Z][A-Za-z]+)/{_ID}(?:/_history/{_ID})?$")
# The same test as a FHIRPath regex, for the fhirpathpy rewrite of `resolve() is Type`.
TYPED_TAIL_FHIRPATH = "(^|/){type}/[A-Za-z0-9.-]{{1,64}}(/_history/[A-Za-z0-9.-]{{1,64}})?$"

# The parts of a HumanName and of an Address that string parameters match on their own.
_STRING_PARTS = frozenset(
    {"text", "family", "given", "prefix", "suffix"}
    | {"line", "city", "district", "state", "postalCode", "country"}
)


def _str(value: Any) -> str | None:
    return value if type(value) is str else None


def reference_type(reference: str) -> str | None:
    """The resource type a (relative or absolute) literal reference points at, if visible."""
    match = _TYPED_TAIL.search(reference)
    return match.group(1) if match else None


# --- token ------------------------------------------------------------------------------


def _coding(param: str, coding: Any, out: list[Row]) -> None:
    if type(coding) is not dict:
        return
    code, display = _str(coding.get("code")), _str(coding.get("display"))
    if code is not None or display is not None:
        out.append((param, "token", _str(coding.get("system")) or "", code, display, None, None))


def _of_type(param: str, id_type: dict[str, Any], value: str, out: list[Row]) -> None:
    """For `:of-type`: the identifier again, with `system|code` of each coding of its type
    as the row's system. A URI never holds '|', so no plain identifier system equals it;
    composite components (param "") leave these out."""
    codings = id_type.get("coding")
    for coding in codings if type(codings) is list else ():
        if type(coding) is dict:
            system, code = _str(coding.get("system")), _str(coding.get("code"))
            if system and code:
                out.append((param, "token", f"{system}|{code}", value, None, None, None))


def token(param: str, node: Any, out: list[Row]) -> None:
    kind = type(node)
    if kind is str:
        out.append((param, "token", "", node, None, None, None))
    elif kind is bool:
        out.append((param, "token", "", "true" if node else "false", None, None, None))
    elif kind is dict:
        if "coding" in node or ("text" in node and "value" not in node and "code" not in node):
            codings = node.get("coding")
            if type(codings) is list:
                for coding in codings:
                    _coding(param, coding, out)
            text = _str(node.get("text"))
            if text is not None:
                out.append((param, "token", None, None, text, None, None))
        elif "code" in node or ("system" in node and "value" not in node):
            _coding(param, node, out)
        else:  # Identifier or ContactPoint
            value, system = _str(node.get("value")), _str(node.get("system"))
            if value is None and system is None:
                return
            type_text = None
            id_type = node.get("type")
            if type(id_type) is dict:
                type_text = _str(id_type.get("text"))
                codings = id_type.get("coding")
                if type_text is None and type(codings) is list and codings:
                    first = codings[0]
                    type_text = _str(first.get("display")) if type(first) is dict else None
            out.append((param, "token", system or "", value, type_text, None, None))
            if param and value is not None and type(id_type) is dict:
                _of_type(param, id_type, value, out)
    elif kind is int or kind is Decimal or kind is float:
        out.append((param, "token", "", str(node), None, None, None))


# --- string -----------------------------------------------------------------------------


def _string_value(param: str, text: Any, out: list[Row]) -> None:
    if type(text) is str and text:
        out.append((param, "string", None, normalize_string(text), text, None, None))


def string(param: str, node: Any, out: list[Row]) -> None:
    if type(node) is str:
        _string_value(param, node, out)
    elif type(node) is dict:  # HumanName, Address: every part is searchable on its own
        for key, part in node.items():
            if key in _STRING_PARTS:
                if type(part) is list:
                    for item in part:
                        _string_value(param, item, out)
                else:
                    _string_value(param, part, out)


# --- date -------------------------------------------------------------------------------


def _bound(value: Any, end: int) -> float | None:
    if type(value) is not str:
        return None
    found = date_range(value)
    return None if found is None else found[end]


def _period(param: str, node: dict[str, Any], out: list[Row]) -> None:
    lo, hi = _bound(node.get("start"), 0), _bound(node.get("end"), 1)
    if lo is not None or hi is not None:
        out.append((param, "date", None, None, None, lo, hi))


def date(param: str, node: Any, out: list[Row]) -> None:
    if type(node) is str:
        found = date_range(node)
        if found is not None:
            out.append((param, "date", None, None, None, found[0], found[1]))
    elif type(node) is dict:
        if "start" in node or "end" in node:
            _period(param, node, out)
        elif "event" in node or "repeat" in node:  # Timing: each event, and its bounds
            events = node.get("event")
            if type(events) is list:
                for event in events:
                    date(param, event, out)
            repeat = node.get("repeat")
            bounds = repeat.get("boundsPeriod") if type(repeat) is dict else None
            if type(bounds) is dict:
                _period(param, bounds, out)


# --- reference --------------------------------------------------------------------------


def _reference_text(param: str, ref: str, text: str | None, out: list[Row]) -> None:
    if ref.startswith("#"):
        return  # a contained resource: not addressable by search
    match = _RELATIVE.fullmatch(ref)
    if match is not None:
        out.append((param, "reference", match.group(1), match.group(2), text, None, None))
    else:
        out.append((param, "reference", None, ref, text, None, None))


def reference(param: str, node: Any, out: list[Row]) -> None:
    if type(node) is str:  # canonical / uri
        _reference_text(param, node, None, out)
        return
    if type(node) is not dict:
        return
    if "resourceType" in node:  # a resource itself (Bundle.entry[0].resource)
        rtype, rid = _str(node.get("resourceType")), _str(node.get("id"))
        if rtype is not None and rid is not None:
            out.append((param, "reference", rtype, rid, None, None, None))
        return
    text = None
    ident = node.get("identifier")
    if type(ident) is dict and _str(ident.get("value")) is not None:
        text = f"{_str(ident.get('system')) or ''}|{ident['value']}"
    ref = _str(node.get("reference"))
    if ref is not None:
        _reference_text(param, ref, text, out)
    elif text is not None:
        out.append((param, "reference", _str(node.get("type")), None, text, None, None))


# --- quantity, number, uri --------------------------------------------------------------


def _range_entry(param: str, kind: str, node: dict[str, Any], out: list[Row]) -> None:
    low, high = node.get("low"), node.get("high")
    lo = hi = None
    unit = low if type(low) is dict else high if type(high) is dict else None
    if type(low) is dict and (found := decimal_range(low.get("value"))) is not None:
        lo = found[0]
    if type(high) is dict and (found := decimal_range(high.get("value"))) is not None:
        hi = found[1]
    if lo is None and hi is None:
        return
    if kind == "number" or unit is None:
        out.append((param, kind, None, None, None, lo, hi))
        return
    system, code, text = _unit(unit)
    out.append((param, kind, system, code, text, lo, hi))


def _unit(node: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    currency = _str(node.get("currency"))
    if currency is not None:  # Money
        return "urn:iso:std:iso:4217", currency, None
    unit = _str(node.get("unit"))
    return _str(node.get("system")), _str(node.get("code")) or unit, unit


def quantity(param: str, node: Any, out: list[Row]) -> None:
    if type(node) is not dict:
        return
    if "value" not in node:
        if "low" in node or "high" in node:
            _range_entry(param, "quantity", node, out)
        return  # SampledData, Ratio: not indexed
    found = decimal_range(node["value"])
    if found is None:
        return
    lo: float | None = found[0]
    hi: float | None = found[1]
    comparator = node.get("comparator")
    if comparator in ("<", "<="):
        lo = None
    elif comparator in (">", ">="):
        hi = None
    system, code, text = _unit(node)
    out.append((param, "quantity", system, code, text, lo, hi))
    if system == ucum.SYSTEM and param:
        _canonical_quantity(param, code, lo, hi, out)


def _canonical_quantity(
    param: str, code: str | None, lo: float | None, hi: float | None, out: list[Row]
) -> None:
    """The same value in canonical UCUM units (ucum.py), under `param:ucum`, so that a
    search in mg finds values stored in g. Left out when the unit is canonical already
    (the search compares those rows directly) or unknown; composite components (param
    "") are not converted."""
    found = ucum.canonical(code)
    if found is None or (found.code == code and found.factor == 1.0 and not found.offset):
        return
    low = found.convert(lo) if lo is not None else None
    high = found.convert(hi) if hi is not None else None
    out.append((ucum.canonical_param(param), "quantity", ucum.SYSTEM, found.code, None, low, high))


def number(param: str, node: Any, out: list[Row]) -> None:
    if type(node) is dict:
        if "low" in node or "high" in node:
            _range_entry(param, "number", node, out)
        return
    found = decimal_range(node)
    if found is not None:
        out.append((param, "number", None, None, None, found[0], found[1]))


def uri(param: str, node: Any, out: list[Row]) -> None:
    if type(node) is str and node:
        out.append((param, "uri", None, node, None, None, None))


CONVERTERS: dict[str, Converter] = {
    "token": token,
    "string": string,
    "date": date,
    "reference": reference,
    "quantity": quantity,
    "number": number,
    "uri": uri,
}


# --- composite --------------------------------------------------------------------------

Atom = tuple[str, float | None, float | None]


def atoms(kind: str, nodes: list[Any]) -> list[Atom]:
    """The canonical parts one composite component contributes (see index.py)."""
    convert = CONVERTERS.get(kind)
    if convert is None:
        return []
    rows: list[Row] = []
    for node in nodes:
        convert("", node, rows)
    found: list[Atom] = []
    for _, _, system, value, _, lo, hi in rows:
        if kind == "token":
            if value is not None:
                found.append((f"{system}|{value}", None, None))
        elif kind == "quantity":
            found.append((f"{system or ''}|{value or ''}", lo, hi))
        elif kind in ("date", "number"):
            found.append(("", lo, hi))
        elif kind == "reference":
            if value is not None:
                found.append((f"{system}/{value}" if system else value, None, None))
        elif value is not None:  # string, uri
            found.append((value, None, None))
    return found


def composite(param: str, parts: list[list[Atom]], out: list[Row]) -> None:
    """One row per combination of the components' parts (all from the same element)."""
    combos: list[list[Atom]] = [[]]
    for options in parts:
        if not options:
            return
        combos = [[*combo, atom] for combo in combos for atom in options]
    for combo in combos:
        lo = hi = None
        for _, atom_lo, atom_hi in combo:
            if atom_lo is not None or atom_hi is not None:
                lo, hi = atom_lo, atom_hi
                break
        out.append((param, "composite", None, "$".join(a[0] for a in combo), None, lo, hi))
