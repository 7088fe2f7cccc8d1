"""The storage interface on both backends: schema, versions, history, index rows, and
what actually lands in the database (ciphertext, blind values)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from phivault.errors import DecryptionError, VersionConflict
from phivault.service import Context
from phivault.store.base import HistoryQuery, IndexRow, NewVersion, VersionRecord
from phivault.store.factory import SQLITE_FILE
from phivault.store.search_spec import Cmp, IndexMatch, SearchPage, SearchSpec, SortKey, Term
from phivault.store.sql import load_migrations
from phivault.vault import Vault

CTX = Context(actor="store-test")
T0 = "2024-01-01T00:00:00.000Z"


def stamp(n: int) -> str:
    """Instants in order: n seconds after T0 (n < 60)."""
    return f"2024-01-01T00:00:{n:02d}.000Z"


def new(
    rid: str,
    version: int,
    *,
    rtype: str = "Basic",
    at: str = T0,
    deleted: bool = False,
    index: tuple[IndexRow, ...] = (),
    body: bytes | None = None,
) -> NewVersion:
    return NewVersion(
        rtype=rtype,
        rid=rid,
        version=version,
        last_updated=at,
        deleted=deleted,
        body=None if deleted else (body or f"{rtype}/{rid}/{version}".encode()),
        index=index,
    )


def append(vault: Vault, *versions: NewVersion) -> list[VersionRecord]:
    with vault.store.write() as tx:
        return [tx.append_version(v) for v in versions]


def ident(system: str, value: str) -> IndexRow:
    return IndexRow("identifier", "token", system=system, value=value)


def raw_sql(vault: Vault, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on the database behind the store, bypassing it (`?` placeholders)."""
    store: Any = vault.store
    if store.backend == "sqlite":
        conn = sqlite3.connect(vault.settings.data_dir / SQLITE_FILE, timeout=30)
        try:
            cur = conn.execute(sql, params)
            rows = cur.fetchall()
            conn.commit()
        finally:
            conn.close()
        return rows
    with psycopg.connect(store.url, autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{store.schema}"')
        cur = pg.execute(sql.replace("?", "%s").encode(), params)
        return cur.fetchall() if cur.description else []


# -- schema ---------------------------------------------------------------------------------


def test_migrate_is_idempotent(vault: Vault) -> None:
    store = vault.store
    latest = max(v for v, _ in load_migrations(_dir(store)))
    assert store.schema_version() == latest
    first = store.migrate()
    second = store.migrate()
    assert first == second == latest
    assert store.schema_version() == latest
    rows = raw_sql(vault, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == sorted({v for v, _ in load_migrations(_dir(store))})


def _dir(store: Any) -> str:
    return "sqlite" if store.backend == "sqlite" else "postgres"


def test_migrate_keeps_data(vault: Vault) -> None:
    append(vault, new("keep", 1))
    vault.store.migrate()
    record = vault.store.current("Basic", "keep")
    assert record is not None and record.body == b"Basic/keep/1"


# -- versions -------------------------------------------------------------------------------


def test_append_and_read_versions(vault: Vault) -> None:
    store = vault.store
    (v1,) = append(vault, new("b1", 1, at=stamp(1)))
    (v2,) = append(vault, new("b1", 2, at=stamp(2)))
    assert v2.seq > v1.seq
    current = store.current("Basic", "b1")
    assert current is not None
    assert (current.version, current.body, current.last_updated) == (2, b"Basic/b1/2", stamp(2))
    old = store.version("Basic", "b1", 1)
    assert old is not None and old.body == b"Basic/b1/1" and not old.deleted
    assert store.version("Basic", "b1", 3) is None
    assert store.current("Basic", "nope") is None
    assert store.current("Flag", "b1") is None
    many = store.current_many("Basic", ["b1", "nope"])
    assert [(r.rid, r.version) for r in many] == [("b1", 2)]


def test_append_versions_in_bulk_is_append_version_of_each(vault: Vault) -> None:
    """Bulk import's path (PostgreSQL: seqs drawn at once, COPY, one upsert): the same
    versions, current pointers and index rows as appending one by one."""
    store = vault.store
    append(vault, new("old", 1, index=(ident("s", "before"),)))
    batch = [new(f"n{i}", 1, at=stamp(i), index=(ident("s", f"v{i}"),)) for i in range(8)]
    batch += [
        new("old", 2, at=stamp(9), index=(ident("s", "after"),)),
        new("gone", 1, rtype="Flag", deleted=True),
    ]
    with store.write() as tx:
        records = tx.append_versions(batch)
    assert [(r.rtype, r.rid, r.version, r.deleted) for r in records] == [
        (n.rtype, n.rid, n.version, n.deleted) for n in batch
    ]
    seqs = [r.seq for r in records]
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)
    for record in records:
        current = store.current(record.rtype, record.rid)
        assert current is not None
        assert (current.seq, current.version, current.body) == (
            record.seq,
            record.version,
            record.body,
        )
    gone = store.current("Flag", "gone")
    assert gone is not None and gone.deleted and gone.body is None
    values = raw_sql(vault, "SELECT rid, value FROM idx_token WHERE param = 'identifier'")
    assert sorted(values) == sorted([(f"n{i}", f"v{i}") for i in range(8)] + [("old", "after")])


def test_append_versions_conflict_rolls_back(vault: Vault) -> None:
    store = vault.store
    append(vault, new("c1", 1))
    with pytest.raises(VersionConflict):
        with store.write() as tx:
            tx.append_versions([new(f"x{i}", 1) for i in range(6)] + [new("c1", 1)])
    assert store.current("Basic", "x0") is None
    assert raw_sql(vault, "SELECT COUNT(*) FROM versions")[0][0] == 1


def test_append_existing_version_conflicts_and_rolls_back(vault: Vault) -> None:
    store = vault.store
    append(vault, new("c1", 1, index=(ident("s", "one"),)))
    with pytest.raises(VersionConflict):
        with store.write() as tx:
            tx.append_version(new("other", 1))  # would commit with the conflicting one
            tx.append_version(new("c1", 1, body=b"intruder", index=(ident("s", "two"),)))
    record = store.current("Basic", "c1")
    assert record is not None and record.body == b"Basic/c1/1"
    assert store.current("Basic", "other") is None  # the whole transaction rolled back
    assert store.history_total(HistoryQuery(rtype="Basic")) == 1
    assert store.find_token("Basic", "identifier", "s", "one", 10) == ["c1"]
    assert store.find_token("Basic", "identifier", "s", "two", 10) == []
    # The store is still usable afterwards.
    append(vault, new("c1", 2))
    assert store.current("Basic", "c1").version == 2  # type: ignore[union-attr]


def test_after_commit_runs_once_committed_and_never_after_a_rollback(vault: Vault) -> None:
    """On both backends: a callback runs once its transaction has committed (the row is
    there to read), and never for a block that raised. On SQLite, a block that raised
    while others share its group commit loses only its own callbacks."""
    store = vault.store
    ran: list[str] = []

    def seen(name: str) -> None:
        ran.append(name if store.current("Basic", name) is not None else f"{name}: not yet")

    with store.write() as tx:
        tx.append_version(new("kept", 1))
        tx.after_commit(lambda: seen("kept"))
        assert ran == []  # not before the commit
    assert ran == ["kept"]
    with pytest.raises(RuntimeError):
        with store.write() as tx:
            tx.append_version(new("undone", 1))
            tx.after_commit(lambda: seen("undone"))
            raise RuntimeError("the block fails")
    assert ran == ["kept"] and store.current("Basic", "undone") is None
    errors: list[BaseException] = []

    def block(name: str, fail: bool) -> None:
        try:
            with store.write() as tx:
                tx.append_version(new(name, 1))
                tx.after_commit(lambda: seen(name))
                if fail:
                    raise RuntimeError("the block fails")
        except RuntimeError:
            pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=block, args=(f"b{n}", n % 3 == 0)) for n in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(ran[1:]) == [f"b{n}" for n in range(9) if n % 3]


