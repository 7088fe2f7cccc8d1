"""`phivault serve`: which client address the audit log records, with and without a proxy."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx

from tests.cli.audit_support import cli, run
from tests.server_support import Server, init_data_dir, issue_token

FORGED = "203.0.113.9"


def search_once(server: Server, token: str) -> None:
    answer = httpx.get(
        f"{server.base}/Patient",
        params={"_count": "1"},
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": FORGED},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def search_clients(data: Path, key: Path) -> list[str | None]:
    """The `client` of every search entry in the log, oldest first."""
    done = run("audit", "checkpoint", "--data", str(data), "--key-file", str(key))
    assert done.returncode == 0, done.stderr
    size = json.loads(done.stdout)["size"]
    done = run("audit", "leaves", "--data", str(data), "--from", "0", "--to", str(size))
    assert done.returncode == 0, done.stderr
    entries = [json.loads(base64.b64decode(line)) for line in done.stdout.splitlines()]
    return [e.get("client") for e in entries if e["action"] == "search"]


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    data, key = init_data_dir(tmp_path, None)
    token = issue_token(data, key, "system/*.rs")
    for args in [(), ("--trusted-proxy", "127.0.0.1")]:
        server = Server(data, key, args=args).start()
        try:
            search_once(server, token)
        finally:
            server.stop()
    clients = search_clients(data, key)
    # Default: a header sent from loopback is not believed; the peer address is recorded.
    # With the proxy named, the address it forwards is recorded instead.
    assert clients == ["127.0.0.1", FORGED]


def test_a_malformed_proxy_address_is_refused(tmp_path: Path) -> None:
    result = cli("serve", "--data", str(tmp_path / "none"), "--trusted-proxy", "proxy.local")
    assert result.exit_code == 2
    assert "--trusted-proxy" in result.output and "not an IP address" in result.output
