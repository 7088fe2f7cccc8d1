"""A search's access predicates: made once per decided reach and handed out again while
the policy hands out the same reach, never for another one."""

from __future__ import annotations

from dataclasses import dataclass

from phivault.access.care import PatientFacts
from phivault.access.policy import Policy
from phivault.access.principal import CLINICIAN, Principal
from phivault.access.scopes import parse_scopes
from phivault.service import Context
from phivault.service.search_access import visibility
from phivault.store.search_spec import CompartmentMatch, Term


@dataclass
class Facts:
    related: frozenset[str]
    generation: int = 0

    def facts(self, compartment: str) -> PatientFacts:
        return PatientFacts()

    def related_compartments(self, who: str, now: float, window: float) -> frozenset[str]:
        return self.related

    def consent_compartments(self) -> frozenset[str]:
        return frozenset()


def _ctx() -> Context:
    scopes, _ = parse_scopes("user/*.rs")
    doctor = Principal("u1", roles=frozenset({CLINICIAN}), scopes=scopes, practitioner="P/d")
    return Context(actor="u1", purpose="TREAT", principal=doctor)


def test_the_same_reach_gives_the_same_predicates_another_reach_its_own() -> None:
    facts = Facts(frozenset({"Patient/a", "Patient/b"}))
    policy = Policy(facts)
    ctx = _ctx()
    first = visibility(policy, ctx, "search", "Condition")
    assert first is not None and first.keep is None
    within = Term((CompartmentMatch(("Patient/a", "Patient/b"), unassigned=True),))
    assert first.candidates == first.sure == (within,)
    assert visibility(policy, ctx, "search", "Condition") is first
    facts.related = frozenset({"Patient/a"})  # a care write: the cache's new set
    second = visibility(policy, ctx, "search", "Condition")
    assert second is not None and second is not first
    assert second.candidates == (Term((CompartmentMatch(("Patient/a",), unassigned=True),)),)
    # Another caller with the same reach sees exactly the same.
    assert visibility(policy, _ctx(), "search", "Condition") == second
