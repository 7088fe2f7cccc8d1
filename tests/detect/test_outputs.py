"""Alert outputs against real local receivers: a file, a syslog socket, an HTTP server
that fails before it succeeds, and an SMTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from phivault.detect.model import Alert, Severity
from phivault.detect.outputs import (
    Dispatcher,
    JsonLinesOutput,
    SmtpOutput,
    SyslogOutput,
    WebhookOutput,
    outputs_from,
)
from phivault.detect.settings import settings_from


def _alert(severity: Severity = Severity.HIGH) -> Alert:
    now = time.time()
    return Alert("a1", "canary", "honeytoken", severity, "A honeytoken was touched", "g", "u1", "p" * 32,
                 "open", now, now, now, now, 1, (7,), {})  # fmt: skip


def test_json_lines_file(tmp_path: Path) -> None:
    out = JsonLinesOutput(tmp_path / "alerts.jsonl")
    out.send(_alert().as_json())
    out.send(_alert().as_json())
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a1", "a1"]
    assert (tmp_path / "alerts.jsonl").stat().st_mode & 0o777 == 0o600


def test_syslog_over_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        SyslogOutput(f"127.0.0.1:{port}", "auth").send(_alert(Severity.CRITICAL).as_json())
        message = receiver.recv(65536).decode()
    assert message.startswith("<34>1 ")  # auth (4) * 8 + critical (2)
    assert '"detector": "canary"' in message


class _Flaky(BaseHTTPRequestHandler):
    failures_left = 2
    received: ClassVar[list[tuple[bytes, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Flaky.failures_left > 0:
            _Flaky.failures_left -= 1
            self.send_response(503)
        else:
            _Flaky.received.append((body, self.headers.get("X-Phivault-Signature", "")))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[str]:
    _Flaky.failures_left, _Flaky.received = 2, []
    server = HTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_webhook_retries_then_delivers_signed(webhook: str) -> None:
    dispatcher = Dispatcher([WebhookOutput(webhook, b"shared-secret")], retries=3, backoff=0.01)
    dispatcher.announce([_alert()])
    dispatcher.close()
    assert dispatcher.delivered == 1 and dispatcher.failed == 0
    body, signature = _Flaky.received[0]
    assert json.loads(body)["id"] == "a1"
    assert signature == "sha256=" + hmac.new(b"shared-secret", body, hashlib.sha256).hexdigest()


def test_webhook_gives_up_after_its_retries(webhook: str) -> None:
    _Flaky.failures_left = 10
    dispatcher = Dispatcher([WebhookOutput(webhook)], retries=1, backoff=0.01)
    dispatcher.announce([_alert()])
    dispatcher.close()
    assert dispatcher.failed == 1 and _Flaky.received == []


class _Smtp(socketserver.StreamRequestHandler):
    messages: ClassVar[list[str]] = []

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        data: list[str] = []
        while line := self.rfile.readline():
            text = line.decode().rstrip("\r\n")
            if data:
                if text == ".":
                    _Smtp.messages.append("\n".join(data[1:]))
                    data = []
                    self.wfile.write(b"250 queued\r\n")
                else:
                    data.append(text)
                continue
            verb = text.split(" ")[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250 test\r\n")
            elif verb == "DATA":
                data = ["<start>"]
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_smtp_mail() -> None:
    _Smtp.messages = []
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        out = SmtpOutput("127.0.0.1", server.server_address[1], "phivault@clinic.example",
                         ["it@clinic.example"], starttls=False)  # fmt: skip
        out.send(_alert().as_json())
        server.shutdown()
    assert "Subject: [phivault high] A honeytoken was touched" in _Smtp.messages[0]
    assert "phivault alerts show a1" in _Smtp.messages[0]


def test_min_severity_and_configuration(tmp_path: Path) -> None:
    settings = settings_from({"jsonl_path": "a.jsonl", "syslog_address": "127.0.0.1:9",
                              "webhook_url": "https://siem.clinic.example/hook",
                              "smtp_host": "mail", "smtp_from": "a@b.example", "smtp_to": ["c@d.example"]})  # fmt: skip
    assert [o.name for o in outputs_from(settings, tmp_path)] == [
        "jsonl",
        "syslog",
        "webhook",
        "smtp",
    ]
    out = JsonLinesOutput(tmp_path / "x.jsonl")
    dispatcher = Dispatcher([out], min_severity="high")
    dispatcher.announce([_alert(Severity.MEDIUM), _alert(Severity.CRITICAL)])
    dispatcher.close()
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 1
    with pytest.raises(ValueError):
        WebhookOutput("ftp://x")
