"""Shared type aliases and the one record type every layer passes along (IndexRow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

JSON: TypeAlias = Any
Resource: TypeAlias = dict[str, Any]
"""A FHIR resource as parsed JSON (`resourceType`, `id`, `meta`, ...)."""


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One search-index value of one resource version (see fhir/search/index.py for the
    meaning of each column per kind). Identifying values are blinded by the crypto layer
    before they reach the store."""

    param: str
    kind: str  # token | string | date | reference | quantity | number | uri | composite
    system: str | None = None
    value: str | None = None
    text: str | None = None
    lo: float | None = None
    hi: float | None = None


_SET_FIELDS = tuple(
    IndexRow.__dict__[name].__set__
    for name in ("param", "kind", "system", "value", "text", "lo", "hi")
)
_SET_PARAM, _SET_KIND, _SET_SYSTEM, _SET_VALUE, _SET_TEXT, _SET_LO, _SET_HI = _SET_FIELDS
_new = object.__new__


def index_row(
    row: tuple[str, str, str | None, str | None, str | None, float | None, float | None],
) -> IndexRow:
    """IndexRow(*row), about twice as fast: the frozen dataclass __init__ goes through
    object.__setattr__ per field; this fills the slots directly. Same object either way
    (tests compare them). Every write makes one per index row (a Patient: its ~35
    extracted rows, then ~45 blinded ones)."""
    entry = _new(IndexRow)
    _SET_PARAM(entry, row[0])
    _SET_KIND(entry, row[1])
    _SET_SYSTEM(entry, row[2])
    _SET_VALUE(entry, row[3])
    _SET_TEXT(entry, row[4])
    _SET_LO(entry, row[5])
    _SET_HI(entry, row[6])
    return entry
