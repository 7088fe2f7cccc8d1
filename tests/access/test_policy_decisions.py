"""The policy's shortcuts keep its answers: type-level decisions remembered per principal,
and a resource handed over as JSON text parsed only when a Consent needs its data."""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from phivault.access.care import PatientFacts
from phivault.access.policy import Decision, Policy, Target
from phivault.access.principal import CLINICIAN, FRONT_DESK, SYSTEM, Principal
from phivault.access.scopes import parse_scopes

PATIENT = "Patient/p1"
DOCTOR = "Practitioner/d1"
MENTAL_HEALTH_DENIAL = {
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

    def facts(self, compartment: str) -> PatientFacts:
        return PatientFacts(care_team=frozenset({DOCTOR}), consents=self.consents)

    def related_compartments(self, who: str, now: float, window: float) -> frozenset[str]:
        return frozenset({PATIENT}) if who == DOCTOR else frozenset()

    def consent_compartments(self) -> frozenset[str]:
        return frozenset({PATIENT}) if self.consents else frozenset()


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
    assert doctor.type_decisions == {("read", "Condition"): Decision.ALLOW}
    assert policy.decide_type(doctor, "read", "Condition") is Decision.ALLOW
    # Another principal (roles changed) starts from nothing: front desk may not read it.
    clerk = replace(doctor, roles=frozenset({FRONT_DESK}))
    assert clerk.type_decisions == {}
    assert policy.decide_type(clerk, "read", "Condition") is Decision.DENY
    assert doctor.type_decisions[("read", "Condition")] is Decision.ALLOW


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
