from __future__ import annotations

import asyncio
from pathlib import Path

from phivault.benchmark.loadgen import LoadResult, _read_response, run_load_in_process
from phivault.benchmark.servers import start_ceiling
from phivault.benchmark.workloads import ceiling_create, ceiling_read


def test_percentiles_are_nearest_rank() -> None:
    result = LoadResult(100, 0, 2.0, [float(i) for i in range(1, 101)])
    assert (result.pct(50), result.pct(95), result.pct(99)) == (50.0, 95.0, 99.0)
    assert result.rate == 50.0


def test_merged_adds_requests_time_units_and_statuses() -> None:
    a = LoadResult(2, 1, 1.0, [1.0, 3.0], units=20, statuses={200: 1, 500: 1})
    b = LoadResult(2, 0, 3.0, [2.0, 4.0], units=30, statuses={200: 2})
    merged = LoadResult.merged([a, b])
    assert (merged.requests, merged.errors, merged.seconds) == (4, 1, 4.0)
    assert merged.unit_rate == 12.5
    assert merged.statuses == {200: 3, 500: 1}
    assert sorted(merged.latencies_ms) == [1.0, 2.0, 3.0, 4.0]


def _parse(raw: bytes) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw + b"NEXT")
        reader.feed_eof()
        status = await _read_response(reader)
        return status, await reader.read()

    return asyncio.run(go())


def test_reads_exactly_one_response() -> None:
    fixed = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX: y\r\n\r\nhello"
    assert _parse(fixed) == (201, b"NEXT")
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    )
    assert _parse(chunked) == (200, b"NEXT")


def test_split_over_processes_sends_every_request_once(tmp_path: Path) -> None:
    server = start_ceiling(tmp_path / "ceiling.db")
    try:
        created = run_load_in_process(server.port, ceiling_create(40, "s"), 40, 4, processes=2)
        assert (created.requests, created.statuses) == (40, {201: 40})  # each id once
        read = run_load_in_process(server.port, ceiling_read(40, "s"), 40, 4, processes=2)
        assert read.statuses == {200: 40}  # every id was created
        assert read.seconds > 0 and len(read.latencies_ms) == 40
    finally:
        server.stop()
