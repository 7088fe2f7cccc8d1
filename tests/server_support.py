"""The real `phivault serve` in a subprocess, for tests that kill, starve or cut it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.cli.audit_support import PHIVAULT, free_port, run, subprocess_env

START_TIMEOUT_S = 90.0  # a ceiling for a loaded machine, not a speed check


def init_data_dir(tmp: Path, db_url: str | None) -> tuple[Path, Path]:
    data, key = tmp / "data", tmp / "kek.key"
    args = ["init", "--data", str(data), "--generate-key-file", str(key)]
    done = run(*args, *(["--db", db_url] if db_url else []))
    assert done.returncode == 0, done.stderr
    return data, key


def issue_token(data: Path, key: Path, scope: str, client: str = "resilience-test") -> str:
    issued = run(
        *("token", "issue", "--data", str(data), "--key-file", str(key)),
        *("--client", client, "--scope", scope),
    )
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.strip()


class Server:
    """One `phivault serve` process on a free port; `extra_env` sets PHIVAULT_* limits."""

    def __init__(
        self,
        data: Path,
        key: Path,
        *,
        extra_env: dict[str, str] | None = None,
        workers: int = 1,
        args: tuple[str, ...] = (),
    ) -> None:
        self.data = data
        self.args = args
        self.key = key
        self.extra_env = extra_env or {}
        self.workers = workers
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self) -> Server:
        args = ["serve", "--data", str(self.data), "--key-file", str(self.key)]
        self.process = subprocess.Popen(
            [
                *(str(PHIVAULT), *args, *self.args),
                *("--port", str(self.port), "--workers", str(self.workers)),
            ],
            env={**subprocess_env(), **self.extra_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"phivault serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("phivault serve did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a power cut of the process. With
        several workers, every worker process is killed first, then the supervisor."""
        if self.process is not None and self.process.poll() is None:
            for child in _children(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc), e.g. uvicorn's worker processes."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
