"""The figures of the component benches (bench/bench_*.py of the audit, encryption, backup,
search and access-control work), collected into the one report.

`run` runs each in a quick size (minutes, not the hour their full sizes take) and reads
the JSON it writes to bench/results/; `read` only reads what an earlier run left there
(with the file's time, so a stale figure is visible as such). The scripts live in the
source checkout's bench/ directory, not in the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 1200


@dataclass(frozen=True)
class Component:
    name: str
    script: str
    result: str
    quick_args: tuple[str, ...]
    uses_pg: bool = False


COMPONENTS = (
    Component(
        "audit", "bench_audit.py", "audit.json",
        ("--threads", "64", "--appends", "6000", "--verify-entries", "50000",
         "--proof-sizes", "100000", "--pymerkle-entries", "5000", "--rounds", "1"),
        uses_pg=True,
    ),
    Component(
        "encryption", "bench_crypto.py", "crypto.json",
        ("--patients", "200", "--requests", "1000", "--rounds", "4", "--write-creates", "400",
         "--read-requests", "20000"),
        uses_pg=True,
    ),
    # p95 at 300 requests x 3 rounds moved by 20 points between runs: the size the
    # issue's figures are judged at (under a minute).
    Component("access control", "bench_access.py", "access.json",
              ("--patients", "300", "--requests", "600", "--rounds", "8")),
    Component("search", "bench_search.py", "search.json",
              ("--patients", "300", "--requests", "80"), uses_pg=True),
    Component("backup", "bench_backup.py", "backup.json", ("--patients", "300",)),
)  # fmt: skip


def find_bench_dir() -> Path | None:
    """bench/ of the source checkout: the working directory's, else the package's."""
    for candidate in (Path.cwd() / "bench", Path(__file__).resolve().parents[3] / "bench"):
        if (candidate / "bench_audit.py").exists():
            return candidate
    return None


def _pg_args(component: Component, backends: tuple[str, ...]) -> list[str]:
    if not component.uses_pg or "postgresql" in backends:
        return []
    return ["--skip-pg"] if component.script == "bench_audit.py" else ["--backends", "sqlite"]


def collect(
    mode: str, bench_dir: Path | None, backends: tuple[str, ...], pg_url: str | None, log: Any
) -> dict[str, dict[str, Any]]:
    """{component: {"status", "when", "figures"}} for mode "run" or "read"."""
    found: dict[str, dict[str, Any]] = {}
    if mode == "skip":
        return found
    if bench_dir is None:
        return {
            c.name: {"status": "bench/ not found (run from a source checkout)"} for c in COMPONENTS
        }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if pg_url:
        env["PHIVAULT_BENCH_PG"] = pg_url
    for component in COMPONENTS:
        out = bench_dir / "results" / component.result
        entry: dict[str, Any] = {"script": f"bench/{component.script}"}
        if mode == "run":
            args = [*component.quick_args, *_pg_args(component, backends)]
            entry["args"] = " ".join(args)
            log(f"[components] {component.script} {entry['args']} ...")
            started = time.perf_counter()
            try:
                done = subprocess.run(  # noqa: S603 (our own interpreter and scripts)
                    [sys.executable, str(bench_dir / component.script), *args],
                    env=env, cwd=bench_dir.parent, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                found[component.name] = {**entry, "status": f"timed out after {TIMEOUT_S} s"}
                continue
            entry["seconds"] = round(time.perf_counter() - started, 1)
            if done.returncode != 0:
                tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
                found[component.name] = {**entry, "status": f"failed: {' '.join(tail)[:200]}"}
                continue
        if not out.exists():
            found[component.name] = {**entry, "status": "no results (run with --components run)"}
            continue
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(out.stat().st_mtime))
        figures = json.loads(out.read_text(encoding="utf-8"))
        found[component.name] = {**entry, "status": "ok", "when": when, "figures": figures}
    return found
