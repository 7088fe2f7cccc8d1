"""A practitioner's related patients are cached only while no Appointment can enter or
leave the window: moving the clock across an edge changes the answer without any write
or `forget`, and within a span the store is not read again."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import orjson

from phivault.access.care import EDGE_MARGIN, StoreCareFacts, _window_change
from phivault.store.base import ReadView, VersionRecord
from phivault.store.search_spec import Reference

DAY = 86400.0
WINDOW = 30 * DAY
WHO = "Practitioner/d1"
START = 1_000 * DAY  # the appointment's start (epoch seconds)


def _appointment(start: float) -> bytes:
    when = f"{start:.0f}"
    return orjson.dumps(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": when,
            "participant": [{"actor": {"reference": WHO}}],
        }
    )


class View:
    """Just what StoreCareFacts.related_compartments reads: one Appointment naming WHO."""

    def __init__(self) -> None:
        self.reads = 0

    def references_to(
        self, source: str, params: Sequence[str] | None, target_type: str, targets: Sequence[str]
    ) -> list[Reference]:
        self.reads += 1
        return [Reference("a1", "actor", "Practitioner", "d1")] if source == "Appointment" else []

    def current_many(self, rtype: str, rids: Sequence[str]) -> list[VersionRecord]:
        return [VersionRecord(rtype, "a1", 1, "", False, b"x", 1, "Patient/p1")]


def _facts(view: View, monkeypatch: Any) -> StoreCareFacts:
    import phivault.access.care as care

    # The appointment's start, as the instant parser reads it (a bare number of seconds
    # is not FHIR; the parser is not what is tested here).
    monkeypatch.setattr(care, "instant_seconds", lambda value: float(value) if value else None)
    return StoreCareFacts(cast("ReadView", view), lambda record: _appointment(START))


def test_the_answer_follows_the_window_without_a_forget(monkeypatch: Any) -> None:
    view = View()
    facts = _facts(view, monkeypatch)
    before = START - WINDOW - DAY
    assert facts.related_compartments(WHO, before, WINDOW) == frozenset()
    assert facts.related_compartments(WHO, before + 1, WINDOW) == frozenset()
    assert view.reads == 3  # once per relation type: the second call was a cache hit
    inside = START - WINDOW + 1
    assert facts.related_compartments(WHO, inside, WINDOW) == frozenset({"Patient/p1"})
    assert facts.related_compartments(WHO, START + WINDOW - 1, WINDOW) == frozenset({"Patient/p1"})
    assert facts.related_compartments(WHO, START + WINDOW + 1, WINDOW) == frozenset()
    # An earlier "now" than the cached answer was computed for is never served from it.
    assert facts.related_compartments(WHO, inside, WINDOW) == frozenset({"Patient/p1"})


def test_window_edges() -> None:
    assert _window_change([], 0.0, WINDOW) == math.inf
    assert _window_change([START], START - 2 * WINDOW, WINDOW) == START - WINDOW - EDGE_MARGIN
    assert _window_change([START], START, WINDOW) == START + WINDOW - EDGE_MARGIN
    assert _window_change([START], START + 2 * WINDOW, WINDOW) == math.inf
    assert _window_change([START, START + DAY], START, WINDOW) == START + WINDOW - EDGE_MARGIN
