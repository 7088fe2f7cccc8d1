"""What authorization costs the server per request in CPU, without sockets: the app with
access control on (clinician and system tokens) and off, called in-process.

    .venv/bin/python bench/bench_access_cpu.py [--patients 300] [--requests 3000]
        [--rounds 5] [--concurrency 8] [--workload read|subject|typewide]

bench_access.py measures latency through uvicorn, which on a small machine shared with
other work swings from run to run by more than the cost it looks for. Here the ASGI app
is called directly on one event loop (`--concurrency` requests in flight, as a server's
loop has them), with the same two demo clinics and tokens as bench_access.py. Reported
per caller: CPU microseconds per request of the whole process (event loop, audit group
commit, everything) and of the event-loop thread alone (where reads by id, the bearer
token and the policy run on SQLite), as the median of `--rounds` rounds whose callers'
order rotates; and each against off. CPU time does not count waiting for a core, so
outside load moves these figures far less than latencies. Results: a markdown table on
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_access  # beside this script: the same clinics, tokens and workloads
from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.crypto.kek import KeyFileKeySource
from phivault.vault import Vault, open_vault


async def call(app: Any, path: str, token: str | None) -> int:
    """One GET through the ASGI app; its status."""
    route, _, query = path.partition("?")
    headers = [(b"host", b"127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": route, "raw_path": route.encode(),
        "query_string": query.encode(), "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    status: list[int] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def drive(app: Any, paths: list[str], token: str | None, total: int, flight: int) -> None:
    async def one_connection(k: int) -> None:
        for i in range(k, total, flight):
            status = await call(app, paths[i % len(paths)], token)
            if status != 200:
                raise SystemExit(f"unexpected status {status} for {paths[i % len(paths)]}")

    await asyncio.gather(*(one_connection(k) for k in range(flight)))


def served(data: Path, key: Path, access: bool) -> tuple[Any, Vault]:
    vault = open_vault(data, KeyFileKeySource(key))
    control = AccessControl.for_service(vault.service, vault.keyring) if access else None
    return create_app(vault.service, vault.settings, control), vault


async def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    practitioner, mine, observations = bench_access.clinic_facts(args.patients)
    on_data, on_key = bench_access.prepare(work, "on", args.patients)
    off_data, off_key = bench_access.prepare(work, "off", args.patients)
    issued = bench_access.tokens(on_data, on_key, practitioner)
    paths = {
        "read": [f"/fhir/Observation/{o}" for o in observations],
        "subject": [f"/fhir/Observation?subject=Patient/{p}&_count=20" for p in mine],
        "typewide": ["/fhir/Condition?_count=20"],
    }[args.workload]
    on, on_vault = served(on_data, on_key, access=True)
    off, off_vault = served(off_data, off_key, access=False)
    callers = [("off", off, None), *((name, on, token) for name, token in issued.items())]
    found: dict[str, dict[str, list[float]]] = {}
    try:
        for _, app, token in callers:
            await drive(app, paths, token, max(300, args.requests // 5), args.concurrency)
        for round_no in range(args.rounds):
            shift = round_no % len(callers)
            for name, app, token in callers[shift:] + callers[:shift]:
                process, loop = time.process_time(), time.thread_time()
                await drive(app, paths, token, args.requests, args.concurrency)
                mine_of = found.setdefault(name, {"process": [], "loop": []})
                mine_of["process"].append((time.process_time() - process) / args.requests)
                mine_of["loop"].append((time.thread_time() - loop) / args.requests)
    finally:
        on_vault.close()
        off_vault.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--requests", type=int, default=3000, help="per round and caller")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workload", choices=("read", "subject", "typewide"), default="read")
    args = parser.parse_args()
    before = bench_access._load()
    with tempfile.TemporaryDirectory(prefix="phivault-bench-access-cpu-") as tmp:
        found = asyncio.run(measure(args, Path(tmp)))
    print(f"\n{args.workload}: {args.requests} requests x {args.rounds} rounds per caller, "
          f"{args.concurrency} in flight; load average before: {before}, "
          f"after: {bench_access._load()}\n")  # fmt: skip
    print("| caller | process CPU us/req | vs off | event-loop CPU us/req | vs off |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = {kind: statistics.median(found["off"][kind]) * 1e6 for kind in ("process", "loop")}
    for name, kinds in found.items():
        cells = []
        for kind in ("process", "loop"):
            value = statistics.median(kinds[kind]) * 1e6
            versus = "baseline" if name == "off" else f"{(value / base[kind] - 1) * 100:+.1f}%"
            cells += [f"{value:.0f}", versus]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
