"""phivault bench: the performance harness (see docs/PERFORMANCE.md)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from phivault.cli.common import handle_errors

QUICK = {"patients": 60, "requests": 120, "concurrency": 8, "rounds": 1, "exports": 1}


@click.command("bench")
@click.option(
    "--patients",
    type=click.IntRange(20),
    default=1000,
    show_default=True,
    help="Size of the demo clinic (about 9 resources per patient).",
)
@click.option(
    "--requests",
    type=click.IntRange(20),
    default=2000,
    show_default=True,
    help="Requests per read/search measurement (writes: half; bundles: 1/50).",
)
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(1, 10),
    default=2,
    show_default=True,
    help="Interleaved on/off rounds (results merged).",
)
@click.option(
    "--exports",
    type=click.IntRange(1, 20),
    default=2,
    show_default=True,
    help="Bulk $export runs per side and round.",
)
@click.option("--backends", default="sqlite,postgresql", show_default=True)
@click.option(
    "--pg-url",
    envvar="PHIVAULT_BENCH_PG",
    default=None,
    help="PostgreSQL URL for the postgresql backend (each side gets a fresh schema, "
    "dropped afterwards). Env: PHIVAULT_BENCH_PG.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="CI size: 60 patients, 120 requests, 1 round (about a minute per backend).",
)
@click.option(
    "--components",
    type=click.Choice(["run", "read", "skip"]),
    default="read",
    show_default=True,
    help="The audit/encryption/access/search/backup benches: run them in quick sizes, "
    "read their last results from bench/results/, or leave them out.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
    help="Where bench.md and bench.json go.",
)
@click.option(
    "--load-processes",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Load generator processes (more when one generator process cannot keep up).",
)
@click.option(
    "--serve-workers",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Worker processes of `phivault serve` (`serve --workers N`); the unguarded app keeps one.",
)
@click.option(
    "--only-guarded",
    is_flag=True,
    help="Scale runs: measure only `phivault serve` (the clinic is loaded once).",
)
@click.option(
    "--rows",
    "row_names",
    default="",
    help="Measure only these workloads (comma-separated names as in the report, e.g. "
    "'read,search by identifier'); default: all.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the data directories here (default: a temporary directory).",
)
@handle_errors
def bench(
    patients: int,
    requests: int,
    concurrency: int,
    rounds: int,
    exports: int,
    backends: str,
    pg_url: str | None,
    quick: bool,
    components: str,
    out_dir: Path,
    load_processes: int,
    serve_workers: int,
    only_guarded: bool,
    row_names: str,
    work_dir: Path | None,
) -> None:
    """Measure phivault with every safeguard on and off, next to the bare ceiling."""
    from phivault.benchmark import components as parts
    from phivault.benchmark import machine, report
    from phivault.benchmark.runner import ROWS, BenchConfig, run_bench

    chosen = tuple(b.strip() for b in backends.split(",") if b.strip())
    unknown = sorted(set(chosen) - {"sqlite", "postgresql"})
    if unknown or not chosen:
        raise click.UsageError("--backends: sqlite and/or postgresql")
    if "postgresql" in chosen and not pg_url:
        raise click.UsageError("the postgresql backend needs --pg-url (or PHIVAULT_BENCH_PG)")
    picked = tuple(r.strip() for r in row_names.split(",") if r.strip()) or ROWS
    unknown_rows = sorted(set(picked) - set(ROWS))
    if unknown_rows:
        raise click.UsageError("--rows: unknown workload(s) " + ", ".join(unknown_rows))
    config = BenchConfig(
        patients=patients, requests=requests, concurrency=concurrency, rounds=rounds,
        exports=exports, backends=chosen, pg_url=pg_url, work_dir=work_dir,
        only_guarded=only_guarded, load_processes=load_processes, rows=picked,
        serve_workers=serve_workers,
    )  # fmt: skip
    if quick:
        for name, value in QUICK.items():
            setattr(config, name, value)
        config.warmup = 20

    def log(line: str) -> None:
        click.echo(line, err=True)

    results = run_bench(config, log)
    found = parts.collect(components, parts.find_bench_dir(), chosen, pg_url, log)
    command = "phivault bench " + shlex.join(
        a if "://" not in a else "<postgresql-url>" for a in sys.argv[1:]
        if a not in ("bench",)
    )  # fmt: skip
    built = report.build(config, results, machine.describe(pg_url), command.strip(), found)
    md, js = report.write(built, out_dir)
    click.echo(report.markdown(built))
    log(f"written: {md} and {js}")
