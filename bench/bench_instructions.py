"""What encryption adds to a Patient create, counted in CPU instructions.

Timings on a shared machine move by a tenth of a millisecond from run to run, as much as
a change to the write path is worth. `valgrind --tool=callgrind` counts the instructions
a process executes instead: the same count for the same code and input, whatever else
the machine is doing. This bench creates Patients in process (the write path of
bench_crypto.py's section 2: `service.create` on one thread, a fresh SQLite data
directory, encryption on or off) under callgrind, once with `--warm` creates and once with
`--warm` + `--creates`; the difference over `--creates` is the instructions of one create,
start-up and the first creates' caches left out. With `--trees`, the same for each
source tree (its `src` directory, or a copy of `src/phivault`'s parent), so that two
versions of the code are compared by count.

Counted: user-space instructions of the Python process, SQLite's included; not the
kernel's work (the write-ahead log's writes; bench_pages.py counts those pages), and not
the time spent waiting. Instructions are not equal in cost: under valgrind OpenSSL does
not take the SHA-256 path of a CPU with SHA extensions, so the counts weigh the blind
index's HMACs as on a machine without them (where they cost several times what they cost
natively); judge a change to hashing by bench_crypto.py's transform column, not here. Under
callgrind Python runs some 50 times slower: 200 creates take a minute or two per count.
PostgreSQL is not offered: the server's work happens in its own processes.

    .venv/bin/python bench/bench_instructions.py [--creates 200] [--warm 20]
        [--trees OLD/src,NEW/src]

Needs valgrind. Results: markdown on stdout, bench/results/instructions.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIDES = ("on", "off")
_COLLECTED = re.compile(r"Collected : (\d+)")


def worker(side: str, creates: int, people: int) -> None:
    """`--worker SIDE N M`: the first N of M new Patients created in a fresh data directory
    (the counted run; every run makes the same M, so that making them counts alike)."""
    from phivault.service import Context
    from write_path import fresh_vault, new_patients  # beside this script

    with fresh_vault(side == "on") as (vault, _):
        ctx = Context(actor="bench")
        for person in new_patients(people)[:creates]:
            vault.service.create(ctx, "Patient", dict(person))


def count(tree: str | None, side: str, creates: int, people: int) -> int:
    """Instructions of a worker run of `creates` Patient creates under callgrind."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = tree
    with tempfile.TemporaryDirectory() as out:
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out",
            sys.executable, __file__, "--worker", side, str(creates), str(people),
        ]  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the callgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_create(tree: str | None, side: str, warm: int, creates: int) -> float:
    """Instructions of one create: the two counts' difference over `creates`. The two
    runs go side by side (one core each)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        people = warm + creates
        short = pool.submit(count, tree, side, warm, people)
        long = pool.submit(count, tree, side, people, people)
        return (long.result() - short.result()) / creates


def main() -> None:
    from write_path import per_create_parser, trees_of  # beside this script

    args = per_create_parser(__doc__, creates=200, warm=20).parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench_instructions.py needs valgrind (Debian: apt-get install valgrind)")
    trees = trees_of(args)
    rows = []
    for tree in trees:
        found = {side: per_create(tree, side, args.warm, args.creates) for side in SIDES}
        rows.append({"tree": tree or "this checkout", **found, "ratio": found["off"] / found["on"]})
    print(
        f"## Instructions per Patient create, in process, SQLite ({args.creates} creates "
        f"after {args.warm}; callgrind)\n"
    )
    print("| tree | on | off | on - off | off/on (throughput) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['tree']} | {row['on'] / 1e6:.3f} M | {row['off'] / 1e6:.3f} M | "
            f"{(row['on'] - row['off']) / 1e6:+.3f} M | {row['ratio']:.3f} |"
        )
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "instructions.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
