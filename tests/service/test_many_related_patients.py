"""A clinician who cares for many patients (enough that search joins them from a
compartment set, store/search_sql.py) sees exactly their resources: pages, totals and
chained searches agree with what the policy decides one by one, on both backends."""

from __future__ import annotations

from typing import Any

from phivault.access.policy import Decision, Target
from phivault.access.principal import CLINICIAN, Principal
from phivault.access.runtime import AccessControl
from phivault.access.scopes import parse_scopes
from phivault.service import Context
from phivault.store.compartment_lists import SET_COMPARTMENTS, SET_TABLE
from phivault.vault import Vault

SETUP = Context(actor="test-setup")
DOCTOR = "Practitioner/many"
RELATED = SET_COMPARTMENTS + 6
OTHERS = 4


def _patient(vault: Vault, n: int) -> str:
    created = vault.service.create(
        SETUP, "Patient", {"resourceType": "Patient", "name": [{"family": f"Many{n}"}]}
    )
    return created.version.rid


def _condition(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"text": "a condition"},
    }


def test_a_clinician_with_many_patients_sees_exactly_theirs(
    vault: Vault, access: AccessControl
) -> None:
    mine = [_patient(vault, n) for n in range(RELATED)]
    others = [_patient(vault, RELATED + n) for n in range(OTHERS)]
    for patient in mine:
        team = {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{patient}"},
            "participant": [{"member": {"reference": DOCTOR}}],
        }
        vault.service.create(SETUP, "CareTeam", team)
    for patient in mine + others:
        vault.service.create(SETUP, "Condition", _condition(patient))
    vault.service.policy = access.policy
    scopes, _ = parse_scopes("user/*.rs")
    doctor = Principal("u-many", roles=frozenset({CLINICIAN}), scopes=scopes, practitioner=DOCTOR)
    ctx = Context(actor="u-many", purpose="TREAT", principal=doctor)

    for _ in range(2):  # the second time from the remembered set
        found = vault.service.search(ctx, "Condition", [("_total", "accurate"), ("_count", "500")])
        assert found.total == RELATED
        subjects = {e.compartment for e in found.matches}
        assert subjects == {f"Patient/{p}" for p in mine}
        for entry in found.matches:
            target = Target("Condition", entry.rid, entry.compartment, None, entry.body)
            assert access.policy.decide(ctx, "read", target) is Decision.ALLOW
    if vault.store.backend == "sqlite":  # the related patients were joined from a set
        reader: Any = getattr(vault.store, "reader")()  # noqa: B009
        tables = reader.execute(
            f"SELECT name FROM sqlite_temp_master WHERE name GLOB '{SET_TABLE}*'"
        ).fetchall()
        assert len(tables) == 1
        held = reader.execute(f"SELECT COUNT(*) FROM temp.{tables[0][0]}").fetchone()[0]
        assert held == RELATED
    paged = vault.service.search(ctx, "Condition", [("_total", "accurate"), ("_count", "7")])
    assert paged.total == RELATED and len(paged.matches) == 7
    hidden = vault.service.search(
        ctx, "Condition", [("subject", f"Patient/{others[0]}"), ("_total", "accurate")]
    )
    assert hidden.total == 0 and not hidden.matches
    chained = vault.service.search(
        ctx, "Condition", [("subject:Patient.family", "Many"), ("_total", "accurate")]
    )
    assert chained.total == RELATED
