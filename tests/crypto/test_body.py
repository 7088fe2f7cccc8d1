"""The stored body format and `BodyCipher`, the per-key-row cipher the key ring caches."""

from __future__ import annotations

import pytest

from phivault.crypto.body import BODY_V1, BODY_V2, BodyCipher, body_aad, parse_body
from phivault.crypto.primitives import aead_decrypt
from phivault.errors import DecryptionError

KEY = bytes(range(32))
A = "patient:a"


@pytest.mark.parametrize(("generation", "fmt"), [(1, BODY_V1), (2, BODY_V2), (300, BODY_V2)])
def test_body_cipher_seals_the_stored_format(generation: int, fmt: int) -> None:
    cipher = BodyCipher(KEY, A, generation)
    blob = cipher.seal(b"{}", b"Patient/a/1")
    parsed = parse_body(blob)
    assert parsed is not None and parsed[:2] == (fmt, generation)
    # The AAD binds format, key id and generation, as body_aad spells them out.
    assert aead_decrypt(KEY, parsed[2], body_aad(fmt, A, generation, b"Patient/a/1")) == b"{}"
    assert cipher.open(parsed[2], b"Patient/a/1") == b"{}"


@pytest.mark.parametrize(
    ("key_id", "generation", "aad"),
    [("patient:b", 1, b"Patient/a/1"), (A, 2, b"Patient/a/1"), (A, 1, b"Patient/a/2")],
)
def test_body_cipher_of_another_row_or_version_does_not_open(
    key_id: str, generation: int, aad: bytes
) -> None:
    parsed = parse_body(BodyCipher(KEY, A, 1).seal(b"{}", b"Patient/a/1"))
    assert parsed is not None
    with pytest.raises(DecryptionError):
        BodyCipher(KEY, key_id, generation).open(parsed[2], aad)


def test_body_cipher_refuses_a_key_that_is_not_256_bits() -> None:
    with pytest.raises(ValueError):
        BodyCipher(KEY[:16], A, 1)
