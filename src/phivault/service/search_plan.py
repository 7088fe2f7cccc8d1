"""Turn a parsed search into store predicates, through the index policy.

Identifying parameters (names, identifiers, birth dates of people) are stored as blind
tokens (crypto/blind_index.py); every search value for them goes through the policy's
`query_*` methods, never into SQL in clear. What cannot be answered from tokens is refused
with a 400 that names the parameter (`:contains`, ranges on an encrypted date, sorting).
A starts-with search longer than the indexed prefixes, and every `:exact` search, selects
a superset by prefix tokens: the planner returns a `Recheck` and the service compares the
decrypted values before release.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from phivault.errors import BadRequest, UnsupportedSearchParameter
from phivault.fhir.indexing import IndexPolicy
from phivault.fhir.search import ucum
from phivault.fhir.search.index import normalize_string
from phivault.fhir.search.model import (
    ChainClause,
    Clause,
    CompositeValue,
    DateValue,
    Filter,
    HasClause,
    MissingValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from phivault.fhir.search.model import SortKey as RequestSortKey
from phivault.fhir.search.registry import Registry
from phivault.fhir.valuesets import CodeSet
from phivault.service import search_rows
from phivault.store.search_spec import (
    EXACT_REFERENCE,
    EXACT_STRING,
    EXACT_TOKEN,
    PREFIX,
    RANGE,
    SCAN,
    ChainMatch,
    Cmp,
    IdMatch,
    IndexMatch,
    ReverseMatch,
    Row,
    SortKey,
    Term,
)
from phivault.store.sql import BLIND

# A chained or _has search whose inner part needs re-checking is resolved to ids first;
# past this many the request is refused rather than decrypting without bound.
MAX_RESOLVED_IDS = 1000
# An encrypted date searched at year precision looks up 378 tokens (year, months, days).
MAX_DATE_TOKENS = 2000


@dataclass(frozen=True, slots=True)
class Recheck:
    """After decryption, keep a resource only if some value of `param` starts with one of
    `texts` (normalised), because the blind index could only test a shorter prefix; with
    `exact`, only if some value is one of `texts` as written (`:exact`: case and accents
    count, which no prefix token can tell)."""

    param: str
    texts: tuple[str, ...]
    exact: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    terms: tuple[Term, ...]
    rechecks: tuple[Recheck, ...]


# (resource type, terms, rechecks) -> ids of the live resources that match, all of them.
Resolver = Callable[[str, tuple[Term, ...], tuple[Recheck, ...]], tuple[str, ...]]
# Resource type -> predicates limiting the inside of a chain or _has to what the caller
# may see (the access policy; may raise Forbidden for a type the caller may never search).
InnerTerms = Callable[[str], tuple[Term, ...]]
# A ValueSet's url -> its codes (fhir/valuesets.py); raises a BadRequest when it cannot.
Expander = Callable[[str], CodeSet]


def _unrestricted(rtype: str) -> tuple[Term, ...]:
    return ()


def _no_valuesets(url: str) -> CodeSet:
    raise BadRequest("ValueSet searches (:in, :not-in) are not available here")


def encrypted(code: str, what: str) -> UnsupportedSearchParameter:
    return UnsupportedSearchParameter(
        f"search parameter {code} is encrypted; {what} is not supported on it"
    )


class Planner:
    def __init__(
        self,
        policy: IndexPolicy,
        registry: Registry,
        resolve: Resolver,
        base_url: str | None = None,
        inner: InnerTerms = _unrestricted,
        expand: Expander = _no_valuesets,
    ) -> None:
        self.policy = policy
        self.registry = registry
        self.resolve = resolve
        self.inner = inner
        self.expand = expand
        self.base_url = base_url.rstrip("/") + "/" if base_url else None

    def plan(self, rtype: str, filters: Sequence[Filter]) -> Plan:
        terms: list[Term] = []
        rechecks: list[Recheck] = []
        for item in filters:
            term, recheck = self.filter(rtype, item)
            terms.append(term)
            if recheck is not None:
                rechecks.append(recheck)
        return Plan(tuple(terms), tuple(rechecks))

    def filter(self, rtype: str, item: Filter) -> tuple[Term, Recheck | None]:
        if isinstance(item, Clause):
            return self.clause(rtype, item)
        inner_type = item.target if isinstance(item, ChainClause) else item.source
        term, recheck = self.clause(inner_type, item.inner)
        # Only what the caller may see inside: a chain or _has never reveals that a
        # hidden record exists.
        where: tuple[Term, ...] = (term, *self.inner(inner_type))
        if recheck is not None:
            ids = self.resolve(inner_type, where, (recheck,))
            if len(ids) > MAX_RESOLVED_IDS:
                raise BadRequest(
                    f"the search on encrypted {item.inner.code} matches too many "
                    f"{inner_type} resources; give a longer or more specific value"
                )
            where = (Term((IdMatch(ids),)),)
        if isinstance(item, ChainClause):
            return Term((ChainMatch(item.code, item.target, where),)), None
        assert isinstance(item, HasClause)
        return Term((ReverseMatch(item.source, item.ref_param, where),)), None

    # -- one clause -------------------------------------------------------------------------------
    def clause(self, rtype: str, clause: Clause) -> tuple[Term, Recheck | None]:
        code, kind, modifier = clause.code, clause.type, clause.modifier
        blinded = self.policy.is_blinded(rtype, code)
        stored = "token" if blinded and kind == "date" else kind
        if modifier == "missing":
            value = clause.values[0]
            assert isinstance(value, MissingValue)
            return Term((IndexMatch(stored, code),), negate=value.missing), None
        if code == "_id":
            ids = tuple(v.code for v in clause.values if isinstance(v, TokenValue) and v.code)
            return Term((IdMatch(ids),), negate=modifier == "not"), None
        if kind == "string":
            return self.string(code, clause, blinded)
        if kind == "quantity":
            return self.quantity(code, clause), None
        negate = modifier in ("not", "not-in")
        rows, selectivity = self.rows(rtype, clause, blinded)
        if not rows:  # an empty ValueSet: nothing is in it
            return Term((IdMatch(()),), negate=negate), None
        term = Term((IndexMatch(stored, code, tuple(rows), selectivity),), negate=negate)
        return term, None

    def rows(self, rtype: str, clause: Clause, blinded: bool) -> tuple[list[Row], int]:
        code, kind, modifier = clause.code, clause.type, clause.modifier
        rows: list[Row] = []
        if kind == "token" and modifier == "text":
            if blinded:
                raise encrypted(code, ":text")
            for value in clause.values:
                assert isinstance(value, StringValue)
                rows.append((Cmp("text", "iprefix", value.text.lower()),))
            return rows, SCAN
        if kind == "token" and modifier in ("in", "not-in"):
            return self.valueset_rows(code, clause, blinded), EXACT_TOKEN
        if kind == "token":
            selectivity = EXACT_TOKEN
            for value in clause.values:
                assert isinstance(value, TokenValue)
                row: list[Cmp] = []
                if value.system is not None:
                    row.append(Cmp("system", "=", value.system))
                if value.code is not None:
                    found = self.policy.query_token(code, value.code) if blinded else value.code
                    row.append(Cmp("value", "=", found))
                else:
                    selectivity = RANGE
                rows.append(tuple(row))
            return rows, selectivity
        if kind == "date" and blinded:
            return [self.blinded_date(code, clause)], EXACT_TOKEN
        if kind == "reference":
            return self.reference(code, clause), EXACT_REFERENCE
        if kind == "uri":
            return self.uri(clause)
        if kind == "composite":
            for value in clause.values:
                assert isinstance(value, CompositeValue)
                rows.extend(search_rows.composite_rows(code, value))
            exact = all(r[0].op == "=" for r in rows)
            return rows, EXACT_TOKEN if exact else SCAN
        for value in clause.values:  # date, number, quantity in clear
            rows.extend(search_rows.value_rows(value))
        return rows, RANGE

    def valueset_rows(self, code: str, clause: Clause, blinded: bool) -> list[Row]:
        """`:in` / `:not-in`: a row per code of the named ValueSets (ORed), and one per
        code system they include whole."""
        found = CodeSet()
        for value in clause.values:
            assert isinstance(value, UriValue)
            found.union(self.expand(value.uri))
        rows: list[Row] = [(Cmp("system", "=", system),) for system in sorted(found.systems)]
        for system, value_code in sorted(found.codes):
            token = self.policy.query_token(code, value_code) if blinded else value_code
            rows.append((Cmp("system", "=", system), Cmp("value", "=", token)))
        return rows

    def quantity(self, code: str, clause: Clause) -> Term:
        """Unit codes compared as given, and, for a UCUM unit this server can convert, the
        value in canonical units (fhir/search/ucum.py) against the canonical rows
        (`code:ucum`) and against values stored in the canonical unit itself."""
        given: list[Row] = []
        converted: list[Row] = []
        for value in clause.values:
            assert isinstance(value, QuantityValue)
            given.extend(search_rows.quantity_rows(value))
            converted.extend(search_rows.canonical_quantity_rows(value))
        atoms = [IndexMatch("quantity", code, tuple(given + converted), RANGE)]
        if converted:
            atoms.append(
                IndexMatch("quantity", ucum.canonical_param(code), tuple(converted), RANGE)
            )
        return Term(tuple(atoms))

    def string(self, code: str, clause: Clause, blinded: bool) -> tuple[Term, Recheck | None]:
        modifier = clause.modifier
        texts = [v.text for v in clause.values if isinstance(v, StringValue)]
        rows: list[Row] = []
        recheck = False
        kind = "string"
        if modifier == "contains":
            if blinded:
                raise encrypted(code, ":contains")
            rows = [(Cmp("value", "contains", normalize_string(t)),) for t in texts]
            selectivity = SCAN
        elif modifier == "exact" and not blinded:
            selectivity = EXACT_STRING
            rows = [(Cmp("value", "=", normalize_string(t)), Cmp("text", "=", t)) for t in texts]
        elif blinded:
            # Prefix tokens live in the store's blind table (crypto/blind_index.py). No
            # token tells case or accents apart: `:exact` looks up the value's prefix
            # tokens and compares the decrypted values as written.
            kind, selectivity = BLIND, EXACT_STRING
            recheck = modifier == "exact"
            for text in texts:
                tokens, needs_recheck = self.policy.query_prefix_tokens(code, text)
                recheck = recheck or needs_recheck
                rows.extend((Cmp("value", "=", token),) for token in tokens)
        else:
            selectivity = PREFIX
            rows = [(Cmp("value", "prefix", normalize_string(t)),) for t in texts]
        term = Term((IndexMatch(kind, code, tuple(rows), selectivity),))
        if not recheck:
            return term, None
        if modifier == "exact":
            return term, Recheck(code, tuple(texts), exact=True)
        return term, Recheck(code, tuple(normalize_string(t) for t in texts))

    def blinded_date(self, code: str, clause: Clause) -> Row:
        """An encrypted date is stored as a token of the date at its own precision; `eq`
        (the target lies within the searched day, month or year) is answered by looking up
        every day, month and year token inside the searched range."""
        tokens: list[str] = []
        for value in clause.values:
            assert isinstance(value, DateValue)
            if value.prefix != "eq":
                raise encrypted(code, f"the prefix {value.prefix}")
            text = value.text
            if len(text) not in (4, 7, 10):
                raise encrypted(code, "a time of day")
            for day_text in _dates_within(text):
                tokens.append(self.policy.query_date(code, day_text))
            if len(tokens) > MAX_DATE_TOKENS:
                raise BadRequest(f"too many dates in one search on encrypted {code}")
        return (Cmp("system", "=", "date"), Cmp("value", "in", tuple(dict.fromkeys(tokens))))

    def reference(self, code: str, clause: Clause) -> list[Row]:
        rows: list[Row] = []
        for value in clause.values:
            if isinstance(value, TokenValue):  # :identifier
                if value.system is None:
                    raise BadRequest(f"{code}:identifier needs system|value")
                token = self.policy.query_reference_identifier(f"{value.system}|{value.code}")
                rows.append((Cmp("text", "=", token),))
                continue
            assert isinstance(value, ReferenceValue)
            if value.url is not None:
                rows.append((Cmp("value", "=", value.url),))
                local = self.base_url is not None and value.url.startswith(self.base_url)
                if not local or value.rid is None:
                    continue
            row: list[Cmp] = []
            if value.rtype is not None:
                row.append(Cmp("system", "=", value.rtype))
            row.append(Cmp("value", "=", value.rid))
            rows.append(tuple(row))
        return rows

    def uri(self, clause: Clause) -> tuple[list[Row], int]:
        uris = [v.uri for v in clause.values if isinstance(v, UriValue)]
        if clause.modifier == "below":
            return [(Cmp("value", "prefix", u),) for u in uris], PREFIX
        if clause.modifier == "above":
            found = tuple(dict.fromkeys(a for u in uris for a in search_rows.uri_above(u)))
            return [(Cmp("value", "in", found),)], EXACT_TOKEN
        return [(Cmp("value", "=", u),) for u in uris], EXACT_TOKEN

    # -- sorting and compartments ---------------------------------------------------------------
    def sort(self, rtype: str, keys: Sequence[RequestSortKey]) -> tuple[SortKey, ...]:
        found: list[SortKey] = []
        for key in keys:
            if key.code in ("_id", "_lastUpdated"):
                found.append(SortKey(key.code, descending=key.descending))
                continue
            if self.policy.is_blinded(rtype, key.code):
                raise encrypted(key.code, "sorting")
            column = "lo" if key.type in ("date", "number", "quantity") else "value"
            found.append(SortKey(key.code, key.type, column, key.descending))
        return tuple(found)

    def compartment(self, rtype: str, patient_id: str) -> Term:
        """Resources of `rtype` in Patient/`patient_id`'s compartment (CompartmentDefinition)."""
        params = self.registry.params_for(rtype)
        codes = [
            c
            for c in self.registry.compartment_params(rtype)
            if c in params and params[c].type == "reference"
        ]
        row: Row = (Cmp("system", "=", "Patient"), Cmp("value", "=", patient_id))
        atoms: list[IdMatch | IndexMatch] = [
            IndexMatch("reference", c, (row,), EXACT_REFERENCE) for c in codes
        ]
        if rtype == "Patient":
            atoms.insert(0, IdMatch((patient_id,)))
        if not atoms:
            raise BadRequest(f"{rtype} resources are never in a Patient compartment")
        return Term(tuple(atoms))


def _dates_within(text: str) -> list[str]:
    """The date itself and every finer-precision date inside it (year: months and days)."""
    year = int(text[:4])
    if len(text) == 10:
        return [text]
    months = [int(text[5:7])] if len(text) == 7 else list(range(1, 13))
    found = [text]
    for month in months:
        month_text = f"{year:04d}-{month:02d}"
        if len(text) == 4:
            found.append(month_text)
        days = calendar.monthrange(year, month)[1]
        found.extend(f"{month_text}-{day:02d}" for day in range(1, days + 1))
    return found
