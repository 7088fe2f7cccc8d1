"""Behaviour of crypto.primitives: round trips and the one opaque failure."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phivault.crypto import primitives as p
from phivault.errors import DecryptionError

KEY = bytes(range(32))
AAD = b"Patient/1/_history/1"


def _assert_opaque(excinfo: pytest.ExceptionInfo[DecryptionError]) -> None:
    exc = excinfo.value
    assert type(exc) is DecryptionError
    assert exc.__cause__ is None
    assert exc.__context__ is None
    assert exc.message == DecryptionError.default_message


def test_aead_round_trip_and_fresh_nonce() -> None:
    a = p.aead_encrypt(KEY, b"hello", AAD)
    b = p.aead_encrypt(KEY, b"hello", AAD)
    assert a != b and a[: p.NONCE_LEN] != b[: p.NONCE_LEN]
    assert len(a) == p.NONCE_LEN + 5 + p.TAG_LEN
    assert p.aead_decrypt(KEY, a, AAD) == b"hello"
    assert p.aead_decrypt(KEY, p.aead_encrypt(KEY, b"", b""), b"") == b""


def test_aead_refuses_short_keys() -> None:
    with pytest.raises(ValueError):
        p.aead_encrypt(KEY[:16], b"x", b"")


@pytest.mark.parametrize("bit", [0, 8 * 12, 8 * 12 + 3, -1])
def test_flipped_bit_is_opaque_failure(bit: int) -> None:
    blob = bytearray(p.aead_encrypt(KEY, b"some body", AAD))
    index = bit // 8 if bit >= 0 else len(blob) - 1
    blob[index] ^= 1 << (bit % 8 if bit >= 0 else 7)
    with pytest.raises(DecryptionError) as excinfo:
        p.aead_decrypt(KEY, bytes(blob), AAD)
    _assert_opaque(excinfo)


@pytest.mark.parametrize(
    ("key", "aad", "cut"),
    [
        (KEY, b"Patient/2/_history/1", 0),  # wrong aad
        (bytes(32), AAD, 0),  # wrong key
        (KEY[:16], AAD, 0),  # malformed key
        (KEY, AAD, 1),  # truncated by one byte
        (KEY, AAD, 30),  # shorter than nonce + tag
    ],
)
def test_every_decrypt_failure_is_the_same_opaque_error(key: bytes, aad: bytes, cut: int) -> None:
    blob = p.aead_encrypt(KEY, b"some body", AAD)
    if cut:
        blob = blob[:-cut]
    with pytest.raises(DecryptionError) as excinfo:
        p.aead_decrypt(key, blob, aad)
    _assert_opaque(excinfo)


def test_empty_blob() -> None:
    with pytest.raises(DecryptionError) as excinfo:
        p.aead_decrypt(KEY, b"", AAD)
    _assert_opaque(excinfo)


def test_hkdf_domain_separation_and_length() -> None:
    a = p.hkdf_sha256(KEY, b"a")
    assert len(a) == 32 and a != p.hkdf_sha256(KEY, b"b")
    assert len(p.hkdf_sha256(KEY, b"a", length=64)) == 64
    assert p.hkdf_sha256(KEY, b"a", salt=b"s") != a


def test_random_key_and_hmac() -> None:
    assert len(p.random_key()) == 32 and p.random_key() != p.random_key()
    assert len(p.hmac_sha256(b"k", b"m")) == 32
    assert p.constant_time_equal(b"ab", b"ab") and not p.constant_time_equal(b"ab", b"ac")


def test_argon2id_deterministic_and_salted() -> None:
    args = (1, 64, 1)
    a = p.argon2id_kdf(b"pass phrase", b"0123456789abcdef", *args)
    assert a == p.argon2id_kdf(b"pass phrase", b"0123456789abcdef", *args)
    assert a != p.argon2id_kdf(b"pass phrase", b"0123456789abcdeX", *args)
    assert a != p.argon2id_kdf(b"pass phrasf", b"0123456789abcdef", *args)
    assert len(a) == 32


@pytest.mark.parametrize(
    ("passphrase", "salt", "costs"),
    [
        (b"", b"0123456789abcdef", (1, 64, 1)),
        (b"x", b"short", (1, 64, 1)),
        (b"x", b"0123456789abcdef", (0, 64, 1)),
        (b"x", b"0123456789abcdef", (1, 4, 1)),
    ],
)
def test_argon2id_refuses_weak_input(
    passphrase: bytes, salt: bytes, costs: tuple[int, int, int]
) -> None:
    with pytest.raises(ValueError):
        p.argon2id_kdf(passphrase, salt, *costs)


def test_sign_and_verify() -> None:
    priv = p.generate_signing_key()
    pub = p.public_key_of(priv)
    assert len(priv) == 32 and len(pub) == 32
    sig = p.sign(priv, b"tree head")
    assert len(sig) == 64
    p.verify_signature(pub, b"tree head", sig)


@pytest.mark.parametrize("case", ["message", "signature", "short-sig", "other-key", "bad-key"])
def test_bad_signatures_are_opaque(case: str) -> None:
    priv = p.generate_signing_key()
    pub = p.public_key_of(priv)
    msg, sig = b"tree head", p.sign(priv, b"tree head")
    if case == "message":
        msg = b"tree heae"
    elif case == "signature":
        sig = bytes([sig[0] ^ 1]) + sig[1:]
    elif case == "short-sig":
        sig = sig[:-1]
    elif case == "other-key":
        pub = p.public_key_of(p.generate_signing_key())
    else:
        pub = pub[:31]
    with pytest.raises(DecryptionError) as excinfo:
        p.verify_signature(pub, msg, sig)
    _assert_opaque(excinfo)


def test_sealed_box_round_trip() -> None:
    priv, pub = p.generate_x25519_keypair()
    blob = p.seal_to_public(pub, b"backup chunk", b"snapshot-1")
    assert blob[:1] == b"\x01"
    assert p.open_sealed(priv, blob, b"snapshot-1") == b"backup chunk"
    # Each seal uses a new ephemeral key.
    assert p.seal_to_public(pub, b"backup chunk", b"snapshot-1")[1:33] != blob[1:33]


@pytest.mark.parametrize("case", ["aad", "other-key", "flip", "truncate", "version", "empty"])
def test_sealed_box_failures_are_opaque(case: str) -> None:
    priv, pub = p.generate_x25519_keypair()
    blob = p.seal_to_public(pub, b"backup chunk", b"snapshot-1")
    aad = b"snapshot-1"
    if case == "aad":
        aad = b"snapshot-2"
    elif case == "other-key":
        priv = p.generate_x25519_keypair()[0]
    elif case == "flip":
        blob = blob[:5] + bytes([blob[5] ^ 0x80]) + blob[6:]
    elif case == "truncate":
        blob = blob[:40]
    elif case == "version":
        blob = b"\x02" + blob[1:]
    else:
        blob = b""
    with pytest.raises(DecryptionError) as excinfo:
        p.open_sealed(priv, blob, aad)
    _assert_opaque(excinfo)


def test_sealed_box_refuses_low_order_ephemeral_key() -> None:
    priv, pub = p.generate_x25519_keypair()
    blob = p.seal_to_public(pub, b"x", b"")
    forged = blob[:1] + bytes(32) + blob[33:]  # the all-zero point: shared secret 0
    with pytest.raises(DecryptionError) as excinfo:
        p.open_sealed(priv, forged, b"")
    _assert_opaque(excinfo)


@given(key=st.binary(max_size=200), head=st.binary(max_size=100), msg=st.binary(max_size=300))
def test_prekeyed_hmac_is_hmac_sha256(key: bytes, head: bytes, msg: bytes) -> None:
    """The write path's pre-keyed HMAC equals the standard library's, keys longer than a
    block (hashed first) and an absorbed head included."""
    mac = p.PrekeyedHmac(key)
    assert mac.digest(msg) == hmac.digest(key, msg, "sha256")
    assert mac.extended(head).digest(msg) == hmac.digest(key, head + msg, "sha256")
    assert mac.digest(msg) == mac.digest(msg)  # the pre-hashed states are not consumed
    # digests: one loop over several messages, the same MACs in order
    assert mac.digests([msg, head, b""]) == [mac.digest(m) for m in (msg, head, b"")]


def test_aead_cipher_is_aead_encrypt_and_decrypt_under_one_key() -> None:
    cipher = p.AeadCipher(KEY)
    sealed = cipher.encrypt(b"some body", AAD)
    assert p.aead_decrypt(KEY, sealed, AAD) == b"some body"
    assert cipher.decrypt(p.aead_encrypt(KEY, b"other", AAD), AAD) == b"other"
    assert cipher.encrypt(b"x", AAD)[: p.NONCE_LEN] != cipher.encrypt(b"x", AAD)[: p.NONCE_LEN]
    with pytest.raises(ValueError):
        p.AeadCipher(KEY[:16])


@pytest.mark.parametrize(
    ("key", "aad", "cut"),
    [(KEY, b"other aad", 0), (bytes(32), AAD, 0), (KEY, AAD, 1), (KEY, AAD, 30)],
)
def test_aead_cipher_failures_are_the_same_opaque_error(key: bytes, aad: bytes, cut: int) -> None:
    blob = p.AeadCipher(KEY).encrypt(b"some body", AAD)
    if cut:
        blob = blob[:-cut]
    with pytest.raises(DecryptionError) as excinfo:
        p.AeadCipher(key).decrypt(blob, aad)
    _assert_opaque(excinfo)
