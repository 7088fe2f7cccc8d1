"""Where the key ring keeps its wrapped keys: the protocol the store implements
(store/keys.py), and an in-memory one for tests and tools."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from phivault.crypto.keystate import STATE_ID

__all__ = ["KeyTx", "MemoryWrappedKeyStore", "WrappedKeyStore"]

T = TypeVar("T")


class KeyTx(Protocol):
    """One atomic transaction on the wrapped-key table."""

    def get(self, key_id: str) -> bytes | None: ...

    def put(self, key_id: str, blob: bytes) -> None:
        """Create or replace."""
        ...

    def add(self, key_id: str, blob: bytes) -> bytes:
        """Insert unless a blob is stored; return the stored one. Of two processes creating
        one key at once, both then use the first (an upsert would let the second overwrite
        the key the first has already sealed data with)."""
        ...

    def delete(self, key_id: str) -> None: ...

    def ids(self) -> list[str]: ...


class WrappedKeyStore(Protocol):
    """Persistent home of wrapped keys (a table of the store).

    `transact(fn)` runs `fn` in one transaction that first locks the shared state row,
    in any process: `exclusive` to change the state (rotation, shred), shared to create a
    key. That lock is what keeps a server from creating a key under an old KEK while a
    rotation begins. `within` joins the caller's open write transaction instead of opening
    one (a key created with the data that needs it: one commit, not two). `fn` must be short
    and must not call back into the key ring. Deleting must really destroy the bytes (e.g.
    SQLite `PRAGMA secure_delete`).
    """

    def get_wrapped(self, key_id: str, within: object | None = None) -> bytes | None: ...

    def get_wrapped_many(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        """The committed blobs of those of `key_ids` that exist, in one read."""
        ...

    def iter_key_ids(self) -> Iterator[str]: ...

    def transact(
        self, fn: Callable[[KeyTx], T], *, exclusive: bool = True, within: object | None = None
    ) -> T: ...

    def add_if_state(
        self, state: bytes | None, key_id: str, blob: bytes, *, within: object
    ) -> bool:
        """In the caller's open write transaction `within`: lock the shared state row as a
        shared `transact` does and, if it holds `state` (None: no state row) and `key_id`
        has no blob, store `blob` there; in one step (PostgreSQL: one round trip). True if
        stored; False changed nothing (the caller then takes `transact`)."""
        ...


class MemoryWrappedKeyStore:
    """A `WrappedKeyStore` in a dict, for tests and tools."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get_wrapped(self, key_id: str, within: object | None = None) -> bytes | None:
        return self.blobs.get(key_id)

    def get_wrapped_many(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        return {k: self.blobs[k] for k in key_ids if k in self.blobs}

    def iter_key_ids(self) -> Iterator[str]:
        return iter(sorted(self.blobs))

    def transact(
        self, fn: Callable[[KeyTx], T], *, exclusive: bool = True, within: object | None = None
    ) -> T:
        with self._lock:
            work = _DictTx(dict(self.blobs))
            result = fn(work)
            self.blobs.clear()
            self.blobs.update(work.blobs)
            return result

    def add_if_state(
        self, state: bytes | None, key_id: str, blob: bytes, *, within: object
    ) -> bool:
        with self._lock:
            if self.blobs.get(STATE_ID) != state or key_id in self.blobs:
                return False
            self.blobs[key_id] = blob
            return True


class _DictTx:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def get(self, key_id: str) -> bytes | None:
        return self.blobs.get(key_id)

    def put(self, key_id: str, blob: bytes) -> None:
        self.blobs[key_id] = blob

    def add(self, key_id: str, blob: bytes) -> bytes:
        return self.blobs.setdefault(key_id, blob)

    def delete(self, key_id: str) -> None:
        self.blobs.pop(key_id, None)

    def ids(self) -> list[str]:
        return sorted(self.blobs)
