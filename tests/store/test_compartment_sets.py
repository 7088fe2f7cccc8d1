"""Long compartment lists (a clinician's related patients) are joined from a compartment
set loaded into the SQLite reader connection, instead of written into every statement:
the same rows and counts either way, in every thread, and a set id never names two lists."""

from __future__ import annotations

import threading
from pathlib import Path

from phivault.store.base import NewVersion
from phivault.store.compartment_lists import SET_COMPARTMENTS, SET_TABLE, set_ids
from phivault.store.search_spec import CompartmentMatch, SearchSpec, Term
from phivault.store.search_sql import Dialect, page_sql
from phivault.store.sqlite import LOADED_SETS, TEMP_PAGE_BYTES, SqliteStore

SQLITE = Dialect(postgres=False)
SET_TABLES = (
    f"SELECT name FROM sqlite_temp_master WHERE type = 'table' AND name GLOB '{SET_TABLE}*'"
)
PATIENTS = SET_COMPARTMENTS + LOADED_SETS + 8  # enough for LOADED_SETS + 5 distinct lists


def _store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "sets.db")
    store.migrate()
    with store.write() as tx:
        for n in range(3 * PATIENTS):
            compartment = f"Patient/p{n % PATIENTS}" if n % 7 else None
            tx.append_version(
                NewVersion(
                    "Observation", f"o{n:04d}", 1, "2024-01-01T00:00:00.000Z", False, b"x",
                    compartment=compartment,
                )
            )  # fmt: skip
    return store


def _spec(compartments: tuple[str, ...], unassigned: bool = True) -> SearchSpec:
    term = Term((CompartmentMatch(compartments, unassigned=unassigned),))
    return SearchSpec("Observation", (term,), limit=10_000)


def _expected(compartments: tuple[str, ...], unassigned: bool) -> list[str]:
    chosen = set(compartments)
    found = []
    for n in range(3 * PATIENTS):
        compartment = f"Patient/p{n % PATIENTS}" if n % 7 else None
        if (compartment is None and unassigned) or compartment in chosen:
            found.append(f"o{n:04d}")
    return found


def test_a_long_list_is_joined_from_a_set_not_written() -> None:
    many = tuple(f"Patient/p{n}" for n in range(SET_COMPARTMENTS))
    sets: dict[int, tuple[str, ...]] = {}
    sql, params = page_sql(_spec(many), SQLITE, sets)
    assert list(sets.values()) == [many] and "'Patient/p0'" not in sql
    assert f"IN temp.{SET_TABLE}{next(iter(sets))})" in sql and not set(many) & set(params)
    shorter: dict[int, tuple[str, ...]] = {}
    sql, _ = page_sql(_spec(many[:-1]), SQLITE, shorter)
    assert not shorter and SET_TABLE not in sql  # a shorter list is written, as before
    sql, _ = page_sql(_spec(many), SQLITE)
    assert SET_TABLE not in sql  # no sets given (PostgreSQL, write transactions)


def test_set_ids_name_one_list_each() -> None:
    first = tuple(f"Patient/a{n}" for n in range(SET_COMPARTMENTS))
    second = (*first[:-1], "Patient/other")
    assert set_ids.get(first) == set_ids.get(tuple(list(first)))  # by value, not object
    assert set_ids.get(first) != set_ids.get(second)


def test_sets_select_what_the_written_list_selects(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        every = tuple(f"Patient/p{n}" for n in range(PATIENTS))
        lists = [every, every[::2], every[1::3] + every[:SET_COMPARTMENTS]]
        for chosen in lists:
            for unassigned in (True, False):
                listed = tuple(sorted(set(chosen)))
                spec, want = _spec(listed, unassigned), _expected(listed, unassigned)
                assert [r.record.rid for r in store.search(spec).rows] == want
                assert store.search_count(spec) == len(want)
                assert store.search_count(spec, cap=5) == 5
    finally:
        store.close()


def test_each_reader_thread_loads_its_own_sets(tmp_path: Path) -> None:
    store = _store(tmp_path)
    chosen = tuple(f"Patient/p{n}" for n in range(0, PATIENTS, 2))
    want = _expected(chosen, True)
    found: list[list[str]] = []

    def search() -> None:
        found.append([r.record.rid for r in store.search(_spec(chosen)).rows])

    try:
        threads = [threading.Thread(target=search) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        search()
        assert found == [want] * 4
    finally:
        store.close()


def test_old_sets_are_dropped_from_the_connection(tmp_path: Path) -> None:
    store = _store(tmp_path)
    every = tuple(f"Patient/p{n}" for n in range(PATIENTS))
    try:
        for k in range(LOADED_SETS + 5):
            chosen = every[: SET_COMPARTMENTS + k]
            want = _expected(chosen, False)
            assert [r.record.rid for r in store.search(_spec(chosen, False)).rows] == want
        held = store.reader().execute(SET_TABLES).fetchall()
        assert len(held) == LOADED_SETS
        first = every[: SET_COMPARTMENTS + 2]  # dropped long ago: loaded again
        assert [r.record.rid for r in store.search(_spec(first)).rows] == _expected(first, True)
    finally:
        store.close()


def test_a_few_hundred_compartments_fit_one_page_of_the_temp_database(tmp_path: Path) -> None:
    """The probe of every candidate row searches within one page (TEMP_PAGE_BYTES)."""
    store = _store(tmp_path)
    try:
        related = tuple(sorted(f"Patient/{n:08d}-aaaa-bbbb-cccc-{n:012d}" for n in range(300)))
        assert store.search_count(_spec(related)) == len(_expected(related, True))
        reader = store.reader()
        assert reader.execute("PRAGMA temp.page_size").fetchone()[0] == TEMP_PAGE_BYTES
        # sqlite_temp_master and the set's table: one page each.
        assert reader.execute("PRAGMA temp.page_count").fetchone()[0] == 2
    finally:
        store.close()
