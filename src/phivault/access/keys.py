"""The access layer's keys, all derived from the key ring's index root (HKDF), so they
are protected by the KEK like every other key and need no storage of their own.

- the token signing key (Ed25519 seed): stable across workers and restarts, so tokens
  issued by one worker verify in another; a KEK-less attacker cannot mint tokens;
- the sealing key of TOTP secrets (AES-256-GCM, AAD bound to the user id);
- the keyed-hash key of authorization codes, refresh tokens, recovery codes and throttle
  keys (a stolen database yields no usable token, and no list of usernames in clear).
"""

from __future__ import annotations

import base64
from typing import Protocol

from phivault.crypto import primitives

_SIGNING_INFO = b"phivault/access/token-signing/v1"
_TOTP_INFO = b"phivault/access/totp-seal/v1"
_HASH_INFO = b"phivault/access/keyed-hash/v1"
_TOTP_AAD = b"phivault/totp/v1\x00"


class KeySource(Protocol):
    def _derive(self, info: bytes) -> bytes: ...


class AccessKeys:
    def __init__(self, signing_seed: bytes, totp_key: bytes, hash_key: bytes) -> None:
        self.signing_seed = signing_seed
        self.signing_public = primitives.public_key_of(signing_seed)
        self._totp_key = totp_key
        self._hash_key = hash_key

    @classmethod
    def from_keyring(cls, keyring: KeySource) -> AccessKeys:
        # KeyRing._derive is HKDF over the index root with a domain-separating `info`;
        # these infos are the access layer's own and must never be reused elsewhere.
        return cls(
            keyring._derive(_SIGNING_INFO),
            keyring._derive(_TOTP_INFO),
            keyring._derive(_HASH_INFO),
        )

    @classmethod
    def for_tests(cls, seed: bytes) -> AccessKeys:
        return cls(
            primitives.hkdf_sha256(seed, _SIGNING_INFO),
            primitives.hkdf_sha256(seed, _TOTP_INFO),
            primitives.hkdf_sha256(seed, _HASH_INFO),
        )

    def seal_totp(self, user_id: str, secret: bytes) -> bytes:
        return primitives.aead_encrypt(self._totp_key, secret, _TOTP_AAD + user_id.encode())

    def open_totp(self, user_id: str, blob: bytes) -> bytes:
        return primitives.aead_decrypt(self._totp_key, blob, _TOTP_AAD + user_id.encode())

    def keyed_hash(self, purpose: str, value: str) -> str:
        mac = primitives.hmac_sha256(self._hash_key, f"{purpose}\x00{value}".encode())
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    @property
    def key_id(self) -> str:
        digest = primitives.hmac_sha256(b"phivault/jwk-kid/v1", self.signing_public)
        return base64.urlsafe_b64encode(digest[:12]).decode("ascii")
