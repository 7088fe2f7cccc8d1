"""The evaluation's table: per scenario over all seeds, then the totals against the targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from phivault.detect.eval.attacks import SCENARIOS
from phivault.detect.eval.runner import EvalResult

TARGET_RECALL = 0.95
TARGET_FALSE_PER_10_STAFF_WEEK = 1.0
TARGET_LATENCY_S = 60.0


def totals(results: Sequence[EvalResult]) -> dict[str, float]:
    attacks = sum(len(r.scenarios) for r in results)
    caught = sum(s.detected for r in results for s in r.scenarios)
    reviews = sum(len(r.reviews) for r in results)
    alerts = sum(len(r.alerts) for r in results) - reviews
    true_alerts = sum(r.true_alerts for r in results)
    false_alerts = sum(len(r.false_alerts) for r in results)
    staff_weeks = sum(r.staff / 10 * r.days / 7 for r in results)
    latencies = [x for r in results for x in r.latencies]
    return {
        "attacks": attacks,
        "detected": caught,
        "recall": caught / attacks if attacks else 0.0,
        "alerts": alerts,
        "precision": true_alerts / alerts if alerts else 1.0,
        "false_alerts": false_alerts,
        "false_per_10_staff_week": false_alerts / staff_weeks if staff_weeks else 0.0,
        "reviews": reviews,
        "reviews_per_10_staff_week": reviews / staff_weeks if staff_weeks else 0.0,
        "latency_median_s": statistics.median(latencies) if latencies else 0.0,
        "latency_max_s": max(latencies, default=0.0),
        "requests": sum(r.requests for r in results),
        "scan_max_s": max((r.scan_seconds_max for r in results), default=0.0),
    }


def meets_targets(results: Sequence[EvalResult]) -> bool:
    found = totals(results)
    return (
        found["recall"] >= TARGET_RECALL
        and found["false_per_10_staff_week"] <= TARGET_FALSE_PER_10_STAFF_WEEK
        and found["latency_max_s"] <= TARGET_LATENCY_S
    )


def markdown(results: Sequence[EvalResult]) -> str:
    seeds = ", ".join(str(r.seed) for r in results)
    first = results[0]
    lines = [
        f"Simulated clinic: {first.days} days, {first.staff} staff, {first.patients} patients, "
        f"seeds {seeds}.",
        "",
        "| scenario | detected | caught by | latency (s) | refused by access control |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in SCENARIOS:
        runs = [s for r in results for s in r.scenarios if s.name == name]
        caught = sum(s.detected for s in runs)
        detectors = sorted({d for s in runs for d in s.detectors})
        delays = [s.latency for s in runs if s.latency is not None]
        delay = f"{max(delays):.1f}" if delays else "-"
        refused = sum(s.refused for s in runs)
        total = sum(len(s.entries) for s in runs)
        lines.append(
            f"| {name} | {caught}/{len(runs)} | {', '.join(detectors) or '-'} | {delay} "
            f"| {refused}/{total} entries |"
        )
    t = totals(results)
    lines += [
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| recall (attacks detected) | {t['recall']:.3f} "
        f"({int(t['detected'])}/{int(t['attacks'])}) | >= {TARGET_RECALL} |",
        f"| precision (alerts about an attack) | {t['precision']:.3f} "
        f"({int(t['alerts'])} alerts) | - |",
        f"| false alerts per 10 staff per week | {t['false_per_10_staff_week']:.2f} "
        f"({int(t['false_alerts'])} false) | <= {TARGET_FALSE_PER_10_STAFF_WEEK} |",
        f"| review items (legitimate break-glass) per 10 staff per week | "
        f"{t['reviews_per_10_staff_week']:.2f} ({int(t['reviews'])}) | - |",
        f"| latency, median / max (s) | {t['latency_median_s']:.1f} / {t['latency_max_s']:.1f} "
        f"| <= {TARGET_LATENCY_S} |",
        f"| requests through the server | {int(t['requests'])} | - |",
        f"| longest scan (real s) | {t['scan_max_s']:.3f} | - |",
    ]
    return "\n".join(lines)
