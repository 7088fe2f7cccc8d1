"""RFC 6238 appendix B test vectors (and RFC 4226 appendix D for HOTP)."""

from __future__ import annotations

import pytest

from phivault.access import totp

SHA1 = b"12345678901234567890"
SHA256 = b"12345678901234567890123456789012"
SHA512 = b"1234567890123456789012345678901234567890123456789012345678901234"

VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("when", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_vectors(when: int, sha1: str, sha256: str, sha512: str) -> None:
    assert totp.totp(SHA1, when, digits=8, algorithm="SHA1") == sha1
    assert totp.totp(SHA256, when, digits=8, algorithm="SHA256") == sha256
    assert totp.totp(SHA512, when, digits=8, algorithm="SHA512") == sha512


def test_rfc4226_hotp_vectors() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314",
                "254676", "287922", "162583", "399871", "520489"]  # fmt: skip
    assert [totp.hotp(SHA1, i) for i in range(10)] == expected


def test_verify_window_and_format() -> None:
    code = totp.totp(SHA1, 1_000_000)
    assert totp.verify(SHA1, code, 1_000_000) == 1_000_000 // 30
    assert totp.verify(SHA1, code, 1_000_000 + 30) is not None  # one step of drift
    assert totp.verify(SHA1, code, 1_000_000 + 90) is None
    assert totp.verify(SHA1, "12345", 1_000_000) is None
    assert totp.verify(SHA1, "abcdef", 1_000_000) is None


def test_provisioning_uri() -> None:
    uri = totp.provisioning_uri(SHA1, "kjohnson", "phivault")
    assert uri.startswith("otpauth://totp/phivault:kjohnson?")
    assert "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" in uri
    assert "issuer=phivault" in uri
