"""What encryption at rest costs, measured in one run on this machine.

1. The store's codec (AES-256-GCM under a patient's data key, with phivault's header, AAD
   and key lookup) against the machine's own AES-GCM (`openssl speed -evp aes-256-gcm
   -seconds 2`, its 1024- and 8192-byte columns), single thread both.
2. The write path in process (bench/write_path.py), encryption on and off (same run,
   interleaved): CPU milliseconds per Patient create through `service.create` on one
   thread (process CPU time, so other load on the machine barely moves it), and where they
   go: two partial variants (bench only: bodies sealed with the index in clear; the blind
   index without its prefix tokens), the blind transform alone, and the index rows written
   per Patient. Steadier than HTTP figures on a shared machine; `--write-creates 0` skips
   it.
2b. Reads by id in process, encryption on and off (bench/read_path.py): the same app as
   in section 3 driven on one event loop without sockets, `--concurrency` reads in
   flight, `--rounds` alternating rounds; process CPU µs per read (every thread) and each
   round's on/off. What section 3's read row measures, without the HTTP parsing and the
   load generator, and far steadier on a shared machine; `--read-requests 0` skips it.
3. Create / read / search over HTTP with encryption on and off (bench/crypto_http.py,
   as is section 4): the same app (bench/crypto_app.py: `open_vault(encryption=...)`
   under uvicorn, one worker, the same settings as `phivault serve`), the demo clinic
   loaded, the load generator in a separate process (phivault.benchmark.loadgen),
   `--rounds` rounds with the order of the two sides alternating. Creates: new Patients
   (the worst case: each one a compartment without a data key yet, and the most
   identifying values to blind), Observations of loaded patients, and the clinic mix
   (the demo clinic's resources in its proportions, about one new Patient in nine;
   workloads.create_clinic_mix). Reported: the best round per side; each round's on/off
   ratio and their median (the sturdier figure on a shared machine: a best-of-2 ratio
   moved from 0.75 to 0.86 between two runs of the same code); and the server's CPU
   time per request (user + system of the server process, all its threads, from /proc),
   summed over every round: the work a request costs, which other load on a shared
   machine moves much less than requests/s.
4. With `--stages N`: where a Patient create's CPU goes over HTTP, on and off, stage by
   stage (thread CPU of validation, blinding, the data key, sealing, the store, the audit
   entry, the group commit; bench/stages.py), from N creates per side on servers of
   their own. Slower than section 3 (every stage reads the clock twice), so not part of it.

    .venv/bin/python bench/bench_crypto.py [--patients 200] [--requests 3000]
        [--concurrency 16] [--backends sqlite,postgresql] [--rounds 4]
        [--write-creates 600] [--read-requests 20000] [--skip-http] [--stages 0]
    .venv/bin/python bench/bench_crypto.py --trees OLD/src,NEW/src [--write-creates 800]
        [--read-requests 20000]
        (sections 2 and 2b only, for each source tree, the trees in lockstep)

Results: markdown on stdout, bench/results/crypto.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from crypto_dirs import drop_schemas  # beside this script
from crypto_http import TARGET, http_section, stages_section  # beside this script
from phivault.crypto import primitives
from phivault.crypto.codec import KeyRingCodec
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.vault import init_data_dir, open_vault
from read_path import open_read_path, read_header, read_rounds, read_row, read_summary, read_worker
from write_path import WritePath, write_path

SIZES = (1024, 8192)


# --- 1. codec against openssl ---------------------------------------------------------------


def openssl_gcm() -> dict[int, float]:
    """MB/s of `openssl speed -evp aes-256-gcm` at 1024 and 8192 bytes."""
    out = subprocess.run(
        ["openssl", "speed", "-evp", "aes-256-gcm", "-seconds", "2"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    header = next(line for line in out.splitlines() if line.startswith("type"))
    row = next(line for line in out.splitlines() if line.lower().startswith("aes-256-gcm"))
    sizes = [int(s) for s in re.findall(r"(\d+) bytes", header)]
    rates = [float(v.rstrip("k")) * 1000 / 1e6 for v in row.split()[1:]]  # "k" = 1000s B/s
    by_size = dict(zip(sizes, rates, strict=True))
    return {size: by_size[size] for size in SIZES}


def per_second(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls of `fn` per second, over at least `seconds`."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        calls += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def codec_speed(work: Path) -> dict[str, dict[int, float]]:
    key_file, data = work / "codec.key", work / "codec-data"
    create_key_file(key_file)
    init_data_dir(data, KeyFileKeySource(key_file))
    vault = open_vault(data, KeyFileKeySource(key_file))
    try:
        codec = vault.service.codec
        assert isinstance(codec, KeyRingCodec)
        compartment = "Patient/bench"
        codec.prepare(compartment)
        key = primitives.random_key()
        found: dict[str, dict[int, float]] = {"seal": {}, "open": {}, "aead": {}}
        for size in SIZES:
            body = (b'{"resourceType":"Observation","note":"' + b"x" * size)[:size]
            blob = codec.seal("Observation", "o1", 1, compartment, body)
            mb = size / 1e6
            found["seal"][size] = mb * per_second(
                lambda b=body: codec.seal("Observation", "o1", 1, compartment, b)
            )
            found["open"][size] = mb * per_second(
                lambda b=blob: codec.open("Observation", "o1", 1, compartment, b)
            )
            found["aead"][size] = mb * per_second(
                lambda b=body: primitives.aead_encrypt(key, b, b"Observation/o1/1")
            )
        return found
    finally:
        vault.close()


# --- 2. the write path in process ----------------------------------------------------------


def write_path_trees(
    backend: str, creates: int, patients: int, trees: list[str], rounds: int = 8
) -> dict[str, dict[str, float]]:
    """Section 2 for several source trees in lockstep: one worker process per tree (its
    PYTHONPATH the tree, its own four data directories); chunk by chunk every tree runs
    the chunk on every variant, the trees' order alternating, so that load on a shared
    machine falls on all of them alike."""
    found: dict[str, dict[str, float]] = {}
    with _workers(trees, ["--write-worker", backend, "--write-creates", str(creates),
                          "--patients", str(patients)]) as workers:  # fmt: skip
        chunk = max(1, creates // rounds)
        for turn, start in enumerate(range(0, creates, chunk)):
            order = trees if turn % 2 == 0 else trees[::-1]
            for tree in order:
                _ask(workers[tree], f"{start} {chunk} {turn}")
        for tree, worker in workers.items():
            found[tree] = _ask(worker, "finish")
    return found


def read_path_trees(
    backend: str, reads: int, patients: int, concurrency: int, trees: list[str], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """The read path section for several source trees in lockstep (a worker process per
    tree, as write_path_trees): round by round, every tree reads on both sides, the
    trees' order alternating. Per tree and side, CPU µs per read of each round."""
    found: dict[str, dict[str, list[float]]] = {t: {"on": [], "off": []} for t in trees}
    with _workers(trees, ["--read-worker", backend, "--patients", str(patients),
                          "--concurrency", str(concurrency)]) as workers:  # fmt: skip
        for turn in range(rounds):
            for tree in trees if turn % 2 == 0 else trees[::-1]:
                for side, used in _ask(workers[tree], f"{max(1, reads // rounds)} {turn}").items():
                    found[tree][side].append(used)
    return found


