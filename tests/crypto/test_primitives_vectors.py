"""Known-answer tests for crypto.primitives, from published specifications."""

from __future__ import annotations

from phivault.crypto import primitives as p

h = bytes.fromhex


def test_aes256_gcm_spec_test_case_16() -> None:
    # McGrew & Viega, "The Galois/Counter Mode of Operation", Appendix B, Test Case 16
    # (AES-256, 96-bit IV, 60-byte plaintext, 20-byte AAD); the GCM vectors NIST refers to.
    key = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    iv = h("cafebabefacedbaddecaf888")
    aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    plaintext = h(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    ciphertext = h(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    )
    tag = h("76fc6ece0f4e1768cddf8853bb2d551b")
    assert p.aead_decrypt(key, iv + ciphertext + tag, aad) == plaintext


def test_aes256_gcm_spec_test_case_14() -> None:
    # Same source, Test Case 14: zero key, zero IV, one zero block, no AAD.
    blob = bytes(12) + h("cea7403d4d606b6e074ec5d3baf39d18") + h("d0d1c8a799996bf0265b98b5d48ab919")
    assert p.aead_decrypt(bytes(32), blob, b"") == bytes(16)


def test_hkdf_sha256_rfc5869_test_case_1() -> None:
    okm = p.hkdf_sha256(
        ikm=h("0b" * 22),
        info=h("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
        salt=h("000102030405060708090a0b0c"),
    )
    assert okm == h(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hmac_sha256_rfc4231_test_case_2() -> None:
    mac = p.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert mac == h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_ed25519_rfc8032_test_1() -> None:
    secret = h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = h(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert p.public_key_of(secret) == public
    assert p.sign(secret, b"") == signature
    p.verify_signature(public, b"", signature)
