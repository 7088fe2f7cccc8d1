"""Running `phivault` for the audit tests: in-process (click's runner) or as the real
console script in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from phivault.cli.main import cli as phivault_cli

_KEYS = ("PHIVAULT_PASSPHRASE", "PHIVAULT_KEY_FILE", "PHIVAULT_DATA", "PHIVAULT_DB")
PHIVAULT = Path(sys.executable).parent / "phivault"


def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """`phivault ARGS` in this process; the key only from ARGS or `env`."""
    clean: dict[str, str | None] = dict.fromkeys(_KEYS)
    clean.update(env or {})
    return CliRunner().invoke(phivault_cli, list(args), env=clean, catch_exceptions=False)


def subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _KEYS}


def run(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The real console script, as an operator runs it."""
    return subprocess.run(
        [str(PHIVAULT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        check=False,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
