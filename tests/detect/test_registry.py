"""Detectors are plug-ins: built-ins and third-party ones load the same way."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from phivault.detect import registry
from phivault.detect.facts import ClinicFacts
from phivault.detect.model import Entry, Finding
from phivault.detect.settings import DetectSettings, settings_from
from phivault.errors import ConfigError


class _Plugin:
    name = "test-plugin"
    description = "a third-party detector"

    def __init__(self, settings: DetectSettings) -> None:
        self.settings = settings

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        return ()

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()


def test_every_builtin_is_registered_through_the_table() -> None:
    found = registry.registered()
    assert set(registry.BUILTIN) <= set(found)
    detectors = registry.load(DetectSettings())
    assert {d.name for d in detectors} >= set(registry.BUILTIN)


def test_a_plugin_registers_like_a_builtin_and_cannot_replace_one() -> None:
    registry.register_detector("test-plugin", _Plugin, replace=True)
    try:
        assert "test-plugin" in {d.name for d in registry.load(DetectSettings())}
        with pytest.raises(ConfigError):
            registry.register_detector("canary", _Plugin)
    finally:
        registry._REGISTRY.pop("test-plugin", None)


def test_disabling_detectors() -> None:
    names = {d.name for d in registry.load(settings_from({"disabled": ["off-hours"]}))}
    assert "off-hours" not in names and "canary" in names
    with pytest.raises(ConfigError):
        registry.load(settings_from({"disabled": ["no-such-detector"]}))


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        settings_from({"volume_floor_patients": "many"})
    with pytest.raises(ConfigError):
        settings_from({"unknown_knob": 1})
    with pytest.raises(ConfigError):
        settings_from({"min_severity": "urgent"})
    assert settings_from({"smtp_to": ["it@clinic.example"]}).smtp_to == ("it@clinic.example",)
