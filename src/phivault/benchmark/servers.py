"""Server processes under test: `phivault serve` (every safeguard on), the unguarded bench
app (safeguards off) and the bare Starlette + SQLite ceiling, each in its own process
under uvicorn with the settings `serve` uses (no access log, warning logs; one worker,
except `phivault serve` when the bench asks for more)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from phivault.errors import BenchmarkFailed

UVICORN_FLAGS = ["--log-level", "warning", "--no-access-log", "--no-server-header"]
# The `phivault` command, run by this interpreter (no reliance on PATH).
PHIVAULT = [sys.executable, "-c", "from phivault.cli.main import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    def peak_rss_bytes(self) -> int | None:
        """The server's peak resident set (VmHWM), while it still runs (Linux only): with
        worker processes (`serve --workers N`), the sum over the supervisor and its
        workers."""
        pids = [self.proc.pid, *_children(self.proc.pid)]
        peaks = [peak for peak in map(_vm_hwm, pids) if peak is not None]
        return sum(peaks) if peaks else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _vm_hwm(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def _children(pid: int) -> list[int]:
    """Every descendant process of `pid` (Linux: /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            text = (task / "children").read_text(encoding="ascii")
        except OSError:
            continue
        for child in map(int, text.split()):
            found += [child, *_children(child)]
    return found


def wait_ready(
    port: int,
    path: str = "/fhir/metadata",
    timeout: float = 90.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Until `path` answers (any HTTP status); fails at once if `proc` exits."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}{path}"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchmarkFailed(f"a server under test exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise BenchmarkFailed(f"a server under test did not start within {timeout:.0f} s")


def _spawn(name: str, cmd: list[str], env: dict[str, str], path: str) -> ServerProcess:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
    )
    server = ServerProcess(name, proc, port)
    try:
        wait_ready(port, path, proc=proc)
    except BaseException:
        server.stop()
        raise
    return server


def start_phivault(
    data_dir: Path, key_file: Path, env: dict[str, str] | None = None, workers: int = 1
) -> ServerProcess:
    """`phivault serve`, exactly as an installation runs it: every safeguard on, with
    `workers` worker processes. `env` adds to the environment (bench/bench_serve_cpu.py
    sets PYTHONPATH per source tree)."""
    cmd = [*PHIVAULT, "serve", "--data", str(data_dir), "--key-file", str(key_file)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return _spawn("phivault serve", cmd, env or {}, "/fhir/metadata")


def start_unguarded(data_dir: Path, key_file: Path) -> ServerProcess:
    """The bench-only app with encryption, audit and access control off. Its HTTP protocol
    is serve's without the connection guard (a safeguard): the head-with-body write."""
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory",
        "phivault.benchmark.unguarded_app:create_unguarded_bench_app", *UVICORN_FLAGS,
        "--http", "phivault.api.one_write:HeadWithBodyProtocol",
    ]  # fmt: skip
    env = {"PHIVAULT_BENCH_DATA": str(data_dir), "PHIVAULT_BENCH_KEY_FILE": str(key_file)}
    return _spawn("unguarded bench app", cmd, env, "/fhir/metadata")


def start_ceiling(db_file: Path) -> ServerProcess:
    """Bare Starlette + SQLite: no FHIR, no security."""
    cmd = [sys.executable, "-m", "uvicorn", "phivault.benchmark.ceiling_app:app", *UVICORN_FLAGS]
    return _spawn("ceiling", cmd, {"CEILING_DB": str(db_file)}, "/fhir/Patient/none")
