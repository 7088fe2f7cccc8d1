"""What a search asks of the store: predicates over the index tables, sort keys, a page.

The store knows nothing of FHIR's search rules: the service turns a parsed request into
these (through the index policy, so blinded values arrive already tokenised) and the
store compiles them to SQL (search_sql.py). Semantics:

- `Cmp`: one comparison on one column of an index row. `null_true` says that a NULL in
  the column (an open end of a range) satisfies the comparison.
- `IndexMatch`: the resource has an index row of (`kind`, `param`) satisfying one of
  `rows` (each row a conjunction of `Cmp`); `rows=()` means "any row of the parameter".
- `IdMatch`: the resource's id is one of `rids`.
- `ChainMatch`: an index row (reference, `param`) of the resource points at a live
  `target` resource that satisfies `where`.
- `ReverseMatch`: a live `source` resource that satisfies `where` points at the resource
  through its reference parameter `param`.
- `CompartmentMatch`: the resource lies in one of the patient `compartments` (or in none
  at all, when `unassigned`): how the access policy narrows a search (never negated
  wrongly: a resource outside every compartment is not "in" one).
- `Term`: the OR of its atoms, negated if `negate`; a spec's terms are ANDed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from phivault.store.base import VersionRecord

COLUMNS = frozenset({"system", "value", "text", "lo", "hi", "mid"})
OPS = frozenset(
    {"=", "<", "<=", ">", ">=", "in", "prefix", "contains", "iprefix", "like", "notnull"}
)
# Selectivity hints: the compiler drives the query from the most selective term.
EXACT_ID, EXACT_REFERENCE, EXACT_TOKEN, EXACT_STRING, PREFIX, JOIN, RANGE, SCAN = range(8)


@dataclass(frozen=True, slots=True)
class Cmp:
    column: str  # system | value | text | lo | hi | mid ((lo + hi) / 2, or the one bound)
    op: str
    # "=" "<" "<=" ">" ">=": a scalar; "in": a tuple; "prefix" / "contains" / "iprefix": the
    # text to find; "like": a tuple of pieces where None stands for any run of characters.
    value: Any = None
    null_true: bool = False

    def __post_init__(self) -> None:
        if self.column not in COLUMNS or self.op not in OPS:
            raise ValueError("unknown column or operator in a search predicate")


Row: TypeAlias = tuple[Cmp, ...]


@dataclass(frozen=True, slots=True)
class IndexMatch:
    kind: str
    param: str
    rows: tuple[Row, ...] = ()
    selectivity: int = RANGE


@dataclass(frozen=True, slots=True)
class IdMatch:
    rids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChainMatch:
    param: str
    target: str
    where: tuple[Term, ...]


@dataclass(frozen=True, slots=True)
class ReverseMatch:
    source: str
    param: str
    where: tuple[Term, ...]


@dataclass(frozen=True, slots=True)
class CompartmentMatch:
    compartments: tuple[str, ...]
    unassigned: bool = False


Atom: TypeAlias = IndexMatch | IdMatch | ChainMatch | ReverseMatch | CompartmentMatch


@dataclass(frozen=True, slots=True)
class Term:
    any_of: tuple[Atom, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # "_id" and "_lastUpdated" sort on the resource row itself
    kind: str = ""  # index kind of other parameters
    column: str = "value"
    descending: bool = False


@dataclass(frozen=True, slots=True)
class SearchSpec:
    rtype: str
    terms: tuple[Term, ...] = ()
    sort: tuple[SortKey, ...] = ()
    limit: int = 50
    # Keyset position: the sort keys and id of the last row already seen. Rows come after
    # it (before it when `backward`), so inserts elsewhere never shift a page.
    after: tuple[Any, ...] | None = None
    backward: bool = False


@dataclass(frozen=True, slots=True)
class SearchRow:
    record: VersionRecord
    key: tuple[Any, ...]  # sort keys then id: the keyset position of this row


@dataclass(frozen=True, slots=True)
class SearchPage:
    rows: list[SearchRow]
    more: bool  # rows exist beyond this page (in the direction of travel)


@dataclass(frozen=True, slots=True)
class Reference:
    """One local reference of a resource (for _include / _revinclude)."""

    rid: str  # the referring resource
    param: str
    target_type: str
    target_id: str
