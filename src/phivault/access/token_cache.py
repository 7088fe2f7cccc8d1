"""Verified bearer tokens -> the Principal they stand for, cached for the token's lifetime.

Building a Principal costs an Ed25519 signature check and reads of the session, user or
client rows; a SMART app sends the same token with every request for up to 15 minutes.
An entry is used only while all of these hold (otherwise the full check runs again):

- the token has not expired (its own `exp`, without the verifier's clock leeway) and its
  session has not reached its absolute lifetime;
- the session was touched less than TOUCH_EVERY seconds ago, so the idle timeout keeps
  being measured and recorded exactly as without the cache;
- nothing changed who the token stands for: AccessControl.refresh empties the cache
  whenever the store's auth epoch moves (a trigger bumps it when a session is revoked or
  gains break-glass, a user is disabled or changes roles, a client is disabled), in this
  process or any other.

A full check that began before an invalidation is not cached (generation counter), so a
revocation is never undone by a slow concurrent request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from phivault.access.principal import Principal
from phivault.access.sessions import TOUCH_EVERY


@dataclass(frozen=True, slots=True)
class CachedPrincipal:
    principal: Principal
    valid_until: float  # the token's exp, or the session's absolute end if earlier
    touched: float | None  # when the session's last_seen was last recorded (None: system)


class TokenCache:
    def __init__(self, max_tokens: int = 8192) -> None:
        self._max = max_tokens
        self._entries: OrderedDict[str, CachedPrincipal] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, token: str, now: float) -> Principal | None:
        with self._lock:
            hit = self._entries.get(token)
            if hit is None:
                return None
            if now >= hit.valid_until or (
                hit.touched is not None and now - hit.touched >= TOUCH_EVERY
            ):
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return hit.principal

    def put(self, token: str, entry: CachedPrincipal, generation: int) -> None:
        """Cache `entry` unless the cache was emptied since `generation` was read."""
        with self._lock:
            if generation != self._generation:
                return
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
