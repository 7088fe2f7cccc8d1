"""The request path's hop to a worker thread keeps what it relied on from anyio: context
variables travel, results and errors come back, and a cancelled caller still waits for
work already started."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from phivault.api.worker_threads import run_blocking

WHO = contextvars.ContextVar("who", default="nobody")


def test_context_results_and_errors_travel() -> None:
    async def main() -> None:
        WHO.set("the caller")
        assert await run_blocking(WHO.get) == "the caller"
        assert await run_blocking(threading.current_thread) is not threading.main_thread()
        with pytest.raises(ValueError):
            await run_blocking(int, "not a number")

    asyncio.run(main())


def test_a_cancelled_caller_waits_for_the_work_to_finish() -> None:
    started, finished = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    async def main() -> None:
        task = asyncio.ensure_future(run_blocking(work))
        while not started.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()  # not abandoned mid-way

    asyncio.run(main())
