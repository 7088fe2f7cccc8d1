"""The simulated clinic, small: every injected attack is caught, with few false alerts,
each within 60 s of the access that triggered it (the issue's targets)."""

from __future__ import annotations

from pathlib import Path

from phivault.detect.eval.attacks import SCENARIOS
from phivault.detect.eval.runner import run_eval


def test_small_clinic_meets_the_targets(tmp_path: Path) -> None:
    result = run_eval(7, 6, 24, 101, workdir=tmp_path)  # a seed not used while tuning
    assert [s.name for s in result.scenarios] == list(SCENARIOS)
    missed = [s.name for s in result.scenarios if not s.detected]
    assert result.recall >= 0.95, missed
    assert result.false_per_10_staff_week <= 1.0, [a.title for a in result.false_alerts]
    assert result.max_latency <= 60.0
    assert result.requests > 500  # the clinic really worked through the server
    assert all(s.entries for s in result.scenarios)  # every attack left audit entries
