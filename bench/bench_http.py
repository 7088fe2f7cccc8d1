"""Create and read throughput over HTTP: phivault on SQLite and PostgreSQL, and the bare
Starlette + SQLite ceiling, all measured in the same run on this machine.

    .venv/bin/python bench/bench_http.py [--patients 200] [--requests 4000] [--concurrency 16]

The load generator runs in a separate process; each server runs as `phivault serve`
(one worker) or uvicorn for the ceiling. Results go to stdout as a markdown table and to
bench/results/http.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, run_load
from phivault.demo.clinic import ClinicSpec, generate_clinic

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_URL = os.environ.get("PHIVAULT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Post:
    path: str
    bodies: list[bytes]

    def __call__(self, i: int) -> tuple[str, str, bytes]:
        return "POST", self.path, self.bodies[i % len(self.bodies)]


@dataclass
class Get:
    paths: list[str]

    def __call__(self, i: int) -> tuple[str, str, bytes]:
        return "GET", self.paths[i % len(self.paths)], b""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def load(
    make: object, total: int, concurrency: int, port: int, token: str | None = None
) -> LoadResult:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        return pool.submit(run_load, "127.0.0.1", port, make, total, concurrency, headers).result()


def new_patients(count: int) -> list[bytes]:
    bodies = []
    for resource in generate_clinic(ClinicSpec(patients=count, seed=987)):
        if resource["resourceType"] == "Patient":
            body = dict(resource)
            body.pop("id", None)
            bodies.append(orjson.dumps(body))
    return bodies


def demo_patient_ids(patients: int) -> list[str]:
    return [
        r["id"]
        for r in generate_clinic(ClinicSpec(patients=patients, seed=1))
        if r["resourceType"] == "Patient"
    ]


def run(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def bench_phivault(backend: str, args: argparse.Namespace, work: Path) -> dict[str, LoadResult]:
    data, key = work / f"data-{backend}", work / f"{backend}.key"
    env = dict(os.environ)
    cli = [str(BIN / "phivault")]
    db = []
    if backend == "postgresql":
        db = ["--db", f"{PG_URL}?schema=bench_{uuid.uuid4().hex[:8]}"]
    run([*cli, "init", "--data", str(data), "--generate-key-file", str(key), *db], env)
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
        ],
        env,
    )
    # Every FHIR route needs a token: a backend client's, as a script would use.
    token = (
        subprocess.run(
            [
                *cli,
                "token",
                "issue",
                "--data",
                str(data),
                "--key-file",
                str(key),
                "--client",
                "bench",
                "--scope",
                "system/*.cruds",
                "--lifetime",
                "900",
            ],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--data", str(data), "--key-file", str(key), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, "/fhir/metadata")
        results = {
            "create": load(
                Post("/fhir/Patient", new_patients(500)),
                args.requests,
                args.concurrency,
                port,
                token,
            ),
            "read": load(
                Get([f"/fhir/Patient/{i}" for i in demo_patient_ids(args.patients)]),
                args.requests * 2,
                args.concurrency,
                port,
                token,
            ),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def bench_ceiling(args: argparse.Namespace, work: Path) -> dict[str, LoadResult]:
    port = free_port()
    env = dict(os.environ, CEILING_DB=str(work / "ceiling.db"))
    server = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            "ceiling_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--app-dir",
            str(Path(__file__).parent),
        ],
        env=env,
    )
    try:
        wait_port(port)
        patients = [orjson.loads(b) for b in new_patients(500)]
        # The ceiling's table has a primary key: every insert gets its own id.
        creates = Post(
            "/fhir/Patient",
            [
                orjson.dumps({**patients[i % len(patients)], "id": f"c{i}"})
                for i in range(args.requests)
            ],
        )
        results = {"create": load(creates, args.requests, args.concurrency, port)}
        results["read"] = load(
            Get([f"/fhir/Patient/c{i}" for i in range(min(args.requests, 2000))]),
            args.requests * 2,
            args.concurrency,
            port,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    table: dict[str, dict[str, LoadResult]] = {}
    with tempfile.TemporaryDirectory(prefix="phivault-bench-") as tmp:
        work = Path(tmp)
        table["bare Starlette+SQLite (ceiling)"] = bench_ceiling(args, work)
        for backend in args.backends.split(","):
            table[f"phivault {backend}"] = bench_phivault(backend, args, work)
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"demo clinic {args.patients} patients; {args.concurrency} connections; one server worker",
        "",
        "| server | op | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, results in table.items():
        for op, r in results.items():
            lines.append(
                f"| {name} | {op} | {r.rate:,.0f} | {r.pct(50):.1f} | {r.pct(95):.1f} | "
                f"{r.pct(99):.1f} | {r.errors} |"
            )
            out.setdefault(name, {})[op] = {
                "rate": r.rate,
                "p50": r.pct(50),
                "p95": r.pct(95),
                "p99": r.pct(99),
                "errors": r.errors,
            }
    print("\n".join(lines))
    results_dir = Path(__file__).parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "http.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
