"""Signed JWT access tokens (joserfc), the JWKS that publishes their key, and the
verification of SMART Backend Services client assertions (private_key_jwt).

Access tokens live at most 15 minutes and are signed with Ed25519 (JOSE alg `Ed25519`,
RFC 9864) under a key derived from the key ring. Verification accepts exactly that one
algorithm and that one key: `alg: none`, HMAC-with-the-public-key confusion and tokens
from any other key fail the same way, with the one opaque InvalidToken.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from phivault.access.keys import AccessKeys
from phivault.errors import InvalidClient, InvalidToken

ACCESS_TOKEN_ALG = "Ed25519"  # noqa: S105 (an algorithm name, not a secret)
MAX_ACCESS_LIFETIME = 15 * 60
# What SMART Backend Services clients sign with (the spec requires RS384 and ES384 support).
CLIENT_ASSERTION_ALGS = ["RS384", "ES384", "RS256", "ES256", "Ed25519"]
MAX_ASSERTION_LIFETIME = 5 * 60
CLOCK_LEEWAY = 30


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class TokenSigner:
    """Issues and verifies this server's access tokens."""

    def __init__(
        self,
        keys: AccessKeys,
        *,
        issuer: str,
        audience: str,
        lifetime: int = 5 * 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < lifetime <= MAX_ACCESS_LIFETIME:
            raise ValueError("access tokens live at most 15 minutes")
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.clock = clock
        self.kid = keys.key_id
        public: dict[str, str | list[str]] = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64(keys.signing_public),
        }
        self._private = OKPKey.import_key({**public, "d": _b64(keys.signing_seed)})
        self._public = OKPKey.import_key(public)
        self._public_jwk = {**public, "kid": self.kid, "use": "sig", "alg": ACCESS_TOKEN_ALG}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public_jwk)]}

    def issue(self, claims: dict[str, Any], lifetime: int | None = None) -> tuple[str, int]:
        """(token, expires_in). Registered claims are set here, never taken from `claims`."""
        life = min(lifetime or self.lifetime, self.lifetime)
        now = int(self.clock())
        body = {
            **claims,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + life,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": ACCESS_TOKEN_ALG, "kid": self.kid, "typ": "at+jwt"}
        return jwt.encode(header, body, self._private, algorithms=[ACCESS_TOKEN_ALG]), life

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, current token from this server for this audience."""
        claims: dict[str, Any] | None = None
        try:
            if isinstance(token, str) and 0 < len(token) <= 8192:
                decoded = jwt.decode(token, self._public, algorithms=[ACCESS_TOKEN_ALG])
                registry = jwt.JWTClaimsRegistry(
                    now=int(self.clock()),
                    leeway=CLOCK_LEEWAY,
                    iss={"essential": True, "value": self.issuer},
                    aud={"essential": True, "value": self.audience},
                    exp={"essential": True},
                    sub={"essential": True},
                    jti={"essential": True},
                )
                registry.validate(decoded.claims)
                if decoded.header.get("typ") == "at+jwt" and _lifetime_ok(decoded.claims):
                    claims = dict(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError):
            claims = None
        # Raised outside the except block: the exception carries no trace of which check
        # failed (signature, algorithm, audience, expiry...).
        if claims is None:
            raise InvalidToken()
        return claims


def _lifetime_ok(claims: dict[str, Any]) -> bool:
    exp, iat = claims.get("exp"), claims.get("iat")
    return isinstance(exp, int) and isinstance(iat, int) and exp - iat <= MAX_ACCESS_LIFETIME


def verify_client_assertion(
    assertion: str,
    client_id: str,
    jwks: dict[str, Any],
    token_url: str,
    *,
    now: float,
) -> dict[str, Any]:
    """Check a private_key_jwt assertion (RFC 7523; SMART Backend Services): signed by a
    key in the client's registered JWKS, iss = sub = client_id, aud = our token URL,
    short-lived, with a jti. Replay (a jti seen before) is the caller's check."""
    claims: dict[str, Any] | None = None
    try:
        keyset = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        decoded = jwt.decode(assertion, keyset, algorithms=CLIENT_ASSERTION_ALGS)
        registry = jwt.JWTClaimsRegistry(
            now=int(now),
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": client_id},
            sub={"essential": True, "value": client_id},
            aud={"essential": True, "value": token_url},
            exp={"essential": True},
            jti={"essential": True},
        )
        registry.validate(decoded.claims)
        exp = decoded.claims["exp"]
        if isinstance(exp, int) and exp - now <= MAX_ASSERTION_LIFETIME + CLOCK_LEEWAY:
            claims = dict(decoded.claims)
    except (JoseError, ValueError, TypeError, KeyError):
        claims = None
    if claims is None:
        raise InvalidClient()
    return claims
