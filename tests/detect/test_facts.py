"""What the facts cost: kinship read through the index, labels without kinship."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from phivault.detect.kinship import HELD, Holders, candidates_of, kinship_of
from phivault.detect.sql import DetectSql
from phivault.service import Context
from tests.detect.conftest import World


def _every_patients_tokens(sql: DetectSql) -> dict[str, dict[str, set[str]]]:
    """Every patient's tokens, as kinship was computed before (the whole clinic)."""
    patients: dict[str, dict[str, set[str]]] = {}
    for rid, param, token in sql.exact_tokens("Patient", ("family", "given", "address")):
        patients.setdefault(rid, {}).setdefault(param, set()).add(token)
    for rid, _param, token in sql.tokens("Patient", ("phone", "email")):
        patients.setdefault(rid, {}).setdefault("contact", set()).add(token)
    return patients


def _staff_tokens(sql: DetectSql) -> dict[str, dict[str, set[str]]]:
    staff: dict[str, dict[str, set[str]]] = {}
    for rid, param, token in sql.exact_tokens("Practitioner", ("family", "given", "address")):
        staff.setdefault(f"Practitioner/{rid}", {}).setdefault(param, set()).add(token)
    for rid, _param, token in sql.tokens("Practitioner", ("phone", "email")):
        staff.setdefault(f"Practitioner/{rid}", {}).setdefault("contact", set()).add(token)
    return staff


def test_kinship_through_the_index_is_kinship_over_every_patient(world: World) -> None:
    sql = world.facts.sql
    staff = _staff_tokens(sql)
    whole = kinship_of(staff, _every_patients_tokens(sql), world.vault.audit.pseudonymize)
    found = world.facts._read_kinship()
    assert whole.staff_patients and (whole.surname or whole.address)  # the test means something
    assert found == whole


def test_kinship_reads_only_the_patients_sharing_a_staff_token(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    stranger = {
        "resourceType": "Patient",
        "id": "stranger",
        "name": [{"family": "Quixotefellow", "given": ["Zebedee"]}],
        "address": [{"line": ["1 Nowhere Lane"], "postalCode": "ZZ9 9ZZ", "city": "Faraway"}],
    }
    for _ in world.vault.service.import_resources(Context(actor="system:import"), [stranger]):
        pass
    sql = world.facts.sql
    every = _every_patients_tokens(sql)
    holders: Holders = {}
    for rid, fields in every.items():
        for param in HELD:
            for token in fields.get(param, ()):
                holders.setdefault((param, token), set()).add(rid)
    expected = {rid for mine in _staff_tokens(sql).values() for rid in candidates_of(mine, holders)}
    asked: list[Sequence[str] | None] = []
    real = sql.exact_tokens

    def recording(
        rtype: str, params: Sequence[str], rids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, str, str]]:
        if rtype == "Patient":
            asked.append(rids)
        return real(rtype, params, rids)

    monkeypatch.setattr(sql, "exact_tokens", recording)
    world.facts._read_kinship()
    assert asked and all(rids is not None for rids in asked)
    read = {rid for rids in asked for rid in rids or ()}
    assert read == expected and len(read) < len(every) and "stranger" not in read


def test_canary_and_vip_checks_do_not_compute_kinship(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_kinship() -> None:
        raise AssertionError("kinship read for a canary or VIP check")

    monkeypatch.setattr(world.facts, "_read_kinship", no_kinship)
    assert world.facts.is_canary(world.canaries[0])
    assert not world.facts.is_canary(world.pseudonym(world.patients("normal")[0]))
    assert not world.facts.is_vip(world.canaries[0])
