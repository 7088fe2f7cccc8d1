"""What encryption adds to a Patient create's writes to disk, counted in database pages.

A write's time on disk is the pages its commit appends to SQLite's write-ahead log (each
written again to the database file by a later checkpoint). Timings of that move with the
disk and the machine's other work; the pages a create writes do not (up to where random ids
and tokens land in the B-trees). This bench creates Patients in process (the write path of
bench_crypto.py's section 2 and bench_instructions.py: `service.create` on one thread, one
commit each, a fresh SQLite data directory, encryption on or off) with the log's automatic
checkpoints off, and reads the frames the `--creates` creates after `--warm` appended to
the log: how many per create, and which table or index each page belongs to (SQLite's
`dbstat`). With `--trees`, the same for each source tree (its `src` directory, or a copy
of `src/phivault`'s parent), so that two versions of the storage are compared page by page.

Counted: pages written per commit. Not counted: the fsync's time, CPU (bench_crypto.py,
bench_instructions.py). PostgreSQL is not offered: its writes are the server's own.

    .venv/bin/python bench/bench_pages.py [--creates 500] [--warm 200]
        [--trees OLD/src,NEW/src]

Results: markdown on stdout, bench/results/pages.json.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIDES = ("on", "off")
_WAL_HEADER = 32
_FRAME_HEADER = 24
FREE = "(free or unknown)"  # a page no table or index holds once the run ends


def worker(side: str, creates: int, warm: int) -> None:
    """`--worker SIDE CREATES WARM`: prints {"pages_per_create": ..., "by_name": {...}}."""
    import phivault.store.sqlite as sqlite_store
    from phivault.service import Context
    from write_path import fresh_vault, new_patients  # beside this script

    # The log must only grow: a checkpoint would let SQLite start it again from the top.
    sqlite_store.WAL_AUTOCHECKPOINT_PAGES = 0
    with fresh_vault(side == "on") as (vault, data):
        people = new_patients(warm + creates)
        ctx = Context(actor="bench")
        for person in people[:warm]:
            vault.service.create(ctx, "Patient", dict(person))
        wal = _wal_file(data)
        start, salts = wal.stat().st_size, _salts(wal)
        for person in people[warm:]:
            vault.service.create(ctx, "Patient", dict(person))
        if _salts(wal) != salts:  # SQLite began the log again: frames were overwritten
            raise RuntimeError("the write-ahead log was checkpointed during the run")
        pages = _frame_pages(wal, start)
        names = _page_names(wal.with_name(wal.name.removesuffix("-wal")))
    by_name = Counter(names.get(page, FREE) for page in pages)
    print(
        json.dumps(
            {
                "pages_per_create": len(pages) / creates,
                "by_name": {name: n / creates for name, n in by_name.items()},
            }
        )
    )


def _wal_file(data: Path) -> Path:
    found = sorted(data.rglob("*.db-wal")) or sorted(data.rglob("*-wal"))
    if len(found) != 1:
        raise RuntimeError(f"expected one write-ahead log in the data directory, found {found}")
    return found[0]


def _salts(wal: Path) -> bytes:
    """The log header's salts: SQLite draws new ones whenever it starts the log again."""
    with wal.open("rb") as f:
        return f.read(_WAL_HEADER)[16:24]


def _frame_pages(wal: Path, start: int) -> list[int]:
    """The page number of every frame appended to the log after byte `start`."""
    raw = wal.read_bytes()
    page_size = struct.unpack(">I", raw[8:12])[0]
    frame = _FRAME_HEADER + page_size
    if start < _WAL_HEADER or (start - _WAL_HEADER) % frame:
        raise RuntimeError("the write-ahead log was cut during the run")
    return [
        struct.unpack(">I", raw[at : at + 4])[0] for at in range(start, len(raw) - frame + 1, frame)
    ]


def _page_names(database: Path) -> dict[int, str]:
    """Page number -> the table or index holding it, once the run has ended."""
    conn = sqlite3.connect(database)
    try:
        return dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
    except sqlite3.OperationalError as exc:
        raise RuntimeError("this SQLite has no dbstat table: pages cannot be named") from exc
    finally:
        conn.close()


def measure(tree: str | None, side: str, creates: int, warm: int) -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, str(HERE)) if p)
    argv = [sys.executable, __file__, "--worker", side, str(creates), str(warm)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {side} run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _table(found: dict[str, dict[str, object]], top: int) -> list[str]:
    on = found["on"]["by_name"]
    off = found["off"]["by_name"]
    assert isinstance(on, dict) and isinstance(off, dict)
    # What encryption changes first: by the difference, then by the pages written.
    names = sorted(
        set(on) | set(off),
        key=lambda n: (-abs(on.get(n, 0.0) - off.get(n, 0.0)), -on.get(n, 0.0) - off.get(n, 0.0)),
    )
    lines = [
        "| table or index (by on - off) | on | off | on - off |",
        "| --- | ---: | ---: | ---: |",
    ]
    rest_on = rest_off = 0.0
    for i, name in enumerate(names):
        a, b = float(on.get(name, 0.0)), float(off.get(name, 0.0))
        if i < top:
            lines.append(f"| {name} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
        else:
            rest_on, rest_off = rest_on + a, rest_off + b
    if len(names) > top:
        lines.append(f"| (the rest) | {rest_on:.2f} | {rest_off:.2f} | {rest_on - rest_off:+.2f} |")
    return lines


def main() -> None:
    from write_path import per_create_parser, trees_of  # beside this script

    parser = per_create_parser(__doc__, creates=500, warm=200)
    parser.add_argument("--top", type=int, default=20, help="tables and indexes listed by name")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return
    trees = trees_of(args)
    rows = []
    print(
        f"## Pages written per Patient create, in process, SQLite ({args.creates} creates "
        f"after {args.warm}, one commit each; 4 KiB pages appended to the write-ahead log)\n"
    )
    print("| tree | on | off | on - off | off/on |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for tree in trees:
        found = {side: measure(tree, side, args.creates, args.warm) for side in SIDES}
        on, off = (float(str(found[s]["pages_per_create"])) for s in SIDES)
        rows.append({"tree": tree or "this checkout", **found})
        print(
            f"| {tree or 'this checkout'} | {on:.2f} | {off:.2f} | {on - off:+.2f} | {off / on:.3f} |"
        )
    for row in rows:
        print(f"\n### Which tables and indexes: {row['tree']}\n")
        print("\n".join(_table({s: row[s] for s in SIDES}, args.top)))  # type: ignore[misc]
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "pages.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
