"""Slow and oversized requests against the real `phivault serve` (raw sockets).

The header deadline and the head size limits live in the server's connection guard
(api/connection_limits.py), which only a real server runs; the body deadline lives in the
app. Deadlines are shortened through the environment so the test stays fast. Every refusal
must be an OperationOutcome that arrives within a bounded time, and the connection closed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_support import Server, init_data_dir, issue_token

DEADLINE_S = 2.0
LIMITS = {
    "PHIVAULT_HEADER_TIMEOUT_S": str(DEADLINE_S),
    "PHIVAULT_BODY_TIMEOUT_S": str(DEADLINE_S),
    "PHIVAULT_MAX_URL_BYTES": "8192",
    "PHIVAULT_MAX_HEADER_BYTES": "16384",
    "PHIVAULT_MAX_HEADER_COUNT": "50",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    data, key = init_data_dir(tmp_path_factory.mktemp("limits"), None)
    token = issue_token(data, key, "system/Patient.cruds")
    served = Server(data, key, extra_env=LIMITS).start()
    yield served, token
    served.stop()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(DEADLINE_S * 5)
    return sock


def answer(sock: socket.socket) -> tuple[int, bytes, dict[str, str], bytes]:
    """Status, raw head, headers and body of the one response, read until the server
    closes; then the socket is closed here too."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, head, headers, body


def assert_outcome(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body[:300]
    assert headers["content-type"].startswith("application/fhir+json")
    assert headers.get("connection") == "close"
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"]


def trickle(sock: socket.socket, piece: bytes, seconds: float) -> None:
    """Send `piece` every 0.2 s for up to `seconds`, or until the server hangs up."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sock.sendall(piece)
        except OSError:
            return
        time.sleep(0.2)


def test_slowloris_headers_get_408(server: tuple[Server, str]) -> None:
    served, _ = server
    sock = connect(served)
    started = time.monotonic()
    sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n")
    trickle(sock, b"X-Slow: 1\r\n", DEADLINE_S * 3)
    status, _, headers, body = answer(sock)
    assert_outcome(status, headers, body, 408)
    assert time.monotonic() - started < DEADLINE_S * 3.5


def test_idle_connection_is_closed(server: tuple[Server, str]) -> None:
    served, _ = server
    sock = connect(served)
    started = time.monotonic()
    status, _, headers, body = answer(sock)
    assert_outcome(status, headers, body, 408)
    assert time.monotonic() - started < DEADLINE_S * 2


def test_slow_body_gets_408(server: tuple[Server, str]) -> None:
    served, token = server
    sock = connect(served)
    started = time.monotonic()
    sock.sendall(
        b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 100000\r\n\r\n{"
    )
    trickle(sock, b" ", DEADLINE_S * 3)
    status, _, headers, body = answer(sock)
    assert_outcome(status, headers, body, 408)
    assert time.monotonic() - started < DEADLINE_S * 3.5


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (
            b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n",
            431,
        ),
        (b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n" + b"X-H: 1\r\n" * 5000 + b"\r\n", 431),
        (b"GET /fhir/Patient?name=" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GARBAGE\x00\x01 / HTTP/9\r\n\r\n", 400),
        (b"GET /fhir/metadata HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /fhir/Patient HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
    ids=["huge-header", "many-headers", "huge-url", "garbage", "bad-length", "bad-chunk"],
)
def test_oversized_and_malformed_heads(
    server: tuple[Server, str], request_bytes: bytes, expected: int
) -> None:
    served, _ = server
    sock = connect(served)
    try:
        sock.sendall(request_bytes)
    except OSError:
        pass  # the server may hang up before reading everything: the answer is still sent
    status, _, headers, body = answer(sock)
    assert_outcome(status, headers, body, expected)


def test_server_still_serves_after_abuse(server: tuple[Server, str], tmp_path: Path) -> None:
    served, token = server
    sock = connect(served)
    sock.sendall(
        b"GET /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
    )
    status, _, _, body = answer(sock)
    assert status == 200 and json.loads(body)["resourceType"] == "Bundle"


def test_requests_beyond_max_connections_get_503(tmp_path: Path) -> None:
    data, key = init_data_dir(tmp_path, None)
    limit = 4
    busy = Server(data, key, extra_env={**LIMITS, "PHIVAULT_MAX_CONNECTIONS": str(limit)})
    busy.start()
    try:
        idle = [connect(busy) for _ in range(limit)]  # each holds a connection open
        time.sleep(0.3)
        sock = connect(busy)
        sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, headers, body = answer(sock)
        assert_outcome(status, headers, body, 503)
        assert headers["retry-after"] == "1"
        for held in idle:
            held.close()
        time.sleep(0.3)
        sock = connect(busy)
        sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer(sock)[0] == 200  # room again
    finally:
        busy.stop()
