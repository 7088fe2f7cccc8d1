"""Authorization overhead: read and search latency with the access policy on vs off,
measured in the same run on this machine.

    .venv/bin/python bench/bench_access.py [--patients 300] [--requests 600] [--rounds 8]
        [--concurrency 8] [--consents 0]

Three app instances over identical demo clinics (same seed, separate data directories so
that their audit writes never contend), each under uvicorn in its own process
(bench/access_app.py): `create_app` with `access=` (bearer tokens, the policy); the same
with the bearer tokens checked but a policy that allows everything ("policy off": what
the policy alone adds is measured against it); and without `access=` ("off": no token, no
policy, every caller trusted). The load generator runs in a fourth process
(phivault.benchmark.loadgen). Measured with two callers: a clinician user token
(care-relationship filtering) and a system token (backend client), each against the
policy and the policy-off app. `--consents N` gives N of the clinician's patients an
active Consent that denies the mental-health category (every clinic alike): the policy
then decides those patients' resources one by one, and every search asks which patients
have a Consent.

Interleaved, so that drift and the load of other processes hit every side alike: each
round runs every workload once per caller, the callers' order rotating from round to
round. Reported per workload and caller: p50 and p95 of all rounds pooled, the pooled p95
against the pooled off p95 (and, for a caller under the policy, against the same caller
with the policy off), and the median (with the range) of the per-round ratios p95(on) /
p95(off) of the same round, which a burst of outside load in one round cannot move. Also
the server's CPU time per request (its process's user + system time over the run, from
/proc): on a machine shared with other work, the sturdiest figure of what authorization
costs, since waiting for a core does not count in it. Results: a markdown table on stdout
and bench/results/access.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypeVar

from phivault.access import clients
from phivault.access.runtime import AccessControl
from phivault.benchmark.loadgen import LoadResult, run_load_in_process
from phivault.benchmark.servers import free_port, wait_ready
from phivault.benchmark.workloads import Cycle, gets
from phivault.crypto.kek import KeyFileKeySource
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.service import Context
from phivault.vault import open_vault

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TARGET = 15.0  # percent, at p95
POLICY_OFF = ", policy off"  # the label suffix of a caller served with the policy off
# The three clinics: their name and their BENCH_ACCESS mode (bench/access_app.py).
SIDES = (("on", "1"), ("token", "token"), ("off", "0"))
T = TypeVar("T")


def callers_of(
    sides: dict[str, T], issued: dict[str, dict[str, str]]
) -> list[tuple[str, T, str | None]]:
    """(caller, where it is served, its token): off without one, then every issued token
    under the policy ("on") and with the policy off ("token")."""
    return [
        ("off", sides["off"], None),
        *((caller, sides["on"], token) for caller, token in issued["on"].items()),
        *(
            (caller + POLICY_OFF, sides["token"], token)
            for caller, token in issued["token"].items()
        ),
    ]


def load(make: Cycle, total: int, concurrency: int, port: int, token: str | None) -> LoadResult:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return run_load_in_process(port, make, total, concurrency, headers)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    make: Cycle, total: int, concurrency: int, server: tuple[int, int], token: str | None
) -> tuple[LoadResult, float | None]:
    """One run and the server's CPU milliseconds per request during it."""
    pid, port = server
    before = cpu_seconds(pid)
    found = load(make, total, concurrency, port, token)
    after = cpu_seconds(pid)
    if before is None or after is None or not found.requests:
        return found, None
    return found, (after - before) * 1000 / found.requests


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


ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def add_consents(data: Path, key: Path, patients: list[str]) -> None:
    """An active Consent per patient denying mental-health (PSY labelled) data."""
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        for patient in patients:
            consent = {
                "resourceType": "Consent",
                "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": f"Patient/{patient}"},
                "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
                "provision": {"type": "permit", "provision": [
                    {"type": "deny", "securityLabel": [{"system": ACT_CODE, "code": "PSY"}]}
                ]},
            }  # fmt: skip
            vault.service.create(Context(actor="bench-setup"), "Consent", consent)
    finally:
        vault.close()


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


