"""Long loops in a server thread hand the GIL over to request threads every half millisecond.

The detector runs in a thread of `serve`. A thread that computes keeps the GIL until the
interpreter's switch interval (5 ms) runs out whenever another thread asks for it, and a
request thread asks for it again after each database call and socket write (a read makes
about a dozen): with a start-up scan of a large audit log running, a read waited up to
5 ms a dozen times. `time.sleep(0)` releases the GIL at once, so a waiting thread takes it
within `SLICE_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SLICE_S = 0.0005


class Courtesy:
    """Call `tick()` once per step of a long loop."""

    __slots__ = ("_clock", "_since", "slice_s")

    def __init__(
        self, slice_s: float | None = None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.slice_s = SLICE_S if slice_s is None else slice_s
        self._clock = clock
        self._since = clock()

    def tick(self) -> None:
        now = self._clock()
        if now - self._since >= self.slice_s:
            time.sleep(0)  # releases the GIL: a waiting request thread takes it now
            self._since = self._clock()
