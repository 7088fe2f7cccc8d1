"""A small closed-loop HTTP/1.1 load generator (keep-alive, asyncio, raw sockets).

Runs in its own process so the server under test does not share its interpreter. Each
connection sends one request at a time and waits for the full response; latency is
measured per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

RequestFactory = Callable[[int], tuple[str, str, bytes]]  # i -> (method, path, body)


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _connection(
    host: str,
    port: int,
    make: RequestFactory,
    counter: list[int],
    total: int,
    out: list[float],
    errs: list[int],
    extra: str = "",
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            i = counter[0]
            if i >= total:
                return
            counter[0] += 1
            method, path, body = make(i)
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/fhir+json\r\nAccept: application/fhir+json\r\n"
                f"{extra}Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            out.append((time.perf_counter() - start) * 1000)
            status = int(status_line.split()[1]) if status_line else 599
            if status >= 400:
                errs[0] += 1
    finally:
        writer.close()


def run_load(
    host: str,
    port: int,
    make: RequestFactory,
    total: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """`headers`: sent with every request (e.g. Authorization)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())

    async def main() -> LoadResult:
        counter = [0]
        latencies: list[float] = []
        errors = [0]
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(host, port, make, counter, total, latencies, errors, extra)
                for _ in range(concurrency)
            )
        )
        return LoadResult(len(latencies), errors[0], time.perf_counter() - start, latencies)

    return asyncio.run(main())
