"""Opening data keys ahead of the bodies that need them: one store read for a page.

A search page or a batch read opens many bodies under many patients' keys. `prefetch`
reads the keys that are not cached in one store read and caches them unwrapped; `offer`
takes a key row that came back in the same read as its body. Both only ever cache keys of
committed rows (read outside any transaction), never make a key, and leave out any key
that is absent, shredded or does not unwrap: opening that body then fails as it always did.

`KeyPrefetch` holds these steps for `KeyRing` (crypto/keyring.py), which it is mixed into:
they use the ring's lock, cache, KEKs and store under the ring's locking rule.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from phivault.crypto.body import parse_body
from phivault.crypto.kek import Kek
from phivault.crypto.key_cache import KeyCache
from phivault.crypto.keystate import INDEX_KEY_ID, TOMBSTONE, KeyState, key_row_id, wrap_aad
from phivault.crypto.keystore import WrappedKeyStore
from phivault.errors import DecryptionError

__all__ = ["KeyPrefetch"]


class KeyPrefetch:
    """The key ring's read-ahead of data keys (mixed into `KeyRing`, whose state it uses)."""

    _lock: threading.RLock
    _cache: KeyCache
    _keks: list[Kek]
    _store: WrappedKeyStore

    def refresh(self, *, force: bool = False, within: object | None = None) -> KeyState:
        raise NotImplementedError  # KeyRing's

    def prefetch(self, bodies: Iterable[tuple[str, bytes]]) -> None:
        """Read, in one store read, the data keys of bodies about to be opened (a search
        page's (key id, blob) pairs) that are not cached, and cache them unwrapped: opening
        them then costs no round trip each. Only committed rows are read, as `_key` reads
        them outside a transaction. Best effort: a key that is absent, shredded or does
        not unwrap is left out, and opening its body fails as it always did."""
        self.refresh()
        wanted: set[str] = set()
        with self._lock:
            for key_id, blob in bodies:
                parsed = parse_body(blob)
                if parsed is None or key_id == INDEX_KEY_ID:
                    continue
                row_id = key_row_id(key_id, parsed[1])
                if row_id not in self._cache:
                    wanted.add(row_id)
        if len(wanted) < 2 or len(wanted) > self._cache.size:
            return  # one key: `_key` reads it as cheaply; more than fit: no gain
        for row_id, blob in self._store.get_wrapped_many(sorted(wanted)).items():
            self._accept(row_id, blob)

    def offer(self, key_id: str, blob: bytes, wrapped: Mapping[str, bytes]) -> None:
        """Cache, unwrapped, the data key that opens body `blob` of `key_id` if `wrapped`
        (key row id -> wrapped blob, read from the committed store in the same read as
        the body) holds it and it is not cached: opening the body then costs no round
        trip. Rows of other keys or generations are ignored; a key that is absent,
        shredded or does not unwrap is left out, and opening fails as it always did."""
        parsed = parse_body(blob)
        if parsed is None or key_id == INDEX_KEY_ID:
            return
        row_id = key_row_id(key_id, parsed[1])
        found = wrapped.get(row_id)
        if found is None:
            return
        with self._lock:
            if row_id in self._cache:
                return
        self._accept(row_id, found)

    def _accept(self, row_id: str, blob: bytes) -> None:
        """Cache the key of a committed row (read outside any transaction), unwrapped."""
        if blob == TOMBSTONE:
            return
        for kek in list(self._keks):
            try:
                key = kek.unwrap(blob, wrap_aad(row_id))
            except DecryptionError:
                continue
            self._cache.remember_new(row_id, key)  # a key made meanwhile stays as it is
            return
