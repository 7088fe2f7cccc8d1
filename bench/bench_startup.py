"""What `phivault serve` does at start-up over a loaded clinic: peak RSS and time to idle.

    .venv/bin/python bench/bench_startup.py --data DIR --key-file KEY
        [--trees OLD/src,src] [--rounds 2] [--rate 5] [--idle-seconds 10] [--trace]

For each round and each source tree (a `src` directory put first on PYTHONPATH, so an old
checkout and the working one run on the same data directory, interleaved), the real
`phivault serve` is started on loopback. Once it answers `/fhir/metadata`, the bench sends
one `GET Patient/<id>` (the first request), then keeps reading random Patients at `--rate`
per second while it samples the server's CPU time and resident set from /proc once a
second. The server is idle once its CPU has stayed under `--idle-cpu` (share of one core)
for `--idle-seconds` in a row, and `--min-watch` seconds have passed; the row reports the
seconds from the first response to the end of the last busy second (time to idle), the
CPU seconds spent until then, the server's peak RSS (VmHWM, what the memory target
counts) and the read latencies while busy and once idle. Wall-clock latencies on a shared
machine mostly measure the machine: read the CPU seconds and RSS first.

The detector keeps its cursor in the data directory: the very first serve of a freshly
loaded clinic scans its whole audit log, every later one replays `baseline_days` of it
(warm-up). Run one throw-away round first if the directory was just loaded, or compare
each tree on its own copy. The peak RSS includes Argon2's 64 MiB, taken once at import
(access/passwords.py) and by each login.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    tree: str
    ready_s: float = 0.0  # spawn -> /fhir/metadata answers
    first_ms: float = 0.0  # latency of the first request
    idle_after_s: float | None = None  # first response -> idle (None: never within the limit)
    cpu_start_s: float = 0.0  # CPU seconds up to the first response
    cpu_busy_s: float = 0.0  # CPU seconds from the first response to idle (or the limit)
    peak_rss_mib: float = 0.0
    end_rss_mib: float = 0.0
    busy_ms: list[float] = field(default_factory=list)  # reads before idle
    idle_ms: list[float] = field(default_factory=list)  # reads after idle
    trace: list[tuple[float, float, float]] = field(default_factory=list)  # t, cpu s/s, RSS


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def proc_mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    found = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0] + ":"
        if key in found:
            found[key] = int(line.split()[1]) / 1024
    return found["VmRSS:"], found["VmHWM:"]


def patient_ids(data: Path, count: int = 2000) -> list[str]:
    with sqlite3.connect(f"file:{data / 'phivault.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT rid FROM resources WHERE rtype = 'Patient' AND deleted = 0 LIMIT ?", (count,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(tree: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = tree
    return env


def issue_token(tree: str, data: Path, key: Path) -> str:
    out = subprocess.run(
        [str(BIN / "phivault"), "token", "issue", "--data", str(data), "--key-file", str(key),
         "--client", "bench-startup", "--scope", "system/*.rs", "--lifetime", "900"],
        check=True, capture_output=True, text=True, env=cli_env(tree),
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def get(conn: http.client.HTTPConnection, path: str, token: str | None) -> tuple[int, float]:
    headers = {"accept": "application/fhir+json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    start = time.perf_counter()
    conn.request("GET", path, headers=headers)
    res = conn.getresponse()
    res.read()
    return res.status, (time.perf_counter() - start) * 1000


def one_run(tree: str, args: argparse.Namespace, pids: list[str]) -> Run:
    run = Run(tree)
    token = issue_token(tree, args.data, args.key_file)  # at most 15 minutes: one per run
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(BIN / "phivault"), "serve", "--data", str(args.data), "--key-file",
         str(args.key_file), "--port", str(port)],
        stdout=subprocess.DEVNULL, env=cli_env(tree),
    )  # fmt: skip
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"serve exited with {server.returncode}")
            try:
                get(conn, "/fhir/metadata", None)
                break
            except OSError:
                conn.close()
                time.sleep(0.1)
        run.ready_s = time.perf_counter() - started
        rng = random.Random(7)
        status, run.first_ms = get(conn, f"/fhir/Patient/{rng.choice(pids)}", token)
        if status != 200:
            raise RuntimeError(f"HTTP {status} for the first read")
        first = time.perf_counter()
        run.cpu_start_s = proc_cpu(server.pid)
        last_cpu, last_t, busy_until = run.cpu_start_s, first, first
        busy_cpu = run.cpu_start_s
        next_sample, next_read = first + 1.0, first
        while time.perf_counter() - first < args.max_seconds:
            now = time.perf_counter()
            if now >= next_read:
                status, ms = get(conn, f"/fhir/Patient/{rng.choice(pids)}", token)
                if status != 200:
                    raise RuntimeError(f"HTTP {status} for a read")
                quiet = now - busy_until >= args.idle_seconds and now - first >= args.min_watch
                (run.idle_ms if quiet else run.busy_ms).append(ms)
                next_read += 1.0 / args.rate
            if now >= next_sample:
                cpu = proc_cpu(server.pid)
                rss, _ = proc_mem(server.pid)
                share = (cpu - last_cpu) / (now - last_t)
                run.trace.append((round(now - first, 1), round(share, 3), round(rss, 1)))
                if share >= args.idle_cpu:
                    busy_until, busy_cpu = now, cpu
                last_cpu, last_t = cpu, now
                next_sample += 1.0
            quiet = now - busy_until >= args.idle_seconds and now - first >= args.min_watch
            if quiet and len(run.idle_ms) >= args.idle_reads:
                run.idle_after_s = busy_until - first
                break
            time.sleep(max(0.0, min(next_read, next_sample) - time.perf_counter()))
        run.cpu_busy_s = busy_cpu - run.cpu_start_s
        run.end_rss_mib, run.peak_rss_mib = proc_mem(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return run


def pct(values: list[float], p: int) -> str:
    if len(values) < 2:
        return "-" if not values else f"{values[0]:.1f}"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[p - 1]:.1f}"


def row(run: Run) -> str:
    idle = f"{run.idle_after_s:.0f}" if run.idle_after_s is not None else "never"
    return (
        f"| {run.tree} | {run.ready_s:.1f} | {run.first_ms:.0f} | {idle} | "
        f"{run.cpu_start_s:.1f} | {run.cpu_busy_s:.1f} | {run.peak_rss_mib:.0f} | "
        f"{run.end_rss_mib:.0f} | {len(run.busy_ms)}: {pct(run.busy_ms, 50)}/"
        f"{pct(run.busy_ms, 95)} | {len(run.idle_ms)}: {pct(run.idle_ms, 50)}/"
        f"{pct(run.idle_ms, 95)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="a loaded SQLite data dir")
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--trees", default="src", help="comma-separated src dirs to compare")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", type=float, default=5.0, help="reads per second meanwhile")
    parser.add_argument("--idle-cpu", type=float, default=0.1, help="share of one core")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--min-watch",
        type=float,
        default=20.0,
        help="seconds watched at least (the detector "
        "task's first scan starts scan_interval_seconds after start)",
    )
    parser.add_argument("--idle-reads", type=int, default=50, help="reads measured once idle")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="at most 840")
    parser.add_argument("--trace", action="store_true", help="print the per-second samples")
    args = parser.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees.split(",")]
    pids = patient_ids(args.data)
    load = os.getloadavg()
    print(
        f"Python {sys.version.split()[0]}; {os.cpu_count()} cores; load {load[0]:.1f}; "
        f"{args.rate:g} reads/s after the first; idle: CPU < {args.idle_cpu:g} core for "
        f"{args.idle_seconds:g} s",
        flush=True,
    )
    print(
        "| tree | ready s | first ms | idle after s | CPU to first s | CPU busy s | "
        "peak RSS MiB | end RSS MiB | reads while busy: n p50/p95 ms | "
        "reads once idle: n p50/p95 ms |\n|---|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    runs: list[Run] = []
    for _ in range(args.rounds):
        for tree in trees:
            run = one_run(tree, args, pids)
            runs.append(run)
            print(row(run), flush=True)
            if args.trace:
                for t, share, rss in run.trace:
                    print(f"    t={t:6.1f}s cpu={share:5.2f} rss={rss:7.1f} MiB", flush=True)
    print(f"load afterwards {os.getloadavg()[0]:.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))


if __name__ == "__main__":
    main()