# -- history --------------------------------------------------------------------------------


def _fill_history(vault: Vault) -> list[VersionRecord]:
    records: list[VersionRecord] = []
    n = 0
    for version in (1, 2, 3):
        for rtype, rid in (("Basic", "h1"), ("Flag", "f1"), ("Basic", "h2")):
            n += 1
            records += append(vault, new(rid, version, rtype=rtype, at=stamp(n)))
    records += append(vault, new("h1", 4, at=stamp(n + 1), deleted=True))
    return records


def test_history_newest_first(vault: Vault) -> None:
    written = _fill_history(vault)
    store = vault.store
    everything = store.history(HistoryQuery(count=100))
    assert [r.seq for r in everything] == sorted((r.seq for r in written), reverse=True)
    assert store.history_total(HistoryQuery()) == len(written) == 10

    h1 = store.history(HistoryQuery(rtype="Basic", rid="h1", count=100))
    assert [r.version for r in h1] == [4, 3, 2, 1]
    assert h1[0].deleted and h1[0].body is None
    assert all(not r.deleted for r in h1[1:])

    basic = store.history(HistoryQuery(rtype="Basic", count=100))
    assert {r.rtype for r in basic} == {"Basic"}
    assert len(basic) == store.history_total(HistoryQuery(rtype="Basic")) == 7

    since = store.history(HistoryQuery(since=stamp(7), count=100))
    assert [r.last_updated for r in since] == [stamp(10), stamp(9), stamp(8), stamp(7)]
    assert store.history_total(HistoryQuery(since=stamp(7))) == 4


