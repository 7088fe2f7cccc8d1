"""The seam where stored bodies are sealed and opened.

The service hands the codec the plaintext JSON of a version plus the version's identity;
the store receives whatever the codec returns and never looks inside.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Protocol

from phivault.crypto.keyring import SYSTEM_KEY_ID, KeyRing, patient_key_id


class BodyCodec(Protocol):
    name: str

    def prepare(self, compartment: str | None, *, new: bool = False) -> None:
        """Check `compartment` can be written (e.g. not crypto-shredded) before a write
        transaction opens. `new`: the compartment is a Patient whose id the server has
        just drawn (a create): it cannot have a key yet, so none is looked up."""
        ...

    def seal(
        self,
        rtype: str,
        rid: str,
        version: int,
        compartment: str | None,
        body: bytes,
        within: object | None = None,
    ) -> bytes:
        """`within`: the caller's open write transaction, if any. A compartment's first
        data key is then created in it (one commit); without it, in a transaction of its
        own, so never call `seal` inside a write transaction without passing it."""
        ...

    def open(
        self, rtype: str, rid: str, version: int, compartment: str | None, blob: bytes
    ) -> bytes: ...

    def prefetch(self, bodies: Sequence[tuple[str | None, bytes]]) -> None:
        """Ready the keys of (compartment, stored body) pairs about to be opened, in one
        store read where the codec needs keys (a search page)."""
        ...

    def key_row_suffix(self) -> str | None:
        """For a store read that fetches a body together with its data key (a read by id
        on PostgreSQL): what names the key's row after its key id, for the generation
        bodies are sealed under now. None: this codec needs no keys."""
        ...

    def offer(self, compartment: str | None, blob: bytes, wrapped: Mapping[str, bytes]) -> None:
        """Ready the key of one stored body about to be opened from wrapped key rows read
        with it (key row id -> blob); whatever does not fit is ignored."""
        ...


@functools.lru_cache(maxsize=4096)
def key_id_for(compartment: str | None) -> str:
    """Resources in a patient's compartment use that patient's data key; the rest (e.g.
    Practitioner, Organization) use the system key."""
    if compartment and compartment.startswith("Patient/"):
        return patient_key_id(compartment.removeprefix("Patient/"))
    return SYSTEM_KEY_ID


def _aad(rtype: str, rid: str, version: int) -> bytes:
    # Binds the ciphertext to its row: a body copied to another resource or version fails
    # to decrypt instead of being served as that record.
    return f"{rtype}/{rid}/{version}".encode()


class KeyRingCodec:
    """AES-256-GCM under the compartment's data key (envelope encryption)."""

    name = "aes-256-gcm"

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def prepare(self, compartment: str | None, *, new: bool = False) -> None:
        self.keyring.check_writable(key_id_for(compartment), new=new)

    def seal(
        self,
        rtype: str,
        rid: str,
        version: int,
        compartment: str | None,
        body: bytes,
        within: object | None = None,
    ) -> bytes:
        return self.keyring.encrypt_body(
            key_id_for(compartment), body, _aad(rtype, rid, version), within=within
        )

    def open(
        self, rtype: str, rid: str, version: int, compartment: str | None, blob: bytes
    ) -> bytes:
        return self.keyring.decrypt_body(key_id_for(compartment), blob, _aad(rtype, rid, version))

    def prefetch(self, bodies: Sequence[tuple[str | None, bytes]]) -> None:
        self.keyring.prefetch((key_id_for(compartment), blob) for compartment, blob in bodies)

    def key_row_suffix(self) -> str | None:
        return self.keyring.row_suffix()

    def offer(self, compartment: str | None, blob: bytes, wrapped: Mapping[str, bytes]) -> None:
        self.keyring.offer(key_id_for(compartment), blob, wrapped)

    def reseal(
        self, rtype: str, rid: str, version: int, compartment: str | None, blob: bytes
    ) -> bytes | None:
        """The body sealed again under the current data-key generation, or None if it
        already is (data-key rotation). Raises like `open`."""
        generation = self.keyring.body_generation(blob)
        if generation is not None and generation >= self.keyring.refresh().generation:
            return None
        body = self.open(rtype, rid, version, compartment, blob)
        self.keyring.data_key(key_id_for(compartment), create=True)  # the new generation's
        return self.seal(rtype, rid, version, compartment, body)


class PlaintextCodec:
    """Encryption off: bodies stored as they are. Only for tests and measurements that
    must compare against the unencrypted store; `serve` never selects it on its own."""

    name = "plaintext"

    def prepare(self, compartment: str | None, *, new: bool = False) -> None:
        return None

    def seal(
        self,
        rtype: str,
        rid: str,
        version: int,
        compartment: str | None,
        body: bytes,
        within: object | None = None,
    ) -> bytes:
        return body

    def open(
        self, rtype: str, rid: str, version: int, compartment: str | None, blob: bytes
    ) -> bytes:
        return blob

    def prefetch(self, bodies: Sequence[tuple[str | None, bytes]]) -> None:
        return None  # no keys

    def key_row_suffix(self) -> str | None:
        return None

    def offer(self, compartment: str | None, blob: bytes, wrapped: Mapping[str, bytes]) -> None:
        return None
