"""The records the service layer hands to its callers (and takes from them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from phivault.access.principal import Principal
from phivault.types import IndexRow, Resource


@dataclass(frozen=True, slots=True)
class Context:
    """Who is asking, from where and why. Filled in by the API's authentication step."""

    actor: str = "anonymous"
    client: str | None = None
    purpose: str | None = None
    # The authenticated caller (roles, scopes, patient context, session, break-glass);
    # None for trusted in-process callers (CLI with the key), which the policy allows.
    principal: Principal | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """One version as the API sees it: plaintext JSON bytes plus its identity."""

    rtype: str
    rid: str
    version: int
    last_updated: str
    deleted: bool
    body: bytes | None
    method: str = "PUT"  # how this version came to be (history's request.method)


@dataclass(frozen=True, slots=True)
class WriteResult:
    version: Version
    created: bool  # a new resource (201) rather than a new version of one (200)
    changed: bool = True  # False when a conditional create matched an existing resource


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[Version]
    total: int | None  # None under access control unless the page holds everything
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A resource made ready for storage before the write transaction opens: id and
    lastUpdated set, index rows extracted (and blinded), its compartment's key in place."""

    rtype: str
    rid: str
    resource: Resource
    rows: list[IndexRow]
    compartment: str | None


@dataclass(slots=True)
class ImportStats:
    created: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
