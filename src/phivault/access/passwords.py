"""Passwords: argon2id hashes and the password policy.

Policy (NIST SP 800-63B, 5.1.1.2): at least 12 characters, not on the shipped list of
common passwords, not the username; no composition rules, no forced rotation.
"""

from __future__ import annotations

import functools
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from phivault.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 256  # argon2 accepts more, but a megabyte "password" is a CPU attack

# RFC 9106 second recommended option (memory-constrained): t=3, m=64 MiB, p=4.
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
# A hash of a random password, checked when the user does not exist, so that a login for
# an unknown username costs the same time as one for a known username.
_DUMMY = _HASHER.hash("phivault-no-such-user-timing-equaliser")


@functools.cache
def common_passwords() -> frozenset[str]:
    text = (resources.files("phivault") / "data" / "common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def check_policy(password: str, username: str | None = None) -> None:
    """Raises WeakPassword (whose message never echoes the password)."""
    if not isinstance(password, str) or not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword()
    folded = password.lower()
    if folded in common_passwords() or len(set(folded)) <= 2:
        raise WeakPassword()
    if username and username.lower() in folded:
        raise WeakPassword("the password must not contain the username")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (pass None for an unknown user)."""
    if len(password) > MAX_LENGTH:
        password = password[:MAX_LENGTH]
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
