"""When the audit appender should wait to fill a group commit (AuditLog._run).

Every durable commit costs a WAL write, an fsync and hand-overs of the interpreter
between threads, so under load it pays to let one commit cover more entries. The callers
a commit released come back with their next entries: reads by id come back in a burst,
a fraction of a millisecond apart, and a short wait lets one fsync cover all of them
instead of half; searches trickle in a millisecond or more apart, and a wait would only
add to their latency. So the appender waits only when at least FILL_MIN entries are
expected and, at the pace entries are queueing now, all of them are due within
FILL_WAIT_S.
"""

from __future__ import annotations

__all__ = ["FILL_MIN", "FILL_WAIT_S", "FillPace"]

FILL_MIN = 4  # below this many entries expected, commit at once
FILL_WAIT_S = 0.002  # the longest a commit waits for them


class FillPace:
    """How fast entries are queueing, and so whether a group commit should wait to fill.

    `arrived` is called (under the log's lock) for every queued entry; the gaps between
    entries of one batch feed a moving average, capped at FILL_WAIT_S (a longer gap means
    only "too slow to wait for"). The first entry of a batch starts no gap: the time
    since the previous batch is the commit's, not the callers'.
    """

    __slots__ = ("_at", "gap")

    WEIGHT = 0.125  # of the newest gap in the average

    def __init__(self) -> None:
        self._at = 0.0
        self.gap = FILL_WAIT_S

    def arrived(self, at: float, first: bool) -> None:
        if not first:
            self.gap += (min(at - self._at, FILL_WAIT_S) - self.gap) * self.WEIGHT
        self._at = at

    def wait(self, expect: int, queued: int) -> float:
        """Seconds to wait for `expect` entries when `queued` are there: 0 unless at least
        FILL_MIN are expected and, at the current pace, all of them are due within
        FILL_WAIT_S; then twice the time they are due in, at most FILL_WAIT_S."""
        if expect < FILL_MIN:
            return 0.0
        due = (expect - queued) * self.gap
        return min(2 * due, FILL_WAIT_S) if 0 < due < FILL_WAIT_S else 0.0
