"""A response's head leaves together with its body's first part (api/one_write.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from phivault.api.one_write import hold_head
from tests.api.test_connection_limits import connect, server  # noqa: F401 (fixture)
from tests.server_support import Server


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class FakeCycle:
    """The parts of uvicorn's RequestResponseCycle the held head uses."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport = FakeTransport()
        self.response_started = False
        self.responses = 0

    def on_response(self) -> None:
        self.responses += 1


def _cycle() -> tuple[FakeCycle, FakeTransport]:
    cycle = FakeCycle()
    real = cycle.transport
    assert isinstance(real, FakeTransport)
    hold_head(cycle)  # type: ignore[arg-type]
    return cycle, real


def test_head_and_body_leave_in_one_write() -> None:
    cycle, real = _cycle()
    cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response starts
    cycle.response_started = True
    cycle.transport.write(b"HEAD")
    assert real.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.transport.write(b"body-1")
    cycle.transport.write(b"body-2")
    assert real.writes[1:] == [b"HEADbody-1", b"body-2"]


def test_a_response_without_body_bytes_gets_its_head_at_its_end() -> None:
    cycle, real = _cycle()
    cycle.response_started = True
    cycle.transport.write(b"HEAD")
    assert real.writes == []
    cycle.on_response()
    assert real.writes == [b"HEAD"] and cycle.responses == 1


def test_close_sends_a_held_head_first() -> None:
    cycle, real = _cycle()
    cycle.response_started = True
    cycle.transport.write(b"HEAD")
    cycle.transport.close()
    assert real.writes == [b"HEAD"] and real.closed


def _read_response(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes, bytes]:
    """One response (head, body) off a kept-alive connection, and what follows it."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    return head, rest[:length], rest[length:]


def test_kept_alive_get_head_get_on_the_real_server(server: tuple[Server, str]) -> None:  # noqa: F811
    served, token = server
    sock = connect(served)
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n"
    try:
        rest = b""
        for method in (b"GET", b"HEAD", b"GET"):
            sock.sendall(method + b" /fhir/metadata HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
            if method == b"HEAD":
                while b"\r\n\r\n" not in rest:
                    rest += sock.recv(65536)
                head, _, rest = rest.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                continue
            head, body, rest = _read_response(sock, rest)
            assert head.startswith(b"HTTP/1.1 200")
            assert json.loads(body)["resourceType"] == "CapabilityStatement"
    finally:
        sock.close()