@pytest.mark.parametrize("count", [1, 3, 4])
def test_history_cursor_paging(vault: Vault, count: int) -> None:
    written = _fill_history(vault)
    store = vault.store
    seen: list[int] = []
    cursor: int | None = None
    for _ in range(20):
        page = store.history(HistoryQuery(before_seq=cursor, count=count))
        assert len(page) <= count
        if not page:
            break
        seen += [r.seq for r in page]
        cursor = page[-1].seq
    assert seen == sorted((r.seq for r in written), reverse=True)
    # The total ignores the cursor.
    assert store.history_total(HistoryQuery(before_seq=cursor, count=count)) == len(written)


# -- current set ----------------------------------------------------------------------------


def test_count_and_iter_current(vault: Vault) -> None:
    append(vault, new("a", 1), new("b", 1), new("c", 1), new("f", 1, rtype="Flag"))
    append(vault, new("a", 2), new("g", 1, rtype="Flag"))
    append(vault, new("b", 2, deleted=True))
    store = vault.store
    assert store.count_current() == 4
    assert store.count_current("Basic") == 2
    assert store.count_current("Flag") == 2
    assert store.count_current("Patient") == 0

    basics = list(store.iter_current("Basic"))
    assert sorted((r.rid, r.version) for r in basics) == [("a", 2), ("c", 1)]
    assert {r.body for r in basics} == {b"Basic/a/2", b"Basic/c/1"}
    everything = list(store.iter_current())
    assert len(everything) == 4
    assert [r.seq for r in everything] == sorted(r.seq for r in everything)
    assert not any(r.deleted for r in everything)


# -- index rows -----------------------------------------------------------------------------


def _index_rows(vault: Vault, rid: str) -> int:
    return int(raw_sql(vault, "SELECT COUNT(*) FROM idx_token WHERE rid = ?", (rid,))[0][0])


def test_index_rows_replaced_on_update_and_removed_on_delete(vault: Vault) -> None:
    store = vault.store
    append(vault, new("x1", 1, index=(ident("sys", "A"), ident("", "bare"))))
    append(vault, new("x2", 1, index=(ident("sys", "A"),)))
    assert store.find_token("Basic", "identifier", "sys", "A", 10) == ["x1", "x2"]
    assert store.find_token("Basic", "identifier", "sys", "A", 1) == ["x1"]
    assert store.find_token("Basic", "identifier", None, "A", 10) == ["x1", "x2"]
    assert store.find_token("Basic", "identifier", "other", "A", 10) == []
    assert store.find_token("Basic", "identifier", "", "bare", 10) == ["x1"]
    assert store.find_token("Basic", "identifier", "", "A", 10) == []
    assert store.find_token("Flag", "identifier", "sys", "A", 10) == []
    assert store.find_token("Basic", "_tag", "sys", "A", 10) == []

    append(vault, new("x1", 2, index=(ident("sys", "B"),)))
    assert store.find_token("Basic", "identifier", "sys", "A", 10) == ["x2"]
    assert store.find_token("Basic", "identifier", "sys", "B", 10) == ["x1"]
    assert store.find_token("Basic", "identifier", "", "bare", 10) == []
    assert _index_rows(vault, "x1") == 1

    append(vault, new("x1", 3, deleted=True))
    assert store.find_token("Basic", "identifier", "sys", "B", 10) == []
    assert _index_rows(vault, "x1") == 0
    assert _index_rows(vault, "x2") == 1


