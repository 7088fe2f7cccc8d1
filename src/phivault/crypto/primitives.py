"""The sharp edge: raw ciphers, KDFs and signatures.

This is the only module in phivault that imports `cryptography` (a test scans the source
tree for that). Everything above it speaks in plain `bytes` and never sees a library type.

Rules kept here so that callers cannot get them wrong:

- AES-256-GCM with a fresh random 96-bit nonce per call; the nonce travels in the blob
  (`nonce || ciphertext || tag`). Callers never choose nonces.
- Every failed decrypt, signature check or sealed-box open raises the one opaque
  `DecryptionError`, raised outside the `except` block so that neither `__cause__` nor
  `__context__` says which step failed (a padding-oracle style attacker learns nothing
  from the exception shape, and no library detail reaches a log).
- Private and symmetric keys are raw 32-byte strings. Python cannot wipe `bytes`, so key
  lifetime in memory is bounded by the callers (see keyring's bounded cache).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from phivault.errors import DecryptionError

__all__ = [
    "KEY_LEN",
    "NONCE_LEN",
    "TAG_LEN",
    "AeadCipher",
    "PrekeyedHmac",
    "aead_decrypt",
    "aead_encrypt",
    "argon2id_kdf",
    "constant_time_equal",
    "generate_signing_key",
    "generate_x25519_keypair",
    "hkdf_sha256",
    "hmac_sha256",
    "open_sealed",
    "public_key_of",
    "random_key",
    "seal_to_public",
    "sign",
    "verify_signature",
    "x25519_public_key_of",
]

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
SIGNATURE_LEN = 64

# Sealed-box format version. Bound into the HKDF info, so a blob cannot be reinterpreted
# under a later format: changing this byte without changing the info breaks that binding.
_SEALED_V1 = b"\x01"
_SEALED_INFO_V1 = b"phivault/sealed-box/v1 x25519-hkdf-sha256-aes256gcm"


def _check_key(key: bytes) -> None:
    # A short key would silently select AES-128/192 in AESGCM; refuse anything but 256 bits.
    if not isinstance(key, bytes) or len(key) != KEY_LEN:
        raise ValueError("an AES-256 key must be exactly 32 bytes")


# --- symmetric ------------------------------------------------------------------------------


def random_key() -> bytes:
    """A fresh 32-byte key from the OS CSPRNG."""
    return secrets.token_bytes(KEY_LEN)


def aead_encrypt(key32: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM; returns `nonce(12) || ciphertext || tag(16)`.

    With random nonces a single key must not encrypt more than about 2**32 messages
    (NIST SP 800-38D, 8.3); per-patient data keys keep every key far below that.
    """
    return AeadCipher(key32).encrypt(plaintext, aad)


