"""THE one place that decides who may do what: role x scope x care relationship x
consent x break-glass -> allow, deny, or hide.

- `deny` is a type-level refusal (this role or token may never do this interaction on
  this resource type). It does not depend on any stored data, so answering 403 reveals
  nothing about which resources exist.
- `hide` is an instance-level refusal (this patient is outside the token's launch
  context, the user has no care relationship, or a Consent denies it). The caller must
  answer exactly as if the resource did not exist (404, or leave it out of a search
  before totals are counted), so a refusal never confirms that a record exists.

A context without a principal is a trusted in-process caller (CLI holding the key,
import): allowed. The HTTP layer always sets a principal once authentication is enabled.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable

import orjson

from phivault.access import consent
from phivault.access.care import PatientFacts
from phivault.access.principal import (
    ADMIN,
    AUDITOR,
    BILLING,
    CLINICAL_ROLES,
    CLINICIAN,
    FRONT_DESK,
    NURSE,
    SYSTEM,
    Principal,
)
from phivault.access.scopes import INTERACTIONS, PATIENT
from phivault.errors import Forbidden
from phivault.types import Resource

T = TypeVar("T")

DEMOGRAPHICS = frozenset({"Patient", "RelatedPerson", "Person"})
SCHEDULING = frozenset({"Appointment", "AppointmentResponse", "Schedule", "Slot"})
DIRECTORY = frozenset(
    {
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "HealthcareService",
        "Endpoint",
    }
)
FINANCIAL = frozenset(
    {
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "Claim",
        "ClaimResponse",
        "Account",
        "ChargeItem",
        "ExplanationOfBenefit",
        "Invoice",
        "PaymentNotice",
        "PaymentReconciliation",
        "EnrollmentRequest",
        "EnrollmentResponse",
    }
)
AUDIT = frozenset({"AuditEvent"})


def role_permissions(role: str, rtype: str) -> str:
    """The SMART permission letters (`cruds`) a role has on a resource type."""
    if role in (CLINICIAN, NURSE):
        if rtype in AUDIT:
            return ""
        if rtype in DIRECTORY:
            return "rs"  # the directory is the admin's to keep
        return "cruds" if role == CLINICIAN else "crus"
    if role == FRONT_DESK:
        if rtype in SCHEDULING:
            return "cruds"
        if rtype in DEMOGRAPHICS:
            return "crus"
        return "rs" if rtype in DIRECTORY else ""
    if role == BILLING:
        if rtype in FINANCIAL:
            return "cruds"
        return "rs" if rtype in DEMOGRAPHICS | DIRECTORY else ""
    if role == AUDITOR:
        return "rs" if rtype in AUDIT else ""
    if role == ADMIN:
        return "cruds" if rtype in DIRECTORY else ""
    return ""  # researcher: de-identified exports only, never the live records


class Decision(Enum):
    ALLOW = "allow"
    DENY = "deny"
    HIDE = "hide"


class Target(NamedTuple):
    """What an access touches: a resource (with its body when the caller has it) or a
    patient compartment as a whole (rid None).

    The body may be given parsed (`resource`) or as its JSON text (`body`): the policy
    parses the text only when a decision depends on the data (a Consent restricting data
    categories), so most decisions never pay for it. A named tuple: as immutable as a
    frozen dataclass, at a third of its construction cost (one per read, one per search
    candidate)."""

    rtype: str
    rid: str | None = None
    compartment: str | None = None
    resource: Resource | None = None
    body: bytes | None = None

    def data(self) -> Resource | None:
        """The resource, parsed from `body` if only that was given (None if unreadable)."""
        if self.resource is not None or self.body is None:
            return self.resource
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None


class HasPrincipal(Protocol):
    @property
    def principal(self) -> Principal | None: ...

    @property
    def purpose(self) -> str | None: ...


class CareFacts(Protocol):
    @property
    def generation(self) -> int:
        """Moves whenever cached facts are dropped (a care or Consent write)."""
        ...

    def facts(self, compartment: str) -> PatientFacts: ...

    def related_compartments(self, who: str, now: float, window: float) -> frozenset[str]: ...

    def consent_compartments(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class Reach:
    """The patient compartments a search may reach: `only` these (None: any), and among
    them the ones with a Consent (`consented`), which must be decided one by one.
    Resources outside every compartment are not limited by it."""

    only: frozenset[str] | None
    consented: frozenset[str]


@dataclass(frozen=True, slots=True)
class Visible:
    """A search's reach, decided: `only` these compartments (None: any) but the `hidden`
    ones; `uncertain` ones are decided resource by resource (a Consent that restricts
    data categories); a compartment named in neither is not limited by a Consent."""

    only: frozenset[str] | None
    hidden: frozenset[str]
    uncertain: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Seen:
    """A `Visible` remembered on its principal, with what it was decided from (the same
    candidate and Consent set objects, the care generation) and the instant before which
    no decision in it can change (a Consent period or the break-glass window ending)."""

    only: frozenset[str] | None
    consents: frozenset[str]
    generation: int
    until: float
    visible: Visible


NOTHING: frozenset[str] = frozenset()
EDGE_MARGIN = 0.001  # seconds: a remembered decision is made again this early


@dataclass(frozen=True, slots=True)
class PolicySettings:
    appointment_window: float = 30 * 86400.0  # an Appointment relates within +-30 days


class Policy:
    def __init__(
        self,
        care: CareFacts,
        settings: PolicySettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.care = care
        self.settings = settings or PolicySettings()
        self.clock = clock

    # -- the decisions ---------------------------------------------------------------------------
    def decide_type(self, principal: Principal | None, interaction: str, rtype: str) -> Decision:
        """Type-level: may this caller ever do `interaction` on `rtype`? It depends on the
        principal's roles and scopes alone, fixed for the principal's lifetime, so each
        answer is kept on the principal, in its plan (a request asks several times)."""
        if principal is None:
            return Decision.ALLOW
        return _plan(principal, interaction, rtype).type_decision

    def decide(self, ctx: HasPrincipal, interaction: str, target: Target) -> Decision:
        found = self._decide(ctx, interaction, target, data_known=True)
        assert found is not None
        return found

    def decide_compartment(
        self, ctx: HasPrincipal, interaction: str, rtype: str, compartment: str
    ) -> Decision | None:
        """The decision for every `rtype` resource of one patient compartment, or None
        when it depends on each resource's data (a Consent restricting data categories).
        Search turns these into store predicates, so pages and totals agree."""
        return self._decide(
            ctx, interaction, Target(rtype, None, compartment, None), data_known=False
        )

    def reach(self, ctx: HasPrincipal, interaction: str, rtype: str) -> Reach:
        """Which patient compartments a search of `rtype` may reach at most: every one
        (clinic-wide roles, system clients, break-glass) or a set of candidates (the
        launch patient; a clinical user's related patients). Candidates, and every
        compartment with a Consent, are then decided by `decide_compartment`."""
        only, consents = self._reach(ctx, interaction, rtype)
        return Reach(only, consents if only is None else consents & only)

    def _reach(
        self, ctx: HasPrincipal, interaction: str, rtype: str
    ) -> tuple[frozenset[str] | None, frozenset[str]]:
        """(the candidates, every compartment with a Consent): `reach` before the two
        are intersected, each the care cache's own object where it comes from there."""
        principal = ctx.principal
        if principal is None:
            return None, NOTHING
        consents = self.care.consent_compartments()
        # What the scopes and roles say, kept on the principal (_plan) rather than
        # filtered again on every search.
        plan = _plan(principal, interaction, rtype)
        if plan.patient_only:
            return _launch_patient(principal.patient), consents
        if principal.kind == SYSTEM:
            return None, consents
        now = self.clock()
        if _emergency(principal, now):
            return None, consents
        if plan.clinic_wide:
            return None, consents
        who = principal.practitioner
        if not plan.clinical or not who:
            return NOTHING, consents
        window = self.settings.appointment_window
        return self.care.related_compartments(who, now, window), consents

    def visible(self, ctx: HasPrincipal, interaction: str, rtype: str) -> Visible:
        """`reach` with every candidate compartment that has a Consent decided
        (`decide_compartment`): what search turns into store predicates.

        Remembered on the principal per (interaction, type, purpose of use) for as long
        as it provably holds: while `reach` gives the very same sets (the care cache's
        objects, which a care or Consent write in any process replaces, moving the care
        generation too), and until the first instant at which a Consent period starts or
        ends or the principal's break-glass ends. A search then makes no decision per
        Consent, however many patients have one."""
        principal = ctx.principal
        generation = self.care.generation  # first: facts read after it are at least as new
        only, consents = self._reach(ctx, interaction, rtype)
        if principal is None:
            return Visible(only, NOTHING, NOTHING)
        key = (interaction, rtype, ctx.purpose)
        seen = principal.visibility.get(key)
        if not consents:
            # Nothing to decide: `only` is all there is, and the same object stands for
            # the same set (see above), so the Visible made for it is handed out again
            # (search_access keeps its store predicates by that object).
            if isinstance(seen, _Seen) and seen.only is only and not seen.consents:
                return seen.visible
            found = Visible(only, NOTHING, NOTHING)
            principal.visibility[key] = _Seen(only, consents, generation, math.inf, found)
            return found
        now = self.clock()
        if (
            isinstance(seen, _Seen)
            and seen.only is only
            and seen.consents is consents
            and seen.generation == generation
            and now < seen.until
        ):
            return seen.visible
        hidden: set[str] = set()
        uncertain: set[str] = set()
        edges: list[float] = []
        if principal.break_glass_until is not None:
            edges.append(principal.break_glass_until)
        for compartment in sorted(consents if only is None else consents & only):
            decision = self.decide_compartment(ctx, interaction, rtype, compartment)
            if decision is None:
                uncertain.add(compartment)
            elif decision is not Decision.ALLOW:
                hidden.add(compartment)
            edges.extend(consent.period_edges(self.care.facts(compartment).consents))
        found = Visible(only, frozenset(hidden), frozenset(uncertain))
        until = min((edge - EDGE_MARGIN for edge in edges if edge >= now), default=math.inf)
        principal.visibility[key] = _Seen(only, consents, generation, until, found)
        return found

    def _decide(
        self, ctx: HasPrincipal, interaction: str, target: Target, *, data_known: bool
    ) -> Decision | None:
        principal = ctx.principal
        if principal is None:
            return Decision.ALLOW
        rtype = target.rtype
        plan = _plan(principal, interaction, rtype)
        if plan.type_decision is Decision.DENY:
            return Decision.DENY
        compartment = target.compartment
        if compartment is None:
            return Decision.ALLOW  # not patient data (directory, terminology ...)
        if plan.patient_only:
            if principal.patient is None or compartment != f"Patient/{principal.patient}":
                return Decision.HIDE
        elif interaction == "create" and rtype == "Patient":
            return Decision.ALLOW  # registering a new patient: no relationship can exist yet
        now = self.clock()
        emergency = _emergency(principal, now)
        if principal.kind != SYSTEM and not emergency:
            if not self._plan_allows_patient(plan, principal, compartment, now):
                return Decision.HIDE
        if emergency or compartment not in self.care.consent_compartments():
            return Decision.ALLOW
        facts = self.care.facts(compartment)
        if facts.consents:
            resource = target.data()
            access = consent.Access(
                actors=frozenset(p for p in (principal.practitioner,) if p),
                purpose=ctx.purpose,
                rtype=target.rtype,
                labels=consent.data_labels(resource),
                now=now,
            )
            if resource is None and consent.needs_data(facts.consents):
                # Cannot tell the data's category: fail closed, or ask for the data.
                return Decision.HIDE if data_known else None
            if consent.any_denies(facts.consents, access):
                return Decision.HIDE
        return Decision.ALLOW

    def why(self, ctx: HasPrincipal, interaction: str, target: Target) -> str:
        """The reason a refused access was refused, for its audit entry: "scope" (no
        granted scope covers it), "role" (the role may never do it), "patient-context"
        (outside the token's launch patient), "care-relationship" or "consent"."""
        principal = ctx.principal
        if principal is None:
            return ""
        scopes = [s for s in principal.scopes if s.allows(target.rtype, interaction)]
        if interaction not in INTERACTIONS or not scopes:
            return "scope"
        if self.decide_type(principal, interaction, target.rtype) is Decision.DENY:
            return "role"
        compartment = target.compartment
        if compartment is None:
            return ""
        if all(s.context == PATIENT for s in scopes) and (
            principal.patient is None or compartment != f"Patient/{principal.patient}"
        ):
            return "patient-context"
        now = self.clock()
        emergency = _emergency(principal, now)
        if principal.kind != SYSTEM and not emergency:
            plan = _plan(principal, interaction, target.rtype)
            if not self._plan_allows_patient(plan, principal, compartment, now):
                return "care-relationship"
        return "consent"

    def _plan_allows_patient(
        self, plan: _Plan, principal: Principal, compartment: str, now: float
    ) -> bool:
        if plan.clinic_wide:
            return True  # clerical roles work clinic-wide, within their types
        who = principal.practitioner
        if not plan.clinical or not who:
            return False
        window = self.settings.appointment_window
        return compartment in self.care.related_compartments(who, now, window)

    # -- the API other modules call ----------------------------------------------------------------
    def check(self, ctx: HasPrincipal, interaction: str, target: Target) -> None:
        """Raise Forbidden unless allowed. Callers that must not reveal existence use
        `decide` and answer HIDE as not-found."""
        if self.decide(ctx, interaction, target) is not Decision.ALLOW:
            raise Forbidden()

    def filter(
        self,
        ctx: HasPrincipal,
        interaction: str,
        candidates: Sequence[T],
        describe: Callable[[T], Target],
    ) -> list[T]:
        """The candidates this caller may see, in their order.

        For search, `_include`/`_revinclude`, chained search, `_has`, history,
        `$everything` and `$export`: call it on the full candidate list BEFORE counting
        totals or cutting pages, so that `Bundle.total` and paging never reveal what was
        left out. `describe` turns a candidate into a Target; give it the resource body
        when available (a Consent that restricts data categories needs it; without it the
        candidate is left out, failing closed). Type-level refusals are the caller's to
        raise first (`decide_type`), as 403.
        """
        if ctx.principal is None:
            return list(candidates)
        return [
            c for c in candidates if self.decide(ctx, interaction, describe(c)) is Decision.ALLOW
        ]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a principal's scopes and roles say about one (interaction, type), fixed for
    the principal's lifetime: the type-level decision (as `decide_type`), whether some
    scope allows it and every one that does is limited to the launch patient, and
    whether a role allowing it works clinic-wide (clerical) or by care relationship
    (clinical)."""

    type_decision: Decision
    patient_only: bool
    clinic_wide: bool
    clinical: bool


def _plan(principal: Principal, interaction: str, rtype: str) -> _Plan:
    key = (interaction, rtype)
    found = principal.plans.get(key)
    if found is None:
        letter = INTERACTIONS.get(interaction, "")
        scopes = [s for s in principal.scopes if s.allows(rtype, interaction)]
        roles = [r for r in principal.roles if letter and letter in role_permissions(r, rtype)]
        found = _Plan(
            type_decision=_decide_type(principal, interaction, rtype),
            patient_only=bool(scopes) and all(s.context == PATIENT for s in scopes),
            clinic_wide=any(r not in CLINICAL_ROLES for r in roles),
            clinical=any(r in CLINICAL_ROLES for r in roles),
        )
        principal.plans[key] = found
    assert isinstance(found, _Plan)
    return found


def _emergency(principal: Principal, now: float) -> bool:
    """Break-glass in force: claimed, not yet over, by a clinical user."""
    return principal.break_glass_active(now) and principal.is_clinical


def _launch_patient(patient: str | None) -> frozenset[str]:
    return _launch_compartment(patient) if patient else NOTHING


@functools.lru_cache(maxsize=1024)
def _launch_compartment(patient: str) -> frozenset[str]:
    """One object per launch patient, so that `visible` recognises it."""
    return frozenset({f"Patient/{patient}"})


def _decide_type(principal: Principal, interaction: str, rtype: str) -> Decision:
    letter = INTERACTIONS.get(interaction)
    if letter is None or not any(s.allows(rtype, interaction) for s in principal.scopes):
        return Decision.DENY
    if principal.kind == SYSTEM:
        if rtype in AUDIT and not any(s.rtype == rtype for s in principal.scopes):
            return Decision.DENY  # the audit trail: only a scope that names it
        return Decision.ALLOW
    if any(letter in role_permissions(r, rtype) for r in principal.roles):
        return Decision.ALLOW
    return Decision.DENY


class AllowAll:
    """The policy of a service with access control off (in-process tools and tests)."""

    def decide_type(self, principal: Principal | None, interaction: str, rtype: str) -> Decision:
        return Decision.ALLOW

    def decide(self, ctx: HasPrincipal, interaction: str, target: Target) -> Decision:
        return Decision.ALLOW

    def decide_compartment(
        self, ctx: HasPrincipal, interaction: str, rtype: str, compartment: str
    ) -> Decision | None:
        return Decision.ALLOW

    def reach(self, ctx: HasPrincipal, interaction: str, rtype: str) -> Reach:
        return Reach(None, frozenset())

    def visible(self, ctx: HasPrincipal, interaction: str, rtype: str) -> Visible:
        return Visible(None, NOTHING, NOTHING)

    def check(self, ctx: HasPrincipal, interaction: str, target: Target) -> None:
        return None

    def why(self, ctx: HasPrincipal, interaction: str, target: Target) -> str:
        return ""

    def filter(
        self,
        ctx: HasPrincipal,
        interaction: str,
        candidates: Sequence[T],
        describe: Callable[[T], Target],
    ) -> list[T]:
        return list(candidates)


class AccessPolicy(Protocol):
    def decide_type(
        self, principal: Principal | None, interaction: str, rtype: str
    ) -> Decision: ...

    def decide(self, ctx: HasPrincipal, interaction: str, target: Target) -> Decision: ...

    def check(self, ctx: HasPrincipal, interaction: str, target: Target) -> None: ...

    def filter(
        self,
        ctx: HasPrincipal,
        interaction: str,
        candidates: Sequence[T],
        describe: Callable[[T], Target],
    ) -> list[T]: ...


@runtime_checkable
class SearchReach(Protocol):
    """A policy that can say ahead which compartments a search may reach (Policy and
    AllowAll). Search falls back to deciding every candidate on its own otherwise."""

    def reach(self, ctx: HasPrincipal, interaction: str, rtype: str) -> Reach: ...

    def visible(self, ctx: HasPrincipal, interaction: str, rtype: str) -> Visible: ...

    def decide_compartment(
        self, ctx: HasPrincipal, interaction: str, rtype: str, compartment: str
    ) -> Decision | None: ...