@contextlib.contextmanager
def _workers(trees: list[str], argv: list[str]) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """This script as a worker per source tree (its PYTHONPATH the tree), each set up."""
    workers: dict[str, subprocess.Popen[str]] = {}
    try:
        for tree in trees:
            workers[tree] = subprocess.Popen(
                [sys.executable, __file__, *argv], env=dict(os.environ, PYTHONPATH=tree),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        for worker in workers.values():
            _ask(worker, None)  # set up
        yield workers
    finally:
        for worker in workers.values():
            # End of input ends the worker, which then drops its PostgreSQL schemas (main):
            # killed at once, it would leave them behind.
            if worker.stdin is not None:
                worker.stdin.close()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _ask(worker: subprocess.Popen[str], line: str | None) -> dict[str, float]:
    assert worker.stdin is not None and worker.stdout is not None
    if line is not None:
        worker.stdin.write(line + "\n")
        worker.stdin.flush()
    answer = worker.stdout.readline()
    if not answer:
        raise RuntimeError("a bench worker ended early")
    result: dict[str, float] = json.loads(answer)
    return result


def write_worker(backend: str, creates: int, patients: int) -> None:
    """`--write-worker`: WritePath driven over stdin/stdout (write_path_trees)."""
    with tempfile.TemporaryDirectory(prefix="phivault-bench-crypto-") as tmp:
        path = WritePath(Path(tmp), backend, creates, patients)
        print(json.dumps({}), flush=True)
        for line in sys.stdin:
            if line.strip() == "finish":
                print(json.dumps(path.finish()), flush=True)
                return
            start, count, shift = map(int, line.split())
            print(json.dumps(path.run(start, count, shift)), flush=True)


# --- 2b. reads by id in process -------------------------------------------------------------


def read_section(
    args: argparse.Namespace, work: Path, lines: list[str]
) -> dict[str, dict[str, object]]:
    """Section 2b per backend: its table appended to `lines`."""
    lines += read_header(
        f"Reads by id in process ({args.read_requests} Patient reads per side, "
        f"{args.concurrency} in flight, {args.rounds} alternating rounds; process CPU µs "
        "per read, all threads)",
        "backend",
    )
    found: dict[str, dict[str, object]] = {}
    for backend in args.backends.split(","):
        rounds = read_rounds(
            lambda b=backend: open_read_path(work, b, args.patients, args.concurrency),
            args.read_requests,
            args.rounds,
        )
        found[backend] = read_summary(rounds)
        lines.append(read_row(backend, found[backend], TARGET))
    return found


def main() -> None:
    try:
        run()
    finally:
        drop_schemas()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--write-creates", type=int, default=600)
    parser.add_argument(
        "--read-requests", type=int, default=20000, help="section 2b: reads by id per side"
    )
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--stages", type=int, default=0, help="section 4: this many Patient creates per side"
    )
    parser.add_argument(
        "--trees",
        help="comma-separated source dirs (src/): sections 2 and 2b only, the trees in lockstep",
    )
    parser.add_argument("--write-worker", help=argparse.SUPPRESS)  # a backend: see write_worker
    parser.add_argument("--read-worker", help=argparse.SUPPRESS)  # a backend: see read_worker
    args = parser.parse_args()
    if args.write_worker:
        write_worker(args.write_worker, args.write_creates, args.patients)
        return
    if args.read_worker:
        read_worker(args.read_worker, args.patients, args.concurrency)
        return
    if args.trees:
        trees_section(args)
        return
    report: dict[str, object] = {}
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{platform.platform()}",
        "",
        "## Codec against the machine's AES-256-GCM (single thread, MB/s)",
        "",
        "| size | openssl speed | aead_encrypt (Python) | codec seal | codec open | seal / openssl | open / openssl |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory(prefix="phivault-bench-crypto-") as tmp:
        work = Path(tmp)
        ssl = openssl_gcm()
        codec = codec_speed(work)
        for size in SIZES:
            seal, opened = codec["seal"][size], codec["open"][size]
            lines.append(
                f"| {size} | {ssl[size]:,.0f} | {codec['aead'][size]:,.0f} | {seal:,.0f} | "
                f"{opened:,.0f} | {seal / ssl[size]:.2f} | {opened / ssl[size]:.2f} |"
            )
        report["codec_mb_s"] = {"openssl": ssl, **codec}
        if args.write_creates:
            lines += [
                "",
                f"## Write path in process ({args.write_creates} Patient creates per side, one "
                "thread, on/off interleaved; CPU time)",
                "",
                "| backend | CPU ms/create on | sealing only | all but prefix tokens | off | "
                "on/off (throughput) | sealing only/off | all but prefix/off | "
                "blind transform ms | index rows on | off | of which blind |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            writes: dict[str, object] = {}
            for backend in args.backends.split(","):
                w = write_path(work, backend, args.write_creates, args.patients)
                writes[backend] = w
                off = w["cpu_ms_off"]
                lines.append(
                    f"| {backend} | {w['cpu_ms_on']:.2f} | {w['cpu_ms_sealing']:.2f} | "
                    f"{w['cpu_ms_no-prefix']:.2f} | {off:.2f} | {off / w['cpu_ms_on']:.2f} | "
                    f"{off / w['cpu_ms_sealing']:.2f} | {off / w['cpu_ms_no-prefix']:.2f} | "
                    f"{w['transform_ms']:.2f} | "
                    f"{w['rows_on']:.0f} | {w['rows_off']:.0f} | {w['blind_rows']:.0f} |"
                )
            lines += [
                "",
                "sealing only: bodies sealed, index in clear; all but prefix tokens: the blind "
                "index without its prefix tokens (bench-only variants).",
            ]
            report["write_path"] = writes
        if args.read_requests:
            report["read_path"] = read_section(args, work, lines)
        if not args.skip_http:
            report["http"] = http_section(args, work, lines)
        if args.stages:
            report["stages"] = stages_section(args, work, lines)
    print("\n".join(lines))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "crypto.json").write_text(json.dumps(report, indent=2))


