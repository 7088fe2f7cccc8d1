"""The bench's server processes: peak RSS counts every process of a server (`serve
--workers N` runs a supervisor and N workers), and `start_phivault` starts that many."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from phivault.benchmark.servers import ServerProcess, _children, start_phivault
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.vault import init_data_dir

HOLD = 64 * 1024 * 1024
CHILD = f"import time; x = bytearray({HOLD}); x[::4096] = b'1' * len(x[::4096]); time.sleep(60)"


def test_peak_rss_adds_up_the_server_and_its_children() -> None:
    parent = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {CHILD!r}]); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent])
    server = ServerProcess("test", proc, 0)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            peak = server.peak_rss_bytes()
            if peak is not None and peak > HOLD and _children(proc.pid):
                break
            time.sleep(0.1)
        children = _children(proc.pid)
        assert len(children) == 1
        peak = server.peak_rss_bytes()
        assert peak is not None and peak > HOLD  # the child's 64 MiB counts
    finally:
        for child in _children(proc.pid):
            os.kill(child, signal.SIGTERM)
        server.stop()
    assert server.peak_rss_bytes() is None  # gone: nothing to read


def test_start_phivault_runs_the_workers_it_is_asked_for(tmp_path: Path) -> None:
    key_file = tmp_path / "kek.key"
    create_key_file(key_file)
    init_data_dir(tmp_path / "data", KeyFileKeySource(key_file))
    server = start_phivault(tmp_path / "data", key_file, workers=2)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_children(server.proc.pid)) < 2:
            time.sleep(0.2)
        workers = _children(server.proc.pid)
        assert len(workers) >= 2  # uvicorn's supervisor keeps two worker processes
        peak = server.peak_rss_bytes()
        assert peak is not None and peak > 3 * 30 * 1024 * 1024  # supervisor + 2 workers
    finally:
        server.stop()
