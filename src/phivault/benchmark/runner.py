"""One bench run: for each backend, the demo clinic in a guarded and an unguarded data
directory, both servers up at once, every workload measured on both, interleaved.

Interleaving: in each round every workload runs on the guarded and on the unguarded
server back to back, the order alternating from one workload (and round) to the next, so
drift on a shared machine (other processes, page cache, database growth) hits both sides
alike. On SQLite the bare Starlette + SQLite ceiling joins the read and create rows.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phivault.benchmark import workloads as w
from phivault.benchmark.datadirs import DataDir, DbSize, TokenSource, db_size, drop_schema, prepare
from phivault.benchmark.export_client import ExportRun, run_export
from phivault.benchmark.loadgen import LoadResult, run_load_in_process
from phivault.benchmark.servers import ServerProcess, start_ceiling, start_phivault, start_unguarded
from phivault.errors import BenchmarkFailed

GUARDED, UNGUARDED, CEILING = "on", "off", "ceiling"
ROWS = (
    "read",
    "search by identifier",
    "search by name prefix",
    "Observation by patient+code+date",
    "Patient $everything",
    "bulk $export",
    "create",
    "update",
    "transaction bundle ingest",
)
# Rows whose throughput counts resources, not requests.
RESOURCE_ROWS = frozenset({"transaction bundle ingest", "bulk $export"})
CEILING_ROWS = frozenset({"read", "create"})


@dataclass
class BenchConfig:
    patients: int = 1000
    requests: int = 2000
    concurrency: int = 16
    rounds: int = 2
    exports: int = 2
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    pg_url: str | None = None
    work_dir: Path | None = None
    warmup: int = 100
    # Scale runs: only the guarded server (no unguarded copy to load), for RSS and search
    # latency at sizes where loading the clinic twice would take too long.
    only_guarded: bool = False
    load_processes: int = 1  # load generator processes per measurement
    serve_workers: int = 1  # `phivault serve --workers N` (the unguarded app: always one)
    rows: tuple[str, ...] = ROWS  # the workloads to measure (`--rows`), in ROWS order

    def count(self, row: str) -> int:
        """Requests per measurement of `row`."""
        per_row = {
            "Patient $everything": self.requests // 4,
            "create": self.requests // 2,
            "update": self.requests // 2,
            "transaction bundle ingest": self.requests // 50,
            "bulk $export": self.exports,
        }
        return max(per_row.get(row, self.requests), 2 if row == "bulk $export" else 4)


@dataclass
class BackendResult:
    backend: str
    rows: dict[str, dict[str, list[LoadResult]]] = field(default_factory=dict)
    peak_rss: dict[str, int | None] = field(default_factory=dict)
    db_loaded: dict[str, DbSize] = field(default_factory=dict)
    db_final: dict[str, DbSize] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)
    resources: int = 0

    def merged(self, row: str, side: str) -> LoadResult | None:
        runs = self.rows.get(row, {}).get(side)
        return LoadResult.merged(runs) if runs else None


@dataclass
class Targets:
    """The request factories of one backend's run."""

    clinic: w.Clinic
    makers: dict[str, w.Cycle]
    bundles: w.Bundles


def _targets(config: BenchConfig) -> Targets:
    clinic = w.load_facts(config.patients)
    if len(clinic.subjects) < config.concurrency:
        raise BenchmarkFailed("too few patients for the concurrency asked for")
    bundles = w.transaction_bundles(max(4, config.count("transaction bundle ingest")))
    makers = {
        "read": w.read(clinic),
        "search by identifier": w.search_identifier(clinic),
        "search by name prefix": w.search_name_prefix(clinic),
        "Observation by patient+code+date": w.search_observations(clinic),
        "Patient $everything": w.everything(clinic),
        "create": w.create(config.count("create")),
        "update": w.update(clinic),
        "transaction bundle ingest": bundles.cycle,
    }
    return Targets(clinic, makers, bundles)


def _export_result(runs: list[ExportRun]) -> LoadResult:
    return LoadResult(
        requests=len(runs),
        errors=0,
        seconds=sum(r.seconds for r in runs),
        latencies_ms=[r.seconds * 1000 for r in runs],
        units=sum(r.resources for r in runs),
        statuses={200: len(runs)},
    )