def aead_decrypt(key32: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of `aead_encrypt`. Any failure raises `DecryptionError` and nothing else."""
    if not isinstance(key32, bytes) or len(key32) != KEY_LEN:
        raise DecryptionError()
    return AeadCipher(key32).decrypt(blob, aad)


class AeadCipher:
    """`aead_encrypt` / `aead_decrypt` under one key, its AES key schedule made once.

    For a key that seals or opens many blobs (a patient's data key while it is cached):
    a read then pays for the decryption only. Safe to share between threads: every call
    works on a context of its own, copied from the one made here.
    """

    __slots__ = ("_aead",)

    def __init__(self, key32: bytes) -> None:
        _check_key(key32)
        self._aead = AESGCM(key32)

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        # A repeated (key, nonce) pair reveals the XOR of two plaintexts and lets an
        # attacker forge tags: the nonce must come from the CSPRNG on every call, never a
        # counter that could be reset by a restore or a second process.
        nonce = secrets.token_bytes(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        plaintext: bytes | None = None
        try:
            if len(blob) >= NONCE_LEN + TAG_LEN:
                plaintext = self._aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad)
        except (InvalidTag, ValueError, TypeError):
            plaintext = None
        # Raised here, outside the except block, so the exception carries no __context__.
        if plaintext is None:
            raise DecryptionError()
        return plaintext


def hkdf_sha256(ikm: bytes, info: bytes, length: int = KEY_LEN, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (RFC 5869). `info` is the domain separator: two uses of one secret
    must never share an `info`, or their derived keys are equal."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    # One-shot C implementation: several times faster than hmac.new(...).digest(), and
    # blind indexing calls this ~100 times per Patient written.
    return hmac.digest(key, msg, "sha256")


class PrekeyedHmac:
    """HMAC-SHA256 under one key, for many short messages that may share a head.

    RFC 2104 with the key's inner and outer pad blocks hashed once, here, instead of on
    every call (`hmac.digest` hashes them again each time: two of its four compression
    rounds for a short message). `extended(head)` gives the same MAC for messages that
    start with `head`, with the head hashed once too. Equal to `hmac_sha256(key, msg)` for
    every key and message (tests/crypto check it against the standard library).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def extended(self, head: bytes) -> PrekeyedHmac:
        twin = object.__new__(PrekeyedHmac)
        twin._inner = self._inner.copy()
        twin._inner.update(head)
        twin._outer = self._outer
        return twin

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def digests(self, msgs: Iterable[bytes]) -> list[bytes]:
        """`[self.digest(m) for m in msgs]`, in one loop (a value's prefix tokens)."""
        inner0, outer0 = self._inner, self._outer
        out = []
        for msg in msgs:
            inner = inner0.copy()
            inner.update(msg)
            outer = outer0.copy()
            outer.update(inner.digest())
            out.append(outer.digest())
        return out


def constant_time_equal(a: bytes, b: bytes) -> bool:
    # `==` on bytes returns early at the first difference and leaks its position by timing.
    return hmac.compare_digest(a, b)


def argon2id_kdf(
    passphrase: bytes,
    salt: bytes,
    time_cost: int,
    memory_cost_kib: int,
    parallelism: int,
    length: int = KEY_LEN,
) -> bytes:
    """Argon2id (RFC 9106, version 0x13) raw output, for turning a passphrase into a KEK."""
    if not passphrase:
        raise ValueError("an empty passphrase is not a key")
    # RFC 9106 requires a salt of at least 8 bytes; we require 16 so that salts are unique
    # across installations (a shared salt would let one precomputation attack them all).
    if len(salt) < 16:
        raise ValueError("the argon2id salt must be at least 16 bytes")
    if time_cost < 1 or parallelism < 1 or memory_cost_kib < 8 * parallelism:
        raise ValueError("invalid argon2id cost parameters")
    return hash_secret_raw(
        secret=passphrase,
        salt=salt,
        time_cost=time_cost,
        memory_cost=memory_cost_kib,
        parallelism=parallelism,
        hash_len=length,
        type=Type.ID,
    )


# --- signatures (Ed25519) -------------------------------------------------------------------


def generate_signing_key() -> bytes:
    """A new Ed25519 private key as its raw 32-byte seed."""
    return Ed25519PrivateKey.generate().private_bytes(
        ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption()
    )


def public_key_of(private_key: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key of a raw private key."""
    return (
        Ed25519PrivateKey.from_private_bytes(private_key)
        .public_key()
        .public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    )


def sign(private_key: bytes, msg: bytes) -> bytes:
    """A 64-byte Ed25519 signature (deterministic, RFC 8032)."""
    return Ed25519PrivateKey.from_private_bytes(private_key).sign(msg)


def verify_signature(public_key: bytes, msg: bytes, sig: bytes) -> None:
    """Returns only if `sig` is valid; otherwise raises `DecryptionError` (never False,
    so a caller cannot forget to check a return value)."""
    ok = False
    try:
        if len(sig) == SIGNATURE_LEN:
            Ed25519PublicKey.from_public_bytes(public_key).verify(sig, msg)
            ok = True
    except (InvalidSignature, ValueError, TypeError):
        ok = False
    if not ok:
        raise DecryptionError()


# --- sealed box (X25519 + HKDF + AES-GCM), for backups --------------------------------------


def generate_x25519_keypair() -> tuple[bytes, bytes]:
    """A new X25519 key pair as raw `(private32, public32)`."""
    private = X25519PrivateKey.generate()
    return (
        private.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption()),
        private.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw),
    )


def x25519_public_key_of(private_key: bytes) -> bytes:
    """The raw 32-byte X25519 public key of a raw private key (to check a key file)."""
    return (
        X25519PrivateKey.from_private_bytes(private_key)
        .public_key()
        .public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    )


def _sealed_key(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> bytes:
    # Both public keys go into the salt so that the key is bound to this exact exchange;
    # without them a blob could be re-targeted to another recipient sharing the secret
    # (the HPKE/libsodium construction does the same).
    return hkdf_sha256(shared, _SEALED_INFO_V1, KEY_LEN, salt=ephemeral_pub + recipient_pub)


def seal_to_public(recipient_public: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt to an X25519 public key; only the private key holder can open it.

    Blob: `version(1) || ephemeral_public(32) || aead_encrypt(...)`. Backups are sealed
    this way so that the server which writes them cannot read them back.
    """
    ephemeral = X25519PrivateKey.generate()
    ephemeral_pub = ephemeral.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    # Raises ValueError for a low-order public key (all-zero shared secret): refusing it
    # is what stops a tampered recipient key from producing a key known to everyone.
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    key = _sealed_key(shared, ephemeral_pub, recipient_public)
    return _SEALED_V1 + ephemeral_pub + aead_encrypt(key, plaintext, aad)


def open_sealed(recipient_private: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of `seal_to_public`. Any failure raises `DecryptionError`."""
    key: bytes | None = None
    try:
        if len(blob) >= 1 + 32 + NONCE_LEN + TAG_LEN and blob[:1] == _SEALED_V1:
            private = X25519PrivateKey.from_private_bytes(recipient_private)
            ephemeral_pub = blob[1:33]
            shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_pub))
            own_pub = private.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
            key = _sealed_key(shared, ephemeral_pub, own_pub)
    except (ValueError, TypeError):
        key = None
    if key is None:
        raise DecryptionError()
    return aead_decrypt(key, blob[33:], aad)


# --- TLS: a self-signed certificate for a clinic LAN ------------------------------------------


def self_signed_certificate(
    hostnames: list[str], *, days: int = 825, common_name: str = "phivault"
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for a server on a LAN: ECDSA P-256, SHA-256,
    the given DNS names and IP addresses as subjectAltName. 825 days is the longest
    validity that browsers and Apple platforms accept for a TLS server certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames or ["localhost"]:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    return cert.public_bytes(ser.Encoding.PEM), key_pem
