"""A long compartment list (a clinician's related patients) is written into the statement
instead of bound, only when every value is `Patient/<FHIR id>`; the rows selected are the
same either way, and a value that could carry SQL is always bound."""

from __future__ import annotations

import sqlite3

from phivault.store.compartment_lists import (
    LITERAL_COMPARTMENTS,
    SET_COMPARTMENTS,
    _literal_list,
)
from phivault.store.search_spec import CompartmentMatch, SearchSpec, Term
from phivault.store.search_sql import Dialect, count_sql, page_sql

SQLITE = Dialect(postgres=False)


def _spec(compartments: tuple[str, ...], unassigned: bool = True) -> SearchSpec:
    term = Term((CompartmentMatch(compartments, unassigned=unassigned),))
    return SearchSpec("Observation", (term,), limit=1000)


def _db(compartments: list[str | None]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE resources (rtype TEXT, rid TEXT, version INTEGER, seq INTEGER, "
        "deleted INTEGER, last_updated TEXT, compartment TEXT)"
    )
    db.executemany(
        "INSERT INTO resources VALUES ('Observation', ?, 1, ?, 0, '', ?)",
        [(f"o{n:03d}", n, c) for n, c in enumerate(compartments)],
    )
    return db


def test_long_lists_of_patient_compartments_are_written() -> None:
    many = tuple(f"Patient/p-{n}.x" for n in range(LITERAL_COMPARTMENTS))
    assert _literal_list(many) == ", ".join(f"'{c}'" for c in many)
    assert _literal_list(many[:-1]) is None  # short lists stay bound
    quoted = (*many[:-1], "Patient/x') OR 1=1 --")
    assert _literal_list(quoted) is None
    assert _literal_list((*many[:-1], "Group/g1")) is None
    sql, params = page_sql(_spec(many), SQLITE)
    assert not set(many) & set(params)
    assert "'Patient/p-0.x'" in sql
    sql, params = page_sql(_spec(quoted), SQLITE)
    assert quoted[-1] in params and quoted[-1] not in sql


def test_written_and_bound_lists_select_the_same_rows() -> None:
    stored: list[str | None] = [f"Patient/p{n % 40}" for n in range(120)] + [None] * 3
    db = _db(stored)
    visible = tuple(f"Patient/p{n}" for n in range(0, 40, 2))  # 20: written
    unsafe = (*visible[:-1], "Patient/it's")  # bound
    for unassigned in (True, False):
        for chosen in (visible, unsafe):
            sql, params = page_sql(_spec(chosen, unassigned), SQLITE)
            rids = [r[0] for r in db.execute(sql, params).fetchall()]
            want = [
                f"o{n:03d}"
                for n, c in enumerate(stored)
                if (c is None and unassigned) or (c is not None and c in chosen)
            ]
            assert rids == want
            sql, params = count_sql(_spec(chosen, unassigned), SQLITE, 1000)
            assert db.execute(sql, params).fetchone()[0] == len(want)


def test_a_compartment_term_met_again_compiles_to_the_same_statement() -> None:
    """The access policy's Term is compiled once and replayed: the same SQL, parameters
    and sets, for every statement that meets it, in each way a list can be given."""
    many = tuple(f"Patient/p{n}" for n in range(SET_COMPARTMENTS))
    short = many[:3]
    for chosen in (many, short):
        term = Term((CompartmentMatch(chosen, unassigned=True),))
        spec = SearchSpec("Observation", (term,), limit=20)
        for dialect in (SQLITE, Dialect(postgres=True)):
            for with_sets in (False, True):
                made = [{} if with_sets else None for _ in range(2)]
                first = count_sql(spec, dialect, 1000, made[0])
                again = count_sql(spec, dialect, 1000, made[1])
                assert again == first and made[1] == made[0]
                if chosen is short:  # bound, in every statement
                    assert set(short) <= set(again[1])
                elif with_sets:
                    assert list(made[1].values()) == [many] and not set(many) & set(again[1])
                else:
                    assert "'Patient/p0'" in again[0]
        # Another object with the same lists compiles alike (the cache is by object).
        twin = SearchSpec("Observation", (Term((CompartmentMatch(chosen, True),)),), limit=20)
        assert count_sql(twin, SQLITE, 1000) == count_sql(spec, SQLITE, 1000)


def test_a_replayed_term_selects_the_same_rows_as_a_fresh_one() -> None:
    stored: list[str | None] = [f"Patient/p{n % 40}" for n in range(120)] + [None] * 3
    db = _db(stored)
    chosen = tuple(f"Patient/p{n}" for n in range(0, 40, 2))
    term = Term((CompartmentMatch(chosen, unassigned=True),))
    want = [f"o{n:03d}" for n, c in enumerate(stored) if c is None or c in chosen]
    for _ in range(2):
        spec = SearchSpec("Observation", (term,), limit=1000)
        sql, params = page_sql(spec, SQLITE)
        assert [r[0] for r in db.execute(sql, params).fetchall()] == want
