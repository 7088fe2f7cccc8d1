"""A Bulk Data client for the bench: system-level $export from kick-off to the last byte of
the last file, as a population-health or analytics job runs it.

It polls the status URL every POLL_S (not the server's Retry-After, which would round
every figure up to whole seconds) and downloads the files one after the other.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from phivault.errors import BenchmarkFailed

POLL_S = 0.05
TIMEOUT_S = 1800.0


@dataclass
class ExportRun:
    seconds: float
    resources: int
    files: int
    bytes: int


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def run_export(port: int, headers: dict[str, str]) -> ExportRun:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    base = {"Accept": "application/fhir+json", **headers}
    try:
        started = time.perf_counter()
        conn.request("GET", "/fhir/$export", headers={**base, "Prefer": "respond-async"})
        reply = conn.getresponse()
        reply.read()
        location = reply.getheader("Content-Location")
        if reply.status != 202 or not location:
            raise BenchmarkFailed(f"$export kick-off answered {reply.status}")
        status_path = _path(location)
        while True:
            conn.request("GET", status_path, headers=base)
            reply = conn.getresponse()
            body = reply.read()
            if reply.status == 200:
                break
            if reply.status != 202:
                raise BenchmarkFailed(f"$export status answered {reply.status}")
            if time.perf_counter() - started > TIMEOUT_S:
                raise BenchmarkFailed("$export did not finish in time")
            time.sleep(POLL_S)
        manifest = json.loads(body)
        resources = size = 0
        outputs = manifest.get("output", [])
        for item in outputs:
            conn.request(
                "GET", _path(item["url"]), headers={**base, "Accept": "application/fhir+ndjson"}
            )
            reply = conn.getresponse()
            data = reply.read()
            if reply.status != 200:
                raise BenchmarkFailed(f"$export download answered {reply.status}")
            resources += data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
            size += len(data)
        seconds = time.perf_counter() - started
        conn.request("DELETE", status_path, headers=base)  # the job's files go
        conn.getresponse().read()
        return ExportRun(seconds, resources, len(outputs), size)
    finally:
        conn.close()
