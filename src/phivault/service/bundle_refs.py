"""Resolving the references between the entries of a Bundle, and conditional references.

- A reference equal to another entry's fullUrl (`urn:uuid:...`, `urn:oid:...`, or the URL
  of an entry the transaction creates) becomes that entry's `Type/id`.
- A conditional reference (`Patient?identifier=s|v`) must match exactly one resource,
  found through the service's condition lookup; otherwise the entry fails. Each match is
  kept (`matched`) for the transaction to confirm inside its write transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from phivault.errors import PreconditionFailed, UnresolvedReference
from phivault.fhir.bundle_entries import conditional_reference
from phivault.fhir.conditions import parse_condition
from phivault.fhir.resources import check_type
from phivault.service.conditional import Matched

if TYPE_CHECKING:
    from phivault.service.core import Context, Service
    from phivault.store.base import ReadView

Resolve = Callable[[str, str], "str | None"]


class ReferenceResolver:
    def __init__(
        self,
        service: Service,
        aliases: dict[str, str],
        ctx: Context | None = None,
        view: ReadView | None = None,
    ) -> None:
        self._service = service
        self._ctx = ctx  # a conditional reference matches only what this caller may see
        self._view = view  # where conditions are matched (the store when None)
        self._aliases = aliases  # fullUrl -> "Type/id"
        self._conditional: dict[str, str] = {}
        self.matched: list[Matched] = []  # the conditional references' matches

    def for_entry(self, prefix: str) -> Resolve:
        """A resolver that reports locations below `prefix` (e.g. the resource type)."""
        return lambda where, reference: self.resolve(f"{prefix}.{where}", reference)

    def resolve(self, where: str, reference: str) -> str | None:
        """The replacement of `reference`, or None to leave it as it is."""
        alias = self._aliases.get(reference)
        if alias is not None:
            return alias
        condition = conditional_reference(reference)
        if condition is None:
            return None
        known = self._conditional.get(reference)
        if known is not None:
            return known
        rtype, query = condition
        check_type(rtype)
        parsed = parse_condition(rtype, query)
        found = self._service.search_ids(rtype, parsed, self._ctx, self._view)
        if not found:
            raise UnresolvedReference(expression=[where])
        if len(found) > 1:
            raise PreconditionFailed(
                "a conditional reference matched more than one resource", expression=[where]
            )
        resolved = f"{rtype}/{found[0]}"
        self._conditional[reference] = resolved
        self.matched.append(Matched(rtype, parsed, (found[0],)))
        return resolved
