"""User records: unique ids, roles, argon2id passwords, TOTP enrolment, recovery codes.

What is stored per user (table `access_users`): the argon2id hash of the password, the
TOTP secret sealed under a key derived from the key ring (a stolen database gives no
second factor), and keyed hashes of unused recovery codes. Nothing here is ever logged.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass

from phivault.access import passwords, totp
from phivault.access.keys import AccessKeys
from phivault.access.principal import ROLES
from phivault.errors import BadRequest, UnknownUser, UserExists
from phivault.store.access_sql import AccessStore, UserRow

RECOVERY_CODES = 10
ISSUER = "phivault"
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    username: str
    roles: frozenset[str]
    practitioner: str | None
    disabled: bool
    mfa_required: bool
    mfa_enrolled: bool


@dataclass(frozen=True, slots=True)
class Enrolment:
    """Shown to the user once, at creation or MFA reset; never stored in clear."""

    provisioning_uri: str
    secret_b32: str
    recovery_codes: tuple[str, ...]


def check_roles(roles: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    unknown = set(roles) - ROLES
    if unknown or not roles:
        raise BadRequest("roles must be one or more of: " + ", ".join(sorted(ROLES)))
    return frozenset(roles)


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not 1 <= len(name) <= 64 or not set(name) <= _USERNAME_CHARS:
        raise BadRequest("a username is 1-64 characters: letters, digits, . _ - @")
    return name


def _user(row: UserRow) -> User:
    return User(
        user_id=row.user_id,
        username=row.username,
        roles=frozenset(row.roles.split()),
        practitioner=row.practitioner,
        disabled=bool(row.disabled),
        mfa_required=bool(row.mfa_required),
        mfa_enrolled=row.totp_secret is not None,
    )


class UserDirectory:
    def __init__(self, store: AccessStore, keys: AccessKeys) -> None:
        self.store = store
        self.keys = keys

    def get(self, user_id: str) -> User | None:
        row = self.store.user(user_id)
        return _user(row) if row else None

    def by_name(self, username: str) -> User | None:
        row = self.store.user_by_name(username.strip().lower())
        return _user(row) if row else None

    def all(self) -> list[User]:
        return [_user(r) for r in self.store.users()]

    def add(
        self,
        username: str,
        password: str,
        roles: list[str] | tuple[str, ...],
        *,
        practitioner: str | None = None,
        mfa_required: bool = True,
    ) -> tuple[User, Enrolment | None]:
        name = check_username(username)
        role_set = check_roles(roles)
        passwords.check_policy(password, name)
        if self.store.user_by_name(name) is not None:
            raise UserExists()
        user_id = str(uuid.uuid4())
        now = time.time()
        sealed, enrolment, codes = None, None, "[]"
        if mfa_required:
            secret = totp.new_secret()
            sealed = self.keys.seal_totp(user_id, secret)
            enrolment, codes = self._enrolment(name, secret)
        self.store.add_user(
            UserRow(
                user_id=user_id,
                username=name,
                roles=" ".join(sorted(role_set)),
                practitioner=practitioner,
                password_hash=passwords.hash_password(password),
                totp_secret=sealed,
                totp_last_step=0,
                mfa_required=int(mfa_required),
                recovery_codes=codes,
                disabled=0,
                created=now,
                updated=now,
            )
        )
        user = self.get(user_id)
        assert user is not None
        return user, enrolment

    def _require(self, username: str) -> UserRow:
        row = self.store.user_by_name(username.strip().lower())
        if row is None:
            raise UnknownUser()
        return row

    def set_roles(self, username: str, roles: list[str] | tuple[str, ...]) -> User:
        row = self._require(username)
        role_set = check_roles(roles)
        self.store.update_user(row.user_id, roles=" ".join(sorted(role_set)), updated=time.time())
        self.store.revoke_user_sessions(row.user_id)  # new roles take effect at next login
        return _user(self._require(username))

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        row = self._require(username)
        self.store.update_user(row.user_id, disabled=int(disabled), updated=time.time())
        if disabled:
            self.store.revoke_user_sessions(row.user_id)
        return _user(self._require(username))

    def set_password(self, username: str, password: str) -> None:
        row = self._require(username)
        passwords.check_policy(password, row.username)
        self.store.update_user(
            row.user_id, password_hash=passwords.hash_password(password), updated=time.time()
        )
        self.store.revoke_user_sessions(row.user_id)

    def reset_mfa(self, username: str) -> Enrolment:
        """A new TOTP secret and new recovery codes; every session of the user ends."""
        row = self._require(username)
        secret = totp.new_secret()
        enrolment, codes = self._enrolment(row.username, secret)
        self.store.update_user(
            row.user_id,
            totp_secret=self.keys.seal_totp(row.user_id, secret),
            totp_last_step=0,
            recovery_codes=codes,
            mfa_required=1,
            updated=time.time(),
        )
        self.store.revoke_user_sessions(row.user_id)
        return enrolment

    def _enrolment(self, username: str, secret: bytes) -> tuple[Enrolment, str]:
        codes = tuple(_recovery_code() for _ in range(RECOVERY_CODES))
        hashed = json.dumps([self.keys.keyed_hash("recovery", c) for c in codes])
        uri = totp.provisioning_uri(secret, username, ISSUER)
        return Enrolment(uri, totp.b32(secret), codes), hashed

    # -- credential checks (used by login) ----------------------------------------------------
    def check_password(self, username: str, password: str) -> UserRow | None:
        """The user's row if the password is right and the account enabled; else None.
        Costs one argon2id verification either way (no timing oracle on usernames)."""
        row = self.store.user_by_name(username.strip().lower())
        ok = passwords.verify_password(row.password_hash if row else None, password)
        if not ok or row is None or row.disabled:
            return None
        return row

    def check_second_factor(self, row: UserRow, code: str, now: float) -> bool:
        """A current TOTP code (each time step accepted once) or an unused recovery code."""
        if row.totp_secret is None:
            return not row.mfa_required
        code = code.strip()
        if code.isdigit():
            secret = self.keys.open_totp(row.user_id, row.totp_secret)
            step = totp.verify(secret, code, now)
            return step is not None and self.store.claim_totp_step(row.user_id, step)
        hashed = self.keys.keyed_hash("recovery", code.lower())
        stored: list[str] = json.loads(row.recovery_codes)
        if hashed not in stored:
            return False
        stored.remove(hashed)  # each recovery code works once
        return self.store.update_user(row.user_id, recovery_codes=json.dumps(stored))


def _recovery_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"
