"""Run the simulated clinic through the real server and the real detectors, and score the
alerts against the injected attacks.

Time is simulated: tasks run in time order, the clock jumps between requests, and the
detector engine scans whenever `scan_interval_seconds` of simulated time has passed since
entries arrived (as the detector task in `serve` does in real time). Latency is the
simulated time from the triggering access to the alert; the real time each scan took is
measured too.
"""

from __future__ import annotations

import heapq
import itertools
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from phivault.detect import registry
from phivault.detect.alerts import AlertStore
from phivault.detect.engine import CURSOR, Engine
from phivault.detect.eval.attacks import SCENARIOS, plan_attacks
from phivault.detect.eval.behaviour import Planned, normal_day
from phivault.detect.eval.clinic import DAY, build_clinic
from phivault.detect.eval.harness import Harness, SimClock
from phivault.detect.model import Alert
from phivault.detect.runtime import vault_facts
from phivault.detect.settings import DetectSettings
from phivault.detect.sql import DetectSql

REVIEW_DETECTORS = frozenset({"break-glass", "privilege"})
START = 1_788_134_400.0  # Monday 2026-08-31 00:00 UTC


@dataclass
class ScenarioResult:
    name: str
    entries: set[int] = field(default_factory=set)
    started: float | None = None
    detectors: set[str] = field(default_factory=set)
    latency: float | None = None  # first alert: raised - its triggering access
    refused: int = 0  # of its entries, how many the access policy or login refused

    @property
    def detected(self) -> bool:
        return bool(self.detectors)


@dataclass
class EvalResult:
    seed: int
    days: int
    staff: int
    patients: int
    requests: int
    entries: int
    scenarios: list[ScenarioResult]
    alerts: list[Alert]
    true_alerts: int
    false_alerts: list[Alert]
    reviews: list[Alert]
    latencies: list[float]
    scan_seconds_max: float
    wall_seconds: float

    @property
    def recall(self) -> float:
        return sum(s.detected for s in self.scenarios) / len(self.scenarios)

    @property
    def precision(self) -> float:
        judged = len(self.alerts) - len(self.reviews)
        return self.true_alerts / judged if judged else 1.0

    @property
    def false_per_10_staff_week(self) -> float:
        return len(self.false_alerts) / (self.staff / 10) / (self.days / 7)

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)


def run_eval(
    days: int,
    staff: int,
    patients: int,
    seed: int,
    *,
    settings: DetectSettings | None = None,
    workdir: Path | None = None,
) -> EvalResult:
    if days < 7:
        raise ValueError("the evaluation needs at least 7 days (a working week of baseline)")
    settings = settings or DetectSettings()
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="phivault-eval-", dir=workdir) as tmp:
        clock = SimClock(START - 3600)
        clinic = build_clinic(staff, patients, days, seed, START)
        harness = Harness(Path(tmp), clinic, clock, seed)
        try:
            return _run(harness, clock, settings, days, seed, wall)
        finally:
            harness.close()


def _run(
    h: Harness, clock: SimClock, settings: DetectSettings, days: int, seed: int, wall: float
) -> EvalResult:
    vault = h.vault
    sql = DetectSql(vault.store)
    with vault.store.write() as tx:  # the setup (import, users) is not judged
        sql.put_state(tx, CURSOR, str(vault.store.audit_size()))
    engine = Engine(
        vault.store,
        vault_facts(vault),
        registry.load(settings),
        AlertStore(vault.store, vault.audit, clock),
        clock=clock,
        baseline_days=settings.baseline_days,
    )
    engine.start()
    rng = random.Random(seed * 7919 + 1)  # noqa: S311 (a simulation)
    order = itertools.count()
    queue: list[tuple[float, int, Planned]] = []
    for day in range(days):
        for plan in normal_day(h, rng, START + day * DAY, h.clinic.visits):
            heapq.heappush(queue, (plan.at, next(order), plan))
    for plan in plan_attacks(h, rng, START, days):
        heapq.heappush(queue, (plan.at, next(order), plan))
    scenarios = {name: ScenarioResult(name) for name in SCENARIOS}
    interval = settings.scan_interval_seconds
    pending_since: float | None = None
    requests = 0
    scan_max = 0.0

    def scan() -> None:
        nonlocal pending_since, scan_max
        began = time.perf_counter()
        engine.scan()
        scan_max = max(scan_max, time.perf_counter() - began)
        pending_since = None

    end = START + days * DAY
    while queue:
        at, _, plan = heapq.heappop(queue)
        if at >= end:
            continue
        if pending_since is not None and at >= pending_since + interval:
            clock.now = max(clock.now, pending_since + interval)
            scan()
        clock.now = max(clock.now, at)
        before = vault.store.audit_size()
        try:
            delay = next(plan.task)
        except StopIteration:
            delay = None
        after = vault.store.audit_size()
        requests += 1
        if after > before:
            if pending_since is None:
                pending_since = clock.now
            if plan.scenario is not None:
                result = scenarios[plan.scenario]
                result.entries.update(range(before, after))
                result.started = result.started if result.started is not None else clock.now
        if delay is not None:
            heapq.heappush(queue, (clock.now + delay, next(order), plan))
    if pending_since is not None:
        clock.now = max(clock.now, pending_since + interval)
        scan()
    return _score(h, engine, scenarios, days, seed, requests, scan_max, wall)


def _score(
    h: Harness,
    engine: Engine,
    scenarios: dict[str, ScenarioResult],
    days: int,
    seed: int,
    requests: int,
    scan_max: float,
    wall: float,
) -> EvalResult:
    alerts = engine.alerts.list_alerts(limit=1000)
    attack_entries = set().union(*(s.entries for s in scenarios.values()))
    store = h.vault.store
    for result in scenarios.values():  # the baseline: what the access layer alone stopped
        for index in sorted(result.entries):
            for _, raw in store.audit_entries(index, index + 1):
                result.refused += orjson.loads(bytes(raw)).get("outcome") != "0"
    true_alerts, false_alerts, reviews, latencies = 0, [], [], []
    for alert in alerts:
        latencies.append(alert.created - alert.first_seen)
        evidence = set(alert.evidence)
        if evidence & attack_entries:
            true_alerts += 1
        elif alert.detector in REVIEW_DETECTORS:
            reviews.append(alert)  # queued by design (every break-glass), not a false alarm
        else:
            false_alerts.append(alert)
        for result in scenarios.values():
            if evidence & result.entries:
                result.detectors.add(alert.detector)
                delay = alert.created - alert.first_seen
                result.latency = delay if result.latency is None else min(result.latency, delay)
    return EvalResult(
        seed=seed,
        days=days,
        staff=len(h.clinic.staff),
        patients=len(h.clinic.patients),
        requests=requests,
        entries=h.vault.store.audit_size(),
        scenarios=list(scenarios.values()),
        alerts=alerts,
        true_alerts=true_alerts,
        false_alerts=false_alerts,
        reviews=reviews,
        latencies=latencies,
        scan_seconds_max=scan_max,
        wall_seconds=time.perf_counter() - wall,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
