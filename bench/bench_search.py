"""Search latency on a demo clinic, each figure next to a baseline measured in the same run.

    .venv/bin/python bench/bench_search.py [--patients 2000] [--full] [--requests 200]
                                           [--backends sqlite,postgresql] [--keep DIR]

For each backend: `phivault init` + `phivault demo --patients N` (the real CLI), then
`phivault serve` on loopback, then sequential GETs on one keep-alive connection (the
latency one client sees; no queueing): a plain read by id (the baseline), Patient by
identifier, Patient by family-name prefix, Patient by family name with `:exact` (with
encryption on, re-checked after decryption), Observation by patient + code + date range,
Observation by patient with `_include` of the subject, and `$everything` when the server
has it. Search values come from the deterministic demo generator (seed 1), chosen at
random (seeded) among the clinic's patients. `--full` loads 100,000 patients (about a
million resources: loading takes a long time). Results: a markdown table on stdout and
bench/results/search.json.

A second run with the same `--keep DIR` reuses the loaded clinic (and its PostgreSQL
schema). `serve` does start-up work over the whole clinic (the detectors replay the audit
log) while it already answers; `--idle-wait S` waits up to S seconds, before the first
row, until the server has used under 5% of a core for 15 s (longer than the detectors'
5 s between scans, so the first scan is not missed; cold figures: leave it at 0).
Each row also gives the server's CPU time per request (from /proc), which a busy machine
disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from phivault.demo.clinic import ClinicSpec, generate_clinic

BIN = Path(sys.executable).parent
PG_URL = os.environ.get("PHIVAULT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
MRN = "http://phivault.example/mrn"


@dataclass
class Subject:
    pid: str
    mrn: str
    family: str
    code: str  # an Observation code this patient has
    since: str  # a date before some of that patient's observations of that code


def subjects(patients: int) -> list[Subject]:
    """Search values of every patient that has an observation, from the demo generator."""
    found: dict[str, Subject] = {}
    people: dict[str, tuple[str, str]] = {}
    for r in generate_clinic(ClinicSpec(patients=patients, seed=1)):
        if r["resourceType"] == "Patient":
            mrn = next(i["value"] for i in r["identifier"] if i.get("system") == MRN)
            people[r["id"]] = (mrn, r["name"][0]["family"])
        elif r["resourceType"] == "Observation" and r.get("effectiveDateTime"):
            pid = r["subject"]["reference"].split("/", 1)[1]
            if pid in people and pid not in found:
                code = r["code"]["coding"][0]["code"]
                since = str(int(r["effectiveDateTime"][:4]) - 1)
                found[pid] = Subject(pid, people[pid][0], people[pid][1], code, since)
    return list(found.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not start")


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"accept": "application/fhir+json", "authorization": f"Bearer {token}"}

    def get(self, path: str) -> tuple[int, float]:
        start = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        res = self.conn.getresponse()
        res.read()
        return res.status, (time.perf_counter() - start) * 1000


def measure(client: Client, paths: list[str], warmup: int = 20) -> list[float] | None:
    for path in paths[:warmup]:
        status, _ = client.get(path)
        if status == 404 and "$everything" in path:
            return None
        if status != 200:
            raise RuntimeError(f"HTTP {status} for {path.split('?')[0]}")
    timings = []
    for path in paths:
        status, ms = client.get(path)
        if status != 200:
            raise RuntimeError(f"HTTP {status} for {path.split('?')[0]}")
        timings.append(ms)
    return timings


def q(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs, quote_via=quote)


QUERIES: dict[str, Callable[[Subject], str]] = {
    "baseline: read Patient by id": lambda s: f"/fhir/Patient/{s.pid}",
    "Patient by identifier": lambda s: "/fhir/Patient?" + q([("identifier", f"{MRN}|{s.mrn}")]),
    "Patient by family prefix (3 letters)": lambda s: (
        "/fhir/Patient?" + q([("family", s.family[:3])])
    ),
    # Encrypted: the family name's prefix tokens select the candidates, and each is
    # decrypted and its name compared as written (service/search.py, the re-check).
    "Patient by family name, :exact": lambda s: "/fhir/Patient?" + q([("family:exact", s.family)]),
    "Observation by patient+code+date": lambda s: (
        "/fhir/Observation?"
        + q([("patient", s.pid), ("code", f"http://loinc.org|{s.code}"), ("date", f"ge{s.since}")])
    ),
    "Observation by patient, _include subject": lambda s: (
        "/fhir/Observation?" + q([("patient", s.pid), ("_include", "Observation:subject")])
    ),
    "Patient $everything": lambda s: f"/fhir/Patient/{s.pid}/$everything",
}


def issue_token(cli: list[str], data: Path, key: Path) -> str:
    """A system token, as a script gets one (every FHIR route needs a bearer token)."""
    out = subprocess.run(
        [*cli, "token", "issue", "--data", str(data), "--key-file", str(key),
         "--client", "bench-search", "--scope", "system/*.rs", "--lifetime", "900"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def bench_backend(
    backend: str, args: argparse.Namespace, work: Path, people: list[Subject], schemas: list[str]
) -> dict[str, list[float] | None]:
    data, key = work / f"data-{backend}", work / f"{backend}.key"
    cli = [str(BIN / "phivault")]
    if not (data / "keys.json").exists():
        db = []
        if backend == "postgresql":
            schemas.append(f"bench_search_{uuid.uuid4().hex[:8]}")
            db = ["--db", f"{PG_URL}?schema={schemas[-1]}"]
        run([*cli, "init", "--data", str(data), "--generate-key-file", str(key), *db])
        start = time.time()
        print(f"[{backend}] loading the demo clinic ({args.patients} patients) ...", flush=True)
        run(
            [
                *cli,
                "demo",
                "--data",
                str(data),
                "--key-file",
                str(key),
                "--patients",
                str(args.patients),
            ]
        )
        print(f"[{backend}] loaded in {time.time() - start:.0f} s", flush=True)
    print(f"[{backend}] {stored_size(backend, data, schemas)}", flush=True)
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--data", str(data), "--key-file", str(key), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    results: dict[str, list[float] | None] = {}
    try:
        started = time.time()
        wait_ready(port)
        print(f"[{backend}] serve answered after {time.time() - started:.0f} s", flush=True)
        client = Client(port, issue_token(cli, data, key))
        if args.idle_wait > 0:
            waited, busy = wait_idle(server.pid, args.idle_wait)
            print(
                f"[{backend}] waited {waited:.0f} s for an idle server "
                f"({busy:.0f} s of server CPU meanwhile)",
                flush=True,
            )
        rng = random.Random(7)
        for name, make in QUERIES.items():
            sample = [rng.choice(people) for _ in range(args.requests)]
            before = cpu_seconds(server.pid)
            results[name] = measure(client, [make(s) for s in sample])
            spent = (cpu_seconds(server.pid) - before) / (args.requests + 20) * 1000
            print(f"[{backend}] {name}: server CPU {spent:.1f} ms per request", flush=True)
        print(f"[{backend}] server peak RSS {peak_rss_mib(server.pid)} MiB", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, limit: float, window: float = 15.0) -> tuple[float, float]:
    """Wait (at most `limit` s) until the process used under 5% of a core over `window`
    seconds; (seconds waited, CPU seconds it used meanwhile)."""
    start, first = time.time(), cpu_seconds(pid)
    last = first
    while time.time() - start < limit:
        time.sleep(window)
        now = cpu_seconds(pid)
        if now - last < 0.05 * window:
            break
        last = now
    return time.time() - start, cpu_seconds(pid) - first


def peak_rss_mib(pid: int) -> str:
    """The server process's peak resident set (VmHWM), as the issue's memory target counts it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:,.0f}"
    except OSError:
        pass
    return "unknown"


