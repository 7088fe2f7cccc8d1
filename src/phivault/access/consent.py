"""FHIR R4 Consent resources that restrict access (the opt-out model: access is allowed
unless an active Consent denies it).

A provision applies when every criterion it states matches the access: `period` (now),
`actor` (the user's Practitioner), `purpose` (purpose of use), `class` (resource type),
`securityLabel` and `code` (the data's categories: meta.security labels such as PSY,
HIV, ETH/SUD (42 CFR Part 2) or SEX, and its category codes). The innermost matching
provision decides, so a deny root with a permit exception works as R4 intends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from phivault.types import Resource

PERMIT = "permit"
DENY = "deny"


@dataclass(frozen=True, slots=True)
class Access:
    actors: frozenset[str]  # "Practitioner/<id>", ...
    purpose: str | None
    rtype: str
    labels: frozenset[str]  # codes of the data's security labels and categories
    now: float


def data_labels(resource: Resource | None) -> frozenset[str]:
    """Codes that say which sensitive category a resource's data falls in."""
    if not resource:
        return frozenset()
    codes: set[str] = set()
    meta = resource.get("meta")
    if isinstance(meta, dict):
        codes.update(_codes(meta.get("security")))
    for concept in as_list(resource.get("category")):
        if isinstance(concept, dict):
            codes.update(_codes(concept.get("coding")))
    return frozenset(codes)


def denies(consent: Resource, access: Access) -> bool:
    if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
        return False
    root = consent.get("provision")
    if not isinstance(root, dict):
        return False
    return _evaluate(root, PERMIT, access) == DENY


def any_denies(consents: Iterable[Resource], access: Access) -> bool:
    return any(denies(c, access) for c in consents)


def needs_data(consents: Iterable[Resource]) -> bool:
    """Whether any consent looks at data categories (then the resource body is needed)."""
    return any(_mentions_data(c.get("provision")) for c in consents if c.get("status") == "active")


def period_edges(consents: Iterable[Resource]) -> list[float]:
    """Every instant at which a provision's period starts or ends: between two of them,
    whether a provision applies does not change with time."""
    edges: list[float] = []
    for c in consents:
        _collect_edges(c.get("provision"), edges)
    return edges


def _collect_edges(provision: Any, edges: list[float]) -> None:
    if not isinstance(provision, dict):
        return
    period = provision.get("period")
    if isinstance(period, dict):
        for bound in (period.get("start"), period.get("end")):
            instant = instant_seconds(bound)
            if instant is not None:
                edges.append(instant)
    for child in as_list(provision.get("provision")):
        _collect_edges(child, edges)


def _mentions_data(provision: Any) -> bool:
    if not isinstance(provision, dict):
        return False
    if provision.get("securityLabel") or provision.get("code"):
        return True
    return any(_mentions_data(p) for p in as_list(provision.get("provision")))


def _evaluate(provision: dict[str, Any], inherited: str, access: Access) -> str:
    if not _matches(provision, access):
        return inherited
    kind = provision.get("type")
    decision = kind if isinstance(kind, str) and kind in (PERMIT, DENY) else inherited
    for child in as_list(provision.get("provision")):
        if isinstance(child, dict) and _matches(child, access):
            decision = _evaluate(child, decision, access)
    return str(decision)


def _matches(provision: dict[str, Any], access: Access) -> bool:
    period = provision.get("period")
    if isinstance(period, dict) and not _in_period(period, access.now):
        return False
    actors = [
        a.get("reference", {}).get("reference")
        for a in as_list(provision.get("actor"))
        if isinstance(a, dict) and isinstance(a.get("reference"), dict)
    ]
    if actors and not access.actors & set(actors):
        return False
    purposes = set(_codes(provision.get("purpose")))
    if purposes and access.purpose not in purposes:
        return False
    classes = set(_codes(provision.get("class")))
    if classes and access.rtype not in classes:
        return False
    labels = set(_codes(provision.get("securityLabel")))
    for concept in as_list(provision.get("code")):
        if isinstance(concept, dict):
            labels.update(_codes(concept.get("coding")))
    return not labels or bool(labels & access.labels)


def _in_period(period: dict[str, Any], now: float) -> bool:
    start, end = instant_seconds(period.get("start")), instant_seconds(period.get("end"))
    return (start is None or start <= now) and (end is None or now <= end)


def instant_seconds(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _codes(codings: Any) -> list[str]:
    return [
        c["code"]
        for c in as_list(codings)
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
