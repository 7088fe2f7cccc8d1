"""Interactive login: password + second factor, behind backoff and rate limits.

Every attempt, successful or not, is audited (action `login`). A failed attempt names the
account only by a keyed hash: a mistyped username is often the user's password.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from phivault.access.lockout import (
    Backoff,
    BackoffPolicy,
    RateLimit,
    SlidingWindow,
    after_failure,
    retry_after,
)
from phivault.access.users import User, UserDirectory, _user
from phivault.audit.events import MINOR_FAILURE, SUCCESS, AccessEvent, AuditSink
from phivault.errors import LoginFailed, TooManyAttempts
from phivault.store.access_sql import ThrottleRow

# Per address: enough for a busy shared front-desk PC, far too few for spraying.
ADDRESS_LIMIT = RateLimit(attempts=30, per_seconds=300.0)
# Per account, on top of the backoff: a ceiling however the attempts are spread.
ACCOUNT_LIMIT = RateLimit(attempts=20, per_seconds=3600.0)


class Authenticator:
    def __init__(
        self,
        users: UserDirectory,
        audit: AuditSink,
        *,
        backoff: BackoffPolicy | None = None,
        address_limit: RateLimit = ADDRESS_LIMIT,
        account_limit: RateLimit = ACCOUNT_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = users
        self.audit = audit
        self.backoff = backoff or BackoffPolicy()
        self.by_address = SlidingWindow(address_limit)
        self.by_account = SlidingWindow(account_limit)
        self.clock = clock

    def _account_key(self, username: str) -> str:
        return "account:" + self.users.keys.keyed_hash("username", username.strip().lower())

    def login(self, username: str, password: str, code: str, address: str | None) -> User:
        """The user, or LoginFailed / TooManyAttempts (which never say which part failed)."""
        now = self.clock()
        account = self._account_key(username)
        where = address or "unknown"
        stored = self.users.store.throttle(account)
        state = (
            Backoff(stored.failures, stored.last_failure, stored.locked_until) if stored else None
        )
        wait = max(
            retry_after(state, now),
            self.by_address.retry_after(where, now),
            self.by_account.retry_after(account, now),
        )
        if wait > 0:
            self._audit(None, account, where, "TooManyAttempts")
            raise TooManyAttempts()
        self.by_address.hit(where, now)
        self.by_account.hit(account, now)
        row = self.users.check_password(username, password)
        if row is None or not self.users.check_second_factor(row, code, now):
            failed = after_failure(state, now, self.backoff)
            self.users.store.put_throttle(
                ThrottleRow(account, failed.failures, failed.last_failure, failed.locked_until)
            )
            self._audit(row.user_id if row else None, account, where, "LoginFailed")
            raise LoginFailed()
        if stored is not None:
            self.users.store.clear_throttle(account)
        user = _user(row)
        self._audit(user.user_id, account, where, None)
        return user

    def _audit(self, user_id: str | None, account: str, address: str, detail: str | None) -> None:
        self.audit.record(
            AccessEvent(
                action="login",
                outcome=SUCCESS if detail is None else MINOR_FAILURE,
                actor=user_id or account,
                client=address,
                detail=detail,
            )
        )