def stored_size(backend: str, data: Path, schemas: list[str]) -> str:
    """How many resources are stored, and the database's size on disk."""
    if backend == "postgresql":
        import psycopg

        schema = schemas[-1] if schemas else _schema_of(data)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            count = conn.execute(f'SELECT COUNT(*) FROM "{schema}".resources').fetchone()
            size = conn.execute(
                "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
                (schema,),
            ).fetchone()
        rows, total = int(count[0]) if count else 0, int(size[0] or 0) if size else 0
        return f"{rows} resources, schema {schema}: {total / 1e9:.2f} GB (tables, indexes, TOAST)"
    import sqlite3

    from phivault.store.factory import SQLITE_FILE

    total = sum(f.stat().st_size for f in data.glob(f"{SQLITE_FILE}*"))  # with -wal, -shm
    with sqlite3.connect(f"file:{data / SQLITE_FILE}?mode=ro", uri=True) as conn:
        rows = int(conn.execute("SELECT COUNT(*) FROM resources").fetchone()[0])
    return f"{rows} resources, {total / 1e9:.2f} GB on disk"


def _schema_of(data: Path) -> str:
    """The schema of a kept PostgreSQL data directory (its config names the db URL)."""
    from phivault.config import load_settings

    url = load_settings(data).db_url or ""
    return dict(p.split("=", 1) for p in url.split("?", 1)[-1].split("&") if "=" in p)["schema"]


def drop_schemas(schemas: list[str]) -> None:
    if not schemas:
        return
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--full", action="store_true", help="100,000 patients")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--keep", type=Path, default=None, help="reuse/keep data in this dir")
    parser.add_argument(
        "--idle-wait", type=float, default=0.0, help="wait up to S s for an idle server"
    )
    args = parser.parse_args()
    if args.full:
        args.patients = 100_000
    people = subjects(args.patients)
    table: dict[str, dict[str, list[float] | None]] = {}
    schemas: list[str] = []
    with tempfile.TemporaryDirectory(prefix="phivault-bench-search-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            for backend in args.backends.split(","):
                table[backend] = bench_backend(backend, args, work, people, schemas)
        finally:
            if args.keep is None:
                drop_schemas(schemas)
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; demo clinic of {args.patients} patients; "
        f"{args.requests} sequential requests per row over one keep-alive connection",
        "",
        "| backend | request | p50 ms | p95 ms | p95 / baseline p95 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    out: dict[str, dict[str, dict[str, float] | None]] = {}
    for backend, results in table.items():
        base = results["baseline: read Patient by id"]
        assert base is not None
        for name, timings in results.items():
            if timings is None:
                lines.append(f"| {backend} | {name} | n/a | n/a | (not available) |")
                out.setdefault(backend, {})[name] = None
                continue
            p50, p95 = pct(timings, 50), pct(timings, 95)
            lines.append(
                f"| {backend} | {name} | {p50:.1f} | {p95:.1f} | {p95 / pct(base, 95):.1f}x |"
            )
            out.setdefault(backend, {})[name] = {"p50": p50, "p95": p95, "n": len(timings)}
    print("\n".join(lines))
    results_dir = Path(__file__).parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "search.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
