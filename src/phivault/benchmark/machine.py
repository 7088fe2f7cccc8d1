"""The machine a bench ran on, as the report states it."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        return None
    return None


def revision() -> str | None:
    """The source checkout's commit, when phivault runs from one (else None)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    done = subprocess.run(  # noqa: S603 (fixed arguments)
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or None if done.returncode == 0 else None


def describe(pg_url: str | None = None) -> dict[str, Any]:
    mem = _proc_field("/proc/meminfo", "MemTotal")
    facts: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "ram_gib": round(int(mem.split()[0]) / 1024 / 1024, 1) if mem else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": None,
        "revision": revision(),
    }
    if pg_url:
        try:
            import psycopg

            with psycopg.connect(pg_url.split("?", 1)[0], connect_timeout=5) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                facts["postgresql"] = str(row[0]) if row else None
        except Exception:  # the version is a detail of the report, never a reason to stop
            facts["postgresql"] = "unknown"
    return facts
