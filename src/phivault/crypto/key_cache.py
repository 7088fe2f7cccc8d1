"""The key ring's cache of open (unwrapped) data keys, by key row id.

Bounded LRU: every cached key is plaintext key material in memory (Python cannot wipe
bytes), and an unbounded cache would hold every patient's key after a scan. Beside each
key, the wrapped blob it came from while the key is *unconfirmed* (made or read inside a
write transaction that may still roll back: crypto/keyring.py, module docstring), the
key's `BodyCipher` once one was made, for the most recently used keys (its AES key
schedule and AAD head: a read of such a key pays for the decryption only), and, per open
write transaction, the keys that transaction may seal under without checking again.

In memory only; no store I/O or KEK call happens here. It is guarded by the key ring's
lock (passed in, reentrant), so the ring can read and change it together with its own
state under one lock.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator

from phivault.crypto.body import BodyCipher

# Ciphers kept, at most (the most recently used keys'): about 2.7 KB each (the AES-GCM
# object holds OpenSSL contexts), so 5-6 MB, where one per cached key would be 45 MB. A
# key without one makes it again on its next use, a few µs.
DEFAULT_CIPHERS = 2048


class KeyCache:
    def __init__(self, size: int, lock: threading.RLock, *, ciphers: int = DEFAULT_CIPHERS) -> None:
        if size < 1:
            raise ValueError("cache_size must be at least 1")
        if ciphers < 0:
            raise ValueError("ciphers must not be negative")
        self.size = size
        self.ciphers = ciphers
        self._lock = lock
        self._keys: OrderedDict[str, bytes] = OrderedDict()
        # row id -> the wrapped blob an unconfirmed key came from
        self._unconfirmed: dict[str, bytes] = {}
        # row id -> the cipher of the key cached for it (never of another key), LRU
        self._ciphers: OrderedDict[str, BodyCipher] = OrderedDict()
        self._tx_keys: weakref.WeakKeyDictionary[object, dict[str, bytes]] = (
            weakref.WeakKeyDictionary()
        )

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._keys

    def __iter__(self) -> Iterator[str]:
        """The cached row ids (a copy: the caller may forget some while iterating)."""
        with self._lock:
            return iter(list(self._keys))

    def get(self, row_id: str) -> tuple[bytes | None, bytes | None]:
        """(the key, the blob it came from if unconfirmed); a hit counts as a use."""
        with self._lock:
            key = self._keys.get(row_id)
            if key is not None:
                self._keys.move_to_end(row_id)
            return key, self._unconfirmed.get(row_id)

    def cipher(self, row_id: str) -> BodyCipher | None:
        """The cipher of the key cached for `row_id`, if one was kept; a hit counts as a
        use of the key."""
        with self._lock:
            cipher = self._ciphers.get(row_id)
            if cipher is not None:
                self._keys.move_to_end(row_id)
                self._ciphers.move_to_end(row_id)
            return cipher

    def keep_cipher(self, row_id: str, cipher: BodyCipher) -> None:
        """Keep `cipher` for `row_id` if the key it was made from is the one cached."""
        with self._lock:
            if self._keys.get(row_id) is cipher.key and self.ciphers:
                self._ciphers[row_id] = cipher
                self._ciphers.move_to_end(row_id)
                while len(self._ciphers) > self.ciphers:
                    self._ciphers.popitem(last=False)

    def unconfirmed(self, row_id: str) -> bytes | None:
        with self._lock:
            return self._unconfirmed.get(row_id)

    def remember(self, row_id: str, key: bytes, *, unconfirmed: bytes | None) -> None:
        """Cache a key; `unconfirmed`: the blob it came from, if not known committed."""
        with self._lock:
            if self._keys.get(row_id) is not key:
                self._ciphers.pop(row_id, None)
            self._keys[row_id] = key
            self._keys.move_to_end(row_id)
            if unconfirmed is None:
                self._unconfirmed.pop(row_id, None)
            else:
                self._unconfirmed[row_id] = unconfirmed
            while len(self._keys) > self.size:
                evicted, _ = self._keys.popitem(last=False)
                self._unconfirmed.pop(evicted, None)
                self._ciphers.pop(evicted, None)

    def remember_new(self, row_id: str, key: bytes) -> None:
        """Cache a committed key unless one is cached meanwhile (that one stays)."""
        with self._lock:
            if row_id not in self._keys:
                self.remember(row_id, key, unconfirmed=None)

    def confirmed(self, row_id: str, blob: bytes) -> None:
        """The committed store holds `blob` for `row_id`: its key, if it came from that
        blob, is unconfirmed no more."""
        with self._lock:
            if self._unconfirmed.get(row_id) == blob:
                del self._unconfirmed[row_id]

    def forget(self, row_id: str) -> None:
        with self._lock:
            self._keys.pop(row_id, None)
            self._unconfirmed.pop(row_id, None)
            self._ciphers.pop(row_id, None)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._unconfirmed.clear()
            self._ciphers.clear()

    def in_tx(self, within: object) -> dict[str, bytes]:
        """The keys of one open write transaction (call with the lock held)."""
        try:
            found = self._tx_keys.get(within)
            if found is None:
                found = self._tx_keys[within] = {}
        except TypeError:  # a transaction object that takes no weak reference
            return {}
        return found
