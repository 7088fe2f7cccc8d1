"""The stored form of a resource body: AEAD under a data key, with a header naming the
format and the data-key generation.

Formats::

    v1 (generation 1): 0x01 || nonce(12) || ciphertext || tag(16)
        AAD = 0x01 || "phivault/body/v1" 0x00 || key_id 0x00 || caller's aad
    v2 (generation n >= 2): 0x02 || n (4 bytes, big-endian) || nonce(12) || ciphertext || tag
        AAD = 0x02 || "phivault/body/v2" 0x00 || key_id 0x00 || n (4 bytes) || caller's aad

The version byte and the generation are inside the AAD, so neither can be swapped to make
a body decrypt under another format or key. Generation 1 keeps format v1, so bodies
written before generations existed still open.
"""

from __future__ import annotations

from phivault.crypto import primitives

__all__ = ["BODY_V1", "BODY_V2", "BodyCipher", "body_aad", "parse_body"]

BODY_V1 = 1
BODY_V2 = 2
_BODY_DOMAINS = {BODY_V1: b"phivault/body/v1\x00", BODY_V2: b"phivault/body/v2\x00"}


class BodyCipher:
    """Sealing and opening bodies under one data key row (key id, generation), with the
    key's AES key schedule, the header and the AAD's head made once: the key ring keeps
    one beside each open data key it caches (crypto/key_cache.py)."""

    __slots__ = ("_aead", "_head", "_header", "key", "key_id")

    def __init__(self, key: bytes, key_id: str, generation: int) -> None:
        fmt = BODY_V1 if generation == 1 else BODY_V2
        self.key = key
        self.key_id = key_id
        self._aead = primitives.AeadCipher(key)  # ValueError for anything but 32 bytes
        self._header = bytes([fmt]) + (b"" if fmt == BODY_V1 else generation.to_bytes(4, "big"))
        self._head = body_aad(fmt, key_id, generation, b"")

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        return self._header + self._aead.encrypt(plaintext, self._head + aad)

    def open(self, payload: bytes, aad: bytes) -> bytes:
        """The plaintext of a body's payload (`parse_body`'s third part) sealed under
        this key row with `aad`; `DecryptionError` otherwise."""
        return self._aead.decrypt(payload, self._head + aad)


def parse_body(blob: bytes) -> tuple[int, int, bytes] | None:
    """(format, generation, nonce||ciphertext||tag) of a body blob, or None."""
    if blob[:1] == bytes([BODY_V1]):
        return BODY_V1, 1, blob[1:]
    if blob[:1] == bytes([BODY_V2]) and len(blob) > 5:
        generation = int.from_bytes(blob[1:5], "big")
        if generation >= 2:
            return BODY_V2, generation, blob[5:]
    return None


def body_aad(fmt: int, key_id: str, generation: int, aad: bytes) -> bytes:
    # Binding the key id: a body moved from patient A's rows to patient B's does not
    # decrypt, even if the store were tricked into using B's key for A's row.
    head = bytes([fmt]) + _BODY_DOMAINS[fmt] + key_id.encode("ascii") + b"\x00"
    if fmt == BODY_V2:
        head += generation.to_bytes(4, "big")
    return head + aad
