"""Sessions, refresh-token rotation and authorization codes (PKCE S256).

A session is one login through one client. It ends at the first of: its absolute
lifetime, `idle_timeout` without a request (automatic logoff), revocation (the user, an
admin, a password or MFA reset, or a replayed refresh token). Access tokens carry the
session id and are checked against it on every request, so revoking a session stops its
access tokens at once, not only when they expire.

Refresh tokens and codes are random 256-bit strings stored only as keyed hashes. Each
refresh token works once; presenting a used one again means it was stolen (either the
thief or the client used it first), so the whole session is revoked (OAuth 2.0 Security
BCP, refresh token rotation with reuse detection).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from phivault.access.keys import AccessKeys
from phivault.errors import InvalidGrant, InvalidToken
from phivault.store.access_sql import AccessStore, CodeRow, RefreshRow, SessionRow

CODE_LIFETIME = 60.0
TOUCH_EVERY = 30.0  # last_seen is written at most this often per session


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_timeout: float = 15 * 60.0
    absolute_lifetime: float = 12 * 3600.0
    break_glass_minutes: int = 60


def pkce_s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class SessionManager:
    def __init__(
        self,
        store: AccessStore,
        keys: AccessKeys,
        policy: SessionPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keys = keys
        self.policy = policy or SessionPolicy()
        self.clock = clock

    # -- sessions ------------------------------------------------------------------------------
    def open(
        self, user_id: str, client_id: str | None, scope: str, patient: str | None
    ) -> SessionRow:
        now = self.clock()
        row = SessionRow(
            session_id=str(uuid.uuid4()),
            user_id=user_id,
            client_id=client_id,
            scope=scope,
            patient=patient,
            created=now,
            last_seen=now,
            expires=now + self.policy.absolute_lifetime,
            idle_timeout=self.policy.idle_timeout,
            revoked=0,
            break_glass_until=None,
            break_glass_reason=None,
        )
        self.store.add_session(row)
        return row

    def check(self, session_id: str) -> SessionRow:
        """The live session, or InvalidToken (revoked, expired, idle too long)."""
        now = self.clock()
        row = self.store.session(session_id)
        if (
            row is None
            or row.revoked
            or now >= row.expires
            or now - row.last_seen >= row.idle_timeout
        ):
            raise InvalidToken()
        if now - row.last_seen >= TOUCH_EVERY:
            self.store.update_session(session_id, last_seen=now)
        return row

    def revoke(self, session_id: str) -> None:
        self.store.update_session(session_id, revoked=1)

    def revoke_user(self, user_id: str) -> int:
        return self.store.revoke_user_sessions(user_id)

    def start_break_glass(self, session_id: str, reason: str) -> float:
        until = self.clock() + 60.0 * self.policy.break_glass_minutes
        self.store.update_session(
            session_id, break_glass_until=until, break_glass_reason=reason[:500]
        )
        return until

    # -- refresh tokens --------------------------------------------------------------------------
    def new_refresh(self, session: SessionRow, scope: str) -> str:
        token = secrets.token_urlsafe(32)
        self.store.add_refresh(
            RefreshRow(
                token_hash=self.keys.keyed_hash("refresh", token),
                session_id=session.session_id,
                scope=scope,
                expires=session.expires,
                used=0,
            )
        )
        return token

    def rotate(self, token: str, client_id: str | None) -> tuple[SessionRow, str, str]:
        """(session, scope, new refresh token) for a valid refresh token, used up here."""
        row, consumed = self.store.use_refresh(self.keys.keyed_hash("refresh", token))
        if row is None:
            raise InvalidGrant()
        if not consumed:
            self.revoke(row.session_id)  # reuse: someone holds a copy of this token
            raise InvalidGrant()
        try:
            session = self.check(row.session_id)
        except InvalidToken:
            raise InvalidGrant() from None
        if session.client_id != client_id or self.clock() >= row.expires:
            raise InvalidGrant()
        return session, row.scope, self.new_refresh(session, row.scope)

    # -- authorization codes ---------------------------------------------------------------------
    def new_code(
        self,
        user_id: str,
        client_id: str,
        redirect_uri: str,
        scope: str,
        patient: str | None,
        code_challenge: str,
    ) -> str:
        code = secrets.token_urlsafe(32)
        self.store.add_code(
            CodeRow(
                code_hash=self.keys.keyed_hash("code", code),
                user_id=user_id,
                client_id=client_id,
                redirect_uri=redirect_uri,
                scope=scope,
                patient=patient,
                code_challenge=code_challenge,
                expires=self.clock() + CODE_LIFETIME,
                used=0,
            )
        )
        return code

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str, code_verifier: str
    ) -> CodeRow:
        row, consumed = self.store.use_code(self.keys.keyed_hash("code", code))
        if (
            row is None
            or not consumed
            or self.clock() >= row.expires
            or row.client_id != client_id
            or row.redirect_uri != redirect_uri
            or not 43 <= len(code_verifier) <= 128
            or not hmac.compare_digest(pkce_s256(code_verifier), row.code_challenge)
        ):
            raise InvalidGrant()
        return row
