"""Expanding a ValueSet into the codes a token search (`:in`, `:not-in`) compares with.

Pure: the ValueSets come from a `Fetch` callable (the service reads them from the store).
Supported, per the R4 ValueSet definition (valueset.html#compositions):

- `compose.include` with a `concept` list (those codes of `system`), with only a `system`
  (every code of that system), with `valueSet` (the union of those sets; intersected with
  the include's own `system`/`concept` when it also has them);
- `compose.exclude` with a `concept` list or a whole `system`, when it removes codes the
  includes enumerate (excluding single codes from a whole-system include would need every
  code of the system: refused);
- no `compose` but an `expansion.contains` (a stored expansion): those codes.

Refused with a clear 400: an unknown ValueSet, `filter` (needs the code system's
hierarchy), nesting deeper than MAX_DEPTH, more than MAX_CODES codes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from phivault.errors import InvalidSearchParameter

MAX_DEPTH = 5
MAX_CODES = 1000

# canonical url (with "|version" when pinned) -> the ValueSet, or None when not stored
Fetch = Callable[[str, str | None], dict[str, Any] | None]

_SHOWABLE = re.compile(r"[A-Za-z0-9:/._\-|]{1,200}")


@dataclass(slots=True)
class CodeSet:
    """Codes as (system, code) pairs, plus systems included whole."""

    codes: set[tuple[str, str]] = field(default_factory=set)
    systems: set[str] = field(default_factory=set)

    def union(self, other: CodeSet) -> None:
        self.systems |= other.systems
        self.codes |= {c for c in other.codes if c[0] not in self.systems}
        self.codes = {c for c in self.codes if c[0] not in self.systems}

    def intersect(self, other: CodeSet) -> CodeSet:
        codes = {c for c in self.codes if c in other.codes or c[0] in other.systems}
        codes |= {c for c in other.codes if c[0] in self.systems}
        return CodeSet(codes, self.systems & other.systems)


def refused(url: str, why: str) -> InvalidSearchParameter:
    shown = url if _SHOWABLE.fullmatch(url) else "(a ValueSet)"
    return InvalidSearchParameter(f"ValueSet {shown}: {why}")


def expand(url: str, fetch: Fetch) -> CodeSet:
    """The codes of the ValueSet with canonical `url` (`url|version` pins a version)."""
    found = _expand(url, fetch, 0)
    if len(found.codes) > MAX_CODES:
        raise refused(url, f"has more than {MAX_CODES} codes; search by system instead")
    return found


def _expand(url: str, fetch: Fetch, depth: int) -> CodeSet:
    if depth > MAX_DEPTH:
        raise refused(url, f"nests ValueSets deeper than {MAX_DEPTH} levels")
    canonical, _, version = url.partition("|")
    valueset = fetch(canonical, version or None)
    if valueset is None:
        raise refused(url, "is not known to this server (store the ValueSet first)")
    compose = valueset.get("compose")
    if isinstance(compose, dict):
        return _compose(url, compose, fetch, depth)
    expansion = valueset.get("expansion")
    if isinstance(expansion, dict):
        found = CodeSet()
        _contains(expansion.get("contains"), found)
        return found
    raise refused(url, "has neither compose nor expansion")


def _contains(items: Any, found: CodeSet) -> None:
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        system, code = item.get("system"), item.get("code")
        if isinstance(system, str) and isinstance(code, str) and item.get("abstract") is not True:
            found.codes.add((system, code))
        _contains(item.get("contains"), found)


def _part(url: str, part: dict[str, Any], fetch: Fetch, depth: int) -> CodeSet:
    """The codes one include (or exclude) names."""
    if part.get("filter"):
        raise refused(url, "uses compose filters, which this server does not evaluate")
    system = part.get("system")
    concepts = part.get("concept")
    own: CodeSet | None = None
    if isinstance(system, str):
        if isinstance(concepts, list) and concepts:
            own = CodeSet({(system, c["code"]) for c in concepts if _has_code(c)})
        else:
            own = CodeSet(systems={system})
    nested = part.get("valueSet")
    if isinstance(nested, list) and nested:
        found = _expand(str(nested[0]), fetch, depth + 1)
        for other in nested[1:]:
            found = found.intersect(_expand(str(other), fetch, depth + 1))
        return found if own is None else found.intersect(own)
    if own is None:
        raise refused(url, "has an include without a system or valueSet")
    return own


def _has_code(concept: Any) -> bool:
    return isinstance(concept, dict) and isinstance(concept.get("code"), str)


def _compose(url: str, compose: dict[str, Any], fetch: Fetch, depth: int) -> CodeSet:
    found = CodeSet()
    for part in compose.get("include") or ():
        if isinstance(part, dict):
            found.union(_part(url, part, fetch, depth))
    for part in compose.get("exclude") or ():
        if not isinstance(part, dict):
            continue
        removed = _part(url, part, fetch, depth)
        if any(c[0] in found.systems for c in removed.codes):
            raise refused(url, "excludes single codes from a whole code system")
        found.systems -= removed.systems
        found.codes = {
            c for c in found.codes if c not in removed.codes and c[0] not in removed.systems
        }
    return found
