"""The index policy with encryption on: identifying search values become blind indexes.

Which values identify a person (DESIGN.md, "Storage and encryption sketch"): names,
identifiers, telecom, address parts and birth/death dates of Patient, RelatedPerson,
Practitioner and Person, and the identifier that a Reference may carry. Everything else
(codes, statuses, quantities, references by id, dates of care) stays in clear for speed.

Row shapes after blinding (the query layer mirrors them through the `query_*` methods):

- string: one `blind` row per distinct prefix token of the parameter (`value`), which the
  store keeps in its compact blind table (one B-tree entry per token); and one `string`
  row per value, whose `value` is the token of its longest indexed prefix and `text` its
  `:exact` token (`:exact`, `:missing`). Prefixes are indexed up to `prefix_len`
  characters; a longer query matches on its first `prefix_len` characters and must be
  re-checked.
- token: `system` kept in clear (a naming system, not a person), `value` the token of the
  code under "any system"; display texts are dropped.
- date: becomes a token row (`kind="token"`, `system="date"`) of the date at its own
  precision, so only equality searches work on it.
- reference: `text` (Reference.identifier "system|value") becomes a token.
"""

from __future__ import annotations

from datetime import UTC, datetime

from phivault.crypto.blind import (
    DEFAULT_PREFIX_LEN,
    BlindKey,
    blind_exact,
    blind_prefix_query,
    blind_token,
    normalize_string,
)
from phivault.types import IndexRow

_PERSON_PARAMS = frozenset(
    {
        "name",
        "family",
        "given",
        "phonetic",
        "identifier",
        "telecom",
        "phone",
        "email",
        "address",
        "address-city",
        "address-country",
        "address-postalcode",
        "address-state",
        "birthdate",
        "death-date",
    }
)

IDENTIFYING: dict[str, frozenset[str]] = {
    "Patient": _PERSON_PARAMS,
    "RelatedPerson": _PERSON_PARAMS,
    "Practitioner": _PERSON_PARAMS,
    "Person": _PERSON_PARAMS,
}

DATE_SYSTEM = "date"
_DAY = 86_400


BLIND = "blind"  # the kind of a prefix-token row (store: the compact blind table)

# Parameters whose values are another parameter's, for every blinded type: R4 gives
# `phonetic` the expression of `name` (Patient.name, Practitioner.name, ...; a test holds
# this against the registry). Their tokens are taken in the other parameter's domain, so
# a Patient's names are blinded and stored once, not twice; searches give the same
# results as before. Each value keeps its own `string` row under its own parameter.
_SAME_TOKENS = {"phonetic": "name"}
# Parameters whose values include all of another parameter's: FHIR's `name` matches any
# part of a HumanName (family and given among them), `address` any part of an Address.
# A value that the resource indexes under a narrower parameter too gets its prefix tokens
# there only; a search of the broader parameter looks up the narrower ones' tokens as
# well (`query_prefix_tokens`). Exact: "this name starts with q" is "that family name
# starts with q" when the two are the same value. Saves a third of a Patient's tokens.
_COVERS = {
    "name": ("family", "given"),
    "address": ("address-city", "address-state", "address-postalcode", "address-country"),
}
_NARROWER = frozenset(p for narrower in _COVERS.values() for p in narrower)


