"""Login throttling: exponential backoff per account, and sliding-window rate limits per
account and per network address.

Pure decisions over small state records; the caller keeps the state (per-account backoff
in the store, so every worker sees it; the address windows in memory, per process).
An unknown username is throttled exactly like a known one, so throttling never tells an
attacker which accounts exist.

Against brute force on one account: after `free_failures` failures each further failure
doubles the wait (1 s, 2 s, 4 s ... capped at `max_delay`). Against password spraying
(one password tried on many accounts): the per-address window caps attempts from one
address whatever accounts they name.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    free_failures: int = 5
    base_delay: float = 1.0
    max_delay: float = 15 * 60.0
    forget_after: float = 24 * 3600.0  # failures older than this no longer count


@dataclass(frozen=True, slots=True)
class Backoff:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


def retry_after(state: Backoff | None, now: float) -> float:
    """Seconds until another attempt may be made (0: now)."""
    if state is None:
        return 0.0
    return max(0.0, state.locked_until - now)


def after_failure(state: Backoff | None, now: float, policy: BackoffPolicy) -> Backoff:
    failures = 1
    if state is not None and now - state.last_failure < policy.forget_after:
        failures = state.failures + 1
    excess = failures - policy.free_failures
    delay = 0.0 if excess <= 0 else min(policy.max_delay, policy.base_delay * 2 ** (excess - 1))
    return Backoff(failures=failures, last_failure=now, locked_until=now + delay)


@dataclass(frozen=True, slots=True)
class RateLimit:
    attempts: int
    per_seconds: float


class SlidingWindow:
    """At most `limit.attempts` events per key in any `limit.per_seconds` window."""

    def __init__(self, limit: RateLimit, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def retry_after(self, key: str, now: float) -> float:
        with self._lock:
            events = self._prune(key, now)
            if events is None or len(events) < self.limit.attempts:
                return 0.0
            return max(0.0, events[0] + self.limit.per_seconds - now)

    def hit(self, key: str, now: float) -> None:
        with self._lock:
            events = self._prune(key, now)
            if events is None:
                if len(self._events) >= self._max_keys:
                    self._evict(now)
                events = self._events.setdefault(key, deque())
            events.append(now)

    def _prune(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.limit.per_seconds:
            events.popleft()
        return events

    def _evict(self, now: float) -> None:
        # Bounded memory under a flood of distinct keys: drop idle keys, then the oldest.
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - 3600]:
            del self._events[key]
        while len(self._events) >= self._max_keys:
            del self._events[next(iter(self._events))]
