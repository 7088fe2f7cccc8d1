"""The hop from the event loop to a worker thread for a request's blocking work (store
reads on PostgreSQL, the read's decryption and access decision).

`anyio.to_thread.run_sync` (Starlette's `run_in_threadpool`) spent about 50 us of CPU
per hop (capacity limiter, cancel scope, backend lookups); a guarded PostgreSQL read
makes two (the token check with its read-ahead, then the read), as much as a tenth of
its server CPU. `run_blocking` hops with the event loop's own `run_in_executor` at about
20 us, with what the request path relies on from anyio kept: the caller's context
variables travel with the call (the audit log's deferred scope), at most
`MAX_THREADS` run at once (anyio's default limit; the rest queue), and a cancelled
caller still waits for the work to finish (anyio's default): work that was started,
its audit entries included, runs its course before the cancellation is seen.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

MAX_THREADS = 40
_T = TypeVar("_T")
_executor = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="phivault-request")


async def run_blocking(fn: Callable[..., _T], *args: object) -> _T:
    """`fn(*args)` in a worker thread, awaited."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    future = loop.run_in_executor(_executor, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
