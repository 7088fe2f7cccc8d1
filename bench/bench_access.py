"""Authorization overhead: read and search latency with the access policy on vs off,
measured in the same run on this machine.

    .venv/bin/python bench/bench_access.py [--patients 300] [--requests 3000] [--concurrency 8]

Two app instances over identical demo clinics (same seed, separate data directories so
that their audit writes never contend): `create_app` with `access=` (bearer tokens, the
policy) and without it, each under uvicorn in its own process (bench/access_app.py). The
load generator runs in a third process (phivault.benchmark.loadgen). Measured with two callers: a
clinician user token (care-relationship filtering) and a system token (backend client).
Workloads alternate between the servers, round by round, so drift hits both alike.
Results: a markdown table on stdout and bench/results/access.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from phivault.access import clients
from phivault.access.runtime import AccessControl
from phivault.benchmark.loadgen import LoadResult, run_load_in_process
from phivault.benchmark.servers import free_port, wait_ready
from phivault.benchmark.workloads import Cycle, gets
from phivault.crypto.kek import KeyFileKeySource
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.vault import open_vault

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TARGET = 15.0  # percent, at p95


def load(make: Cycle, total: int, concurrency: int, port: int, token: str | None) -> LoadResult:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return run_load_in_process(port, make, total, concurrency, headers)


def clinic_facts(patients: int) -> tuple[str, list[str], list[str]]:
    """(the clinician with most related patients, their patients, those patients'
    Observation ids), as the policy sees relationships (CareTeam, Encounter)."""
    resources = list(generate_clinic(ClinicSpec(patients=patients, seed=1)))
    related: dict[str, set[str]] = {}
    for res in resources:
        patient = res.get("subject", {}).get("reference", "").removeprefix("Patient/")
        if res["resourceType"] == "CareTeam" and res.get("status") == "active":
            people = [p.get("member", {}).get("reference") for p in res.get("participant", [])]
        elif res["resourceType"] == "Encounter":
            people = [p.get("individual", {}).get("reference") for p in res.get("participant", [])]
        else:
            continue
        for who in people:
            if who and who.startswith("Practitioner/") and patient:
                related.setdefault(who, set()).add(patient)
    who, mine = max(related.items(), key=lambda item: len(item[1]))
    observations = [
        r["id"]
        for r in resources
        if r["resourceType"] == "Observation"
        and r.get("subject", {}).get("reference", "").removeprefix("Patient/") in mine
    ]
    return who, sorted(mine), observations


def prepare(work: Path, name: str, patients: int) -> tuple[Path, Path]:
    data, key = work / f"data-{name}", work / f"{name}.key"
    cli = str(BIN / "phivault")
    quiet = {"check": True, "stdout": subprocess.DEVNULL}
    subprocess.run([cli, "init", "--data", str(data), "--generate-key-file", str(key)], **quiet)
    subprocess.run(
        [cli, "demo", "--data", str(data), "--key-file", str(key),
         "--patients", str(patients), "--no-users"],
        **quiet,
    )  # fmt: skip
    return data, key


def tokens(data: Path, key: Path, practitioner: str) -> dict[str, str]:
    """A clinician user token (a session, as after a login) and a system token."""
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        access = AccessControl.for_service(vault.service, vault.keyring, token_lifetime=900)
        user, _ = access.users.add(
            "bench-clinician", os.urandom(12).hex() + "Aa1!", ["clinician"],
            practitioner=practitioner, mfa_required=False,
        )  # fmt: skip
        scope = "user/*.rs"
        session = access.sessions.open(user.user_id, None, scope, None)
        clinician, _ = access.user_token(session.session_id, user.user_id, None, scope)
        row = clients.register(access.store, "bench", clients.SCRIPT, "system/*.rs")
        system, _ = access.system_token(row.client_id, "system/*.rs", 900)
    finally:
        vault.close()
    return {"clinician": clinician, "system": system}


def serve(data: Path, key: Path, access: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_DATA": str(data),
        "BENCH_KEY_FILE": str(key),
        "BENCH_ACCESS": "1" if access else "0",
    }
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "uvicorn", "access_app:create", "--factory",
         "--app-dir", str(BENCH), "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_ready(port, "/fhir/metadata", proc=proc)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    practitioner, mine, observations = clinic_facts(args.patients)
    workloads = {
        "read Observation/{id}": gets([f"/fhir/Observation/{o}" for o in observations]),
        "search Observation?subject=": gets(
            [f"/fhir/Observation?subject=Patient/{p}&_count=20" for p in mine]
        ),
        "search Condition (type-wide)": gets(["/fhir/Condition?_count=20"]),
    }
    results: dict[str, dict[str, list[LoadResult]]] = {}
    with tempfile.TemporaryDirectory(prefix="phivault-bench-access-") as tmp:
        work = Path(tmp)
        on_data, on_key = prepare(work, "on", args.patients)
        off_data, off_key = prepare(work, "off", args.patients)
        issued = tokens(on_data, on_key, practitioner)
        on, on_port = serve(on_data, on_key, access=True)
        off, off_port = serve(off_data, off_key, access=False)
        try:
            for name, make in workloads.items():
                warm = max(200, args.requests // 10)
                load(make, warm, args.concurrency, off_port, None)
                for caller in issued:
                    load(make, warm, args.concurrency, on_port, issued[caller])
                runs = results.setdefault(name, {})
                for _ in range(args.rounds):
                    runs.setdefault("off", []).append(
                        load(make, args.requests, args.concurrency, off_port, None)
                    )
                    for caller, token in issued.items():
                        runs.setdefault(caller, []).append(
                            load(make, args.requests, args.concurrency, on_port, token)
                        )
        finally:
            for proc in (on, off):
                proc.terminate()
                proc.wait(timeout=30)
    report(args, results, len(mine))


def _merged(runs: list[LoadResult]) -> LoadResult:
    latencies = [x for r in runs for x in r.latencies_ms]
    return LoadResult(
        sum(r.requests for r in runs),
        sum(r.errors for r in runs),
        sum(r.seconds for r in runs),
        latencies,
    )


def report(
    args: argparse.Namespace, results: dict[str, dict[str, list[LoadResult]]], related: int
) -> None:
    rows: list[dict[str, Any]] = []
    print(f"\n{args.patients} patients; the clinician cares for {related}; "
          f"{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}\n")  # fmt: skip
    print("| workload | caller | p50 ms | p95 ms | req/s | errors | p95 vs off |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in results.items():
        base = _merged(runs["off"])
        for caller, caller_runs in runs.items():
            merged = _merged(caller_runs)
            overhead = (merged.pct(95) / base.pct(95) - 1) * 100 if base.pct(95) else 0.0
            shown = "baseline" if caller == "off" else f"{overhead:+.1f}%"
            print(
                f"| {name} | {caller} | {merged.pct(50):.2f} | {merged.pct(95):.2f} | "
                f"{merged.rate:.0f} | {merged.errors} | {shown} |"
            )
            rows.append(
                {
                    "workload": name,
                    "caller": caller,
                    "p50_ms": round(merged.pct(50), 3),
                    "p95_ms": round(merged.pct(95), 3),
                    "rate": round(merged.rate, 1),
                    "errors": merged.errors,
                    "p95_overhead_pct": None if caller == "off" else round(overhead, 1),
                }
            )
    out = BENCH / "results" / "access.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": platform.platform(),
                "python": platform.python_version(),
                "patients": args.patients,
                "requests": args.requests,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "target_p95_overhead_pct": TARGET,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
