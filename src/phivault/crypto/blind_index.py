"""The index policy with encryption on: identifying search values become blind indexes.

Which values identify a person (DESIGN.md, "Storage and encryption sketch"): names,
identifiers, telecom, address parts and birth/death dates of Patient, RelatedPerson,
Practitioner and Person, and the identifier that a Reference may carry. Everything else
(codes, statuses, quantities, references by id, dates of care) stays in clear for speed.

Row shapes after blinding (the query layer mirrors them through the `query_*` methods):

- string: one `blind` row per parameter, whose `value` is its distinct prefix tokens
  (hex, space-separated, in token order), which the store keeps in its compact blind
  table (one entry per token). Then, for `family`, `given` and `address` (WHOLE_VALUES),
  one `string` row per value, whose `value` is the token of its longest indexed prefix
  and `text` the token of the value as written: the snooping detector matches staff and
  patients on them (detect/kinship.py). Every other parameter with a value gets one
  `string` row with neither value nor text, which says only that the resource has a
  value there (`:missing`): no token of its whole value is stored. Prefixes are indexed
  up to `prefix_len` characters; a longer query matches on its first `prefix_len`
  characters and must be re-checked, and so must `:exact` (the value's prefix tokens
  select the candidates, the decrypted values as written decide).
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
    blind_prefix_query,
    normalize_string,
)
from phivault.types import IndexRow, index_row

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
# The parameters whose whole values keep tokens: a rare surname or street line shared by
# a member of staff and a patient is what the snooping detector looks for (detect/
# kinship.py, HELD; a test holds the two equal). Search does not read these tokens.
WHOLE_VALUES = frozenset({"family", "given", "address"})


class BlindIndexPolicy:
    def __init__(self, key: bytes, *, prefix_len: int = DEFAULT_PREFIX_LEN) -> None:
        self._key = key
        self._blind = BlindKey(key)
        self.prefix_len = prefix_len

    def is_blinded(self, rtype: str, param: str) -> bool:
        return param in IDENTIFYING.get(rtype, ())

    def transform(self, rtype: str, rows: list[IndexRow]) -> list[IndexRow]:
        blinded = IDENTIFYING.get(rtype)
        if blinded is None:
            return [
                self._reference(row) if row.kind == "reference" and row.text else row
                for row in rows
            ]
        return _Blinding(self).rows(blinded, rows)

    def _reference(self, row: IndexRow) -> IndexRow:
        return IndexRow(
            row.param,
            "reference",
            system=row.system,
            value=row.value,
            text=self.query_reference_identifier(row.text or ""),
        )

    # -- the query side: the same transformations applied to search arguments -----------
    # Tokens through the pre-keyed BlindKey: the same as blind_token, with
    # the key's HMAC pads hashed once (tests/crypto hold them equal). The write path
    # (_Blinding) asks these too, so both sides of a search compute a token one way.
    def query_token(self, param: str, code: str) -> str:
        return self._blind.token(param, None, code)

    def query_prefix_tokens(self, param: str, text: str) -> tuple[tuple[str, ...], bool]:
        """The tokens of a default (starts-with) or `:exact` search, any of which matches:
        the parameter's own and those of the parameters it covers (_COVERS)."""
        domain = _SAME_TOKENS.get(param, param)
        found = [
            blind_prefix_query(self._key, d, text, self.prefix_len)
            for d in (domain, *_COVERS.get(domain, ()))
        ]
        return tuple(f.token for f in found), found[0].needs_recheck

    def query_date(self, param: str, date_text: str) -> str:
        """Token of a date given at day, month or year precision (YYYY-MM-DD, YYYY-MM, YYYY)."""
        return self._blind.token(param, DATE_SYSTEM, date_text)

    def query_reference_identifier(self, system_value: str) -> str:
        return self._blind.token("reference:identifier", None, system_value)