def trees_section(args: argparse.Namespace) -> None:
    """`--trees`: sections 2 and 2b for each source tree, in lockstep (write_path_trees,
    read_path_trees)."""
    trees = [str(Path(t).resolve()) for t in args.trees.split(",") if t]
    lines: list[str] = []
    report: dict[str, object] = {"trees": trees}
    if args.write_creates:
        lines += [
            f"## Write path in process, trees in lockstep ({args.write_creates} Patient "
            "creates per variant and tree, one thread; CPU ms per create)",
            "",
            "| backend | tree | on | sealing only | all but prefix tokens | off | on/off | "
            "blind transform ms |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        writes: dict[str, object] = {}
        for backend in args.backends.split(","):
            found = write_path_trees(backend, args.write_creates, args.patients, trees)
            writes[backend] = found
            for tree, w in found.items():
                lines.append(
                    f"| {backend} | {tree} | {w['cpu_ms_on']:.2f} | {w['cpu_ms_sealing']:.2f} | "
                    f"{w['cpu_ms_no-prefix']:.2f} | {w['cpu_ms_off']:.2f} | "
                    f"{w['cpu_ms_off'] / w['cpu_ms_on']:.2f} | {w['transform_ms']:.2f} |"
                )
        report["write_path"] = writes
    if args.read_requests:
        lines += read_header(
            f"Reads by id in process, trees in lockstep ({args.read_requests} Patient "
            f"reads per side and tree, {args.concurrency} in flight; process CPU µs per read)",
            "backend, tree",
        )
        reads: dict[str, dict[str, object]] = {}
        for backend in args.backends.split(","):
            by_tree = read_path_trees(
                backend, args.read_requests, args.patients, args.concurrency, trees, args.rounds
            )
            for tree, rounds in by_tree.items():
                summary = reads.setdefault(backend, {})[tree] = read_summary(rounds)
                lines.append(read_row(f"{backend}, {tree}", summary, TARGET))
        report["read_path"] = reads
    print("\n".join(lines))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "crypto_trees.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
