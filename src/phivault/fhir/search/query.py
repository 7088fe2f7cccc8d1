"""Parse a search request's (name, value) pairs against the search-parameter registry.

Lenient by default: an unknown parameter is left out and reported (`SearchRequest.ignored`).
Strict (`Prefer: handling=strict`, and always for conditional interactions, where a
silently ignored condition would widen the match): unknown parameters are errors.
Malformed values and unsupported modifiers on known parameters are errors in both modes
(the specification requires servers to reject modifiers they do not support).

Bounds keep hostile requests cheap: at most MAX_PARAMS pairs, MAX_VALUE_LENGTH characters
per value, MAX_OR_VALUES values per parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from phivault.errors import InvalidSearchParameter, UnsupportedSearchParameter
from phivault.fhir.search.model import (
    SUMMARY_MODES,
    TOTAL_MODES,
    ChainClause,
    Clause,
    Filter,
    HasClause,
    Ignored,
    Include,
    SearchRequest,
    SortKey,
    Value,
)
from phivault.fhir.search.params import (
    invalid,
    is_type_name,
    parse_composite,
    parse_missing,
    parse_simple,
    split_or,
)
from phivault.fhir.search.registry import Registry, SearchParam, default_registry

MAX_PARAMS = 100
MAX_VALUE_LENGTH = 2048
MAX_NAME_LENGTH = 128
MAX_INCLUDES = 20
MAX_ELEMENTS = 50
MAX_ELEMENT_DEPTH = 6
MAX_TOTAL_VALUES = 1000  # values of all parameters together (each becomes SQL parameters)

# Modifiers this server evaluates, by parameter type (CapabilityStatement lists these).
MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"missing", "not", "text", "in", "not-in", "of-type"}),
    "string": frozenset({"missing", "exact", "contains"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "reference": frozenset({"missing", "identifier"}),  # plus :[type]
    "uri": frozenset({"missing", "below", "above"}),
    "composite": frozenset({"missing"}),
}
SORTABLE = frozenset({"token", "string", "date", "number", "quantity", "reference", "uri"})

# Result parameters this server does not support: reported (lenient) or refused (strict).
UNSUPPORTED = frozenset(
    {"_contained", "_containedType", "_text", "_content", "_list", "_query", "_filter", "_type"}
)
# Handled by the HTTP layer (content negotiation), never part of the search itself.
TRANSPORT = frozenset({"_format", "_pretty"})

_ELEMENT = re.compile(r"[a-z][A-Za-z0-9]{0,63}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_:.\-]{1,64}")


def safe_name(name: str) -> str:
    """A parameter name fit for an error message (names are not PHI; odd bytes might be)."""
    return name if _SAFE_NAME.fullmatch(name) else "(invalid name)"


class _Parser:
    def __init__(self, rtype: str, strict: bool, registry: Registry, max_count: int) -> None:
        self.rtype = rtype
        self.strict = strict
        self.registry = registry
        self.max_count = max_count
        self.params = registry.params_for(rtype)
        self.filters: list[Filter] = []
        self.sort: list[SortKey] = []
        self.includes: list[Include] = []
        self.revincludes: list[Include] = []
        self.elements: list[str] = []
        self.ignored: list[Ignored] = []
        self.used: list[tuple[str, str]] = []
        self.count: int | None = None
        self.summary: str | None = None
        self.total: str | None = None
        self.cursor: str | None = None
        self.values = 0

    def skip(self, name: str, reason: str) -> None:
        if self.strict:
            raise UnsupportedSearchParameter(f"{reason}: {safe_name(name)}")
        self.ignored.append(Ignored(safe_name(name), reason))

    # -- one pair ---------------------------------------------------------------------------
    def pair(self, name: str, raw: str) -> None:
        if name in TRANSPORT:
            return
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidSearchParameter("invalid search parameter name")
        if len(raw) > MAX_VALUE_LENGTH:
            raise invalid(safe_name(name), f"value longer than {MAX_VALUE_LENGTH} characters")
        if "\x00" in raw or "\x00" in name:
            raise InvalidSearchParameter(f"NUL character in search parameter {safe_name(name)}")
        if raw == "":
            self.skip(name, "empty search parameter ignored")
            return
        base = name.split(":", 1)[0]
        skipped = len(self.ignored)
        handler = _CONTROL.get(base)
        if handler is not None:
            handler(self, name, raw)
        elif base in UNSUPPORTED:
            self.skip(name, "unsupported search parameter")
        elif base == "_has":
            self.has(name, raw)
        else:
            self.filter(name, raw)
        if base == "_sort":
            keys = [("-" if k.descending else "") + k.code for k in self.sort]
            self.used = [u for u in self.used if u[0] != "_sort"]
            if keys:
                self.used.append(("_sort", ",".join(keys)))
        elif len(self.ignored) == skipped:
            self.used.append((name, raw))

    def filter(self, name: str, raw: str) -> None:
        head, dot, chained = name.partition(".")
        code, _, modifier = head.partition(":")
        param = self.params.get(code)
        if param is None:
            self.skip(name, f"unknown search parameter for {self.rtype}")
            return
        if not dot:
            found = self.clause(param, modifier or None, raw)
            if found is not None:
                self.filters.append(found)
            return
        self.filters.append(self.chain(param, modifier or None, chained, raw))

    def clause(self, param: SearchParam, modifier: str | None, raw: str) -> Clause | None:
        code, kind = param.code, param.type
        allowed = MODIFIERS.get(kind)
        if allowed is None:
            raise UnsupportedSearchParameter(f"search parameter {code} is not supported")
        if modifier is not None and modifier not in allowed:
            type_modifier = (
                kind == "reference"
                and is_type_name(modifier)
                and self.registry.is_resource_type(modifier)
            )
            if not type_modifier:
                raise UnsupportedSearchParameter(
                    f"modifier :{safe_name(modifier)} is not supported on {code}"
                )
            if param.targets and modifier not in param.targets:
                raise invalid(code, "type modifier is not a target of this reference")
        if modifier == "missing":
            if "," in raw:
                raise invalid(code, ":missing takes one value")
            return Clause(code, kind, modifier, (parse_missing(code, raw),))
        values: list[Value] = []
        pieces = split_or(code, raw)
        self.values += len(pieces)
        if self.values > MAX_TOTAL_VALUES:
            raise InvalidSearchParameter(f"more than {MAX_TOTAL_VALUES} search values in all")
        for piece in pieces:
            if kind == "composite":
                values.append(parse_composite(param, piece, self.registry))
            else:
                values.append(parse_simple(param, piece, modifier, self.registry))
        return Clause(code, kind, modifier, tuple(values))

    def inner(self, rtype: str, spec: str, raw: str) -> Clause:
        if "." in spec or spec.startswith("_has"):
            raise UnsupportedSearchParameter("chained searches deeper than one level")
        code, _, modifier = spec.partition(":")
        param = self.registry.get(rtype, code)
        if param is None:
            raise UnsupportedSearchParameter(
                f"unknown search parameter for {rtype}: {safe_name(code)}"
            )
        found = self.clause(param, modifier or None, raw)
        assert found is not None
        return found

    def chain(self, param: SearchParam, modifier: str | None, chained: str, raw: str) -> Filter:
        code = param.code
        if param.type != "reference":
            raise invalid(code, "only reference parameters can be chained")
        inner_code = chained.partition(":")[0]
        if modifier is not None:
            if not self.registry.is_resource_type(modifier):
                raise UnsupportedSearchParameter(
                    f"modifier :{safe_name(modifier)} is not supported on {code}"
                )
            if param.targets and modifier not in param.targets:
                raise invalid(code, "type modifier is not a target of this reference")
            target = modifier
        else:
            candidates = [t for t in param.targets if self.registry.get(t, inner_code)]
            if len(candidates) != 1:
                raise invalid(code, "ambiguous chain: name the target type (param:Type.name)")
            target = candidates[0]
        return ChainClause(code, target, self.inner(target, chained, raw))

    def has(self, name: str, raw: str) -> None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise InvalidSearchParameter("_has takes the form _has:Type:reference:parameter")
        _, source, ref_code, spec = parts
        if not self.registry.is_resource_type(source):
            raise UnsupportedSearchParameter(f"unknown resource type in _has: {safe_name(source)}")
        ref = self.registry.get(source, ref_code)
        if ref is None or ref.type != "reference":
            raise UnsupportedSearchParameter(
                f"_has needs a reference parameter of {source}: {safe_name(ref_code)}"
            )
        if ref.targets and self.rtype not in ref.targets:
            raise invalid("_has", f"{source}.{ref_code} never references {self.rtype}")
        self.filters.append(HasClause(source, ref_code, self.inner(source, spec, raw)))

    # -- result parameters ----------------------------------------------------------------------
    def p_count(self, name: str, raw: str) -> None:
        if name != "_count" or not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
            raise invalid("_count", "must be a non-negative integer")
        self.count = min(int(raw), self.max_count)

    def p_sort(self, name: str, raw: str) -> None:
        if name != "_sort":
            raise UnsupportedSearchParameter("modifiers are not supported on _sort")
        for item in split_or("_sort", raw):
            descending = item.startswith("-")
            code = item[1:] if descending else item
            param = self.params.get(code)
            if param is None or param.type not in SORTABLE:
                self.skip(code, "unsupported sort parameter")
                continue
            self.sort.append(SortKey(code, param.type, descending))

    def p_summary(self, name: str, raw: str) -> None:
        if name != "_summary" or raw not in SUMMARY_MODES:
            raise invalid("_summary", "must be one of " + ", ".join(SUMMARY_MODES))
        self.summary = raw

    def p_total(self, name: str, raw: str) -> None:
        if name != "_total" or raw not in TOTAL_MODES:
            raise invalid("_total", "must be one of " + ", ".join(TOTAL_MODES))
        self.total = raw

    def p_elements(self, name: str, raw: str) -> None:
        for item in split_or("_elements", raw):
            path = item.split(".")
            if len(path) > 1 and path[0] == self.rtype:
                path = path[1:]
            if len(path) > MAX_ELEMENT_DEPTH or not all(_ELEMENT.fullmatch(p) for p in path):
                raise invalid("_elements", "invalid element name")
            dotted = ".".join(path)
            if dotted not in self.elements:
                self.elements.append(dotted)  # "name.family": see fhir/search/shaping.py
        if len(self.elements) > MAX_ELEMENTS:
            raise invalid("_elements", f"more than {MAX_ELEMENTS} elements")

    def p_cursor(self, name: str, raw: str) -> None:
        self.cursor = raw

    def p_include(self, name: str, raw: str) -> None:
        reverse = name.startswith("_revinclude")
        base, _, modifier = name.partition(":")
        if modifier not in ("", "iterate", "recurse"):
            raise UnsupportedSearchParameter(f"modifier :{safe_name(modifier)} on {base}")
        if len(self.includes) + len(self.revincludes) >= MAX_INCLUDES:
            raise invalid(base, f"more than {MAX_INCLUDES} includes")
        found = self.include(base, raw, iterate=bool(modifier))
        if found is not None:
            (self.revincludes if reverse else self.includes).append(found)

    def include(self, base: str, raw: str, *, iterate: bool) -> Include | None:
        if raw == "*":
            return Include(self.rtype, None, None, iterate)
        parts = raw.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise invalid(base, "takes the form Type:parameter[:TargetType]")
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        for type_name in (source, target):
            if type_name is not None and not self.registry.is_resource_type(type_name):
                self.skip(base, "unknown resource type in an include")
                return None
        if code == "*":
            return Include(source, None, target, iterate)
        param = self.registry.get(source, code)
        if param is None or param.type != "reference":
            self.skip(base, "unknown reference parameter in an include")
            return None
        return Include(source, code, target, iterate)


_CONTROL = {
    "_count": _Parser.p_count,
    "_sort": _Parser.p_sort,
    "_summary": _Parser.p_summary,
    "_total": _Parser.p_total,
    "_elements": _Parser.p_elements,
    "_cursor": _Parser.p_cursor,
    "_include": _Parser.p_include,
    "_revinclude": _Parser.p_include,
}


def parse_search(
    rtype: str,
    pairs: Sequence[tuple[str, str]],
    *,
    strict: bool = False,
    registry: Registry | None = None,
    max_count: int = 1000,
) -> SearchRequest:
    """The typed form of a search on `rtype`; raises a BadRequest subclass when refused."""
    if len(pairs) > MAX_PARAMS:
        raise InvalidSearchParameter(f"more than {MAX_PARAMS} search parameters")
    parser = _Parser(rtype, strict, registry or default_registry(), max_count)
    for name, raw in pairs:
        parser.pair(name, raw)
    return SearchRequest(
        rtype=rtype,
        filters=tuple(parser.filters),
        sort=tuple(parser.sort),
        count=parser.count,
        summary=parser.summary,
        elements=tuple(parser.elements),
        total=parser.total,
        includes=tuple(parser.includes),
        revincludes=tuple(parser.revincludes),
        cursor=parser.cursor,
        ignored=tuple(parser.ignored),
        used=tuple(parser.used),
    )
