"""History (instance, type, system) under access control: the versions a caller may see,
paged so that hidden versions are skipped before a page is cut."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from phivault.access.policy import Decision, Target
from phivault.access.principal import SYSTEM
from phivault.fhir import json as fhir_json
from phivault.service import search_access
from phivault.service.authorize import interaction_of
from phivault.store.base import HistoryQuery

if TYPE_CHECKING:
    from phivault.service.core import Context, Service, Version

BATCH = 200
SCAN_CAP = 5000  # versions examined at most for one page (then a short page, with next)


def visible_page(
    service: Service, ctx: Context, query: HistoryQuery
) -> tuple[list[Version], int | None]:
    """(up to query.count visible versions, the cursor of the next page or None)."""
    interaction = interaction_of("history", query.rtype, query.rid)
    kept: list[Version] = []
    before = query.before_seq
    examined = 0
    while True:
        batch = service.store.history(replace(query, before_seq=before, count=BATCH))
        for n, record in enumerate(batch):
            examined += 1
            before = record.seq
            for version in service._open_many(ctx, "history", [record]):
                parsed = fhir_json.loads(version.body) if version.body is not None else None
                resource = parsed if isinstance(parsed, dict) else None
                target = Target(record.rtype, record.rid, record.compartment, resource)
                if service.policy.decide(ctx, interaction, target) is Decision.ALLOW:
                    kept.append(version)
            if len(kept) == query.count or examined >= SCAN_CAP:
                more = n < len(batch) - 1 or len(batch) == BATCH
                return kept, record.seq if more else None
        if len(batch) < BATCH:
            return kept, None


def unrestricted(service: Service, ctx: Context, rtype: str | None, rid: str | None) -> bool:
    """Whether the caller sees every version this history could list (then the store's
    paging and total are exact): a type (or, for a system client allowed every type, the
    whole system) that the policy leaves unrestricted, with no Consent anywhere."""
    policy, principal = service.policy, ctx.principal
    if principal is None:
        return True
    reacher = search_access.reaches(policy)
    if rid is not None or reacher is None:
        return False
    interaction = interaction_of("history", rtype, None)
    if rtype is None and principal.kind != SYSTEM:
        return False
    if policy.decide_type(principal, interaction, rtype or "*") is not Decision.ALLOW:
        return False
    reach = reacher.reach(ctx, interaction, rtype or "*")
    return reach.only is None and not reach.consented
