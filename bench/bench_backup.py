"""Backups: phivault versus borg and restic on the same demo-clinic data directory.

What a clinic would do with each: back up the data directory. One run measures, for each
tool: full backup time, incremental time after 1% of the patients changed, repository
size, restore time and full verify time (phivault `backup verify --full`, `borg check
--verify-data`, `restic check --read-data`).

    python bench/bench_backup.py                      # 2,000 patients (~20,000 resources)
    python bench/bench_backup.py --patients 100000    # ~1,000,000 resources (slow to load)
    python bench/bench_backup.py --million            # the same, named for the issue's target

borg and restic are the Debian packages (`apt-get install borgbackup restic`); the bench
installs them when it runs as root and they are missing, else skips them and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phivault.backup.keys import read_private_key
from phivault.backup.operations import backup_now, init_repository, open_repository
from phivault.backup.restore import restore_snapshot
from phivault.backup.verify import verify_repository
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.service import Context
from phivault.vault import Vault, init_data_dir, open_vault

CTX = Context(actor="bench-backup")
# borg/restic repositories of this throwaway bench get a fresh random passphrase.
PASSPHRASE = secrets.token_hex(16)


def _cpu() -> float:
    """CPU seconds of this process (every thread) and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(row: dict[str, float], name: str, fn: Callable[[], Any]) -> None:
    """Wall time into row[name_s] and CPU time into row[name_cpu_s]: on a shared machine
    the wall time follows the load, the CPU time much less."""
    cpu = _cpu()
    started = time.perf_counter()
    fn()
    row[f"{name}_s"] = time.perf_counter() - started
    row[f"{name}_cpu_s"] = _cpu() - cpu


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        list(args),
        check=False,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # borg exits 1 for warnings ("file changed while we backed it up"): the live WAL.
    if done.returncode not in (0, 1) or (done.returncode == 1 and args[0] != "borg"):
        raise RuntimeError(f"{args[0]} {args[1]} failed: {done.stderr.decode()[-500:]}")


def ensure_tools(wanted: list[str]) -> dict[str, bool]:
    have = {tool: shutil.which(tool) is not None for tool in wanted}
    if not all(have.values()) and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing borgbackup and restic (Debian packages)...", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "borgbackup", "restic"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        have = {tool: shutil.which(tool) is not None for tool in wanted}
    for tool, ok in have.items():
        if not ok:
            print(
                f"{tool} missing: apt-get install {'borgbackup' if tool == 'borg' else tool}",
                file=sys.stderr,
            )
    return have


