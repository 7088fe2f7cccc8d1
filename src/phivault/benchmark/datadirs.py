"""Data directories for the bench: the demo clinic loaded into a guarded directory (what
`serve` runs) and an identical unguarded one (encryption off, for the comparison), their
database sizes, and bearer tokens for the guarded server."""

from __future__ import annotations

import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from phivault.benchmark.servers import PHIVAULT
from phivault.benchmark.workloads import CLINIC_SEED
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.errors import BenchmarkFailed
from phivault.service import Context
from phivault.store.factory import SQLITE_FILE
from phivault.vault import init_data_dir, open_vault

CLIENT_SCOPE = "system/*.cruds"
TOKEN_LIFETIME_S = 900  # the most `token issue` grants
TOKEN_RENEW_S = 600


@dataclass
class DataDir:
    backend: str
    guarded: bool
    data_dir: Path
    key_file: Path
    db_url: str | None
    schema: str | None
    resources: int = 0
    load_seconds: float = 0.0


def prepare(work: Path, backend: str, guarded: bool, patients: int, pg_url: str | None) -> DataDir:
    """Create the directory (encryption as `guarded` says) and load the demo clinic."""
    tag = f"{backend}-{'guarded' if guarded else 'unguarded'}"
    data_dir, key_file = work / f"data-{tag}", work / f"{tag}.key"
    db_url = schema = None
    if backend == "postgresql":
        if not pg_url:
            raise BenchmarkFailed("PostgreSQL needs a database URL (--pg-url)")
        schema = f"phivault_bench_{uuid.uuid4().hex[:10]}"
        db_url = f"{pg_url}{'&' if '?' in pg_url else '?'}schema={schema}"
    create_key_file(key_file)
    source = KeyFileKeySource(key_file)
    init_data_dir(data_dir, source, db_url=db_url, encryption=guarded)
    found = DataDir(backend, guarded, data_dir, key_file, db_url, schema)
    try:
        _load(found, source, patients)
    except BaseException:
        drop_schema(found)
        raise
    return found


def _load(found: DataDir, source: KeyFileKeySource, patients: int) -> None:
    vault = open_vault(found.data_dir, source, encryption=found.guarded)
    try:
        started = time.perf_counter()
        clinic = generate_clinic(ClinicSpec(patients=patients, seed=CLINIC_SEED))
        for stats in vault.service.import_resources(
            Context(actor="bench"), clinic, batch_size=1000
        ):
            if stats.failed:
                raise BenchmarkFailed("the demo clinic did not load")
            found.resources = stats.created + stats.updated
        found.load_seconds = time.perf_counter() - started
    finally:
        vault.close()


@dataclass
class DbSize:
    total_bytes: int
    audit_bytes: int | None  # the audit log's tables, when the database can tell
    resources: int
    tables: dict[str, int] = field(default_factory=dict)

    def per_1000(self, part: int | None = None) -> float:
        size = self.total_bytes if part is None else part
        return size / self.resources * 1000 if self.resources else 0.0


def db_size(d: DataDir) -> DbSize:
    """Bytes on disk of the directory's database, by table where possible."""
    if d.backend == "postgresql":
        return _pg_size(d)
    return _sqlite_size(d.data_dir / SQLITE_FILE)


def _sqlite_size(path: Path) -> DbSize:
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        resources = int(conn.execute("SELECT count(*) FROM resources").fetchone()[0])
        tables: dict[str, int] = {}
        try:
            owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
            for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                table = owner.get(name, name)
                tables[table] = tables.get(table, 0) + int(size)
        except sqlite3.OperationalError:  # SQLite built without dbstat
            tables = {}
    finally:
        conn.close()
    audit = sum(v for k, v in tables.items() if k.startswith("audit_")) if tables else None
    return DbSize(total, audit, resources, tables)


def _pg_size(d: DataDir) -> DbSize:
    import psycopg

    assert d.db_url is not None and d.schema is not None
    base = d.db_url.split("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (d.schema,),
        ).fetchall()
        count = conn.execute(f'SELECT count(*) FROM "{d.schema}".resources').fetchone()
    tables = {str(name): int(size) for name, size in rows}
    audit = sum(v for k, v in tables.items() if k.startswith("audit_"))
    return DbSize(sum(tables.values()), audit, int(count[0]) if count else 0, tables)


def drop_schema(d: DataDir) -> None:
    if d.backend != "postgresql" or d.db_url is None or d.schema is None:
        return
    import psycopg

    with psycopg.connect(d.db_url.split("?", 1)[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{d.schema}" CASCADE')


class TokenSource:
    """System bearer tokens for the guarded server, issued by `phivault token issue` as a
    script would get them (at most 15 minutes each: renewed before they run out)."""

    def __init__(self, d: DataDir) -> None:
        self.d = d
        self._token: str | None = None
        self._issued = 0.0

    def headers(self) -> dict[str, str]:
        if self._token is None or time.monotonic() - self._issued > TOKEN_RENEW_S:
            self._token = self._issue()
            self._issued = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"}

    def _issue(self) -> str:
        done = subprocess.run(  # noqa: S603 (our own interpreter, fixed arguments)
            [
                *PHIVAULT, "token", "issue", "--data", str(self.d.data_dir),
                "--key-file", str(self.d.key_file), "--client", "phivault-bench",
                "--scope", CLIENT_SCOPE, "--lifetime", str(TOKEN_LIFETIME_S),
            ],
            check=False,
            capture_output=True,
            text=True,
        )  # fmt: skip
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise BenchmarkFailed("`phivault token issue` failed")
        return lines[-1]