def serve(data: Path, key: Path, access: str) -> tuple[subprocess.Popen[bytes], int]:
    """`access`: "1" (tokens and the policy), "token" (tokens, the policy off) or "0"."""
    port = free_port()
    env = {
        **os.environ,
        "BENCH_DATA": str(data),
        "BENCH_KEY_FILE": str(key),
        "BENCH_ACCESS": access,
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
    parser.add_argument("--requests", type=int, default=600, help="per run (one caller)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--consents", type=int, default=0, help="the clinician's patients with a Consent"
    )
    args = parser.parse_args()
    args.load_before = _load()
    practitioner, mine, observations = clinic_facts(args.patients)
    workloads = {
        "read Observation/{id}": gets([f"/fhir/Observation/{o}" for o in observations]),
        "search Observation?subject=": gets(
            [f"/fhir/Observation?subject=Patient/{p}&_count=20" for p in mine]
        ),
        "search Condition (type-wide)": gets(["/fhir/Condition?_count=20"]),
    }
    results: dict[str, dict[str, list[LoadResult]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="phivault-bench-access-") as tmp:
        work = Path(tmp)
        dirs = {side: prepare(work, side, args.patients) for side, _ in SIDES}
        for data, key in dirs.values():
            add_consents(data, key, mine[: args.consents])
        issued = {side: tokens(*dirs[side], practitioner) for side in ("on", "token")}
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            for side, access in SIDES:
                procs[side] = serve(*dirs[side], access=access)
            server = {side: (proc.pid, port) for side, (proc, port) in procs.items()}
            callers = callers_of(server, issued)
            warm = max(200, args.requests // 5)
            for make in workloads.values():
                for _, (_, port), token in callers:
                    load(make, warm, args.concurrency, port, token)
            for round_no in range(args.rounds):
                shift = round_no % len(callers)
                order = callers[shift:] + callers[:shift]
                for name, make in workloads.items():
                    runs = results.setdefault(name, {})
                    for caller, where, token in order:
                        found, ms = measured(make, args.requests, args.concurrency, where, token)
                        runs.setdefault(caller, []).append(found)
                        if ms is not None:
                            cpu.setdefault(name, {}).setdefault(caller, []).append(ms)
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
    report(args, results, cpu, len(mine))


def _merged(runs: list[LoadResult]) -> LoadResult:
    return LoadResult.merged(runs)


def _round_ratios(runs: list[LoadResult], base: list[LoadResult]) -> list[float]:
    """p95 / off p95 of the same round, in percent over off."""
    pairs = zip(runs, base, strict=True)
    return [(r.pct(95) / b.pct(95) - 1) * 100 for r, b in pairs if b.pct(95)]


def _versus(
    runs: list[LoadResult],
    base: list[LoadResult],
    cpu: list[float] | None,
    cpu_base: list[float] | None,
) -> tuple[float, list[float], float | None]:
    """Pooled p95 over the base's, the per-round p95 ratios and the median server CPU over
    the base's, each in percent."""
    pooled, pooled_base = _merged(runs).pct(95), _merged(base).pct(95)
    over = (pooled / pooled_base - 1) * 100 if pooled_base else 0.0
    mine, theirs = _median(cpu), _median(cpu_base)
    cpu_over = (mine / theirs - 1) * 100 if mine and theirs else None
    return over, _round_ratios(runs, base), cpu_over


def _shown(found: tuple[float, list[float], float | None] | None) -> list[str]:
    """The cells of one comparison: pooled, per-round median [min, max], CPU."""
    if found is None:
        return ["", "", ""]
    over, ratios, cpu_over = found
    spread = ""
    if ratios:
        spread = (f"{statistics.median(ratios):+.1f}% "
                  f"[{min(ratios):+.1f}%, {max(ratios):+.1f}%]")  # fmt: skip
    return [f"{over:+.1f}%", spread, "-" if cpu_over is None else f"{cpu_over:+.1f}%"]


def _fields(prefix: str, found: tuple[float, list[float], float | None] | None) -> dict[str, Any]:
    if found is None:
        return {f"{prefix}_pct": None, f"round_{prefix}_pct": None,
                f"round_{prefix}_median_pct": None}  # fmt: skip
    over, ratios, _ = found
    return {
        f"{prefix}_pct": round(over, 1),
        f"round_{prefix}_pct": [round(r, 1) for r in ratios],
        f"round_{prefix}_median_pct": round(statistics.median(ratios), 1) if ratios else None,
    }


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, list[LoadResult]]],
    cpu: dict[str, dict[str, list[float]]],
    related: int,
) -> None:
    rows: list[dict[str, Any]] = []
    print(f"\n{args.patients} patients; the clinician cares for {related}, "
          f"{min(args.consents, related)} of them with a restricting Consent; "
          f"{args.requests} requests x {args.rounds} rounds per caller, interleaved, "
          f"concurrency {args.concurrency}; load average (1, 5, 15 min) "
          f"before: {args.load_before}, after: {_load()}\n")  # fmt: skip
    print(
        f'off: no token, no policy; "{POLICY_OFF[2:]}": the token checked, every '
        "interaction allowed; the others: the token and the policy, as `phivault serve`.\n"
    )
    print("| workload | caller | p50 ms | p95 ms | req/s | errors | server CPU ms/req (median) "
          "| p95 vs off (pooled) | per-round p95 vs off: median [min, max] | CPU vs off "
          "| p95 vs policy off (pooled) | per-round p95 vs policy off: median [min, max] "
          "| CPU vs policy off |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: |")  # fmt: skip
    for name, runs in results.items():
        costs = cpu.get(name, {})
        for caller, caller_runs in runs.items():
            merged = _merged(caller_runs)
            vs_off = vs_policy_off = None
            if caller != "off":
                vs_off = _versus(caller_runs, runs["off"], costs.get(caller), costs.get("off"))
            twin = caller + POLICY_OFF
            if twin in runs:
                vs_policy_off = _versus(caller_runs, runs[twin], costs.get(caller),
                                        costs.get(twin))  # fmt: skip
            cpu_ms = _median(costs.get(caller))
            cells = [f"{merged.pct(50):.2f}", f"{merged.pct(95):.2f}", f"{merged.rate:.0f}",
                     str(merged.errors), f"{cpu_ms or 0:.2f}"]  # fmt: skip
            off_cells = ["baseline", "", "baseline"] if caller == "off" else _shown(vs_off)
            cells += off_cells + _shown(vs_policy_off)
            print(f"| {name} | {caller} | " + " | ".join(cells) + " |")
            rows.append(
                {
                    "workload": name,
                    "caller": caller,
                    "p50_ms": round(merged.pct(50), 3),
                    "p95_ms": round(merged.pct(95), 3),
                    "rate": round(merged.rate, 1),
                    "errors": merged.errors,
                    **_fields("p95_overhead", vs_off),
                    **_fields("p95_vs_policy_off", vs_policy_off),
                    "server_cpu_ms_per_request": None if cpu_ms is None else round(cpu_ms, 3),
                    "server_cpu_overhead_pct": None
                    if vs_off is None or vs_off[2] is None
                    else round(vs_off[2], 1),
                    "server_cpu_vs_policy_off_pct": None
                    if vs_policy_off is None or vs_policy_off[2] is None
                    else round(vs_policy_off[2], 1),
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
                "consents": min(args.consents, related),
                "interleaved": True,
                "load_average_before": args.load_before,
                "load_average_after": _load(),
                "target_p95_overhead_pct": TARGET,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
