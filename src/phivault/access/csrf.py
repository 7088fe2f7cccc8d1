"""Cross-site request forgery protection of the login form (/oauth/authorize).

The form carries a token bound to three things: a random nonce the server set as a
SameSite=Strict, HttpOnly cookie when it showed the form, the authorization request
itself (client, redirect URI, scope, state, PKCE challenge, ...) and the time it was
issued. Another site can neither read the cookie nor make the browser send it with a
cross-site POST, so a forged POST fails; a token taken from one authorization request
cannot be replayed with a different redirect URI or PKCE challenge; and a form older
than LIFETIME seconds is refused. A refused POST is answered before any password is
checked, so forged logins cannot be used to guess passwords or lock accounts out.

Tokens are MACs under the access layer's keyed-hash key (derived from the KEK), so they
hold in every worker and need no storage.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence

from phivault.access.keys import AccessKeys

LIFETIME = 10 * 60.0
COOKIE = "phivault_login"
FIELD = "csrf_token"
_PURPOSE = "login-csrf/v1"
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def valid_nonce(value: str | None) -> bool:
    return value is not None and 32 <= len(value) <= 64 and all(c in _NONCE_CHARS for c in value)


class LoginCsrf:
    def __init__(self, keys: AccessKeys, *, clock: Callable[[], float] = time.time) -> None:
        self._keys = keys
        self._clock = clock

    def _mac(self, nonce: str, params: Mapping[str, str], names: Sequence[str], issued: int) -> str:
        bound = json.dumps([nonce, issued, [params.get(k, "") for k in names]])
        return self._keys.keyed_hash(_PURPOSE, bound)

    def issue(self, nonce: str, params: Mapping[str, str], names: Sequence[str]) -> str:
        """The form token for this cookie nonce and this authorization request."""
        issued = int(self._clock())
        return f"{issued}.{self._mac(nonce, params, names, issued)}"

    def check(
        self, token: str, nonce: str | None, params: Mapping[str, str], names: Sequence[str]
    ) -> bool:
        """Whether a posted form is the one this server showed to this browser, recently."""
        if not valid_nonce(nonce) or not token:
            return False
        issued_text, _, mac = token.partition(".")
        if not issued_text.isdigit() or not mac:
            return False
        issued = int(issued_text)
        age = self._clock() - issued
        if not -30 <= age <= LIFETIME:
            return False
        assert nonce is not None
        return hmac.compare_digest(mac, self._mac(nonce, params, names, issued))
