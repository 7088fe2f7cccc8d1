"""Reads by id in process, encryption on and off (bench_crypto.py's read path section).

The same app as over HTTP (bench/crypto_app.py's: `open_vault(encryption=...)`, the start-up
heap frozen as `serve` does), driven on one event loop in this process without sockets
(`phivault.benchmark.asgi_call`): routing, the store read, decryption, the audit entry and
its group commit, all of a read but the HTTP parsing and the socket. Both sides live in
this process; each round reads `reads` Patients by id on each side, `concurrency` at a
time, the sides' order alternating. Measured: process CPU time per read (every thread:
the audit appender's too), which other load on a shared machine moves far less than
requests/s over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from phivault.api.app import create_app
from phivault.benchmark.asgi_call import asgi_get
from phivault.benchmark.lifespan import close_vault_on_shutdown
from phivault.crypto.kek import KeyFileKeySource
from phivault.vault import open_vault

SIDES = ("on", "off")


class ReadPath:
    """Both sides' apps, started, on an event loop of their own; `round` runs one round."""

    def __init__(self, dirs: dict[str, tuple[Path, Path]], ids: list[str], concurrency: int):
        """`dirs`: per side ("on", "off") its data directory and key file, the same clinic
        loaded in both; `ids`: the Patient ids to read, in turn."""
        self._paths = [f"/fhir/Patient/{rid}" for rid in ids]
        self._concurrency = concurrency
        self._loop = asyncio.new_event_loop()
        self._stack = contextlib.AsyncExitStack()
        self._apps: dict[str, Starlette] = {}
        try:
            for side in SIDES:
                data, key_file = dirs[side]
                vault = open_vault(data, KeyFileKeySource(key_file), encryption=side == "on")
                app = close_vault_on_shutdown(create_app(vault.service, vault.settings), vault)
                self._apps[side] = app
                self._loop.run_until_complete(
                    self._stack.enter_async_context(app.router.lifespan_context(app))
                )
            for side in SIDES:  # warm up: every key opened, every page read once
                self._run(side, 2 * len(self._paths))
        except BaseException:
            with contextlib.suppress(Exception):  # the set-up's own error is the one to see
                self.close()
            raise

    def round(self, reads: int, turn: int) -> dict[str, float]:
        """CPU µs per read per side, the sides in an order that alternates with `turn`."""
        used: dict[str, float] = {}
        for side in SIDES if turn % 2 == 0 else SIDES[::-1]:
            began = time.process_time()
            self._run(side, reads)
            used[side] = (time.process_time() - began) * 1e6 / reads
        return used

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._stack.aclose())  # closes the vaults
        finally:
            self._loop.close()

    def _run(self, side: str, reads: int) -> None:
        self._loop.run_until_complete(self._reads(self._apps[side], reads))

    async def _reads(self, app: Any, reads: int) -> None:
        paths, flight = self._paths, self._concurrency

        async def connection(k: int) -> None:  # one client's reads, one after another
            for i in range(k, reads, flight):
                status = await asgi_get(app, paths[i % len(paths)])
                if status != 200:
                    raise RuntimeError(f"a read answered {status}")

        await asyncio.gather(*(connection(k) for k in range(flight)))


def read_rounds(make: Callable[[], ReadPath], reads: int, rounds: int) -> dict[str, list[float]]:
    """CPU µs per read per side ("on", "off"), one entry per round."""
    path = make()
    found: dict[str, list[float]] = {side: [] for side in SIDES}
    try:
        for turn in range(rounds):
            for side, used in path.round(max(1, reads // rounds), turn).items():
                found[side].append(used)
    finally:
        path.close()
    return found
