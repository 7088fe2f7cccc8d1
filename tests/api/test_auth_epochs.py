"""Requests that wait on the event loop together share one read of the access epochs
(api/middleware/auth.py `_EpochTurn`), and that sharing never lets a request miss a write
committed before it arrived: a care relationship ended, in this process or another one,
hides the patient from the very next request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from phivault.api.middleware.auth import _EpochTurn
from phivault.benchmark.asgi_call import asgi_get
from phivault.crypto.kek import KeyFileKeySource
from phivault.service import Context
from phivault.vault import Vault, open_vault
from tests.access.clinic import Clinic, open_clinic

SETUP = Context(actor="test-setup")


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


@pytest.fixture
def other(data_dir: Path, key_file: Path, clinic: Clinic) -> Iterator[Vault]:
    """Another process's view of the same data directory (its own caches)."""
    opened = open_vault(data_dir, KeyFileKeySource(key_file))
    yield opened
    opened.close()


def _counting_refresh(clinic: Clinic) -> list[int]:
    calls: list[int] = []
    real = clinic.access.refresh

    def counted(epochs: dict[str, int] | None = None) -> None:
        calls.append(1)
        real(epochs)

    clinic.access.refresh = counted  # type: ignore[method-assign]
    return calls


def _care_team(patient: str, member: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": member}}],
    }


def test_requests_waiting_together_share_one_read_of_the_epochs(clinic: Clinic) -> None:
    """On SQLite (reads on the event loop); PostgreSQL reads them per request, in the
    worker thread, with the version a read by id opens (api/read_ahead.py)."""
    shared = clinic.access.store.local_reads
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(doctor)
    url = f"/fhir/Condition/{clinic.first('Condition', clinic.related)['id']}"
    app = clinic.client.app
    calls = _counting_refresh(clinic)

    async def run() -> list[int]:
        assert await asgi_get(app, url, token) == 200  # verified in full, then cached
        calls.clear()
        return list(await asyncio.gather(*(asgi_get(app, url, token) for _ in range(6))))

    assert asyncio.run(run()) == [200] * 6
    assert len(calls) == (1 if shared else 6)


def test_a_write_committed_after_a_shared_read_is_seen_by_the_next_request(
    clinic: Clinic, other: Vault
) -> None:
    """Request A reads the epochs and marks them fresh; in the same loop turn, after A's
    read, another worker ends the care relationship and request B arrives. B was
    scheduled after the mark's reset, so it reads the epochs itself and is refused (on
    PostgreSQL every request reads them itself, in a worker thread)."""
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(doctor)
    patient = clinic.vault.service.create(
        SETUP, "Patient", {"resourceType": "Patient", "name": [{"family": "Newcomer"}]}
    ).version.rid
    condition = clinic.vault.service.create(
        SETUP,
        "Condition",
        {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"}},
    ).version.rid
    team = other.service.create(SETUP, "CareTeam", _care_team(patient, clinic.clinician_ref))
    url = f"/fhir/Condition/{condition}"
    app = clinic.client.app
    calls = _counting_refresh(clinic)
    ended = {**_care_team(patient, clinic.clinician_ref, "inactive"), "id": team.version.rid}

    async def run() -> tuple[int, int]:
        assert await asgi_get(app, url, token) == 200
        loop = asyncio.get_running_loop()
        later: list[asyncio.Task[int]] = []

        def end_care_then_request() -> None:
            other.service.update(SETUP, "CareTeam", team.version.rid, ended)
            later.append(loop.create_task(asgi_get(app, url, token)))

        calls.clear()
        first = loop.create_task(asgi_get(app, url, token))
        loop.call_soon(end_care_then_request)  # runs right after A's first step
        allowed = await first
        while not later:
            await asyncio.sleep(0)
        return allowed, await later[0]

    allowed, refused = asyncio.run(run())
    assert refused == 404  # B arrived after the write committed: never the older read
    if clinic.access.store.local_reads:
        assert allowed == 200  # A was decided on the loop, before the write
    # (PostgreSQL decides A in a worker thread, so the write may come first: either answer)
    assert len(calls) == 2


def test_a_read_covers_only_the_steps_scheduled_before_it_began() -> None:
    turn = _EpochTurn()
    reads: list[str] = []

    def read(name: str) -> Callable[[], None]:
        return lambda: reads.append(name)

    turn.refreshed(read("outside"))
    turn.refreshed(read("outside again"))  # no loop: every call reads
    assert reads == ["outside", "outside again"]
    reads.clear()

    async def within() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def scheduled_before() -> None:
            turn.refreshed(read("before: shares"))

        def scheduled_during() -> None:
            turn.refreshed(read("during: reads"))
            done.set()

        def first_read() -> None:
            reads.append("first")
            # A step scheduled while the read runs (e.g. by another thread, as a test
            # client's portal does) may stand for a request that arrived after the read
            # began: it must read again.
            threading.Thread(target=loop.call_soon_threadsafe, args=(scheduled_during,)).start()
            time.sleep(0.05)

        loop.call_soon(scheduled_before)
        turn.refreshed(first_read)
        turn.refreshed(read("same step: shares"))
        await done.wait()
        await asyncio.sleep(0)
        turn.refreshed(read("next turn: reads"))

    asyncio.run(within())
    assert reads == ["first", "during: reads", "next turn: reads"]
    reads.clear()

    async def mark_and_leave() -> None:
        turn.refreshed(read("old loop"))

    asyncio.run(mark_and_leave())
    asyncio.run(mark_and_leave())  # another loop on the same thread: its own read
    assert reads == ["old loop", "old loop"]


def test_a_failed_read_is_not_shared() -> None:
    turn = _EpochTurn()
    reads: list[str] = []

    def failing() -> None:
        reads.append("failed")
        raise OSError("store unavailable")

    async def run() -> None:
        with pytest.raises(OSError):
            turn.refreshed(failing)
        turn.refreshed(lambda: reads.append("again"))

    asyncio.run(run())
    assert reads == ["failed", "again"]
