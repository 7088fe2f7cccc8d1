"""The audit log, measured in one run on this machine, next to pymerkle.

    .venv/bin/python bench/bench_audit.py [--threads 256] [--appends 60000]
        [--verify-entries 1000000] [--proof-sizes 1000000,10000000] [--skip-pg]

1. Durable append rate under concurrent requests: many threads call AuditLog.record
   without a transaction (group commit), on SQLite (synchronous=FULL) and PostgreSQL;
   unsealed and sealed (as served: every commit also seals the log, audit/seal.py). Also
   sealed with as many coroutine callers instead of threads ("async_sealed"): how the
   served app waits for a read's entry (`AuditLog.deferred`, `Deferred.durable`).
2. `verify` time for a log of --verify-entries entries (built by direct batch appends).
3. Inclusion proof time at each of --proof-sizes (node tables built directly, fast).
4. pymerkle's append rate on the same machine (in memory, and its SQLite tree).

Results go to stdout as a markdown table and to bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from phivault.audit.append import RightEdge, append_entries
from phivault.audit.checkpoint import CheckpointSigner, make_checkpoint, tree_root
from phivault.audit.entry import encode_fields, index_row_of
from phivault.audit.events import AccessEvent
from phivault.audit.log import AuditLog
from phivault.audit.merkle import NodeKey, new_nodes_for_append, perfect_subtrees
from phivault.audit.proofs import inclusion_proof, verify_inclusion
from phivault.audit.reader import StoreNodes
from phivault.audit.seal import LogSeal
from phivault.audit.verify import verify_log
from phivault.store import audit_sql
from phivault.store.base import Store
from phivault.store.factory import SQLITE_FILE, open_store

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("PHIVAULT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
SEED = hashlib.sha256(b"bench signing seed").digest()
Row = dict[str, Any]


def event(n: int) -> AccessEvent:
    return AccessEvent(
        action="read",
        actor=f"user-{n % 50}",
        client="10.0.0.7",
        purpose="TREAT",
        rtype="Observation",
        rid=str(uuid.UUID(int=n)),
        version=1,
        compartment=f"Patient/{n % 5000}",
        data_hash=hashlib.sha256(n.to_bytes(8, "big")).hexdigest(),
    )


def pseudonym(compartment: str) -> str:
    return hashlib.sha256(compartment.encode()).hexdigest()[:32]


def synthetic_entry(n: int) -> tuple[bytes, Any]:
    """A realistic entry (about 330 bytes) and its index row, without a service."""
    fields = {
        "v": 1,
        "time": f"2024-01-01T00:{(n // 60_000) % 60:02d}:{(n // 1000) % 60:02d}.{n % 1000:03d}Z",
        "action": "read",
        "outcome": "0",
        "actor": f"user-{n % 50}",
        "client": "10.0.0.7",
        "type": "Observation",
        "id": str(uuid.UUID(int=n)),
        "version": 1,
        "patient": pseudonym(f"Patient/{n % 5000}"),
        "data_sha256": hashlib.sha256(n.to_bytes(8, "big")).hexdigest(),
    }
    return encode_fields(fields), index_row_of(fields)


# -- 1. durable appends under concurrency ---------------------------------------------------


def append_rate(store: Store, threads: int, appends: int, variant: str = "") -> dict[str, Any]:
    """Each thread records its events one by one, each waiting until durable, as a request
    handler does; the events are made beforehand so that only `record` is measured.
    variant "sealed": with the signing key, so every commit also seals the log (as served;
    audit/seal.py); "": without, the baseline of the same run."""
    log = AuditLog(store, pseudonym, CheckpointSigner(SEED) if variant == "sealed" else None)
    per_thread = appends // threads
    barrier = threading.Barrier(threads + 1)
    events = [[event(k * per_thread + i) for i in range(per_thread)] for k in range(threads)]

    def worker(k: int) -> None:
        barrier.wait()
        for item in events[k]:
            log.record(item)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    log.close()
    done = per_thread * threads
    assert store.audit_size() >= done
    return _rate(threads, done, seconds, cpu)


def _rate(callers: int, done: int, seconds: float, cpu: float) -> dict[str, Any]:
    # Process CPU per append (callers, appender, driver; not PostgreSQL's server): steadier
    # than the rate on a shared machine, where the rate follows the other processes' load.
    return {"threads": callers, "appends": done, "seconds": seconds, "per_s": done / seconds,
            "cpu_us_per_append": cpu / done * 1e6}  # fmt: skip


def append_rate_async(
    store: Store, callers: int, appends: int, variant: str = ""
) -> dict[str, Any]:
    """As the served app runs reads (api/fhir_routes.py `_released`): `callers` coroutines
    on one event loop each record an event inside `AuditLog.deferred()` and await
    `durable()` before the next, so no thread blocks per request."""
    log = AuditLog(store, pseudonym, CheckpointSigner(SEED) if variant == "sealed" else None)
    per_caller = appends // callers
    events = [[event(k * per_caller + i) for i in range(per_caller)] for k in range(callers)]

    async def caller(items: list[AccessEvent]) -> None:
        for item in items:
            with log.deferred() as pending:
                log.record(item)
            await pending.durable()

    async def run_all() -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller(items) for items in events))
        return time.perf_counter() - started, time.process_time() - cpu

    seconds, cpu = asyncio.run(run_all())
    log.close()
    done = per_caller * callers
    assert store.audit_size() >= done
    return _rate(callers, done, seconds, cpu)


# -- 2. verify ------------------------------------------------------------------------------


def build_log(store: Store, entries: int, batch: int = 50_000) -> float:
    """Entries, nodes and index columns through the real append path, in big batches."""
    started = time.perf_counter()
    edge = RightEdge()
    # Sealed as the server seals (audit/seal.py): a checkpoint refuses an unsealed tail.
    seal = LogSeal.of(CheckpointSigner(SEED))
    for start in range(0, entries, batch):
        made = [synthetic_entry(n) for n in range(start, min(start + batch, entries))]
        with store.write() as tx:
            append_entries(tx, [e for e, _ in made], [r for _, r in made], edge, seal=seal)
        edge.commit()
    return time.perf_counter() - started


# -- 3. proofs ------------------------------------------------------------------------------


def build_nodes_sqlite(path: Path, size: int, chunk: int = 1 << 20) -> float:
    """The node table of a `size`-leaf tree, written straight into SQLite (no entries)."""
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    edge: dict[NodeKey, bytes] = {}
    done = 0
    while done < size:
        count = min(chunk, size - done)
        leaves = [hashlib.sha256(n.to_bytes(8, "big")).digest() for n in range(done, done + count)]
        nodes = new_nodes_for_append(
            done, leaves, lambda keys, edge=edge: {k: edge[k] for k in keys}
        )
        done += count
        edge = {k: nodes.get(k) or edge[k] for k in perfect_subtrees(0, done)}
        rows = [(lv, ix, h) for (lv, ix), h in nodes.items()]
        conn.execute("BEGIN")
        for sql, params in audit_sql.insert_chunks("audit_nodes", audit_sql.NODE_COLUMNS, rows):
            conn.execute(sql, params)
        conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def build_nodes_pg(url: str, schema: str, size: int, chunk: int = 1 << 20) -> float:
    started = time.perf_counter()
    edge: dict[NodeKey, bytes] = {}
    done = 0
    with psycopg.connect(url) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        while done < size:
            count = min(chunk, size - done)
            leaves = [
                hashlib.sha256(n.to_bytes(8, "big")).digest() for n in range(done, done + count)
            ]
            nodes = new_nodes_for_append(
                done, leaves, lambda keys, edge=edge: {k: edge[k] for k in keys}
            )
            done += count
            edge = {k: nodes.get(k) or edge[k] for k in perfect_subtrees(0, done)}
            with conn.cursor().copy("COPY audit_nodes (level, idx, hash) FROM STDIN") as copy:
                for (lv, ix), h in nodes.items():
                    copy.write_row((lv, ix, h))
            conn.commit()
    return time.perf_counter() - started


def proof_times(store: Store, size: int, samples: int = 2000) -> dict[str, Any]:
    nodes = StoreNodes(store)
    rng = random.Random(size)
    root = tree_root(store.audit_nodes, size)
    times: list[float] = []
    for _ in range(samples):
        index = rng.randrange(size)
        started = time.perf_counter()
        proof = inclusion_proof(index, size, nodes)
        times.append(time.perf_counter() - started)
        leaf = store.audit_nodes([(0, index)])[(0, index)]
        verify_inclusion(leaf, index, size, proof, root)
    times.sort()
    return {
        "size": size,
        "samples": samples,
        "mean_ms": statistics.fmean(times) * 1000,
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


# -- 4. pymerkle ----------------------------------------------------------------------------


def pymerkle_rates(count: int, tmp: Path) -> dict[str, Any]:
    import pymerkle

    data = [synthetic_entry(n)[0] for n in range(count)]
    tree = pymerkle.InmemoryTree(algorithm="sha256", disable_security=False)
    started = time.perf_counter()
    for entry in data:
        tree.append_entry(entry)
    memory = count / (time.perf_counter() - started)

    durable_count = min(count, 2000)
    sqlite_tree = pymerkle.SqliteTree(str(tmp / "pymerkle.db"), algorithm="sha256")
    started = time.perf_counter()
    for entry in data[:durable_count]:
        sqlite_tree.append_entry(entry)  # one commit per entry
    durable = durable_count / (time.perf_counter() - started)
    started = time.perf_counter()
    sqlite_tree.append_entries(data[durable_count:])
    batch = (count - durable_count) / (time.perf_counter() - started)
    sqlite_tree.close()
    return {
        "inmemory_per_s": memory,
        "sqlite_one_commit_each_per_s": durable,
        "sqlite_append_entries_per_s": batch,
        "version": getattr(pymerkle, "__version__", "?"),
    }


# -- running --------------------------------------------------------------------------------


def with_store(backend: str, tmp: Path, body: Callable[[Store, str | None], Any]) -> Any:
    schema = "bench_audit_" + uuid.uuid4().hex[:8]
    url = None if backend == "sqlite" else f"{PG_URL}?schema={schema}"
    folder = tmp / f"{backend}-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    store = open_store(folder, url)
    try:
        return body(store, url)
    finally:
        store.close()
        if url is not None:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=256)
    parser.add_argument("--appends", type=int, default=60_000)
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    parser.add_argument("--proof-sizes", default="1000000,10000000")
    parser.add_argument("--pymerkle-entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="append runs (median reported)")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--appends-only", action="store_true", help="only the append rates")
    parser.add_argument(
        "--no-async-callers",
        dest="async_callers",
        action="store_false",
        help="skip the sealed run with coroutine callers (as the served app awaits reads)",
    )
    args = parser.parse_args()
    backends = ["sqlite"] + ([] if args.skip_pg else ["postgresql"])
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform()},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        variants = ("", "sealed", "async_sealed") if args.async_callers else ("", "sealed")
        for backend in backends:
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            for _ in range(args.rounds):
                for variant in variants:  # interleaved: each variant sees the same conditions
                    runs[variant].append(
                        with_store(
                            backend,
                            tmp,
                            lambda s, _u, v=variant: (
                                append_rate_async(s, args.threads, args.appends, "sealed")
                                if v.startswith("async")
                                else append_rate(s, args.threads, args.appends, v)
                            ),
                        )
                    )
            for variant, rounds in runs.items():
                rates = sorted(r["per_s"] for r in rounds)
                cpu = statistics.median(r["cpu_us_per_append"] for r in rounds)
                rate = {**rounds[0], "per_s": statistics.median(rates), "rounds": rates,
                        "cpu_us_per_append": cpu}  # fmt: skip
                name = f"append_{backend}" + (f"_{variant}" if variant else "")
                results[name] = rate
                print(f"{name}: {rates} durable appends/s", file=sys.stderr)
        if args.appends_only:
            report(results)
            return

        def verify_run(store: Store, _url: str | None) -> dict[str, Any]:
            built = build_log(store, args.verify_entries)
            blob = make_checkpoint(store, CheckpointSigner(SEED))
            assert blob is not None
            report = verify_log(store, CheckpointSigner(SEED).public_key)
            assert report.ok, report.findings[:3]
            return {"entries": report.size, "build_s": built, "verify_s": report.seconds}

        for backend in backends:
            results[f"verify_{backend}"] = with_store(backend, tmp, verify_run)
            print(f"{backend}: verify {results[f'verify_{backend}']}", file=sys.stderr)

        for size in (int(s) for s in args.proof_sizes.split(",") if s):

            def sqlite_proofs(store: Store, _url: str | None, size: int = size) -> Any:
                path = Path(getattr(store, "path", tmp / SQLITE_FILE))
                built = build_nodes_sqlite(path, size)
                return {**proof_times(store, size), "build_s": built}

            results[f"proof_sqlite_{size}"] = with_store("sqlite", tmp, sqlite_proofs)
            print(f"sqlite proofs at {size}: {results[f'proof_sqlite_{size}']}", file=sys.stderr)
            if "postgresql" in backends:

                def pg_proofs(store: Store, url: str | None, size: int = size) -> Any:
                    assert url is not None
                    base, schema = url.split("?schema=")
                    built = build_nodes_pg(base, schema, size)
                    return {**proof_times(store, size), "build_s": built}

                results[f"proof_postgresql_{size}"] = with_store("postgresql", tmp, pg_proofs)
                print(
                    f"pg proofs at {size}: {results[f'proof_postgresql_{size}']}", file=sys.stderr
                )
        results["pymerkle"] = pymerkle_rates(args.pymerkle_entries, tmp)
    report(results)


def report(results: dict[str, Any]) -> None:
    lines = ["| measurement | result | target |", "| --- | --- | --- |"]
    for key, value in results.items():
        if key.startswith("append_"):
            lines.append(
                f"| durable appends/s, {key[7:]}, {value['threads']} "
                f"{'coroutines' if 'async' in key else 'threads'} (group commit), "
                f"median of {len(value['rounds'])} | {value['per_s']:,.0f} "
                f"(runs: {', '.join(f'{r:,.0f}' for r in value['rounds'])}; process CPU "
                f"{value['cpu_us_per_append']:.0f} us/append) | >= 20,000 |"
            )
        elif key.startswith("verify_"):
            lines.append(
                f"| verify {value['entries']:,} entries, {key[7:]} | {value['verify_s']:.2f} s "
                f"(log built in {value['build_s']:.0f} s) | < 10 s |"
            )
        elif key.startswith("proof_"):
            lines.append(
                f"| inclusion proof at {value['size']:,}, {key.split('_')[1]} "
                f"| mean {value['mean_ms']:.3f} ms, p99 {value['p99_ms']:.3f} ms | < 2 ms |"
            )
    pm = results.get("pymerkle")
    if pm is None:  # --appends-only: print, keep the full results file
        print("\n".join(lines))
        return
    lines.append(f"| pymerkle {pm['version']} InmemoryTree appends/s (not durable) "
                 f"| {pm['inmemory_per_s']:,.0f} | |")  # fmt: skip
    lines.append(f"| pymerkle SqliteTree appends/s, one commit each "
                 f"| {pm['sqlite_one_commit_each_per_s']:,.0f} | |")  # fmt: skip
    lines.append(f"| pymerkle SqliteTree append_entries (batch) appends/s "
                 f"| {pm['sqlite_append_entries_per_s']:,.0f} | |")  # fmt: skip
    print("\n".join(lines))
    out = ROOT / "bench" / "results" / "audit.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