def test_an_update_and_a_delete_clear_every_index_table(vault: Vault) -> None:
    """Rows of every kind (the blind tokens too) go when the next version is written;
    on PostgreSQL in one statement (data-modifying CTEs), on SQLite one per table."""
    queries: Any = vault.store._queries  # type: ignore[attr-defined]
    rows = (
        ident("sys", "A"),
        IndexRow("name", "string", value="ann", text="Ann"),
        IndexRow("date", "date", lo=1.0, hi=2.0),
        IndexRow("subject", "reference", system="Patient", value="p1"),
        IndexRow("value-quantity", "quantity", system="u", value="mg", lo=1.0, hi=1.0),
        IndexRow("probability", "number", lo=0.5, hi=0.5),
        IndexRow("url", "uri", value="http://x"),
        IndexRow("combo", "composite", value="a$b", lo=1.0, hi=1.0),
        IndexRow("family", "blind", value="ab" * 16),
    )

    def held(rid: str) -> int:
        tables: dict[str, str] = queries.index_tables
        return sum(
            int(raw_sql(vault, f"SELECT COUNT(*) FROM {t} WHERE rid = ?", (rid,))[0][0])
            for t in tables.values()
        )

    append(vault, new("y1", 1, index=rows), new("y2", 1, index=rows))
    assert held("y1") == held("y2") == len(rows)
    deletes = queries.index_deletes("Basic", "y1")
    assert len(deletes) == (1 if vault.store.backend == "postgresql" else len(queries.index_tables))
    append(vault, new("y1", 2, index=(ident("sys", "B"),)))
    assert held("y1") == 1 and held("y2") == len(rows)
    append(vault, new("y2", 2, deleted=True))
    assert held("y2") == 0 and held("y1") == 1


# -- search pages -----------------------------------------------------------------------------