class BackendRun:
    def __init__(self, config: BenchConfig, backend: str, work: Path, log: Callable[[str], None]):
        self.config, self.backend, self.work, self.log = config, backend, work, log
        self.result = BackendResult(backend)
        self.servers: dict[str, ServerProcess] = {}
        self.tokens: TokenSource | None = None

    def headers(self, side: str) -> dict[str, str] | None:
        if side == GUARDED:
            assert self.tokens is not None
            return self.tokens.headers()
        return None  # the unguarded app and the ceiling take no token

    def measure(self, row: str, side: str, targets: Targets, total: int, tag: str) -> LoadResult:
        server = self.servers[side]
        headers = self.headers(side)
        if row == "bulk $export":
            return _export_result([run_export(server.port, headers or {}) for _ in range(total)])
        if side == CEILING:
            maker = (
                w.ceiling_create(total, tag) if row == "create" else w.ceiling_read(total, "r0-")
            )
        else:
            maker = targets.makers[row]
        result = run_load_in_process(
            server.port, maker, total, self.config.concurrency, headers, self.config.load_processes
        )
        if row == "transaction bundle ingest":
            result.units = targets.bundles.resources(result.requests)
        return result

    def run(self) -> BackendResult:
        config, log = self.config, self.log
        targets = _targets(config)
        dirs: dict[str, DataDir] = {}
        try:
            sides = (
                ((GUARDED, True),) if config.only_guarded else ((GUARDED, True), (UNGUARDED, False))
            )
            for side, guarded in sides:
                log(f"[{self.backend}] loading the demo clinic ({config.patients} patients), "
                    f"safeguards {side} ...")  # fmt: skip
                dirs[side] = prepare(
                    self.work, self.backend, guarded, config.patients, config.pg_url
                )
                self.result.load_seconds[side] = dirs[side].load_seconds
                self.result.db_loaded[side] = db_size(dirs[side])
            self.result.resources = dirs[GUARDED].resources
            self.tokens = TokenSource(dirs[GUARDED])
            self.tokens.headers()
            self.servers[GUARDED] = start_phivault(
                dirs[GUARDED].data_dir, dirs[GUARDED].key_file, workers=self.config.serve_workers
            )
            if UNGUARDED in dirs:
                off = dirs[UNGUARDED]
                self.servers[UNGUARDED] = start_unguarded(off.data_dir, off.key_file)
            if self.backend == "sqlite":
                self.servers[CEILING] = start_ceiling(self.work / "ceiling.db")
                # The ceiling's reads need rows: the first create batch gives them ids r0-*.
                if CEILING_ROWS & set(config.rows):
                    self.measure("create", CEILING, targets, config.requests, "r0-")
            self._rounds(targets)
            for side, server in self.servers.items():
                self.result.peak_rss[side] = server.peak_rss_bytes()
            for server in self.servers.values():
                server.stop()
            for side, d in dirs.items():
                self.result.db_final[side] = db_size(d)
        finally:
            for server in self.servers.values():
                server.stop()
            for d in dirs.values():  # a failed run leaves no schema behind either
                drop_schema(d)
        return self.result

    def _rounds(self, targets: Targets) -> None:
        config = self.config
        sides = [side for side in (GUARDED, UNGUARDED) if side in self.servers]
        flip = 0
        for round_no in range(config.rounds):
            for row in ROWS:
                if row not in config.rows:
                    continue
                flip += 1
                order = sides if flip % 2 else sides[::-1]
                if CEILING in self.servers and row in CEILING_ROWS:
                    order = [*order, CEILING] if flip % 2 else [CEILING, *order]
                total = config.count(row)
                if round_no == 0 and row not in RESOURCE_ROWS:
                    warm = min(config.warmup, total)
                    for side in order:
                        self.measure(row, side, targets, warm, f"w{row[:1]}-")
                for side in order:
                    started = time.perf_counter()
                    result = self.measure(row, side, targets, total, f"r{round_no + 1}-")
                    self.result.rows.setdefault(row, {}).setdefault(side, []).append(result)
                    self.log(
                        f"[{self.backend}] round {round_no + 1} {row} ({side}): "
                        f"{result.unit_rate:,.0f}/s, p95 {result.pct(95):.1f} ms, "
                        f"{result.errors} errors ({time.perf_counter() - started:.1f} s)"
                    )


def run_bench(config: BenchConfig, log: Callable[[str], None]) -> list[BackendResult]:
    results = []
    work = config.work_dir or Path(tempfile.mkdtemp(prefix="phivault-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for backend in config.backends:
            backend_dir = work / backend
            backend_dir.mkdir(exist_ok=True)
            results.append(BackendRun(config, backend, backend_dir, log).run())
    finally:
        if config.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return results