def build_clinic(work: Path, patients: int) -> tuple[Path, Path]:
    data, key = work / "data", work / "kek.key"
    if (data / "keys.json").exists():  # --workdir of an earlier run: reuse its clinic
        for name in ("borg", "restic", "phivault-repo", "backup.key"):
            path = work / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        for restored in work.glob("restore-*"):
            shutil.rmtree(restored)
        (data / "backup.json").unlink(missing_ok=True)
        return data, key
    create_key_file(key)
    init_data_dir(data, KeyFileKeySource(key))
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        started = time.perf_counter()
        created = 0
        for stats in vault.service.import_resources(
            CTX, generate_clinic(ClinicSpec(patients=patients, seed=1)), batch_size=1000
        ):
            created = stats.created
        print(
            f"loaded {created} resources in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        vault.audit.checkpoint()
    finally:
        vault.close()
    return data, key


def change_one_percent(vault: Vault, patients: int) -> int:
    """Update 1% of the patients (a new version of each Patient resource)."""
    rng = random.Random(2)
    chosen = []
    for record in vault.store.iter_current("Patient"):
        chosen.append(record.rid)
    picked = rng.sample(chosen, max(1, len(chosen) // 100))
    updated = []
    for rid in picked:
        body = json.loads(vault.service.read(CTX, "Patient", rid).body or b"{}")
        body.pop("meta", None)
        body["telecom"] = [{"system": "phone", "value": f"555-{rng.randrange(10**7):07d}"}]
        updated.append(body)
    for _ in vault.service.import_resources(CTX, updated):
        pass
    return len(picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--million", action="store_true", help="~1,000,000 resources")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--tools",
        default="borg,restic",
        help="the tools compared with phivault, comma-separated ('' for phivault alone)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).parent / "results" / "backup.json",
        help="where the figures go as JSON (collected by `phivault bench`)",
    )
    args = parser.parse_args()
    patients = 100_000 if args.million else args.patients
    work = args.workdir or Path(tempfile.mkdtemp(prefix="phivault-bench-backup-"))
    work.mkdir(parents=True, exist_ok=True)
    tools = ensure_tools([t for t in args.tools.split(",") if t in ("borg", "restic")])
    data, key = build_clinic(work, patients)
    source = KeyFileKeySource(key)
    env = {
        "BORG_PASSPHRASE": PASSPHRASE,
        "RESTIC_PASSWORD": PASSPHRASE,
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }
    rows: dict[str, dict[str, float]] = {"phivault": {}}
    if tools.get("borg"):
        rows["borg"] = {}
        run("borg", "init", "--encryption=repokey-blake2", str(work / "borg"), env=env)
    if tools.get("restic"):
        rows["restic"] = {}
        run("restic", "init", "--repo", str(work / "restic"), env=env)

    vault = open_vault(data, source)
    init_repository(data, vault.keyring, str(work / "phivault-repo"), work / "backup.key")
    offline_key = read_private_key(work / "backup.key")

    def borg_create(name: str) -> None:
        run("borg", "create", f"{work / 'borg'}::{name}", str(data), env=env)

    def restic_backup() -> None:
        run("restic", "--repo", str(work / "restic"), "backup", str(data), env=env)

    try:
        size = sum(p.stat().st_size for p in data.iterdir() if p.is_file())
        print(f"data directory: {size / 1e6:.1f} MB", file=sys.stderr)
        timed(rows["phivault"], "full", lambda: backup_now(vault))
        if "borg" in rows:
            timed(rows["borg"], "full", lambda: borg_create("full"))
        if "restic" in rows:
            timed(rows["restic"], "full", restic_backup)
        changed = change_one_percent(vault, patients)
        print(f"changed {changed} patients", file=sys.stderr)
        timed(rows["phivault"], "incremental", lambda: backup_now(vault))
        if "borg" in rows:
            timed(rows["borg"], "incremental", lambda: borg_create("incremental"))
        if "restic" in rows:
            timed(rows["restic"], "incremental", restic_backup)
    finally:
        vault.close()

    repo = open_repository(data)
    rows["phivault"]["repo_mb"] = du(work / "phivault-repo") / 1e6
    timed(
        rows["phivault"],
        "restore",
        lambda: restore_snapshot(repo, offline_key, work / "restore-phivault"),
    )
    timed(rows["phivault"], "verify", lambda: verify_repository(repo, offline_key, full=True))
    if "borg" in rows:
        rows["borg"]["repo_mb"] = du(work / "borg") / 1e6
        target = work / "restore-borg"
        target.mkdir()
        timed(
            rows["borg"],
            "restore",
            lambda: subprocess.run(
                ["borg", "extract", f"{work / 'borg'}::incremental"],
                cwd=target,
                check=True,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
            ),
        )
        timed(
            rows["borg"],
            "verify",
            lambda: run("borg", "check", "--verify-data", str(work / "borg"), env=env),
        )
    if "restic" in rows:
        rows["restic"]["repo_mb"] = du(work / "restic") / 1e6
        timed(
            rows["restic"],
            "restore",
            lambda: run(
                "restic",
                "--repo",
                str(work / "restic"),
                "restore",
                "latest",
                "--target",
                str(work / "restore-restic"),
                env=env,
            ),
        )
        timed(
            rows["restic"],
            "verify",
            lambda: run("restic", "--repo", str(work / "restic"), "check", "--read-data", env=env),
        )

    print(f"\nphivault backup bench: {patients} patients, data directory {size / 1e6:.1f} MB")
    columns = ["full_s", "incremental_s", "repo_mb", "restore_s", "verify_s"]
    print(f"{'tool':10}" + "".join(f"{c:>15}" for c in columns))
    for tool, row in rows.items():
        print(f"{tool:10}" + "".join(f"{row.get(c, float('nan')):>15.2f}" for c in columns))
    cpu_columns = ["full_cpu_s", "incremental_cpu_s", "restore_cpu_s", "verify_cpu_s"]
    print("CPU seconds (this process's threads, or the tool's process):")
    print(f"{'tool':10}" + "".join(f"{c:>18}" for c in cpu_columns))
    for tool, row in rows.items():
        print(f"{tool:10}" + "".join(f"{row.get(c, float('nan')):>18.2f}" for c in cpu_columns))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ratio = rows["phivault"]["incremental_s"] / rows["phivault"]["full_s"]
    print(f"phivault incremental / full: {ratio:.0%}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "patients": patients,
                "bytes": size,
                "tools": {tool: ok for tool, ok in tools.items()},
                "rows": rows,
            },
            indent=2,
        )
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
