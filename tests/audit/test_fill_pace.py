"""When the audit appender waits to fill a group commit (audit/fill_pace.py)."""

from __future__ import annotations

import pytest

from phivault.audit.fill_pace import FILL_MIN, FILL_WAIT_S, FillPace


def paced(gap: float, entries: int = 64, per_batch: int = 8) -> FillPace:
    """A pace that has seen `entries` entries queued `gap` seconds apart, `per_batch` to a
    batch, with a commit's worth of time (10 ms) between batches."""
    pace, at = FillPace(), 100.0
    for n in range(entries):
        first = n % per_batch == 0
        at += 0.010 if first else gap
        pace.arrived(at, first)
    return pace


def test_a_burst_of_entries_is_waited_for_at_most_the_longest_wait() -> None:
    pace = paced(0.0001)
    assert pace.gap == pytest.approx(0.0001, rel=0.05)
    wait = pace.wait(8, 1)
    assert 0 < wait <= FILL_WAIT_S
    assert wait == pytest.approx(2 * 7 * pace.gap)
    assert pace.wait(60, 1) == 0.0  # 59 more are not due within the longest wait


def test_entries_that_trickle_in_are_not_waited_for() -> None:
    """Searches a few milliseconds apart: a wait would only add to their latency."""
    pace = paced(0.003)
    assert pace.gap == FILL_WAIT_S  # a gap is capped: past the longest wait is too slow
    for queued in range(8):
        assert pace.wait(8, queued) == 0.0


def test_the_time_between_batches_is_not_a_gap() -> None:
    """Only gaps within one batch count: between batches the commit took its time."""
    assert paced(0.0001, entries=256, per_batch=2).gap == pytest.approx(0.0001, rel=0.05)


def test_no_wait_below_the_minimum_or_once_filled() -> None:
    pace = paced(0.00001)
    assert pace.wait(FILL_MIN - 1, 0) == 0.0
    assert pace.wait(FILL_MIN, 0) > 0
    assert pace.wait(8, 8) == 0.0
    assert pace.wait(8, 9) == 0.0


def test_a_fresh_pace_waits_for_nothing_until_it_has_seen_a_burst() -> None:
    pace = FillPace()
    assert pace.wait(FILL_MIN, FILL_MIN - 1) == 0.0
    assert pace.wait(64, 0) == 0.0
