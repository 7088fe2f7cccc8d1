"""Password policy, argon2id hashing, backoff and rate limits."""

from __future__ import annotations

import pytest

from phivault.access import passwords
from phivault.access.lockout import (
    BackoffPolicy,
    RateLimit,
    SlidingWindow,
    after_failure,
    retry_after,
)
from phivault.errors import WeakPassword


@pytest.mark.parametrize(
    "bad",
    ["tiny1", "elevenchars", "password1234", "Password1234", "qwertyuiop123",
     "iloveyouiloveyou", "123456789012", "aaaaaaaaaaaaaaaa", "ababababababab", "x" * 300],
)  # fmt: skip
def test_weak_passwords_are_refused(bad: str) -> None:
    with pytest.raises(WeakPassword) as info:
        passwords.check_policy(bad)
    assert bad not in info.value.message


def test_password_containing_username_is_refused() -> None:
    with pytest.raises(WeakPassword):
        passwords.check_policy("kjohnson-Spring-Tulip", "kjohnson")


def test_list_is_shipped_and_large() -> None:
    assert len(passwords.common_passwords()) > 3000


def test_hash_verify() -> None:
    good = "correct horse battery staple"
    passwords.check_policy(good)
    hashed = passwords.hash_password(good)
    assert hashed.startswith("$argon2id$")
    assert passwords.verify_password(hashed, good)
    assert not passwords.verify_password(hashed, good + "!")
    assert not passwords.verify_password(None, good)  # unknown user: same work, False


def test_backoff_doubles_after_free_failures() -> None:
    policy = BackoffPolicy(free_failures=3, base_delay=1.0, max_delay=8.0)
    state = None
    waits = []
    for i in range(7):
        state = after_failure(state, 100.0 + i, policy)
        waits.append(retry_after(state, 100.0 + i))
    assert waits == [0, 0, 0, 1, 2, 4, 8]
    state = after_failure(state, 200.0, policy)
    assert retry_after(state, 200.0) == 8.0  # capped
    later = after_failure(state, 200.0 + policy.forget_after + 1, policy)
    assert later.failures == 1  # old failures are forgotten


def test_sliding_window() -> None:
    window = SlidingWindow(RateLimit(attempts=3, per_seconds=10.0))
    for t in (0.0, 1.0, 2.0):
        assert window.retry_after("a", t) == 0
        window.hit("a", t)
    assert window.retry_after("a", 3.0) == pytest.approx(7.0)
    assert window.retry_after("b", 3.0) == 0
    assert window.retry_after("a", 10.5) == 0
