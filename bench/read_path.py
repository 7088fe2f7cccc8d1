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
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from starlette.applications import Starlette

from crypto_dirs import prepare_dir  # beside this script
from phivault.api.app import create_app
from phivault.benchmark.asgi_call import asgi_get
from phivault.benchmark.lifespan import close_vault_on_shutdown
from phivault.crypto.kek import KeyFileKeySource
from phivault.demo.clinic import ClinicSpec, generate_clinic
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


# --- bench_crypto.py's use: data directories, a worker, the table ---------------------------


def patient_ids(patients: int) -> list[str]:
    """The ids of the loaded clinic's Patients (prepare_dir's clinic)."""
    clinic = generate_clinic(ClinicSpec(patients=patients, seed=1))
    return [str(r["id"]) for r in clinic if r["resourceType"] == "Patient"]


def open_read_path(work: Path, backend: str, patients: int, concurrency: int) -> ReadPath:
    dirs = {
        side: prepare_dir(work, f"{backend}-read", side == "on", patients, backend)
        for side in ("on", "off")
    }
    return ReadPath(dirs, patient_ids(patients), concurrency)


def read_worker(backend: str, patients: int, concurrency: int) -> None:
    """`--read-worker`: a ReadPath driven over stdin/stdout (read_path_trees)."""
    with tempfile.TemporaryDirectory(prefix="phivault-bench-crypto-") as tmp:
        path = open_read_path(Path(tmp), backend, patients, concurrency)
        try:
            print(json.dumps({}), flush=True)
            for line in sys.stdin:
                reads, turn = map(int, line.split())
                print(json.dumps(path.round(reads, turn)), flush=True)
        finally:
            path.close()


def read_summary(rounds: dict[str, list[float]]) -> dict[str, object]:
    """Median CPU µs per read per side, and each round's off/on (the throughput ratio the
    CPU cost allows: a read costing 25% more CPU allows 0.80 of the reads)."""
    ratios = [off / on for on, off in zip(rounds["on"], rounds["off"], strict=True)]
    return {
        "cpu_us_on": median(rounds["on"]),
        "cpu_us_off": median(rounds["off"]),
        "round_ratios": ratios,
        "round_ratio_median": median(ratios),
    }


def read_header(title: str, label: str) -> list[str]:
    """The lines that open a table of read_row rows."""
    return [
        "",
        f"## {title}",
        "",
        f"| {label} | CPU µs/read on | off | off/on per round (median) | range |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]


def read_row(label: str, found: dict[str, object], target: float) -> str:
    ratios = found["round_ratios"]
    typical = found["round_ratio_median"]
    assert isinstance(ratios, list) and isinstance(typical, float)
    flag = "" if typical >= target else " (below target)"
    return (
        f"| {label} | {found['cpu_us_on']:,.0f} | {found['cpu_us_off']:,.0f} | "
        f"{typical:.2f}{flag} | {min(ratios):.2f}-{max(ratios):.2f} |"
    )
