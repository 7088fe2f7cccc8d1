"""A small closed-loop HTTP/1.1 load generator (keep-alive, asyncio, raw sockets).

It runs in its own process (`run_load_in_process`) so the server under test never shares
an interpreter with it. Each connection sends one request at a time and waits for the
whole response; latency is measured per request, from the first byte written to the last
byte read. Responses are parsed just enough to find their length (Content-Length or
chunked), so the generator costs far less CPU per request than the server it drives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RequestFactory = Callable[[int], tuple[str, str, bytes]]  # i -> (method, path, body)


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    # Per-request units of work (e.g. resources in a transaction bundle); 1 if None.
    units: int | None = None
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def unit_rate(self) -> float:
        """Units (resources) per second."""
        done = self.units if self.units is not None else self.requests
        return done / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """The p-th percentile latency in ms (nearest rank)."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
        return ordered[int(min(rank, len(ordered))) - 1]

    @staticmethod
    def merged(runs: list[LoadResult]) -> LoadResult:
        """Several runs as one: their requests, time and latencies added up."""
        statuses: dict[int, int] = {}
        for run in runs:
            for status, count in run.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        units = [r.units for r in runs]
        return LoadResult(
            requests=sum(r.requests for r in runs),
            errors=sum(r.errors for r in runs),
            seconds=sum(r.seconds for r in runs),
            latencies_ms=[x for r in runs for x in r.latencies_ms],
            units=None if all(u is None for u in units) else sum(u or 0 for u in units),
            statuses=statuses,
        )


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        length = int(head[at + 17 : end])
        if length:
            await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _connection(
    host: str,
    port: int,
    make: RequestFactory,
    counter: list[int],
    total: int,
    result: LoadResult,
    extra: bytes,
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    prefix = f"Host: {host}\r\n".encode() + extra
    try:
        while counter[0] < total:
            i = counter[0]
            counter[0] += 1
            method, path, body = make(i)
            head = (
                f"{method} {path} HTTP/1.1\r\n".encode()
                + prefix
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            start = time.perf_counter()
            writer.write(head + body if body else head)
            status = await _read_response(reader)
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status >= 400:
                result.errors += 1
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
    """`total` requests over `concurrency` keep-alive connections; `headers` go with every
    request (e.g. Authorization)."""
    fixed = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        **(headers or {}),
    }
    extra = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode()

    async def main() -> LoadResult:
        counter = [0]
        result = LoadResult(0, 0, 0.0)
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(host, port, make, counter, total, result, extra)
                for _ in range(min(concurrency, total))
            )
        )
        result.seconds = time.perf_counter() - start
        result.requests = len(result.latencies_ms)
        return result

    return asyncio.run(main())


def run_load_in_process(
    port: int,
    make: RequestFactory,
    total: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    processes: int = 1,
) -> LoadResult:
    """`run_load` in fresh processes (`make` must pickle): the server under test keeps its
    interpreter to itself. With `processes` > 1 the connections and requests are split
    between them (for servers faster than one generator process) and the results merged;
    request i of process k is make(k + i * processes), so the requests stay distinct."""
    processes = max(1, min(processes, concurrency, total))
    if processes == 1:
        with concurrent.futures.ProcessPoolExecutor(1) as pool:
            job = pool.submit(run_load, "127.0.0.1", port, make, total, concurrency, headers)
            return job.result()
    with concurrent.futures.ProcessPoolExecutor(processes) as pool:
        jobs = [
            pool.submit(
                run_load,
                "127.0.0.1",
                port,
                _Strided(make, k, processes),
                len(range(k, total, processes)),
                len(range(k, concurrency, processes)),
                headers,
            )
            for k in range(processes)
        ]
        parts = [job.result() for job in jobs]
    merged = LoadResult.merged(parts)
    merged.seconds = max(part.seconds for part in parts)  # they ran side by side
    return merged


@dataclass
class _Strided:
    make: RequestFactory
    offset: int
    stride: int

    def __call__(self, i: int) -> tuple[str, str, bytes]:
        return self.make(self.offset + i * self.stride)
