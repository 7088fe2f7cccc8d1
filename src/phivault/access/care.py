"""Facts the policy needs about a patient: who cares for them, and what they consented to.

A clinical user has a care relationship with a patient through an active CareTeam that
lists them, an Encounter they took part in, or an Appointment with them within a window
around now. Facts are read from the patient's compartment (bodies decrypted through the
caller's opener) and cached per patient. The cache is emptied (`forget`) whenever the
store's care epoch moves (AccessControl.refresh, before every request): a trigger bumps it
in every transaction that writes an Appointment, CareTeam, Consent or Encounter, so a
removed membership or a revoked Consent counts no longer from the next request on, in
every process. A practitioner's related patients are kept until the first moment at which
an Appointment enters or leaves the window (`related_compartments`), so the window is
exact; `ttl` bounds how long the other facts are kept without a write.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from phivault.access.consent import as_list, instant_seconds
from phivault.errors import KeyShredded
from phivault.store.base import ReadView, VersionRecord
from phivault.store.compartment_sql import CompartmentQuery
from phivault.store.search_spec import SearchSpec
from phivault.types import Resource

FACT_TYPES = ("Appointment", "CareTeam", "Consent", "Encounter")
RELATION_TYPES = ("Appointment", "CareTeam", "Encounter")
_BATCH = 500
_INACTIVE_APPOINTMENTS = {"cancelled", "noshow", "entered-in-error"}
EDGE_MARGIN = 0.001  # seconds: a related-patients answer is recomputed this early

Opener = Callable[[VersionRecord], bytes | None]


@dataclass(frozen=True, slots=True)
class PatientFacts:
    care_team: frozenset[str] = frozenset()  # members of active CareTeams
    encounters: frozenset[str] = frozenset()  # participants of any Encounter
    appointments: tuple[tuple[str, float], ...] = ()  # (participant, start) of live ones
    consents: tuple[Resource, ...] = field(default_factory=tuple)

    def related(self, who: str, now: float, window: float) -> bool:
        if who in self.care_team or who in self.encounters:
            return True
        return any(p == who and abs(start - now) <= window for p, start in self.appointments)


def facts_from(resources: list[Resource]) -> PatientFacts:
    team: set[str] = set()
    encounters: set[str] = set()
    appointments: list[tuple[str, float]] = []
    consents: list[Resource] = []
    for res in resources:
        kind = res.get("resourceType")
        if kind == "CareTeam" and res.get("status") == "active":
            for part in as_list(res.get("participant")):
                team.update(_ref(part, "member"))
        elif kind == "Encounter" and res.get("status") != "entered-in-error":
            for part in as_list(res.get("participant")):
                encounters.update(_ref(part, "individual"))
        elif kind == "Appointment" and res.get("status") not in _INACTIVE_APPOINTMENTS:
            start = instant_seconds(res.get("start"))
            if start is not None:
                for part in as_list(res.get("participant")):
                    appointments.extend((who, start) for who in _ref(part, "actor"))
        elif kind == "Consent" and res.get("status") == "active":
            consents.append(res)
    return PatientFacts(
        frozenset(team), frozenset(encounters), tuple(appointments), tuple(consents)
    )


def _window_change(starts: Iterable[float], now: float, window: float) -> float:
    """An instant up to which (exclusive) no appointment starting at one of `starts`
    enters (at start - window) or leaves (after start + window) the window around the
    current time: the first such edge after `now`, moved EDGE_MARGIN earlier so that float
    rounding in PatientFacts.related can never put a change before it; infinity if none."""
    first = math.inf
    for start in starts:
        if now < start - window:
            first = min(first, start - window - EDGE_MARGIN)
        elif now <= start + window:
            first = min(first, start + window - EDGE_MARGIN)
    return first


def _ref(part: object, key: str) -> list[str]:
    if not isinstance(part, dict):
        return []
    target = part.get(key)
    if isinstance(target, dict) and isinstance(target.get("reference"), str):
        return [target["reference"]]
    return []


class StoreCareFacts:
    """PatientFacts read from the store, with a small time-bounded cache."""

    def __init__(
        self,
        view: ReadView,
        opener: Opener,
        *,
        ttl: float = 60.0,
        max_patients: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._view = view
        self._open = opener
        self._ttl = ttl
        self._max = max_patients
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, PatientFacts]] = OrderedDict()
        self._lock = threading.Lock()
        # Search-wide facts, cached for `ttl` like the per-patient ones.
        # who -> (window, valid from, valid until, compartments), times in the caller's `now`
        self._related: OrderedDict[str, tuple[float, float, float, frozenset[str]]] = OrderedDict()
        self._consented: tuple[float, frozenset[str]] | None = None
        # Bumped by every `forget`: a load that began before it is not cached (it may
        # hold facts older than the write that caused the forget).
        self._generation = 0

    @property
    def generation(self) -> int:
        """Moves with every `forget`: what was decided from older facts is stale."""
        return self._generation

    def facts(self, compartment: str) -> PatientFacts:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(compartment)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
            generation = self._generation
        found = facts_from(self._load(compartment))
        with self._lock:
            if generation == self._generation:
                self._cache[compartment] = (now, found)
                self._cache.move_to_end(compartment)
                while len(self._cache) > self._max:
                    self._cache.popitem(last=False)
        return found

    def forget(self, compartment: str | None = None) -> None:
        with self._lock:
            self._generation += 1
            self._related.clear()
            self._consented = None
            if compartment is None:
                self._cache.clear()
            else:
                self._cache.pop(compartment, None)

    def related_compartments(self, who: str, now: float, window: float) -> frozenset[str]:
        """Every compartment whose patient `who` ("Practitioner/<id>") has a care
        relationship with (the same rule as PatientFacts.related), read through the
        reference index: only the CareTeams, Encounters and Appointments naming `who`.

        Kept (until a care write empties the cache) for as long as `now` stays before the
        next instant at which one of those Appointments enters or leaves the window: within
        that span the answer cannot change, so a cached answer is always the exact one."""
        # A hit needs no lock: an entry is an immutable tuple, stored whole, and `forget`
        # drops entries rather than changing them (one read per decision of a clinician).
        hit = self._related.get(who)
        if hit is not None and hit[0] == window and hit[1] <= now < hit[2]:
            return hit[3]
        with self._lock:
            generation = self._generation
        rtype, _, rid = who.partition("/")
        by_compartment: dict[str, list[Resource]] = {}
        for source in RELATION_TYPES:
            refs = self._view.references_to(source, None, rtype, [rid])
            rids = sorted({r.rid for r in refs})
            for start in range(0, len(rids), _BATCH):
                for record in self._view.current_many(source, rids[start : start + _BATCH]):
                    if record.deleted or record.compartment is None:
                        continue
                    parsed = self._parse(record)
                    if parsed is not None:
                        by_compartment.setdefault(record.compartment, []).append(parsed)
        facts = [(c, facts_from(res)) for c, res in by_compartment.items()]
        found = frozenset(c for c, f in facts if f.related(who, now, window))
        until = _window_change(
            (start for _, f in facts for p, start in f.appointments if p == who), now, window
        )
        with self._lock:
            if generation == self._generation:
                self._related[who] = (window, now, until, found)
                self._related.move_to_end(who)
                while len(self._related) > self._max:
                    self._related.popitem(last=False)
        return found

    def consent_compartments(self) -> frozenset[str]:
        """Every compartment holding a live Consent (any status: a superset)."""
        tick = self._clock()
        consented = self._consented  # one immutable tuple, replaced whole: no lock to read
        if consented is not None and tick - consented[0] < self._ttl:
            return consented[1]
        with self._lock:
            generation = self._generation
        found: set[str] = set()
        spec = SearchSpec("Consent", (), limit=_BATCH)
        while True:
            page = self._view.search(spec)
            found.update(r.record.compartment for r in page.rows if r.record.compartment)
            if not page.more or not page.rows:
                break
            spec = SearchSpec("Consent", (), limit=_BATCH, after=page.rows[-1].key)
        result = frozenset(found)
        with self._lock:
            if generation == self._generation:
                self._consented = (tick, result)
        return result

    def _parse(self, record: VersionRecord) -> Resource | None:
        try:
            body = self._open(record)
        except KeyShredded:
            return None  # crypto-shredded: the data no longer exists
        if not body:
            return None
        parsed = orjson.loads(body)
        return parsed if isinstance(parsed, dict) else None

    def _load(self, compartment: str) -> list[Resource]:
        resources: list[Resource] = []
        after: tuple[str, str] | None = None
        while True:
            page = self._view.compartment(
                CompartmentQuery(compartment, rtypes=FACT_TYPES, after=after, limit=500)
            )
            for record in page:
                body = self._open(record)
                if body:
                    parsed = orjson.loads(body)
                    if isinstance(parsed, dict):
                        resources.append(parsed)
            if len(page) < 500:
                return resources
            after = (page[-1].rtype, page[-1].rid)