class _Counting:
    """The store's connection, counting the statements run through it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements = 0

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.statements += 1
        return self.conn.execute(sql, params)


def test_a_search_page_comes_with_its_versions_in_one_statement(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = (ident("sys", "A"),)
    append(vault, *(new(f"s{n}", 1, at=stamp(n), index=rows) for n in (3, 1, 4, 2)))
    append(vault, new("s1", 2, at=stamp(9), index=rows))  # the current version is returned
    append(vault, new("s9", 1, index=(ident("sys", "B"),)))
    store: Any = vault.store
    counting = _Counting(store._conn)
    monkeypatch.setattr(store, "_conn", counting)
    match = (Cmp("system", "=", "sys"), Cmp("value", "=", "A"))
    spec = SearchSpec("Basic", (Term((IndexMatch("token", "identifier", (match,), 0),)),), limit=3)

    def rids(page: SearchPage) -> list[tuple[str, int, bytes | None]]:
        return [(r.record.rid, r.record.version, r.record.body) for r in page.rows]

    first = store.search(spec)
    assert counting.statements == 1
    assert rids(first) == [
        ("s1", 2, b"Basic/s1/2"), ("s2", 1, b"Basic/s2/1"), ("s3", 1, b"Basic/s3/1"),
    ]  # fmt: skip
    assert first.more
    last = store.search(replace(spec, after=first.rows[-1].key))
    assert (rids(last), last.more) == ([("s4", 1, b"Basic/s4/1")], False)
    back = store.search(replace(spec, after=last.rows[0].key, backward=True, limit=2))
    assert [r.record.rid for r in back.rows] == ["s2", "s3"] and back.more
    newest = replace(spec, sort=(SortKey("_lastUpdated", descending=True),))
    page = store.search(newest)
    assert [r.record.rid for r in page.rows] == ["s1", "s4", "s3"]
    assert [r.key for r in page.rows] == [(stamp(9), "s1"), (stamp(4), "s4"), (stamp(3), "s3")]
    assert [r.record.rid for r in store.search(replace(newest, after=page.rows[-1].key)).rows] == [
        "s2"
    ]
    assert counting.statements == 5


# -- what reaches the database ----------------------------------------------------------------

FAMILY = "Zzyzxfamily"
MRN = "MRN-Zzyzx-4711"
PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "http://hospital.example/mrn", "value": MRN}],
    "name": [{"family": FAMILY, "given": ["Quentina"]}],
    "birthDate": "1961-07-14",
    "telecom": [{"system": "phone", "value": "555-0199-321"}],
}


def test_bodies_are_stored_encrypted(vault: Vault) -> None:
    rid = vault.service.create(CTX, "Patient", PATIENT).version.rid
    record = vault.store.current("Patient", rid)
    assert record is not None and record.body is not None
    for secret in (FAMILY, "Quentina", MRN, "1961-07-14", "555-0199-321", '"resourceType"'):
        assert secret.encode() not in record.body
    raw = raw_sql(vault, "SELECT body FROM versions WHERE rid = ?", (rid,))
    assert len(raw) == 1
    assert FAMILY.encode() not in bytes(raw[0][0])
    # ... and the service opens it again.
    assert FAMILY.encode() in (vault.service.read(CTX, "Patient", rid).body or b"")


def test_identifying_search_values_are_not_stored_in_clear(vault: Vault) -> None:
    rid = vault.service.create(CTX, "Patient", PATIENT).version.rid
    tables = ["idx_token", "idx_string", "idx_date", "idx_reference", "idx_uri"]
    dump = []
    for table in tables:
        dump += [str(row) for row in raw_sql(vault, f"SELECT * FROM {table} WHERE rid = ?", (rid,))]
    assert len(dump) >= 4  # the values are indexed (searchable), only not in clear
    params = {r[0] for r in raw_sql(vault, "SELECT param FROM idx_token WHERE rid = ?", (rid,))}
    assert "identifier" in params
    text = "\n".join(dump).lower()
    for secret in (FAMILY, "Quentina", MRN, "1961-07-14", "555-0199-321"):
        assert secret.lower() not in text, secret


def test_ciphertext_moved_to_another_row_fails_to_decrypt(vault: Vault) -> None:
    svc = vault.service
    a = svc.create(CTX, "Patient", PATIENT).version.rid
    b = svc.create(CTX, "Patient", {**PATIENT, "name": [{"family": "Other"}]}).version.rid
    svc.update(CTX, "Patient", b, {**PATIENT, "id": b, "name": [{"family": "Other2"}]})

    # Another patient's ciphertext (other key, other AAD) pasted over b's current version.
    raw_sql(
        vault,
        "UPDATE versions SET body = (SELECT body FROM versions WHERE rid = ? AND version = 1) "
        "WHERE rid = ? AND version = 2",
        (a, b),
    )
    with pytest.raises(DecryptionError):
        svc.read(CTX, "Patient", b)
    # The same patient's own older ciphertext (same key, other version) fails too.
    raw_sql(
        vault,
        "UPDATE versions SET body = (SELECT body FROM versions WHERE rid = ? AND version = 1) "
        "WHERE rid = ? AND version = 2",
        (b, b),
    )
    with pytest.raises(DecryptionError):
        svc.read(CTX, "Patient", b)
    # A single flipped byte is caught as well; untouched rows still open.
    raw_sql(vault, "UPDATE versions SET body = ? WHERE rid = ? AND version = 1", (b"\x00" * 64, b))
    with pytest.raises(DecryptionError):
        svc.vread(CTX, "Patient", b, 1)
    assert FAMILY.encode() in (svc.read(CTX, "Patient", a).body or b"")


def test_decryption_failure_is_an_opaque_500(vault: Vault) -> None:
    from starlette.testclient import TestClient

    from phivault.api.app import create_app

    svc = vault.service
    a = svc.create(CTX, "Patient", PATIENT).version.rid
    b = svc.create(CTX, "Patient", {**PATIENT, "name": [{"family": "Other"}]}).version.rid
    raw_sql(
        vault,
        "UPDATE versions SET body = (SELECT body FROM versions WHERE rid = ?) WHERE rid = ?",
        (a, b),
    )
    with TestClient(create_app(svc, vault.settings)) as client:
        res = client.get(f"/fhir/Patient/{b}")
    assert res.status_code == 500
    body = res.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "security"
    assert FAMILY not in res.text
    assert "Traceback" not in res.text
