"""What authorization costs the server per request in CPU, without sockets: the app with
access control on (clinician and system tokens), with the tokens checked but the policy
off (every interaction allowed), and off, called in-process.

    .venv/bin/python bench/bench_access_cpu.py [--patients 300] [--requests 3000]
        [--rounds 5] [--concurrency 8] [--workload read|subject|typewide]

bench_access.py measures latency through uvicorn, which on a small machine shared with
other work swings from run to run by more than the cost it looks for. Here the ASGI app
is called directly on one event loop (`--concurrency` requests in flight, as a server's
loop has them), with the same three demo clinics and tokens as bench_access.py. Reported
per caller: CPU microseconds per request of the whole process (event loop, audit group
commit, everything) and of the event-loop thread alone (where reads by id, the bearer
token and the policy run on SQLite), and each against off, and against the same caller
with the policy off, as the median over `--rounds` rounds of that round's ratio. Within a
round the callers take turns every `--slice` requests, so that a burst of outside load
falls on all of them alike; CPU time does not count waiting for a core either. Also the
reads of the access epochs per 100 requests (AccessControl.refresh, counted). Results: a
markdown table on stdout.
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
from access_app import access_control
from bench_access import POLICY_OFF, SIDES, callers_of
from phivault.api.app import create_app
from phivault.benchmark.asgi_call import asgi_get
from phivault.crypto.kek import KeyFileKeySource
from phivault.vault import Vault, open_vault


async def drive(app: Any, paths: list[str], token: str | None, total: int, flight: int) -> None:
    async def one_connection(k: int) -> None:
        for i in range(k, total, flight):
            status = await asgi_get(app, paths[i % len(paths)], token)
            if status != 200:
                raise SystemExit(f"unexpected status {status} for {paths[i % len(paths)]}")

    await asyncio.gather(*(one_connection(k) for k in range(flight)))


def served(data: Path, key: Path, access: str, reads: list[int]) -> tuple[Any, Vault]:
    """The app of a BENCH_ACCESS mode (bench/access_app.py), and its reads of the access
    epochs counted into `reads[0]`."""
    vault = open_vault(data, KeyFileKeySource(key))
    control = access_control(vault, access)
    if control is not None:
        refresh = control.refresh

        def counted(epochs: dict[str, int] | None = None) -> None:
            reads[0] += 1
            refresh(epochs)

        control.refresh = counted  # type: ignore[method-assign]
    return create_app(vault.service, vault.settings, control), vault


async def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    practitioner, mine, observations = bench_access.clinic_facts(args.patients)
    dirs = {side: bench_access.prepare(work, side, args.patients) for side, _ in SIDES}
    issued = {side: bench_access.tokens(*dirs[side], practitioner) for side in ("on", "token")}
    paths = {
        "read": [f"/fhir/Observation/{o}" for o in observations],
        "subject": [f"/fhir/Observation?subject=Patient/{p}&_count=20" for p in mine],
        "typewide": ["/fhir/Condition?_count=20"],
    }[args.workload]
    reads = [0]
    apps, vaults = {}, []
    found: dict[str, dict[str, list[float]]] = {}
    try:
        for side, access in SIDES:
            apps[side], vault = served(*dirs[side], access, reads)
            vaults.append(vault)
        callers = callers_of(apps, issued)
        for _, app, token in callers:
            await drive(app, paths, token, max(300, args.requests // 5), args.concurrency)
        for _ in range(args.rounds):
            spent = {name: [0.0, 0.0, 0] for name, _, _ in callers}
            for start in range(0, args.requests, args.slice):
                count = min(args.slice, args.requests - start)
                for name, app, token in callers:
                    process, loop, before = time.process_time(), time.thread_time(), reads[0]
                    await drive(app, paths, token, count, args.concurrency)
                    spent[name][0] += time.process_time() - process
                    spent[name][1] += time.thread_time() - loop
                    spent[name][2] += reads[0] - before
            for name, (process, loop, epoch_reads) in spent.items():
                mine_of = found.setdefault(name, {"process": [], "loop": [], "reads": []})
                mine_of["process"].append(process / args.requests)
                mine_of["loop"].append(loop / args.requests)
                mine_of["reads"].append(epoch_reads / args.requests)
    finally:
        for vault in vaults:
            vault.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--requests", type=int, default=3000, help="per round and caller")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slice", type=int, default=200, help="requests per caller's turn")
    parser.add_argument("--workload", choices=("read", "subject", "typewide"), default="read")
    args = parser.parse_args()
    before = bench_access._load()
    with tempfile.TemporaryDirectory(prefix="phivault-bench-access-cpu-") as tmp:
        found = asyncio.run(measure(args, Path(tmp)))
    print(f"\n{args.workload}: {args.requests} requests x {args.rounds} rounds per caller, "
          f"{args.concurrency} in flight; load average before: {before}, "
          f"after: {bench_access._load()}\n")  # fmt: skip
    print("| caller | process CPU us/req | vs off (per-round median) | vs policy off "
          "| event-loop CPU us/req | vs off (per-round median) | vs policy off "
          "| epoch reads per 100 requests |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, kinds in found.items():
        cells = []
        twin = found.get(name + POLICY_OFF)
        for kind in ("process", "loop"):
            value = statistics.median(kinds[kind]) * 1e6
            versus = "baseline" if name == "off" else _versus(kinds[kind], found["off"][kind])
            cells += [f"{value:.0f}", versus, _versus(kinds[kind], twin[kind]) if twin else ""]
        cells.append("-" if name == "off" else f"{statistics.median(kinds['reads']) * 100:.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def _versus(mine: list[float], base: list[float]) -> str:
    """The median over rounds of that round's CPU against the base's, in percent."""
    ratios = [(m / b - 1) * 100 for m, b in zip(mine, base, strict=True)]
    return f"{statistics.median(ratios):+.1f}%"


if __name__ == "__main__":
    main()