class BlindIndexPolicy:
    def __init__(self, key: bytes, *, prefix_len: int = DEFAULT_PREFIX_LEN) -> None:
        self._key = key
        self._blind = BlindKey(key)
        self.prefix_len = prefix_len

    def is_blinded(self, rtype: str, param: str) -> bool:
        return param in IDENTIFYING.get(rtype, ())

    def transform(self, rtype: str, rows: list[IndexRow]) -> list[IndexRow]:
        blinded = IDENTIFYING.get(rtype)
        out: list[IndexRow] = []
        # Per resource: several parameters index the same values (name, family, phonetic;
        # address, address-city), and a value's prefixes repeat its shorter ones.
        normalized: dict[str, str] = {}
        prefixes: dict[str, set[str]] = {}
        narrower: dict[str, set[str]] = {}
        if blinded is not None:
            for row in rows:
                if row.kind == "string" and row.param in _NARROWER and row.value:
                    narrower.setdefault(row.param, set()).add(self._normal(row.value, normalized))
        for row in rows:
            if row.kind == "reference" and row.text:
                out.append(
                    IndexRow(
                        row.param,
                        "reference",
                        system=row.system,
                        value=row.value,
                        text=self.query_reference_identifier(row.text),
                    )
                )
            elif blinded is None or row.param not in blinded:
                out.append(row)
            elif row.kind == "string":
                self._blind_string(row, normalized, prefixes, narrower, out)
            else:
                out.extend(self._blind_other(row))
        for param, tokens in prefixes.items():
            out.extend(IndexRow(param, BLIND, value=t) for t in sorted(tokens))
        return out

    @staticmethod
    def _normal(raw: str, cache: dict[str, str]) -> str:
        value = cache.get(raw)
        if value is None:
            value = cache[raw] = normalize_string(raw)
        return value

    def _blind_string(
        self,
        row: IndexRow,
        normalized: dict[str, str],
        prefixes: dict[str, set[str]],
        narrower: dict[str, set[str]],
        out: list[IndexRow],
    ) -> None:
        if not row.value:
            return
        value = self._normal(row.value, normalized)
        if not value:
            return
        domain = _SAME_TOKENS.get(row.param, row.param)
        if any(value in narrower.get(p, ()) for p in _COVERS.get(domain, ())):
            last = self._blind.longest_prefix(domain, value, self.prefix_len)
        else:
            tokens = self._blind.prefixes(domain, value, self.prefix_len)
            prefixes.setdefault(domain, set()).update(tokens)
            last = tokens[-1]
        exact = self._blind.exact(domain, row.text) if row.text is not None else None
        out.append(IndexRow(row.param, "string", value=last, text=exact))

    def _blind_other(self, row: IndexRow) -> list[IndexRow]:
        param = row.param
        if row.kind == "token":
            if row.value is None:
                return []  # a display text alone: not searchable once blinded
            value = self._blind.token(param, None, row.value)
            return [IndexRow(param, "token", system=row.system, value=value)]
        if row.kind == "date":
            day = _date_text(row.lo, row.hi)
            if day is None:
                return []
            return [IndexRow(param, "token", system=DATE_SYSTEM, value=self.query_date(param, day))]
        return []  # no other kind identifies a person; drop rather than leak

    # -- the query side: the same transformations applied to search arguments -----------
    def query_token(self, param: str, code: str) -> str:
        return blind_token(self._key, param, None, code)

    def query_prefix(self, param: str, text: str) -> tuple[str, bool]:
        """(token, needs_recheck) for a default (starts-with) string search."""
        domain = _SAME_TOKENS.get(param, param)
        found = blind_prefix_query(self._key, domain, text, self.prefix_len)
        return found.token, found.needs_recheck

    def query_prefix_tokens(self, param: str, text: str) -> tuple[tuple[str, ...], bool]:
        """The tokens of a default (starts-with) search, any of which matches: the
        parameter's own and those of the parameters it covers (_COVERS)."""
        domain = _SAME_TOKENS.get(param, param)
        found = [
            blind_prefix_query(self._key, d, text, self.prefix_len)
            for d in (domain, *_COVERS.get(domain, ()))
        ]
        return tuple(f.token for f in found), found[0].needs_recheck

    def query_exact(self, param: str, raw: str) -> str:
        return blind_exact(self._key, _SAME_TOKENS.get(param, param), raw)

    def query_date(self, param: str, date_text: str) -> str:
        """Token of a date given at day, month or year precision (YYYY-MM-DD, YYYY-MM, YYYY)."""
        return blind_token(self._key, param, DATE_SYSTEM, date_text)

    def query_reference_identifier(self, system_value: str) -> str:
        return blind_token(self._key, "reference:identifier", None, system_value)


def _date_text(lo: float | None, hi: float | None) -> str | None:
    """The date at the precision it was given, recovered from its index range."""
    if lo is None or hi is None:
        return None
    start = datetime.fromtimestamp(lo, UTC)
    span = hi - lo
    if span <= _DAY:
        return start.strftime("%Y-%m-%d")
    if span <= 31 * _DAY:
        return start.strftime("%Y-%m")
    return start.strftime("%Y")
