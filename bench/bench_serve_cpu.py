"""Server CPU per request of `phivault serve` (every safeguard on), for one or more source
trees side by side: what a change to the request path saves, on a shared machine.

    .venv/bin/python bench/bench_serve_cpu.py --trees OLD/src,NEW/src
        [--rows read,search,everything,create,ingest] [--backend sqlite|postgresql]
        [--pg-url URL] [--requests 3000] [--rounds 4]

Make the old tree with e.g. `git archive <commit> src | tar -x -C <dir>`. One guarded data
directory (the demo clinic) is served by one `phivault serve` per tree (its PYTHONPATH
set to the tree), all up at once; every row runs on each server in turn, the order
alternating round by round. Besides requests/s (which on a loaded machine mostly shows
the CPU share the server got) it reports the server process's CPU time per request
(user + system, all threads, from /proc): the work a request costs, which other load on
the machine changes much less; on PostgreSQL also the CPU time of the server backends
that serve its connections (same machine). The ingest row posts transaction bundles of
whole patients (about 100 resources each, --requests resources a run) and counts per
resource. Results: stdout and bench/results/serve_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from phivault.benchmark import workloads as w
from phivault.benchmark.datadirs import TokenSource, drop_schema, prepare
from phivault.benchmark.loadgen import run_load_in_process
from phivault.benchmark.servers import ServerProcess, start_phivault

ROWS = {
    "read": w.read,
    "search": w.search_identifier,
    "everything": w.everything,
    "create": lambda _clinic: w.create(500),  # new Patients: a new data key and index each
}
# Rows whose requests each carry many resources (transaction bundles of whole patients,
# about BUNDLE_RESOURCES each): a run sends --requests / BUNDLE_RESOURCES of them, and
# rates and CPU are counted per resource.
BUNDLED = {"ingest": 64}  # distinct bundles in the cycle


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _local_ports_to(pid: int, remote_port: int) -> set[int]:
    """Local TCP ports of the process's connections to `remote_port` (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def pg_backends(server_pid: int, pg_url: str) -> list[int]:
    """Process ids of the PostgreSQL backends serving the server's connections (the
    server runs on this machine, its backends too: their CPU is the request's as well)."""
    import psycopg  # only the PostgreSQL rows need it

    port = urlsplit(pg_url).port or 5432
    ports = sorted(_local_ports_to(server_pid, port))
    with psycopg.connect(pg_url.split("?", 1)[0], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,)
        ).fetchall()
    return [int(r[0]) for r in rows]


def pg_cpu_seconds(server_pid: int, pg_url: str | None) -> float:
    if pg_url is None:
        return 0.0
    return sum(cpu_seconds(pid) for pid in pg_backends(server_pid, pg_url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", required=True, help="comma-separated source dirs (src/)")
    parser.add_argument("--rows", default="read,search")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--pg-url", default=os.environ.get("PHIVAULT_BENCH_PG"))
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees.split(",") if t]
    rows = [r for r in args.rows.split(",") if r]
    work = Path(tempfile.mkdtemp(prefix="phivault-serve-cpu-"))
    data = prepare(work, args.backend, True, args.patients, args.pg_url)
    servers: list[tuple[str, ServerProcess]] = []
    pg = data.db_url if args.backend == "postgresql" else None
    out: dict[str, Any] = {"trees": trees, "backend": args.backend, "rows": {}}
    try:
        headers = TokenSource(data).headers()
        for tree in trees:
            env = {"PYTHONPATH": tree}
            servers.append((tree, start_phivault(data.data_dir, data.key_file, env)))
        facts = w.load_facts(args.patients)
        for row in rows:
            bundles = w.transaction_bundles(BUNDLED[row]) if row in BUNDLED else None
            make = bundles.cycle if bundles is not None else ROWS[row](facts)
            requests = args.requests
            if bundles is not None:
                requests = max(1, args.requests // w.BUNDLE_RESOURCES)
            for _, server in servers:  # warm-up
                warm = 200 if bundles is None else 2
                run_load_in_process(server.port, make, warm, args.concurrency, headers)
            unit = "resource" if bundles is not None else "request"
            found: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
            for round_no in range(args.rounds):
                order = servers if round_no % 2 == 0 else servers[::-1]
                for tree, server in order:
                    pid = server.proc.pid
                    before, db_before = cpu_seconds(pid), pg_cpu_seconds(pid, pg)
                    result = run_load_in_process(
                        server.port, make, requests, args.concurrency, headers
                    )
                    # Per resource: one per request, or what the bundles carried.
                    units = bundles.resources(requests) if bundles is not None else requests
                    cpu_us = (cpu_seconds(pid) - before) / units * 1e6
                    # Backends that closed during the run are missed: an underestimate.
                    db_us = (pg_cpu_seconds(pid, pg) - db_before) / units * 1e6
                    per_s = result.rate * units / requests
                    found[tree].append(
                        {"per_s": per_s, "p95_ms": result.pct(95), "cpu_us": cpu_us,
                         "db_cpu_us": db_us, "errors": result.errors}
                    )  # fmt: skip
                    print(f"{row} round {round_no + 1} {tree}: {per_s:,.0f}/s, "
                          f"p95 {result.pct(95):.1f} ms, server CPU {cpu_us:,.0f} us/{unit}, "
                          f"PostgreSQL CPU {db_us:,.0f} us/{unit}, "
                          f"{result.errors} errors", flush=True)  # fmt: skip
            out["rows"][row] = found
            for tree, runs in found.items():
                rate = sum(r["per_s"] for r in runs) / len(runs)
                cpu = sorted(r["cpu_us"] for r in runs)[len(runs) // 2]
                db = sorted(r["db_cpu_us"] for r in runs)[len(runs) // 2]
                print(f"== {row} {tree}: mean {rate:,.0f}/s, median server CPU {cpu:,.0f} us/{unit}"
                      + (f", PostgreSQL CPU {db:,.0f} us/{unit}" if pg else ""))  # fmt: skip
    finally:
        for _, server in servers:
            server.stop()
        drop_schema(data)
        shutil.rmtree(work, ignore_errors=True)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "serve_cpu.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
