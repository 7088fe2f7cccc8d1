"""The key ring's wrapped keys, kept in the store's `wrapped_keys` table.

Each change is its own short write transaction. Callers create keys before they open a
data write transaction (the service prepares the key first), never inside one.
"""

from __future__ import annotations

from collections.abc import Iterator

from phivault.store.base import Store


class StoreWrappedKeys:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get_wrapped(self, key_id: str) -> bytes | None:
        return self._store.key_get(key_id)

    def put_wrapped(self, key_id: str, blob: bytes) -> None:
        with self._store.write() as tx:
            tx.key_put(key_id, blob, replace=True)

    def add_wrapped(self, key_id: str, blob: bytes) -> bytes:
        with self._store.write() as tx:
            tx.key_put(key_id, blob, replace=False)
            stored = tx.key_get(key_id)
        assert stored is not None  # just written in this transaction
        return stored

    def delete_wrapped(self, key_id: str) -> None:
        with self._store.write() as tx:
            tx.key_delete(key_id)

    def iter_key_ids(self) -> Iterator[str]:
        return iter(self._store.key_ids())
