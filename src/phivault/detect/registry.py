"""Detectors are plug-ins. The built-in ones register exactly as a third-party one does:
a name and a factory, found in the `phivault.detectors` entry-point group or in the
built-in table below (loaded by the same `load` function). A factory takes the
`DetectSettings` and returns a `Detector`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Protocol

from phivault.detect.facts import ClinicFacts
from phivault.detect.model import Entry, Finding
from phivault.detect.settings import DetectSettings
from phivault.errors import ConfigError

ENTRY_POINT_GROUP = "phivault.detectors"


class Detector(Protocol):
    """Reads the audit log in order, one entry at a time, and says what needs a look.

    `observe` is also called on the history before the engine's cursor (warm-up): a
    detector learns its baselines there, and the engine drops what it reports. `tick`
    is called after each batch with the engine's clock, for findings about the absence
    of something (an overdue backup). Findings must carry no PHI."""

    name: str
    description: str

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]: ...

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]: ...


DetectorFactory = Callable[[DetectSettings], Detector]

BUILTIN: dict[str, str] = {
    "unexplained-access": "phivault.detect.detectors.unexplained:UnexplainedAccess",
    "snooping": "phivault.detect.detectors.snooping:Snooping",
    "volume": "phivault.detect.detectors.volume:VolumeAnomaly",
    "off-hours": "phivault.detect.detectors.off_hours:OffHours",
    "credentials": "phivault.detect.detectors.credentials:CredentialAttacks",
    "write-burst": "phivault.detect.detectors.sabotage:WriteBurst",
    "canary": "phivault.detect.detectors.sabotage:CanaryTouch",
    "integrity": "phivault.detect.detectors.integrity:IntegrityFailures",
    "backup": "phivault.detect.detectors.integrity:BackupHealth",
    "break-glass": "phivault.detect.detectors.review:BreakGlass",
    "privilege": "phivault.detect.detectors.review:PrivilegeChange",
}

_REGISTRY: dict[str, DetectorFactory] = {}


def register_detector(name: str, factory: DetectorFactory, *, replace: bool = False) -> None:
    if name in _REGISTRY and not replace:
        raise ConfigError(f"a detector named {name!r} is already registered")
    _REGISTRY[name] = factory


def _load_target(target: str) -> DetectorFactory:
    module, _, attr = target.partition(":")
    factory: DetectorFactory = getattr(importlib.import_module(module), attr)
    return factory


def registered() -> dict[str, DetectorFactory]:
    """Every detector: the built-in table and the entry-point group, loaded alike."""
    for name, target in BUILTIN.items():
        if name not in _REGISTRY:
            register_detector(name, _load_target(target))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            register_detector(ep.name, ep.load())
    return dict(_REGISTRY)


def load(settings: DetectSettings) -> list[Detector]:
    """The enabled detectors, built with the settings."""
    known = registered()
    unknown = set(settings.disabled) - set(known)
    if unknown:
        raise ConfigError(f"unknown detector(s) in [alerts] disabled: {', '.join(sorted(unknown))}")
    return [
        factory(settings)
        for name, factory in sorted(known.items())
        if name not in settings.disabled
    ]
