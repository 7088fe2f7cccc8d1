"""The bench report: one table (markdown and JSON) of throughput and p50/p95/p99 latency per
workload with every safeguard on and off, the ceiling, memory, database size, and the
component benches' figures."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from phivault.benchmark.loadgen import LoadResult
from phivault.benchmark.runner import (
    CEILING,
    GUARDED,
    RESOURCE_ROWS,
    ROWS,
    UNGUARDED,
    BackendResult,
    BenchConfig,
)

MB = 1024 * 1024


def _figures(result: LoadResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "per_s": round(result.unit_rate, 1),
        "requests_per_s": round(result.rate, 1),
        "p50_ms": round(result.pct(50), 2),
        "p95_ms": round(result.pct(95), 2),
        "p99_ms": round(result.pct(99), 2),
        "requests": result.requests,
        "units": result.units if result.units is not None else result.requests,
        "errors": result.errors,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
    }


def build(
    config: BenchConfig,
    results: list[BackendResult],
    machine: dict[str, Any],
    command: str,
    components: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    servers: dict[str, Any] = {}
    for r in results:
        for row in ROWS:
            if row not in r.rows:
                continue  # not measured in this run (`--rows`)
            on, off = _figures(r.merged(row, GUARDED)), _figures(r.merged(row, UNGUARDED))
            ratio = on["per_s"] / off["per_s"] if on and off and off["per_s"] else None
            rows.append(
                {
                    "backend": r.backend,
                    "workload": row,
                    "unit": "resources/s" if row in RESOURCE_ROWS else "requests/s",
                    "on": on,
                    "off": off,
                    "on_off_ratio": round(ratio, 3) if ratio is not None else None,
                }
            )
            ceiling = _figures(r.merged(row, CEILING))
            if ceiling is not None:
                rows.append(
                    {
                        "backend": "ceiling",
                        "workload": row,
                        "unit": "requests/s",
                        "on": None,
                        "off": ceiling,
                        "on_off_ratio": None,
                    }
                )
        servers[r.backend] = {
            "resources_loaded": r.resources,
            "load_seconds": {k: round(v, 2) for k, v in r.load_seconds.items()},
            "peak_rss_bytes": r.peak_rss,
            "db_loaded": {k: asdict(v) for k, v in r.db_loaded.items()},
            "db_final": {k: asdict(v) for k, v in r.db_final.items()},
            "db_bytes_per_1000_resources": {k: round(v.per_1000()) for k, v in r.db_loaded.items()},
        }
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "machine": machine,
        # The database URL may carry credentials: the report says only whether one was given.
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(config).items()
            if k != "pg_url"
        },
        "interleaved": True,
        "rows": rows,
        "servers": servers,
        "components": components,
    }


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def _side(fig: dict[str, Any] | None) -> list[str]:
    if fig is None:
        return ["", "", "", ""]
    return [
        _n(fig["per_s"]),
        _n(fig["p50_ms"], 1),
        _n(fig["p95_ms"], 1),
        _n(fig["p99_ms"], 1),
    ]


def markdown(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["config"]
    lines: list[str] = [
        f"Run {report['when']}"
        + (f" at commit {m['revision']}" if m.get("revision") else "")
        + f": `{report['command']}`",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, Python "
        f"{m['python']}, SQLite {m['sqlite']}"
        + (f", PostgreSQL {m['postgresql']}" if m.get("postgresql") else "")
        + f"; {m['platform']}.",
        "",
        f"Demo clinic of {c['patients']:,} patients; {c['concurrency']} keep-alive connections "
        f"from {c.get('load_processes', 1)} load generator process(es) of their own; "
        f"{c['rounds']} round(s), safeguards on and "
        "off interleaved workload by workload (order alternating); "
        + _workers(c.get("serve_workers", 1))
        + "On = `phivault serve` (encryption, audit, bearer token + access policy); off = the "
        "bench-only unguarded app on an unencrypted copy of the same clinic. Throughput is "
        "resources/s for bundle ingest and export, requests/s otherwise.",
        "",
        "| backend | workload | on /s | on p50 ms | on p95 ms | on p99 ms | off /s | off p50 ms "
        "| off p95 ms | off p99 ms | on/off | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        errors = sum((row[s] or {}).get("errors", 0) for s in ("on", "off"))
        name = row["workload"]
        if row["backend"] == "ceiling":
            name += " (bare Starlette+SQLite, no FHIR, no security)"
        cells = [row["backend"], name, *_side(row["on"]), *_side(row["off"])]
        cells += [_n(row["on_off_ratio"], 2), str(errors)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| backend | side | resources loaded | load s | peak RSS MB | DB MB / 1,000 resources "
        "| of which audit | DB MB after the run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, s in report["servers"].items():
        for side in ("on", "off", "ceiling"):
            if side not in s["peak_rss_bytes"]:
                continue
            rss = s["peak_rss_bytes"][side]
            loaded = s["db_loaded"].get(side)
            final = s["db_final"].get(side)
            per = audit = ""
            if loaded:
                per = _n(loaded["total_bytes"] / max(1, loaded["resources"]) * 1000 / MB, 2)
                if loaded["audit_bytes"] is not None:
                    audit = _n(loaded["audit_bytes"] / max(1, loaded["resources"]) * 1000 / MB, 2)
            cells = [
                backend,
                side,
                _n(s["resources_loaded"]) if loaded else "",
                _n(s["load_seconds"].get(side), 1),
                _n(rss / MB, 0) if rss else "",
                per,
                audit,
                _n(final["total_bytes"] / MB, 1) if final else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += component_markdown(report["components"])
    return "\n".join(lines) + "\n"


def component_markdown(components: dict[str, dict[str, Any]]) -> list[str]:
    if not components:
        return []
    lines = ["", "Component benches (quick sizes unless stated):", ""]
    for name, entry in components.items():
        head = f"- **{name}** (`{entry.get('script', '')} {entry.get('args', '')}`".rstrip()
        if entry.get("status") != "ok":
            lines.append(f"{head}): {entry.get('status')}")
            continue
        lines.append(f"{head}, {entry['when']}):")
        try:
            lines += [f"  - {line}" for line in _summary(name, entry["figures"])]
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            lines.append("  - (figures not in the expected shape; see the JSON report)")
    return lines


def _summary(name: str, f: Any) -> list[str]:
    out: list[str] = []
    if name == "audit":
        for key, v in f.items():
            if key.startswith("append_"):
                callers = "coroutines" if key.endswith("async_sealed") else "threads"
                out.append(f"durable audit appends/s, {key[7:]}, {v['threads']} {callers}: "
                           f"{v['per_s']:,.0f}")  # fmt: skip
            elif key.startswith("verify_"):
                out.append(f"verify {v['entries']:,} entries, {key[7:]}: {v['verify_s']:.2f} s")
            elif key.startswith("proof_"):
                out.append(f"inclusion proof at {v['size']:,} entries, {key.split('_')[1]}: "
                           f"mean {v['mean_ms']:.3f} ms, p99 {v['p99_ms']:.3f} ms")  # fmt: skip
        if "pymerkle" in f:
            out.append(f"pymerkle in-memory appends/s (not durable): "
                       f"{f['pymerkle']['inmemory_per_s']:,.0f}")  # fmt: skip
    elif name == "encryption":
        codec = f["codec_mb_s"]
        for size in ("1024", "8192"):
            seal, opened, ssl = (codec[k][size] for k in ("seal", "open", "openssl"))
            out.append(f"{size} B bodies, MB/s: codec seal {seal:,.0f}, open {opened:,.0f}, "
                       f"openssl {ssl:,.0f}")  # fmt: skip
        for backend, ops in f["http"].items():
            for op, v in ops.items():
                line = (f"{backend} {op}: encryption on {v['on']:,.0f}/s, off "
                        f"{v['off']:,.0f}/s (on/off {v['ratio']:.2f}")  # fmt: skip
                rounds = v.get("round_ratios")  # results written before rounds were kept
                if rounds:
                    line += (f"; per round median {v['round_ratio_median']:.2f}, "
                             f"{min(rounds):.2f}-{max(rounds):.2f} over {len(rounds)}")  # fmt: skip
                out.append(line + ")")
        for backend, v in f.get("read_path", {}).items():  # absent from older results
            rounds = v["round_ratios"]
            out.append(f"{backend} read in process: CPU {v['cpu_us_on']:,.0f} µs on, "
                       f"{v['cpu_us_off']:,.0f} µs off (off/on per round median "
                       f"{v['round_ratio_median']:.2f}, {min(rounds):.2f}-{max(rounds):.2f} "
                       f"over {len(rounds)})")  # fmt: skip
    elif name == "access control":
        for row in f["rows"]:
            over = row["p95_overhead_pct"]
            median = row.get("round_p95_overhead_median_pct")
            shown = " (off)"
            if over is not None:
                shown = f" ({over:+.1f}% p95 vs off"
                shown += f"; per-round median {median:+.1f}%" if median is not None else ""
                policy = row.get("p95_vs_policy_off_pct")
                if policy is not None:
                    shown += f"; {policy:+.1f}% p95 vs policy off"
                    twin = row.get("round_p95_vs_policy_off_median_pct")
                    shown += f", per-round median {twin:+.1f}%" if twin is not None else ""
                shown += ")"
            out.append(f"{row['workload']}, {row['caller']}: p95 {row['p95_ms']:.1f} ms, "
                       f"{row['rate']:,.0f}/s{shown}")  # fmt: skip
    elif name == "search":
        for backend, queries in f.items():
            for query, v in queries.items():
                if v:
                    out.append(f"{backend} {query}: p50 {v['p50']:.1f} ms, p95 {v['p95']:.1f} ms")
    elif name == "backup":
        out.append(f"{f['patients']:,} patients, data directory {f['bytes'] / 1e6:.1f} MB")
        for tool, v in f["rows"].items():
            figures = ", ".join(f"{k} {val:,.2f}" for k, val in v.items())
            out.append(f"{tool}: {figures}")
    else:
        out.append(json.dumps(f)[:300])
    return out


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "bench.md", out_dir / "bench.json"
    md.write_text(markdown(report), encoding="utf-8")
    js.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return md, js


def _workers(serve_workers: int) -> str:
    if serve_workers > 1:
        return f"`phivault serve --workers {serve_workers}`, the unguarded app one worker. "
    return "one server worker each. "
