"""The access policy inside search: which stored resources a search may count and return.

The policy (access/policy.py) says which patient compartments a search may reach and
decides each of them; this module turns that into store predicates, so the page, its
total and its links all come from the same restricted set and a total never counts a
hidden resource. A compartment whose decision depends on each resource's data (a Consent
that restricts data categories) is "uncertain": its resources are candidates, decided
one by one after decryption, and a total is then only given when counted exactly.

Chained parameters and `_has` look inside other resource types; there only what is
certainly visible is searched (uncertain compartments are left out: fail closed), so a
chain can never confirm that a hidden record exists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from phivault.access.policy import AccessPolicy, Decision, SearchReach, Target, Visible
from phivault.audit.events import AuditSink
from phivault.errors import Forbidden, Hidden
from phivault.service.access_guard import reason_of, record_refusal, refusal_event
from phivault.store.base import VersionRecord
from phivault.store.search_spec import CompartmentMatch, Term

if TYPE_CHECKING:
    from phivault.service.core import Context

Keep = Callable[[VersionRecord, bytes], bool]


@dataclass(frozen=True, slots=True)
class Visibility:
    """What one caller may see of one resource type.

    `candidates`: store predicates selecting every resource that may be visible;
    `sure`: those selecting exactly the certainly visible ones; `keep`: the decision for
    one candidate given its plaintext (None when `candidates` is already exact)."""

    candidates: tuple[Term, ...]
    sure: tuple[Term, ...]
    keep: Keep | None


@functools.lru_cache(maxsize=256)
def _outside(compartments: frozenset[str]) -> tuple[Term, ...]:
    """Cached like `_within`: the policy remembers what it hides (Policy.visible)."""
    if not compartments:
        return ()
    return (Term((CompartmentMatch(tuple(sorted(compartments))),), negate=True),)


@functools.lru_cache(maxsize=256)
def _within(compartments: frozenset[str]) -> tuple[Term, ...]:
    """Cached: a clinician's related patients are one cached frozenset, searched again and
    again (sorting a few hundred ids each time would cost more than the lookup)."""
    return (Term((CompartmentMatch(tuple(sorted(compartments)), unassigned=True),)),)


@functools.lru_cache(maxsize=256)
def _terms(seen: Visible) -> tuple[tuple[Term, ...], tuple[Term, ...]]:
    """(candidates, sure) predicates of a decided reach. Cached: the policy hands out the
    same `Visible` search after search (Policy.visible)."""
    hidden, uncertain = seen.hidden, seen.uncertain
    if seen.only is None:
        return _outside(hidden), _outside(hidden | uncertain)
    if not hidden and not uncertain:
        return _within(seen.only), _within(seen.only)
    allowed = seen.only - hidden - uncertain
    return _within(allowed | uncertain), _within(allowed)


_EXACT_KEPT = 256
# id(Visible) -> (that Visible, its Visibility): the policy hands out the same object while
# its reach holds (Policy.visible), found here without hashing its compartments. The
# Visible is held, so its id() cannot be reused while it is in here.
_exact_kept: dict[int, tuple[Visible, Visibility]] = {}


def _exact(seen: Visible) -> Visibility:
    """The Visibility of a reach decided without uncertain compartments."""
    hit = _exact_kept.get(id(seen))
    if hit is not None and hit[0] is seen:
        return hit[1]
    candidates, sure = _terms(seen)
    found = Visibility(candidates, sure, None)
    if len(_exact_kept) >= _EXACT_KEPT:
        _exact_kept.clear()
    _exact_kept[id(seen)] = (seen, found)
    return found


# isinstance against a runtime-checkable Protocol inspects every member each time (tens of
# microseconds); a policy's class answers the same every time.
_REACHES: dict[type, bool] = {}


def reaches(policy: object) -> SearchReach | None:
    """`policy` if it can say ahead which compartments a search may reach, else None."""
    kind = type(policy)
    known = _REACHES.get(kind)
    if known is None:
        known = _REACHES[kind] = isinstance(policy, SearchReach)
    return cast("SearchReach", policy) if known else None


def visibility(
    policy: AccessPolicy, ctx: Context, interaction: str, rtype: str
) -> Visibility | None:
    """None: no restriction (a trusted in-process caller)."""
    if ctx.principal is None:
        return None
    reacher = reaches(policy)
    seen = reacher.visible(ctx, interaction, rtype) if reacher is not None else None
    if seen is not None and not seen.uncertain:
        return _exact(seen)

    def decide(record: VersionRecord, body: bytes) -> bool:
        target = Target(rtype, record.rid, record.compartment, None, body)
        return policy.decide(ctx, interaction, target) is Decision.ALLOW

    if seen is None:
        return Visibility((), (Term(()),), decide)  # decide every candidate on its own
    candidates, sure = _terms(seen)
    uncertain = seen.uncertain

    def keep(record: VersionRecord, body: bytes) -> bool:
        return record.compartment not in uncertain or decide(record, body)

    return Visibility(candidates, sure, keep)


def check_type(
    policy: AccessPolicy, audit: AuditSink, ctx: Context, interaction: str, rtype: str
) -> None:
    """Type-level: 403 (audited) unless this caller may ever do `interaction` on `rtype`."""
    if ctx.principal is None:
        return
    if policy.decide_type(ctx.principal, interaction, rtype) is Decision.ALLOW:
        return
    refuse(audit, ctx, rtype, reason=reason_of(policy, ctx, interaction, Target(rtype)))
    raise Forbidden()


def check_compartment(
    policy: AccessPolicy, audit: AuditSink, ctx: Context, rtype: str, patient_id: str
) -> None:
    """A compartment search (Patient/{id}/{type}) of a patient hidden from the caller is
    answered exactly like one of a patient that does not exist."""
    if ctx.principal is None:
        return
    compartment = f"Patient/{patient_id}"
    reacher = reaches(policy)
    if reacher is not None:
        decision = reacher.decide_compartment(ctx, "search", rtype, compartment)
    else:
        decision = policy.decide(ctx, "search", Target(rtype, None, compartment, None))
    if decision is None or decision is Decision.ALLOW:
        return
    reason = reason_of(policy, ctx, "search", Target(rtype, None, compartment))
    refuse(audit, ctx, rtype, compartment, reason=reason, decision=decision)
    raise Hidden(f"Patient/{patient_id} is not known")


def refuse(
    audit: AuditSink,
    ctx: Context,
    rtype: str,
    compartment: str | None = None,
    *,
    reason: str = "",
    decision: Decision = Decision.DENY,
) -> None:
    """Audit a refused search (who, what, why)."""
    record_refusal(audit, refusal_event(ctx, "search", rtype, None, compartment, reason, decision))
