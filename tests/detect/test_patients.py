"""The pseudonym -> patient table the detectors read records through, on both backends."""

from __future__ import annotations

import uuid

import pytest

from phivault.detect import patients as patients_module
from phivault.detect.patients import PatientIndex
from phivault.detect.sql import DetectSql
from phivault.service import Context
from phivault.vault import Vault

CTX = Context(actor="system:import")


def _create(vault: Vault, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    resources = [{"resourceType": "Patient", "id": rid, "active": True} for rid in ids]
    for _ in vault.service.import_resources(CTX, resources):
        pass
    return ids


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_patient_is_found_by_its_pseudonym(vault: Vault) -> None:
    ids = _create(vault, 30)
    pseudonymize = vault.audit.pseudonymize
    index = PatientIndex(DetectSql(vault.store), pseudonymize)
    for rid in ids:
        assert index.compartment(pseudonymize(f"Patient/{rid}")) == f"Patient/{rid}"
    assert index.compartment(pseudonymize("Patient/nobody")) is None
    assert index.compartment("not-hex") is None
    assert len(index) == 30


def test_a_shared_prefix_never_answers_for_another_patient(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _create(vault, 5)
    # Every pseudonym with the same first 40 bits: the index must check the whole one.
    real = vault.audit.pseudonymize

    def colliding(compartment: str) -> str:
        return "0" * 10 + real(compartment)[10:]

    index = PatientIndex(DetectSql(vault.store), colliding)
    for rid in ids:
        assert index.compartment(colliding(f"Patient/{rid}")) == f"Patient/{rid}"
    assert index.compartment("0" * 32) is None


def test_new_patients_are_read_incrementally_not_all_again(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create(vault, 20)
    clock = Clock()
    sql = DetectSql(vault.store)
    pseudonymize = vault.audit.pseudonymize
    index = PatientIndex(sql, pseudonymize, clock=clock)
    index.compartment(pseudonymize("Patient/nobody"))  # builds the arrays
    full_reads: list[int] = []
    real_rows = sql.patient_rows

    def counted_rows() -> object:
        full_reads.append(1)
        return real_rows()

    monkeypatch.setattr(sql, "patient_rows", counted_rows)
    [new] = _create(vault, 1)
    wanted = pseudonymize(f"Patient/{new}")
    assert index.compartment(wanted) is None  # a miss re-reads at most every RECHECK_S
    clock.now += patients_module.RECHECK_S + 1
    assert index.compartment(wanted) == f"Patient/{new}"
    assert full_reads == []  # found among the newest, not by reading every patient
    assert len(index) >= 21
    # A patient written with an instant older than the newest read (an import keeping its
    # own lastUpdated) is found by the rebuild that follows at most every REBUILD_S.
    clock.now += patients_module.REBUILD_S + 1
    assert index.compartment(pseudonymize("Patient/still-nobody")) is None
    assert full_reads == [1]


def test_the_arrays_are_rebuilt_once_the_recent_dict_is_large(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patients_module, "REBUILD_AT", 3)
    _create(vault, 2)
    clock = Clock()
    pseudonymize = vault.audit.pseudonymize
    index = PatientIndex(DetectSql(vault.store), pseudonymize, clock=clock)
    index.compartment(pseudonymize("Patient/nobody"))
    new = _create(vault, 5)
    clock.now += patients_module.RECHECK_S + 1
    assert index.compartment(pseudonymize(f"Patient/{new[-1]}")) == f"Patient/{new[-1]}"
    assert len(index._recent) == 0 and len(index._ends) == 7  # rebuilt into the arrays
