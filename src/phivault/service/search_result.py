"""What a search returns to the API: matches, included resources, total, paging cursors."""

from __future__ import annotations

from dataclasses import dataclass, field

from phivault.fhir.search.model import SearchRequest


@dataclass(frozen=True, slots=True)
class Entry:
    rtype: str
    rid: str
    version: int
    last_updated: str
    body: bytes  # plaintext JSON, trimmed when _summary / _elements asked for it
    compartment: str | None = None  # the patient compartment it belongs to (access policy)

    @property
    def ref(self) -> str:
        return f"{self.rtype}/{self.rid}/{self.version}"


@dataclass(frozen=True, slots=True)
class SearchResult:
    request: SearchRequest
    matches: list[Entry]
    included: list[Entry] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    previous_cursor: str | None = None
    warnings: tuple[str, ...] = ()  # for the OperationOutcome entry: names, never values
