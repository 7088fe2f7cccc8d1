"""A small simulated clinic in a real vault (both backends), and the facts detectors see."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import pytest

from phivault.detect.canaries import seed_canaries
from phivault.detect.eval.clinic import Clinic, SimPatient, Staff, build_clinic
from phivault.detect.facts import VaultFacts
from phivault.detect.runtime import vault_facts
from phivault.detect.settings import DetectSettings
from phivault.detect.sql import DetectSql
from phivault.service import Context
from phivault.store.access_sql import AccessStore, UserRow
from phivault.vault import Vault
from tests.detect.support import T0


@dataclass
class World:
    vault: Vault
    clinic: Clinic
    facts: VaultFacts
    settings: DetectSettings
    canaries: list[str]

    def pseudonym(self, patient: SimPatient) -> str:
        return self.vault.audit.pseudonymize(f"Patient/{patient.pid}")

    def member(self, role: str, index: int = 0) -> Staff:
        return self.clinic.by_role(role)[index]

    def patients(self, kind: str) -> list[SimPatient]:
        return [p for p in self.clinic.patients if p.kind == kind]

    def unbooked(self) -> SimPatient:
        booked = {v.patient.pid for v in self.clinic.visits}
        return next(p for p in self.patients("normal") if p.pid not in booked)


@pytest.fixture
def world(vault: Vault) -> World:
    clinic = build_clinic(6, 20, 7, 3, T0 - 3 * 86_400)
    for _ in vault.service.import_resources(Context(actor="system:import"), clinic.resources):
        pass
    seed_canaries(vault, 2, rng=random.Random(5))
    store = AccessStore(vault.store)
    for member in clinic.staff:
        member.user_id = str(uuid.uuid4())
        store.add_user(
            UserRow(member.user_id, member.key, member.role, member.practitioner,
                    "not-a-login-test", None, 0, 0, "[]", 0, 0.0, 0.0)
        )  # fmt: skip
    canaries = sorted(DetectSql(vault.store).canaries())
    return World(vault, clinic, vault_facts(vault), DetectSettings(), canaries)
