"""`phivault bench --quick` end to end on both backends: every row, sane numbers.

No timing thresholds (the machine is shared); the assertions are about the report's
shape and about figures that cannot be wrong on any machine (no errors, ordered
percentiles, a bundle carrying its resources, a live server's RSS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from phivault.benchmark.components import collect
from phivault.benchmark.report import component_markdown
from phivault.benchmark.runner import CEILING_ROWS, ROWS

pytestmark = pytest.mark.postgres


def _bench_schemas(pg_url: str) -> set[str]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'phivault_bench_%'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_quick_bench_reports_every_row(tmp_path: Path, pg_url: str) -> None:
    out = tmp_path / "out"
    schemas_before = _bench_schemas(pg_url)
    done = subprocess.run(
        [sys.executable, "-c", "from phivault.cli.main import main; main()", "bench", "--quick",
         "--backends", "sqlite,postgresql", "--pg-url", pg_url, "--components", "skip",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert _bench_schemas(pg_url) <= schemas_before  # its PostgreSQL schemas are dropped
    report = json.loads((out / "bench.json").read_text())
    markdown = (out / "bench.md").read_text()
    assert pg_url not in markdown and pg_url not in json.dumps(report)  # no URL in the report

    rows = {(r["backend"], r["workload"]): r for r in report["rows"]}
    for backend in ("sqlite", "postgresql"):
        for workload in ROWS:
            row = rows[(backend, workload)]
            assert f"| {backend} | {workload} |" in markdown
            for side in ("on", "off"):
                fig = row[side]
                assert fig["errors"] == 0, (backend, workload, side, fig["statuses"])
                assert fig["requests"] > 0 and fig["per_s"] > 0
                assert 0 < fig["p50_ms"] <= fig["p95_ms"] <= fig["p99_ms"]
            assert row["on_off_ratio"] > 0
    for workload in CEILING_ROWS:
        assert rows[("ceiling", workload)]["off"]["per_s"] > 0
    bundles = rows[("sqlite", "transaction bundle ingest")]["on"]
    assert bundles["units"] >= 50 * bundles["requests"]  # ~100 resources per bundle
    exported = rows[("sqlite", "bulk $export")]["on"]
    assert exported["units"] >= 400  # the whole 60-patient clinic (~490 resources)

    for backend in ("sqlite", "postgresql"):
        server = report["servers"][backend]
        assert server["resources_loaded"] > 400
        for side in ("on", "off"):
            assert 20 * 2**20 < server["peak_rss_bytes"][side] < 4 * 2**30
            assert server["db_bytes_per_1000_resources"][side] > 0
            assert server["db_loaded"][side]["resources"] == server["resources_loaded"]
    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["python"] and machine["cpu_model"]
    assert report["interleaved"] is True


def test_component_figures_are_read_and_summarised(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    backup = {"patients": 300, "bytes": 5_000_000, "rows": {"phivault": {"full_s": 1.5}}}
    (results / "backup.json").write_text(json.dumps(backup))
    found = collect("read", tmp_path / "bench", ("sqlite",), None, print)
    assert found["backup"]["status"] == "ok"
    assert found["backup"]["figures"] == backup
    assert found["audit"]["status"].startswith("no results")
    lines = component_markdown(found)
    assert any("phivault: full_s 1.50" in line for line in lines)
    assert any("**audit**" in line and "no results" in line for line in lines)


def test_audit_summary_names_its_callers(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    audit = {
        "append_sqlite_sealed": {"threads": 64, "per_s": 12_000.0},
        "append_sqlite_async_sealed": {"threads": 64, "per_s": 13_000.0},
    }
    (results / "audit.json").write_text(json.dumps(audit))
    lines = component_markdown(collect("read", tmp_path / "bench", ("sqlite",), None, print))
    assert any("sqlite_sealed, 64 threads: 12,000" in line for line in lines)
    assert any("sqlite_async_sealed, 64 coroutines: 13,000" in line for line in lines)


def test_encryption_summary_gives_best_and_per_round_ratios(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    codec = {k: {"1024": 100.0, "8192": 900.0} for k in ("seal", "open", "openssl")}
    http = {
        "sqlite": {
            "create Patient": {"on": 200.0, "off": 250.0, "ratio": 0.8,
                               "round_ratios": [0.78, 0.9, 0.82, 0.86], "round_ratio_median": 0.84},
            "read": {"on": 900.0, "off": 1000.0, "ratio": 0.9},  # written before rounds were kept
        }
    }  # fmt: skip
    reads = {"sqlite": {"cpu_us_on": 150.0, "cpu_us_off": 135.0,
                        "round_ratios": [0.88, 0.92, 0.9], "round_ratio_median": 0.9}}  # fmt: skip
    (results / "crypto.json").write_text(
        json.dumps({"codec_mb_s": codec, "http": http, "read_path": reads})
    )
    lines = component_markdown(collect("read", tmp_path / "bench", ("sqlite",), None, print))
    assert any("sqlite create Patient: encryption on 200/s, off 250/s (on/off 0.80; "
               "per round median 0.84, 0.78-0.90 over 4)" in ln for ln in lines)  # fmt: skip
    assert any("sqlite read: encryption on 900/s, off 1,000/s (on/off 0.90)" in ln for ln in lines)
    assert any("sqlite read in process: CPU 150 µs on, 135 µs off (off/on per round median "
               "0.90, 0.88-0.92 over 3)" in ln for ln in lines)  # fmt: skip
    # Results written before the read path was measured still summarize.
    (results / "crypto.json").write_text(json.dumps({"codec_mb_s": codec, "http": http}))
    lines = component_markdown(collect("read", tmp_path / "bench", ("sqlite",), None, print))
    assert not any("in process" in ln for ln in lines)


def test_access_summary_gives_pooled_and_per_round_overhead(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    row = {"workload": "read Observation/{id}", "p50_ms": 2.0, "p95_ms": 4.0, "rate": 2500.0}
    access = {
        "rows": [
            {**row, "caller": "off", "p95_overhead_pct": None},
            {**row, "caller": "system", "p95_overhead_pct": 7.5,
             "round_p95_overhead_median_pct": 6.25, "p95_vs_policy_off_pct": 2.5,
             "round_p95_vs_policy_off_median_pct": 1.75},
            {**row, "caller": "system, policy off", "p95_overhead_pct": 5.0,
             "round_p95_overhead_median_pct": 4.5, "p95_vs_policy_off_pct": None},
            {**row, "caller": "older", "p95_overhead_pct": 3.0},
        ]
    }  # fmt: skip
    (results / "access.json").write_text(json.dumps(access))
    lines = component_markdown(collect("read", tmp_path / "bench", ("sqlite",), None, print))
    assert any("system: p95 4.0 ms" in ln and "+7.5% p95 vs off; per-round median +6.2%; "
               "+2.5% p95 vs policy off, per-round median +1.8%)" in ln
               for ln in lines)  # fmt: skip
    assert any("system, policy off:" in ln and "(+5.0% p95 vs off; per-round median +4.5%)" in ln
               for ln in lines)  # fmt: skip
    assert any("older:" in ln and "(+3.0% p95 vs off)" in ln for ln in lines)
    assert any("off: p95 4.0 ms, 2,500/s (off)" in ln for ln in lines)
