"""bench_crypto.py's sections 3 and 4: create / read / search over HTTP with encryption on
and off, and where a served Patient create's CPU goes, stage by stage (bench_crypto.py's
description has what each measures and reports)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import NamedTuple
from urllib.parse import quote

import orjson

import stages  # beside this script
from crypto_dirs import prepare_dir  # beside this script
from phivault.benchmark.loadgen import LoadResult, run_load_in_process
from phivault.benchmark.servers import free_port, wait_ready
from phivault.benchmark.workloads import Cycle, create, create_clinic_mix, gets
from phivault.demo.clinic import ClinicSpec, generate_clinic

BIN = Path(sys.executable).parent
TARGET = 0.85  # issue #4: encrypted throughput at least this share of unencrypted


# --- 3. HTTP, encryption on and off ---------------------------------------------------------


def start_server(
    data: Path, key_file: Path, encryption: bool, stage_file: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """crypto_app under uvicorn; `stage_file`: account CPU per stage there (stages.py)."""
    port = free_port()
    env = dict(
        os.environ,
        BENCH_DATA=str(data),
        BENCH_KEY_FILE=str(key_file),
        BENCH_ENCRYPTION="1" if encryption else "0",
    )
    if stage_file is not None:
        env["BENCH_STAGES"] = str(stage_file)
    server = subprocess.Popen(
        [str(BIN / "uvicorn"), "crypto_app:create", "--factory", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--no-server-header",
         "--app-dir", str(Path(__file__).parent)],
        env=env,
    )  # fmt: skip
    wait_ready(port, "/fhir/metadata", proc=server)
    return server, port


def workloads(patients: int, requests: int) -> dict[str, tuple[Cycle, int]]:
    clinic = list(generate_clinic(ClinicSpec(patients=patients, seed=1)))
    people = [r for r in clinic if r["resourceType"] == "Patient"]
    observation = next(r for r in clinic if r["resourceType"] == "Observation")
    observations = []
    for i, person in enumerate(people[:200]):
        body = {k: v for k, v in observation.items() if k not in ("id", "encounter")}
        body["subject"] = {"reference": f"Patient/{person['id']}"}
        body["valueQuantity"] = {**body.get("valueQuantity", {}), "value": 60 + i % 40}
        observations.append(orjson.dumps(body))
    families = sorted({p["name"][0]["family"] for p in people})
    return {
        "create Patient": (create(500), requests),
        "create Observation": (
            Cycle([("POST", "/fhir/Observation", b) for b in observations]),
            requests,
        ),
        "create, clinic mix": (create_clinic_mix(patients), requests),
        "read": (gets([f"/fhir/Patient/{p['id']}" for p in people]), requests * 2),
        "search": (gets([f"/fhir/Patient?family={quote(f)}" for f in families]), requests),
    }


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HttpRun(NamedTuple):
    best: dict[str, dict[str, LoadResult]]
    """The best result per side ("on", "off") and op."""
    cpu_us: dict[str, dict[str, float]]
    """The server's CPU µs per request per side and op, over every round."""
    round_ratios: dict[str, list[float]]
    """Per op, each round's on/off requests/s: the two sides of a round ran back to
    back, so drift of the shared machine between rounds cancels out of each ratio."""


def bench_http(args: argparse.Namespace, work: Path, backend: str) -> HttpRun:
    servers: dict[bool, tuple[subprocess.Popen[bytes], int]] = {}
    best: dict[str, dict[str, LoadResult]] = {"on": {}, "off": {}}
    cpu: dict[str, dict[str, float]] = {"on": {}, "off": {}}
    done: dict[str, dict[str, int]] = {"on": {}, "off": {}}
    ratios: dict[str, list[float]] = {}
    try:
        for encryption in (True, False):
            data, key_file = prepare_dir(work, backend, encryption, args.patients)
            servers[encryption] = start_server(data, key_file, encryption)
        jobs = workloads(args.patients, args.requests)
        for round_no in range(args.rounds):
            for op, (make, total) in jobs.items():
                order = (True, False) if round_no % 2 == 0 else (False, True)
                rates: dict[str, float] = {}
                for encryption in order:
                    server, port = servers[encryption]
                    name = "on" if encryption else "off"
                    began = server_cpu_seconds(server.pid)
                    result = run_load_in_process(port, make, total, args.concurrency)
                    used = server_cpu_seconds(server.pid) - began
                    cpu[name][op] = cpu[name].get(op, 0.0) + used
                    done[name][op] = done[name].get(op, 0) + result.requests
                    rates[name] = result.rate
                    side = best[name]
                    if op not in side or result.rate > side[op].rate:
                        side[op] = result
                if rates["off"]:
                    ratios.setdefault(op, []).append(rates["on"] / rates["off"])
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    per_request = {
        name: {op: used * 1e6 / max(1, done[name][op]) for op, used in ops.items()}
        for name, ops in cpu.items()
    }
    return HttpRun(best, per_request, ratios)


