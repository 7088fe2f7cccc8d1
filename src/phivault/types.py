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
