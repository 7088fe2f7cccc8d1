"""The policy's shortcuts keep its answers: type-level decisions remembered per principal,
and a resource handed over as JSON text parsed only when a Consent needs its data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson
import pytest

from phivault.access.care import PatientFacts
from phivault.access.policy import Decision, Policy, Target, Visible
from phivault.access.principal import BILLING, CLINICIAN, FRONT_DESK, SYSTEM, Principal
from phivault.access.scopes import parse_scopes

PATIENT = "Patient/p1"
DOCTOR = "Practitioner/d1"
MENTAL_HEALTH_DENIAL: dict[str, object] = {
    "resourceType": "Consent",
    "status": "active",
    "provision": {
        "type": "permit",
        "provision": [
            {
                "type": "deny",
                "securityLabel": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
                ],
            }
        ],
    },
}


@dataclass
class Facts:
    consents: tuple[dict[str, object], ...] = ()
    generation: int = 0
    looked_up: int = 0  # facts() calls: one per Consent decided

    def facts(self, compartment: str) -> PatientFacts:
        self.looked_up += 1
        return PatientFacts(care_team=frozenset({DOCTOR}), consents=self.consents)

    def related_compartments(self, who: str, now: float, window: float) -> frozenset[str]:
        return RELATED if who == DOCTOR else frozenset()

    def consent_compartments(self) -> frozenset[str]:
        return CONSENTED if self.consents else frozenset()


# One object each, as the care cache hands out its own cached sets.
CONSENTED = frozenset({PATIENT})
RELATED = frozenset({PATIENT})


@dataclass
class Ctx:
    principal: Principal | None
    purpose: str | None = "TREAT"


def clinician(roles: frozenset[str] = frozenset({CLINICIAN})) -> Principal:
    scopes, _ = parse_scopes("user/*.cruds")
    return Principal("u1", roles=roles, scopes=scopes, practitioner=DOCTOR)


def test_type_decisions_are_remembered_per_principal_and_not_copied() -> None:
    policy = Policy(Facts())
    doctor = clinician()
    assert policy.decide_type(doctor, "read", "Condition") is Decision.ALLOW
    assert list(doctor.plans) == [("read", "Condition")]
    assert doctor.plans[("read", "Condition")].type_decision is Decision.ALLOW
    assert policy.decide_type(doctor, "read", "Condition") is Decision.ALLOW
    # Another principal (roles changed) starts from nothing: front desk may not read it.
    clerk = replace(doctor, roles=frozenset({FRONT_DESK}))
    assert clerk.plans == {}
    assert policy.decide_type(clerk, "read", "Condition") is Decision.DENY
    assert doctor.plans[("read", "Condition")].type_decision is Decision.ALLOW


def test_system_audit_rule_is_kept_with_the_memo() -> None:
    policy = Policy(Facts())
    scopes, _ = parse_scopes("system/*.rs")
    client = Principal("c1", kind=SYSTEM, scopes=scopes)
    for _ in range(2):
        assert policy.decide_type(client, "read", "AuditEvent") is Decision.DENY
        assert policy.decide_type(client, "read", "Observation") is Decision.ALLOW


def test_a_body_given_as_text_is_decided_like_a_parsed_one() -> None:
    policy = Policy(Facts(consents=(MENTAL_HEALTH_DENIAL,)))
    ctx = Ctx(clinician())
    labelled = {
        "resourceType": "Condition",
        "meta": {
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
            ]
        },
    }
    plain = {"resourceType": "Condition"}
    for resource, want in ((labelled, Decision.HIDE), (plain, Decision.ALLOW)):
        parsed = Target("Condition", "c1", PATIENT, resource)
        text = Target("Condition", "c1", PATIENT, None, orjson.dumps(resource))
        assert policy.decide(ctx, "read", parsed) is want
        assert policy.decide(ctx, "read", text) is want


def test_an_unreadable_body_fails_closed_when_a_consent_needs_the_data() -> None:
    policy = Policy(Facts(consents=(MENTAL_HEALTH_DENIAL,)))
    target = Target("Condition", "c1", PATIENT, None, b"{not json")
    assert target.data() is None
    assert policy.decide(Ctx(clinician()), "read", target) is Decision.HIDE


def test_a_body_is_not_parsed_when_no_consent_applies() -> None:
    policy = Policy(Facts())
    target = Target("Condition", "c1", PATIENT, None, b"{not json")
    assert policy.decide(Ctx(clinician()), "read", target) is Decision.ALLOW


# -- what a search may see, remembered on the principal (Policy.visible) ----------------------
DENY_DOCTOR = {
    "resourceType": "Consent",
    "status": "active",
    "provision": {
        "type": "permit",
        "provision": [
            {"type": "deny", "actor": [{"reference": {"reference": DOCTOR}}], "period": {}}
        ],
    },
}
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _denial(start: float | None = None, end: float | None = None) -> dict[str, object]:
    period = {}
    if start is not None:
        period["start"] = datetime.fromtimestamp(start, UTC).isoformat()
    if end is not None:
        period["end"] = datetime.fromtimestamp(end, UTC).isoformat()
    consent = orjson.loads(orjson.dumps(DENY_DOCTOR))
    consent["provision"]["provision"][0]["period"] = period
    return dict(consent)


def test_a_search_reach_is_decided_once_then_remembered() -> None:
    facts = Facts(consents=(_denial(),))
    policy = Policy(facts, clock=Clock())
    ctx = Ctx(clinician())
    first = policy.visible(ctx, "search", "Condition")
    assert first == Visible(frozenset({PATIENT}), frozenset({PATIENT}), frozenset())
    looked_up = facts.looked_up
    assert policy.visible(ctx, "search", "Condition") is first
    assert facts.looked_up == looked_up  # no Consent decided again
    # Another purpose of use, type or interaction is decided on its own.
    assert policy.visible(Ctx(ctx.principal, "ETREAT"), "search", "Condition") is not first
    assert policy.visible(ctx, "search", "Observation") is not first


def test_a_remembered_reach_ends_with_a_care_write() -> None:
    facts = Facts(consents=(_denial(),))
    policy = Policy(facts, clock=Clock())
    ctx = Ctx(clinician())
    assert policy.visible(ctx, "search", "Condition").hidden == {PATIENT}
    facts.consents = ()  # the Consent revoked, in any process: the care cache is emptied
    facts.generation += 1
    assert policy.visible(ctx, "search", "Condition").hidden == frozenset()
    facts.consents = (_denial(),)  # a new Consent: a new set of consented compartments
    assert policy.visible(ctx, "search", "Condition").hidden == {PATIENT}


def test_a_remembered_reach_ends_where_a_consent_period_starts_or_ends() -> None:
    clock = Clock()
    facts = Facts(consents=(_denial(start=T0 + 60, end=T0 + 120),))
    policy = Policy(facts, clock=clock)
    ctx = Ctx(clinician())
    for at, hidden in ((0, False), (59.99, False), (60, True), (120, True), (120.01, False)):
        clock.now = T0 + at
        assert bool(policy.visible(ctx, "search", "Condition").hidden) is hidden, at
        # Always what deciding afresh says.
        fresh = Policy(facts, clock=clock).decide_compartment(ctx, "search", "Condition", PATIENT)
        assert (fresh is Decision.HIDE) is hidden


def test_a_remembered_reach_ends_with_break_glass() -> None:
    clock = Clock()
    facts = Facts(consents=(_denial(),))
    policy = Policy(facts, clock=clock)
    # A clinician who also does billing reaches every patient for Coverage either way.
    scopes, _ = parse_scopes("user/*.cruds")
    person = Principal(
        "u1",
        roles=frozenset({CLINICIAN, BILLING}),
        scopes=scopes,
        practitioner=DOCTOR,
        break_glass_until=T0 + 600,
    )
    emergency = Ctx(person, "ETREAT")
    assert policy.visible(emergency, "search", "Coverage").hidden == frozenset()
    clock.now = T0 + 601
    assert policy.visible(emergency, "search", "Coverage").hidden == {PATIENT}


def test_a_system_client_reach_skips_compartments_without_consent() -> None:
    facts = Facts()
    policy = Policy(facts)
    scopes, _ = parse_scopes("system/*.rs")
    ctx = Ctx(Principal("c1", kind=SYSTEM, scopes=scopes), None)
    first = policy.visible(ctx, "search", "Observation")
    assert first == Visible(None, frozenset(), frozenset())
    assert facts.looked_up == 0
    # Nothing was decided, yet the same object comes back (search keeps its predicates by
    # it) while the reach is the same.
    assert policy.visible(ctx, "search", "Observation") is first


def test_a_remembered_reach_without_consents_ends_when_a_consent_is_written() -> None:
    facts = Facts()
    policy = Policy(facts)
    ctx = Ctx(clinician())
    first = policy.visible(ctx, "search", "Observation")
    assert first == Visible(RELATED, frozenset(), frozenset())
    assert policy.visible(ctx, "search", "Observation") is first
    facts.consents = (_denial(),)  # the care cache now names a compartment with a Consent
    assert policy.visible(ctx, "search", "Observation").hidden == {PATIENT}


def test_an_interaction_the_policy_does_not_know_reaches_no_patient() -> None:
    scopes, _ = parse_scopes("user/*.cruds")
    clerk = Principal("u2", roles=frozenset({BILLING}), scopes=scopes)
    policy = Policy(Facts())
    # Billing reaches every patient's Coverage for a search, and nobody for an interaction
    # that has no permission letter (the empty letter must not match every role).
    assert policy.reach(Ctx(clerk), "search", "Coverage").only is None
    assert policy.reach(Ctx(clerk), "frobnicate", "Coverage").only == frozenset()


def test_a_target_cannot_be_changed_once_made() -> None:
    """A decision is made about the target it was given: nobody can swap its compartment
    or body afterwards (a named tuple, as immutable as the frozen dataclass it was)."""
    target = Target("Observation", "o1", "Patient/p1", None, b'{"resourceType": "Observation"}')
    with pytest.raises(AttributeError):
        target.compartment = "Patient/p2"  # type: ignore[misc]
    assert target.compartment == "Patient/p1"
    assert target.data() == {"resourceType": "Observation"}
    assert Target("Patient").rid is None and Target("Patient").data() is None
