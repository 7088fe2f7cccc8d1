"""Where alerts go: a JSON lines file, syslog, an HTTP webhook (with retries) and e-mail.

Each output gets the alert's JSON (ids, counts, pseudonyms: no PHI). Delivery runs on a
thread of its own, so a slow webhook never holds up detection; a failed delivery is
retried with backoff and then logged (the alert itself is already stored and listed by
`phivault alerts list`, so nothing is lost when an output is down).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import smtplib
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from phivault.detect.model import Alert, Severity
from phivault.detect.settings import DetectSettings

log = logging.getLogger("phivault.detect")


class Output(Protocol):
    name: str

    def send(self, alert: dict[str, Any]) -> None:
        """Deliver one alert; raise on failure (the dispatcher retries)."""
        ...


class JsonLinesOutput:
    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, alert: dict[str, Any]) -> None:
        line = json.dumps(alert, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line)


_FACILITIES = {"auth": 4, "authpriv": 10, "daemon": 3, "local0": 16, "user": 1}
_SYSLOG_SEVERITY = {"low": 5, "medium": 4, "high": 3, "critical": 2}  # notice .. critical


class SyslogOutput:
    """RFC 5424 messages over UDP ("host:port") or a local socket ("/dev/log")."""

    name = "syslog"

    def __init__(self, address: str, facility: str = "auth") -> None:
        if facility not in _FACILITIES:
            raise ValueError("unknown syslog facility")
        self.address = address
        self.facility = _FACILITIES[facility]

    def message(self, alert: dict[str, Any]) -> bytes:
        pri = self.facility * 8 + _SYSLOG_SEVERITY.get(str(alert["severity"]), 5)
        host = socket.gethostname() or "-"
        body = json.dumps(alert, sort_keys=True)
        return f"<{pri}>1 {alert['raised']} {host} phivault - alert - {body}".encode()

    def send(self, alert: dict[str, Any]) -> None:
        data = self.message(alert)
        if self.address.startswith("/"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.send(data)
            return
        host, _, port = self.address.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(data, (host or "127.0.0.1", int(port or 514)))


class WebhookOutput:
    """POST the alert as JSON; with a secret, `X-Phivault-Signature: sha256=<hmac>` over
    the body lets the receiver check it came from this server."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes | None = None, timeout: float = 10.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the webhook URL must be http(s)")
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def send(self, alert: dict[str, Any]) -> None:
        body = json.dumps(alert, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "phivault-alerts"}
        if self.secret is not None:
            digest = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            headers["X-Phivault-Signature"] = f"sha256={digest}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered {response.status}")


class SmtpOutput:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.recipients = list(recipients)
        self.starttls, self.username, self.password = starttls, username, password

    def send(self, alert: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = f"[phivault {alert['severity']}] {alert['title']}"[:200]
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(
            f"{alert['title']}\n\nAlert {alert['id']} ({alert['detector']}), raised "
            f"{alert['raised']}.\nReview it with: phivault alerts show {alert['id']}\n\n"
            + json.dumps(alert, indent=2, sort_keys=True)
        )
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username and self.password:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


def outputs_from(settings: DetectSettings, data_dir: Path | None) -> list[Output]:
    found: list[Output] = []
    if settings.jsonl_path:
        path = Path(settings.jsonl_path)
        if not path.is_absolute() and data_dir is not None:
            path = data_dir / path
        found.append(JsonLinesOutput(path))
    if settings.syslog_address:
        found.append(SyslogOutput(settings.syslog_address, settings.syslog_facility))
    if settings.webhook_url:
        secret_env = settings.webhook_secret_env
        secret = os.environ.get(secret_env, "").encode() if secret_env else b""
        found.append(
            WebhookOutput(settings.webhook_url, secret or None, settings.webhook_timeout_seconds)
        )
    if settings.smtp_host and settings.smtp_from and settings.smtp_to:
        password_env = settings.smtp_password_env
        found.append(
            SmtpOutput(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from,
                settings.smtp_to,
                starttls=settings.smtp_starttls,
                username=settings.smtp_username,
                password=os.environ.get(password_env) if password_env else None,
            )
        )
    return found


class Dispatcher:
    """Sends announced alerts to every output from a background thread, retrying each
    failed delivery `retries` times with exponential backoff."""

    def __init__(
        self,
        outputs: Sequence[Output],
        *,
        min_severity: str = "low",
        retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.outputs = list(outputs)
        self.floor = Severity(min_severity).rank
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[tuple[Output, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def announce(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            if alert.severity.rank < self.floor:
                continue
            payload = alert.as_json()
            for output in self.outputs:
                self._queue.put((output, payload))
        if self.outputs and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="phivault-alerts", daemon=True)
            self._thread.start()

    def deliver(self, output: Output, payload: dict[str, Any]) -> bool:
        for attempt in range(self.retries + 1):
            try:
                output.send(payload)
                self.delivered += 1
                return True
            except Exception as exc:  # any failure: retry, then give up loudly
                log.warning(
                    "alert output %s failed (attempt %d): %s",
                    output.name,
                    attempt + 1,
                    type(exc).__name__,
                )
                if attempt < self.retries:
                    self.sleep(self.backoff * 2**attempt)
        self.failed += 1
        return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            self.deliver(*item)
            self._queue.task_done()

    def flush(self) -> None:
        """Wait until everything queued was delivered or given up."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
