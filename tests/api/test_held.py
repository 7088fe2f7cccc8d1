"""Work held until its audit entries are durable (api/held.py): the answer, or the
work's own error, is released only after the group commit; if it fails, nothing is."""

from __future__ import annotations

import asyncio

import pytest

from phivault.api.held import Held, held
from phivault.errors import AuditUnavailable, NotFound
from phivault.vault import Vault
from tests.audit.test_log import event, failing_writes


def _read(vault: Vault, n: int) -> str:
    vault.audit.record(event(n))  # deferred inside `held`: returns before it is durable
    return f"answer {n}"


def test_the_answer_is_released_once_its_entry_is_durable(vault: Vault) -> None:
    size = vault.store.audit_size()
    outcome = held(vault.audit, lambda: _read(vault, 1))
    assert asyncio.run(outcome.released()) == "answer 1"
    assert vault.store.audit_size() == size + 1


def test_an_error_is_released_after_its_entry_too(vault: Vault) -> None:
    size = vault.store.audit_size()

    def refused() -> str:
        _read(vault, 2)
        raise NotFound("not here")

    outcome = held(vault.audit, refused)
    with pytest.raises(NotFound):
        asyncio.run(outcome.released())
    assert vault.store.audit_size() == size + 1


def test_nothing_is_released_when_the_audit_commit_fails(vault: Vault) -> None:
    size = vault.store.audit_size()
    with failing_writes(vault, 1):
        outcome = held(vault.audit, lambda: _read(vault, 3))
        with pytest.raises(AuditUnavailable):
            asyncio.run(outcome.released())
    assert vault.store.audit_size() == size


def test_work_may_be_held_in_one_thread_and_released_in_another(vault: Vault) -> None:
    async def run() -> str:
        outcome: Held[str] = await asyncio.to_thread(held, vault.audit, lambda: _read(vault, 4))
        return await outcome.released()

    assert asyncio.run(run()) == "answer 4"
