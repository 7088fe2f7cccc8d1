"""The key ring's wrapped keys, kept in the store's `wrapped_keys` table.

Each change is its own short write transaction, except a key created for a body being
sealed: that one joins the data's write transaction (one commit, and no second
transaction opened while the first holds SQLite's writer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar, cast

from phivault.crypto.keystate import STATE_ID
from phivault.store.base import Store, WriteTx

T = TypeVar("T")


class StoreWrappedKeys:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get_wrapped(self, key_id: str, within: object | None = None) -> bytes | None:
        if within is not None:
            return cast(WriteTx, within).key_get(key_id)
        return self._store.key_get(key_id)

    def get_wrapped_many(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        return self._store.key_get_many(key_ids)

    def iter_key_ids(self) -> Iterator[str]:
        return iter(self._store.key_ids())

    def transact(
        self, fn: Callable[[_KeyTx], T], *, exclusive: bool = True, within: object | None = None
    ) -> T:
        if within is not None:
            # The caller's data transaction (a key created with the data that needs it).
            tx = cast(WriteTx, within)
            return fn(_KeyTx(tx, tx.key_lock(STATE_ID, exclusive=exclusive)))
        with self._store.write() as tx:
            # Locked first: shared by key creation, exclusive by rotations and shreds, so
            # that on PostgreSQL no key is created under the old KEK once a rotation began
            # (SQLite's write transaction excludes every other writer already).
            return fn(_KeyTx(tx, tx.key_lock(STATE_ID, exclusive=exclusive)))

    def add_if_state(
        self, state: bytes | None, key_id: str, blob: bytes, *, within: object
    ) -> bool:
        return cast(WriteTx, within).key_add_if(STATE_ID, state, key_id, blob)


class _KeyTx:
    def __init__(self, tx: WriteTx, state: bytes | None) -> None:
        self._tx = tx
        # The state row as locked: it cannot change under this transaction but by its own
        # put or delete, so reading it again would only cost a round trip.
        self._state = state

    def get(self, key_id: str) -> bytes | None:
        if key_id == STATE_ID:
            return self._state
        return self._tx.key_get(key_id)

    def put(self, key_id: str, blob: bytes) -> None:
        self._tx.key_put(key_id, blob, replace=True)
        if key_id == STATE_ID:
            self._state = blob

    def add(self, key_id: str, blob: bytes) -> bytes:
        if self._tx.key_put(key_id, blob, replace=False):
            if key_id == STATE_ID:
                self._state = blob
            return blob  # one statement when the id is new, the usual case
        stored = self.get(key_id)
        assert stored is not None  # just written, or there already
        return stored

    def delete(self, key_id: str) -> None:
        self._tx.key_delete(key_id)
        if key_id == STATE_ID:
            self._state = None

    def ids(self) -> list[str]:
        return self._tx.key_ids()
