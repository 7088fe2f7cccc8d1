"""Helpers for the detection tests: audit entries as detectors read them, and the engine
of a test vault."""

from __future__ import annotations

import itertools
from typing import Any

from phivault.detect.alerts import AlertStore
from phivault.detect.engine import Engine
from phivault.detect.model import Entry, Finding, Severity
from phivault.detect.registry import load
from phivault.detect.runtime import vault_facts
from phivault.detect.settings import DetectSettings
from phivault.vault import Vault

T0 = 1_790_000_000.0  # Monday 2026-09-21 14:13 UTC
HOUR = 3600.0
DAY = 86_400.0
_idx = itertools.count(1)


def entry(action: str = "read", actor: str = "u1", at: float = T0, **fields: Any) -> Entry:
    """An audit entry as the engine hands it to detectors."""
    return Entry(
        idx=fields.pop("idx", next(_idx)),
        at=at,
        action=action,
        outcome=fields.pop("outcome", "0"),
        actor=actor,
        **fields,
    )


def finding(
    group: str = "g",
    severity: Severity = Severity.MEDIUM,
    at: float = T0,
    evidence: tuple[int, ...] = (1,),
) -> Finding:
    return Finding(
        "test", "kind", severity, f"title {severity.value}", group, evidence, at, actor="u1"
    )


def engine(vault: Vault, clock: Any, settings: DetectSettings | None = None) -> Engine:
    settings = settings or DetectSettings()
    return Engine(
        vault.store,
        vault_facts(vault),
        load(settings),
        AlertStore(vault.store, vault.audit, clock),
        clock=clock,
        baseline_days=settings.baseline_days,
    )
