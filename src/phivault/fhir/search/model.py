"""The parsed form of a FHIR search request: what was asked, every value already checked.

`query.parse_search` builds these from the request's (name, value) pairs; the service
turns them into store predicates through the index policy. Nothing here knows about keys
or SQL. Values keep enough of their raw form for the blinded (tokenised) comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

# FHIR R4 search prefixes (search.html#prefix); "eq" is the default.
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

SUMMARY_MODES = ("true", "false", "text", "data", "count")
TOTAL_MODES = ("none", "estimate", "accurate")


@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None  # None: any system; "": only values that have no system
    code: str | None  # None: any code of `system` ("system|")


@dataclass(frozen=True, slots=True)
class StringValue:
    text: str  # as given; matching normalises it (index.normalize_string)


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: str
    text: str  # as given (the blinded form tokenises the date text itself)
    lo: float  # implicit range [lo, hi) of the value's precision, epoch seconds UTC
    hi: float


@dataclass(frozen=True, slots=True)
class NumberValue:
    prefix: str
    value: float  # the number itself
    lo: float  # implicit range [lo, hi) of its precision: 100 -> [99.5, 100.5)
    hi: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    number: NumberValue
    system: str | None  # unit system; None: any
    code: str | None  # unit code (or unit text when no system is given); None: any unit


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    rtype: str | None  # target type when known (Type/id, :Type modifier, single target)
    rid: str | None  # target id of a local reference
    url: str | None = None  # an absolute URL, URN or canonical, as given


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str


@dataclass(frozen=True, slots=True)
class MissingValue:
    missing: bool


@dataclass(frozen=True, slots=True)
class CompositeValue:
    kinds: tuple[str, ...]  # component types, in the definition's order
    parts: tuple[Value, ...]


Value: TypeAlias = (
    TokenValue
    | StringValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | MissingValue
    | CompositeValue
)


@dataclass(frozen=True, slots=True)
class Clause:
    """One occurrence of a parameter: its values are ORed; clauses are ANDed."""

    code: str
    type: str  # the parameter's type (token, string, date, ...)
    modifier: str | None
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class ChainClause:
    """`subject:Patient.name=x`: `code` must reference a `target` matching `inner`."""

    code: str
    target: str
    inner: Clause


@dataclass(frozen=True, slots=True)
class HasClause:
    """`_has:Observation:patient:code=x`: some `source` resource whose `ref_param`
    references the searched resource matches `inner`."""

    source: str
    ref_param: str
    inner: Clause


Filter: TypeAlias = Clause | ChainClause | HasClause


@dataclass(frozen=True, slots=True)
class SortKey:
    code: str
    type: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """`_include=Source:param[:Target]` (or `_revinclude`); `param` None means `*`."""

    source: str
    param: str | None
    target: str | None = None
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class Ignored:
    """A parameter left out of a lenient search, and why (names only, never values)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class SearchRequest:
    rtype: str
    filters: tuple[Filter, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    cursor: str | None = None
    ignored: tuple[Ignored, ...] = ()
    # (name, value) of every pair that was processed, in order: self links and audit.
    used: tuple[tuple[str, str], ...] = ()

    @property
    def has_results_controls(self) -> bool:
        """True when the request shapes results (anything besides filters)."""
        return bool(
            self.sort
            or self.count is not None
            or self.summary
            or self.elements
            or self.total
            or self.includes
            or self.revincludes
            or self.cursor
        )
