"""Index extraction time per resource: compiled plans vs fhirpathpy alone, in one run.

Usage: python bench/bench_extract.py [--shared DIR] [--seconds S]

Uses the official R4 examples of the demo resource types from the shared data directory
(``--shared``, else ``$PHIVAULT_SHARED``, else ``shared/`` beside the repository). Plans are
built and fhirpathpy expressions parsed before timing (both engines cache them for the
life of the process), so the figures are the steady-state cost of one create.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from phivault.fhir.search.extract import Extractor
from phivault.fhir.search.index import IndexEntry

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "Patient": "patient-example.json",
    "Observation": "observation-example.json",
    "Encounter": "encounter-example.json",
    "Condition": "condition-example.json",
    "MedicationRequest": "medicationrequest0301.json",
    "AllergyIntolerance": "allergyintolerance-example.json",
    "Appointment": "appointment-example.json",
    "CareTeam": "careteam-example.json",
    "Practitioner": "practitioner-example.json",
}


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Best of five timed batches, in microseconds per call."""
    calls = 1
    while True:  # size a batch to about seconds / 5
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 5 or calls >= 1 << 20:
            break
        calls *= 2
    best = elapsed
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def _copy_and_extract(extractor: Extractor, resource: dict[str, Any]) -> list[IndexEntry]:
    return extractor.extract(copy.deepcopy(resource))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args(argv)
    shared = args.shared or Path(os.environ.get("PHIVAULT_SHARED") or REPO.parent / "shared")
    examples = shared / "fhir" / "r4" / "examples"
    compiled, reference = Extractor(compiled=True), Extractor(compiled=False)
    report = compiled.report()
    print(
        f"definitions: {len(compiled.registry.definitions)}; compiled {report.compiled}, "
        f"fhirpathpy fallback {len(report.fallback)}, not indexed {len(report.not_indexed)}"
    )
    print(f"{'type':<20}{'entries':>8}{'compiled µs':>14}{'fhirpathpy µs':>16}{'speed-up':>10}")
    for resource_type, name in EXAMPLES.items():
        resource: dict[str, Any] = json.loads((examples / name).read_text(encoding="utf-8"))
        entries: list[IndexEntry] = compiled.extract(resource)
        # fhirpathpy rewrites numbers in its input; it gets a fresh copy per call, and the
        # copy's cost is taken out of its figure.
        reference.extract(copy.deepcopy(resource))
        fast = per_call_us(partial(compiled.extract, resource), args.seconds)
        copying = per_call_us(partial(copy.deepcopy, resource), args.seconds)
        slow = per_call_us(partial(_copy_and_extract, reference, resource), args.seconds)
        slow = max(slow - copying, 0.0)
        print(f"{resource_type:<20}{len(entries):>8}{fast:>14.1f}{slow:>16.1f}{slow / fast:>9.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
