"""Deferred audit waits: inside `AuditLog.deferred()` a record returns at once, and the
scope's owner learns durability (or failure) from `durable()` or `wait()`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import phivault.audit.log
from phivault.audit.events import AccessEvent
from phivault.errors import AuditUnavailable
from phivault.vault import Vault
from tests.audit.test_log import failing_writes


def event(n: int) -> AccessEvent:
    return AccessEvent(action="read", actor="deferred", rtype="Patient", rid=f"p{n}")


def test_entries_of_a_deferred_scope_are_durable_once_awaited(vault: Vault) -> None:
    before = vault.store.audit_size()

    async def run() -> None:
        async def one(n: int) -> None:
            with vault.audit.deferred() as pending:
                vault.audit.record(event(n))
            await pending.durable()
            # durable() returned: the entry is committed, readable by any connection
            assert vault.store.audit_size() >= before + 1

        await asyncio.gather(*(one(n) for n in range(40)))

    asyncio.run(run())
    assert vault.store.audit_size() == before + 40


def test_a_failed_commit_fails_the_awaiting_scope(vault: Vault) -> None:
    vault.audit.record(event(0))
    size = vault.store.audit_size()

    async def run() -> None:
        with vault.audit.deferred() as pending:
            vault.audit.record(event(1))
        await pending.durable()

    with failing_writes(vault, 1):
        with pytest.raises(AuditUnavailable):
            asyncio.run(run())
    assert vault.store.audit_size() == size
    vault.audit.record(event(2))  # the log goes on after the failure
    assert vault.store.audit_size() == size + 1


def test_blocking_wait_and_scope_end(vault: Vault) -> None:
    size = vault.store.audit_size()
    with vault.audit.deferred() as pending:
        vault.audit.record(event(1))
        vault.audit.record(event(2))
    pending.wait()
    assert vault.store.audit_size() == size + 2
    # Outside the scope, record blocks again until durable.
    vault.audit.record(event(3))
    assert vault.store.audit_size() == size + 3


def test_a_closed_log_refuses_inside_a_scope_too(vault: Vault) -> None:
    vault.audit.close()
    with vault.audit.deferred(), pytest.raises(AuditUnavailable):
        vault.audit.record(event(1))


def test_a_commit_that_never_ends_refuses_every_awaiting_request(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One timer per batch (not per request) still bounds every wait: fail closed."""
    monkeypatch.setattr(phivault.audit.log, "DURABLE_TIMEOUT_S", 0.2)
    stuck = threading.Event()
    real = vault.audit._append

    def hang(batch: Any) -> None:
        stuck.wait(5)
        real(batch)

    monkeypatch.setattr(vault.audit, "_append", hang)
    refused: list[bool] = []

    async def run() -> None:
        async def one(n: int) -> None:
            with vault.audit.deferred() as pending:
                vault.audit.record(event(n))
            try:
                await pending.durable()
            except AuditUnavailable:
                refused.append(True)

        await asyncio.gather(*(one(n) for n in range(5)))

    try:
        asyncio.run(run())
    finally:
        stuck.set()
    assert refused == [True] * 5
