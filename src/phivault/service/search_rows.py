"""FHIR's comparison rules as index-row predicates (search.html "Prefixes").

Dates compare ranges: a value stands for the range its precision implies ("2020-03" is
the whole month), and an index row holds the target's range [lo, hi) (NULL for an open
end). Numbers and quantities compare the target's value (the middle of its stored
precision range) with the search value: `eq` / `ne` / `ap` use the search value's implicit
range, `gt` / `lt` / `ge` / `le` the exact number.
"""

from __future__ import annotations

import time
from dataclasses import replace

from phivault.errors import UnsupportedSearchParameter
from phivault.fhir.search import ucum
from phivault.fhir.search.index import normalize_string
from phivault.fhir.search.model import (
    CompositeValue,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from phivault.store.search_spec import Cmp, Row

# Comparisons of the middle of a stored range (a float) with a search value tolerate this
# relative error, so 158.5 stored as [158.45, 158.55) still equals 158.5 exactly.
_TOLERANCE = 1e-9
AP_FRACTION = 0.1  # `ap`: within 10% (of the value; of the gap to now for dates)


def date_rows(value: DateValue, now: float | None = None) -> list[Row]:
    lo, hi = value.lo, value.hi
    contained: Row = (Cmp("lo", ">=", lo), Cmp("hi", "<=", hi))
    below = Cmp("lo", "<", lo, null_true=True)
    above = Cmp("hi", ">", hi, null_true=True)
    prefix = value.prefix
    if prefix == "eq":
        return [contained]
    if prefix == "ne":
        return [(below,), (above,)]
    if prefix == "gt":
        return [(above,)]
    if prefix == "lt":
        return [(below,)]
    if prefix == "ge":
        return [(above,), contained]
    if prefix == "le":
        return [(below,), contained]
    if prefix == "sa":
        return [(Cmp("lo", ">=", hi),)]
    if prefix == "eb":
        return [(Cmp("hi", "<=", lo),)]
    gap = abs((time.time() if now is None else now) - lo) * AP_FRACTION
    return [(Cmp("lo", "<", hi + gap, null_true=True), Cmp("hi", ">", lo - gap, null_true=True))]


def number_rows(value: NumberValue) -> list[Row]:
    v, lo, hi = value.value, value.lo, value.hi
    tol = _TOLERANCE * max(1.0, abs(v))
    prefix = value.prefix
    if prefix == "eq":
        return [(Cmp("mid", ">=", lo - tol), Cmp("mid", "<", hi - tol))]
    if prefix == "ne":
        return [(Cmp("mid", "<", lo - tol),), (Cmp("mid", ">=", hi - tol),)]
    if prefix == "gt":
        return [(Cmp("mid", ">", v + tol),)]
    if prefix == "lt":
        return [(Cmp("mid", "<", v - tol),)]
    if prefix == "ge":
        return [(Cmp("mid", ">=", v - tol),)]
    if prefix == "le":
        return [(Cmp("mid", "<=", v + tol),)]
    if prefix == "sa":
        return [(Cmp("mid", ">=", hi - tol),)]
    if prefix == "eb":
        return [(Cmp("mid", "<", lo - tol),)]
    spread = abs(v) * AP_FRACTION
    low, high = min(lo, v - spread) - tol, max(hi, v + spread) + tol
    return [(Cmp("mid", ">=", low), Cmp("mid", "<=", high))]


def unit_rows(value: QuantityValue) -> list[Row]:
    if value.system is not None and value.code is not None:
        return [(Cmp("system", "=", value.system), Cmp("value", "=", value.code))]
    if value.system is not None:
        return [(Cmp("system", "=", value.system),)]
    if value.code is not None:  # "5.4||mg": the unit code (the unit text when no code)
        return [(Cmp("value", "=", value.code),)]
    return [()]


def quantity_rows(value: QuantityValue) -> list[Row]:
    return [(*u, *n) for u in unit_rows(value) for n in number_rows(value.number)]


def canonical_quantity_rows(value: QuantityValue) -> list[Row]:
    """`value` in canonical UCUM units, for a UCUM unit (system UCUM, or none given) that
    ucum.py converts; [] otherwise. The comparison is worked out in the unit asked for (so
    `ap` means 10% of 37 Cel, not of 310 K) and its bounds converted: conversions are
    increasing, so every bound keeps its meaning."""
    if value.code is None or value.system not in (None, ucum.SYSTEM):
        return []
    found = ucum.canonical(value.code)
    if found is None:
        return []
    unit = (Cmp("system", "=", ucum.SYSTEM), Cmp("value", "=", found.code))
    return [
        (*unit, *(replace(c, value=found.convert(c.value)) for c in row))
        for row in number_rows(value.number)
    ]


def uri_above(uri: str) -> tuple[str, ...]:
    """Every uri that `uri` is "below": itself and its parents at each '/'."""
    found = [uri]
    head = uri
    while "/" in head.rstrip("/"):
        head = head.rstrip("/").rsplit("/", 1)[0]
        if head.endswith(":") or head.endswith(":/"):
            break
        found.append(head)
    return tuple(found)


def composite_rows(code: str, value: CompositeValue, now: float | None = None) -> list[Row]:
    """The composite's canonical text (see fhir/search/index.py) as a pattern, and the
    range conditions of its first date, number or quantity component."""
    pieces: list[str | None] = []
    ranges: list[Row] | None = None
    for n, (kind, part) in enumerate(zip(value.kinds, value.parts, strict=True)):
        if n:
            pieces.append("$")
        numeric: list[Row] | None = None
        if isinstance(part, TokenValue):
            pieces += [part.system, "|", part.code]
        elif isinstance(part, QuantityValue):
            pieces += [part.system, "|", part.code]
            numeric = number_rows(part.number)
        elif isinstance(part, DateValue):
            numeric = date_rows(part, now)
        elif isinstance(part, NumberValue):
            numeric = number_rows(part)
        elif isinstance(part, StringValue):
            pieces += [normalize_string(part.text), None]
        elif isinstance(part, ReferenceValue):
            if part.rid is not None:
                pieces += (
                    [part.rtype, "/" + part.rid]
                    if part.rtype is None
                    else [f"{part.rtype}/{part.rid}"]
                )
            else:
                pieces.append(part.url)
        elif isinstance(part, UriValue):
            pieces.append(part.uri)
        else:
            raise UnsupportedSearchParameter(f"this {kind} part of {code} is not supported")
        if numeric is not None:
            if ranges is not None:
                raise UnsupportedSearchParameter(
                    f"{code}: only the first date, number or quantity part can be compared"
                )
            ranges = numeric
    merged: list[str | None] = []
    for piece in pieces:
        if piece is not None and merged and merged[-1] is not None:
            merged[-1] = f"{merged[-1]}{piece}"
        elif piece is not None or not merged or merged[-1] is not None:
            merged.append(piece)
    if None in merged:
        text = Cmp("value", "like", tuple(merged))
    else:
        text = Cmp("value", "=", "".join(p for p in merged if p is not None))
    if ranges is None:
        return [(text,)]
    return [(text, *r) for r in ranges]


def value_rows(value: Value) -> list[Row]:
    """Rows for the range types (date, number, quantity) in clear."""
    if isinstance(value, DateValue):
        return date_rows(value)
    if isinstance(value, NumberValue):
        return number_rows(value)
    if isinstance(value, QuantityValue):
        return quantity_rows(value)
    raise TypeError("not a range value")
