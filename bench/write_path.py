"""bench_crypto.py section 2: the write path in process, encryption on and off, and two
partial variants that show where its cost goes (see WRITE_VARIANTS)."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crypto_dirs import prepare_dir  # beside this script
from phivault.crypto.blind_index import BLIND
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.fhir.indexing import index_rows
from phivault.service import Context
from phivault.vault import Vault, init_data_dir, open_vault


def new_patients(count: int) -> list[dict[str, object]]:
    """Patients of another seed than the loaded clinic's, without ids (server-assigned)."""
    people = generate_clinic(ClinicSpec(patients=count, seed=7))
    return [
        {k: v for k, v in r.items() if k != "id"} for r in people if r["resourceType"] == "Patient"
    ]


@contextmanager
def fresh_vault(encryption: bool) -> Iterator[tuple[Vault, Path]]:
    """An open vault on a new SQLite data directory of its own, and that directory
    (bench_instructions.py and bench_pages.py count what creates in it cost)."""
    with tempfile.TemporaryDirectory() as work:
        key_file, data = Path(work) / "key", Path(work) / "data"
        create_key_file(key_file)
        init_data_dir(data, KeyFileKeySource(key_file), encryption=encryption)
        vault = open_vault(data, KeyFileKeySource(key_file), encryption=encryption)
        try:
            yield vault, data
        finally:
            vault.close()


def per_create_parser(doc: str, *, creates: int, warm: int) -> argparse.ArgumentParser:
    """The command line of a bench that counts what one Patient create costs in fresh
    data directories, per source tree (bench_instructions.py, bench_pages.py)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=creates)
    parser.add_argument("--warm", type=int, default=warm)
    parser.add_argument("--trees", default="", help="source trees to compare, comma-separated")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    return parser


def trees_of(args: argparse.Namespace) -> list[str | None]:
    """`--trees` as a list; this checkout's code (None) when none is given."""
    if args.creates < 1 or args.warm < 1:
        raise SystemExit("--creates and --warm must be at least 1")
    return [t for t in args.trees.split(",") if t] or [None]


# The write path's variants: encryption on, two partial ones that show where its cost
# goes, and off. MEASUREMENT ONLY: the partial ones write identifying values (or their
# tokens) into a throwaway bench directory in a way phivault never does.
#   sealing: bodies sealed under per-patient keys, the search index left in clear;
#   no-prefix: everything but the blind prefix tokens (so neither them nor their FTS5 /
#     idx_blind rows).
WRITE_VARIANTS = ("on", "sealing", "no-prefix", "off")


def _partial(vault: Vault, variant: str) -> None:
    policy = vault.service.index_policy
    transform = policy.transform
    if variant == "sealing":
        policy.transform = lambda rtype, rows: rows  # type: ignore[method-assign]
    elif variant == "no-prefix":
        policy.transform = lambda rtype, rows: [  # type: ignore[method-assign]
            r for r in transform(rtype, rows) if r.kind != BLIND
        ]


class WritePath:
    """Section 2's four data directories (one per variant) and the Patients to create."""

    def __init__(self, work: Path, backend: str, creates: int, patients: int) -> None:
        self.people = new_patients(creates)
        self.vaults: dict[str, Vault] = {}
        for variant in WRITE_VARIANTS:
            encryption = variant != "off"
            tag = f"{backend}-write-{variant}"
            data, key_file = prepare_dir(work, tag, encryption, patients, backend)
            self.vaults[variant] = open_vault(
                data, KeyFileKeySource(key_file), encryption=encryption
            )
            _partial(self.vaults[variant], variant)
        self.cpu = dict.fromkeys(WRITE_VARIANTS, 0.0)
        self.done = dict.fromkeys(WRITE_VARIANTS, 0)

    def run(self, start: int, count: int, shift: int) -> dict[str, float]:
        """Create people[start:start+count] on every variant (the order rotated by
        `shift`); CPU seconds per variant."""
        ctx = Context(actor="bench")
        batch = self.people[start : start + count]
        used: dict[str, float] = {}
        shift %= len(WRITE_VARIANTS)
        for variant in WRITE_VARIANTS[shift:] + WRITE_VARIANTS[:shift]:
            service = self.vaults[variant].service
            began = time.process_time()
            for person in batch:
                service.create(ctx, "Patient", dict(person))
            used[variant] = time.process_time() - began
            self.cpu[variant] += used[variant]
            self.done[variant] += len(batch)
        return used

    def finish(self) -> dict[str, float]:
        """CPU ms per Patient create per variant; blind transform ms; index entries per
        Patient. Closes the vaults."""
        try:
            service = self.vaults["on"].service
            rows = [index_rows({**p, "id": "x"}) for p in self.people]
            began = time.process_time()
            blinded = [service.index_policy.transform("Patient", r) for r in rows]
            transform_ms = (time.process_time() - began) * 1000 / len(rows)
        finally:
            for vault in self.vaults.values():
                vault.close()
        # A blind row holds a parameter's prefix tokens; each is one index entry.
        blind_rows = sum(r.kind == BLIND for b in blinded for r in b)
        tokens = sum(len((r.value or "").split()) for b in blinded for r in b if r.kind == BLIND)
        return {
            **{f"cpu_ms_{v}": self.cpu[v] * 1000 / self.done[v] for v in WRITE_VARIANTS},
            "transform_ms": transform_ms,
            "rows_on": (sum(map(len, blinded)) - blind_rows + tokens) / len(blinded),
            "rows_off": sum(map(len, rows)) / len(rows),
            "blind_rows": tokens / len(blinded),
        }


def write_path(
    work: Path, backend: str, creates: int, patients: int, rounds: int = 4
) -> dict[str, float]:
    """CPU ms per Patient create per variant, on/off interleaved in `rounds` chunks."""
    path = WritePath(work, backend, creates, patients)
    chunk = max(1, creates // rounds)
    try:
        for turn, start in enumerate(range(0, creates, chunk)):
            path.run(start, chunk, turn)
    except BaseException:
        for vault in path.vaults.values():
            vault.close()
        raise
    return path.finish()