def bench_stages(args: argparse.Namespace, work: Path, backend: str) -> dict[str, dict[str, float]]:
    """Section 4: CPU µs per stage of a Patient create over HTTP, per side ("on", "off"):
    `--stages` creates per side on servers of their own, in `--rounds` alternating rounds."""
    servers: dict[bool, tuple[subprocess.Popen[bytes], int]] = {}
    files = {
        encryption: work / f"stages-{backend}-{encryption}.json" for encryption in (True, False)
    }
    try:
        for encryption in (True, False):
            data, key_file = prepare_dir(
                work, f"{backend}-stages", encryption, args.patients, backend
            )
            servers[encryption] = start_server(data, key_file, encryption, files[encryption])
        make, _ = workloads(args.patients, args.stages)["create Patient"]
        for round_no in range(args.rounds):
            for encryption in (True, False) if round_no % 2 == 0 else (False, True):
                port = servers[encryption][1]
                run_load_in_process(port, make, args.stages // args.rounds, args.concurrency)
    finally:
        for server, _ in servers.values():
            server.terminate()  # uvicorn shuts down: the app's lifespan writes the stage file
            server.wait(timeout=30)
    return {
        "on" if encryption else "off": stages.per_request_us(path)
        for encryption, path in files.items()
    }


def stages_section(
    args: argparse.Namespace, work: Path, lines: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Section 4 per backend: its table appended to `lines`; per backend and side, CPU µs
    per create of each stage."""
    lines += [
        "",
        f"## Where a Patient create's CPU goes over HTTP ({args.stages} creates per side, "
        f"{args.concurrency} connections; thread CPU µs per create of each stage, stages nest)",
        "",
        "| backend | stage | on | off | on - off |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    found: dict[str, dict[str, dict[str, float]]] = {}
    for backend in args.backends.split(","):
        sides = found[backend] = bench_stages(args, work, backend)
        for stage, on in sides["on"].items():
            off = sides["off"][stage]
            lines.append(f"| {backend} | {stage} | {on:,.0f} | {off:,.0f} | {on - off:+,.0f} |")
    return found


def http_section(
    args: argparse.Namespace, work: Path, lines: list[str]
) -> dict[str, dict[str, dict[str, object]]]:
    """Section 3: HTTP create/read/search, encryption on and off, per backend."""
    lines += [
        "",
        f"## HTTP, encryption on vs off (demo clinic {args.patients} patients, "
        f"{args.concurrency} connections, one worker, {args.rounds} alternating rounds)",
        "",
        "req/s and latencies: the best round per side; on/off: of those bests. Per round: "
        "each round's on/off (its two sides ran back to back), their median and range; the "
        "target flag follows the median. Server CPU: µs per request of the server process "
        "(all rounds); CPU off/on is the throughput ratio the CPU cost alone allows.",
        "",
        "| backend | op | on req/s | off req/s | on/off | per round median | range "
        "| on CPU µs | off CPU µs | CPU off/on "
        "| on p50 ms | off p50 ms | on p99 ms | off p99 ms | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    http: dict[str, dict[str, dict[str, object]]] = {}
    for backend in args.backends.split(","):
        run = bench_http(args, work, backend)
        for op, on in run.best["on"].items():
            off = run.best["off"][op]
            ratio = on.rate / off.rate if off.rate else 0.0
            rounds = run.round_ratios.get(op, [])
            typical = median(rounds) if rounds else 0.0
            flag = "" if op == "search" or typical >= TARGET else " (below target)"
            cpu_on, cpu_off = run.cpu_us["on"][op], run.cpu_us["off"][op]
            cpu_ratio = cpu_off / cpu_on if cpu_on else 0.0
            spread = f"{min(rounds):.2f}-{max(rounds):.2f}" if rounds else ""
            lines.append(
                f"| {backend} | {op} | {on.rate:,.0f} | {off.rate:,.0f} | {ratio:.2f} | "
                f"{typical:.2f}{flag} | {spread} | {cpu_on:,.0f} | {cpu_off:,.0f} | {cpu_ratio:.2f} | "
                f"{on.pct(50):.1f} | {off.pct(50):.1f} | {on.pct(99):.1f} | {off.pct(99):.1f} | "
                f"{on.errors + off.errors} |"
            )
            http.setdefault(backend, {})[op] = {
                "on": on.rate,
                "off": off.rate,
                "ratio": ratio,
                "round_ratios": rounds,
                "round_ratio_median": typical,
                "cpu_us_on": cpu_on,
                "cpu_us_off": cpu_off,
                "errors": on.errors + off.errors,
            }
    return http