class _Blinding:
    """One resource's blinding. Several parameters index the same values (name, family
    and phonetic; address and address-city; an identifier again under its type for
    `:of-type`), and a value's prefixes repeat its shorter ones: each token is computed
    once per resource."""

    __slots__ = (
        "_exact",
        "_longest",
        "_narrower",
        "_normal",
        "_policy",
        "_prefixes",
        "_present",
        "_tokens",
    )

    def __init__(self, policy: BlindIndexPolicy) -> None:
        self._policy = policy
        self._normal: dict[str, str] = {}
        # (domain, normalized) -> the token of its longest prefix, or "" where no row
        # needs it (the value's prefix tokens are made or covered either way)
        self._longest: dict[tuple[str, str], str] = {}
        self._exact: dict[tuple[str, str], str] = {}  # (domain, raw) -> token
        self._tokens: dict[tuple[str, str], str] = {}  # (param, code) -> token
        self._prefixes: dict[str, set[str]] = {}  # domain -> its prefix tokens
        self._narrower: set[tuple[str, str]] = set()  # (narrower param, normalized)
        self._present: set[str] = set()  # parameters with a value and no whole-value row

    def _normalized(self, raw: str) -> str:
        value = self._normal.get(raw)
        if value is None:
            value = self._normal[raw] = normalize_string(raw)
        return value

    def rows(self, blinded: frozenset[str], rows: list[IndexRow]) -> list[IndexRow]:
        for row in rows:
            if row.kind == "string" and row.param in _NARROWER and row.value:
                self._narrower.add((row.param, self._normalized(row.value)))
        out: list[IndexRow] = []
        policy = self._policy
        for row in rows:
            kind = row.kind
            if kind == "reference" and row.text:
                out.append(policy._reference(row))
            elif row.param not in blinded:
                out.append(row)
            elif kind == "string":
                found = self._string(row)
                if found is not None:
                    out.append(found)
            elif kind == "token":
                if row.value is not None:  # a display text alone: not searchable once blinded
                    out.append(
                        index_row(
                            (row.param, "token", row.system, self._token(row), None, None, None)
                        )
                    )
            elif kind == "date":
                day = _date_text(row.lo, row.hi)
                if day is not None:
                    value = policy.query_date(row.param, day)
                    out.append(
                        index_row((row.param, "token", DATE_SYSTEM, value, None, None, None))
                    )
            # no other kind identifies a person; drop rather than leak
        for param in sorted(self._present):
            out.append(index_row((param, "string", None, None, None, None, None)))
        for param, tokens in self._prefixes.items():
            out.append(index_row((param, BLIND, None, " ".join(sorted(tokens)), None, None, None)))
        return out

    def _token(self, row: IndexRow) -> str:
        key = (row.param, row.value or "")
        token = self._tokens.get(key)
        if token is None:
            token = self._tokens[key] = self._policy.query_token(row.param, key[1])
        return token

    def _string(self, row: IndexRow) -> IndexRow | None:
        """The value's prefix tokens, under its parameter's domain unless a narrower
        parameter holds the same value (_COVERS); then its whole-value row (WHOLE_VALUES)
        or the parameter's mark of presence."""
        if not row.value:
            return None
        value = self._normalized(row.value)
        if not value:
            return None
        domain = _SAME_TOKENS.get(row.param, row.param)
        blind = self._policy._blind
        prefix_len = self._policy.prefix_len
        last = self._longest.get((domain, value))
        if last is None:
            last = ""
            for narrower in _COVERS.get(domain, ()):
                if (narrower, value) in self._narrower:
                    break
            else:
                tokens = blind.prefixes(domain, value, prefix_len)
                self._prefixes.setdefault(domain, set()).update(tokens)
                last = tokens[-1]
            self._longest[(domain, value)] = last
        if row.param not in WHOLE_VALUES:
            self._present.add(row.param)
            return None
        if not last:  # covered by a narrower parameter: its longest prefix, on its own
            last = self._longest[(domain, value)] = blind.longest_prefix(domain, value, prefix_len)
        exact = None
        if row.text is not None:
            exact = self._exact.get((domain, row.text))
            if exact is None:
                exact = self._exact[(domain, row.text)] = blind.exact(domain, row.text)
        return index_row((row.param, "string", None, last, exact, None, None))


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
