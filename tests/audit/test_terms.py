"""Indexed AuditEvent search (audit/terms.py), on SQLite and PostgreSQL: agent, entity,
patient, action and failed-outcome searches walk keyed search terms, so every page is
exact without a scan window, stays stable while the log grows, and the term table names
no one in clear."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from phivault.audit.append import append_entries
from phivault.audit.entry import encode_fields, entry_fields, index_row_of, now
from phivault.audit.events import AccessEvent
from phivault.audit.terms import TermKeys, catch_up
from phivault.service import Context
from phivault.service.audit_view import AuditView
from phivault.store.audit_sql import AuditQuery
from phivault.store.factory import SQLITE_FILE
from phivault.vault import Vault
from tests.audit.support import sql

AUDITOR = Context(actor="auditor-1")


def event(n: int) -> AccessEvent:
    return AccessEvent(
        action="read" if n % 5 else "update",
        outcome="4" if n % 97 == 0 else "0",
        actor=f"user-{n % 7}",
        rtype="Observation",
        rid=f"obs-{n % 40}",
        version=1,
        compartment=f"Patient/p{n % 13}",
    )


def append(vault: Vault, start: int, count: int) -> None:
    """Entries through the real append path (sealed), in one transaction."""
    fields = [
        entry_fields(event(n), now(), vault.audit.pseudonymize) for n in range(start, start + count)
    ]
    with vault.store.write() as tx:
        append_entries(
            tx,
            [encode_fields(f) for f in fields],
            [index_row_of(f) for f in fields],
            seal=vault.audit.seal,
        )


def expected(vault: Vault, **where: Any) -> list[int]:
    """Brute force: the indexes of matching entries, newest first."""
    rows = vault.store.audit_rows(0, vault.store.audit_size())
    names = ("time", "action", "outcome", "actor", "rtype", "rid", "patient")
    found = []
    for row in rows:
        columns = dict(zip(names, row[2:9], strict=True))
        if all(columns[k] == v for k, v in where.items()):
            found.append(int(row[0]))
    return sorted(found, reverse=True)


def pages(view: AuditView, query: str, count: int = 25) -> tuple[list[int], int]:
    pairs = [tuple(p.split("=", 1)) for p in query.split("&")]
    found: list[int] = []
    cursor = None
    number = 0
    while True:
        page = view.search(AUDITOR, pairs, count=count, cursor=cursor)  # type: ignore[arg-type]
        found += [int(e["id"]) for e in page.events]
        number += 1
        if page.next_cursor is None:
            return found, number
        assert len(page.events) == count  # an indexed page is always full until the last
        cursor = page.next_cursor


@pytest.fixture
def view(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> AuditView:
    import phivault.service.audit_view as audit_view

    monkeypatch.setattr(audit_view, "SCAN_WINDOW", 10)  # would make a scanned page near-empty
    append(vault, 0, 1500)
    return AuditView(vault.service)


def test_searches_walk_terms_and_pages_are_exact(vault: Vault, view: AuditView) -> None:
    want = expected(vault, actor="user-3")
    found, number = pages(view, "agent=user-3")
    assert found == want and number == len(want) // 25 + 1
    pseudonym = vault.audit.pseudonymize("Patient/p5")
    assert pages(view, "patient=Patient/p5")[0] == expected(vault, patient=pseudonym)
    assert pages(view, "entity=Observation/obs-7")[0] == expected(vault, rid="obs-7")
    assert pages(view, "outcome=4")[0] == expected(vault, outcome="4")
    both = sorted(expected(vault, actor="user-1") + expected(vault, actor="user-2"), reverse=True)
    assert pages(view, "agent=user-1,user-2")[0] == both
    combined = [i for i in expected(vault, actor="user-3") if i in expected(vault, action="update")]
    assert pages(view, "agent=user-3&subtype=update")[0] == combined
    # The search brought the terms up to date; they name no agent or resource in clear.
    assert sql(vault, "SELECT upto FROM audit_terms_state")[0][0] >= 1500
    terms = sql(vault, "SELECT term FROM audit_terms")
    assert len(terms) > 1500 and all(len(bytes(t[0])) == 16 for t in terms)
    assert not any(b"user-" in bytes(t[0]) or b"obs-" in bytes(t[0]) for t in terms)


def test_pages_stay_stable_while_the_log_grows(vault: Vault, view: AuditView) -> None:
    pairs = [("agent", "user-4")]
    first = view.search(AUDITOR, pairs, count=30, cursor=None)
    before = expected(vault, actor="user-4")
    append(vault, 1500, 700)  # many new entries of the same agent
    rest: list[int] = []
    cursor = first.next_cursor
    while cursor is not None:
        page = view.search(AUDITOR, pairs, count=30, cursor=cursor)
        rest += [int(e["id"]) for e in page.events]
        cursor = page.next_cursor
    assert [int(e["id"]) for e in first.events] + rest == before


def test_entries_past_the_indexed_mark_are_scanned(vault: Vault) -> None:
    """Between two catch-ups, the tail of the log is scanned by the same query."""
    append(vault, 0, 300)
    keys = TermKeys.of(vault.audit.signer)
    assert keys is not None
    upto = catch_up(vault.store, keys)
    append(vault, 300, 200)
    terms = keys.driver(AuditQuery(actors=("user-2",)))
    assert terms is not None
    query = AuditQuery(actors=("user-2",), terms=terms, indexed=upto, count=1000)
    assert [i for i, _ in vault.store.audit_search(query)] == expected(vault, actor="user-2")


def test_a_forged_term_row_cannot_show_a_wrong_entry(vault: Vault, view: AuditView) -> None:
    keys = TermKeys.of(vault.audit.signer)
    assert keys is not None
    pages(view, "agent=user-3")  # catch up
    wrong = expected(vault, actor="user-5")[0]
    sql(
        vault,
        "INSERT INTO audit_terms (term, idx) VALUES (?, ?)",
        keys.term("agent", "user-3"),
        wrong,
    )
    assert wrong not in pages(view, "agent=user-3")[0]


def test_sqlite_plan_uses_the_terms_key(tmp_path: Path) -> None:
    from phivault.store.audit_sql import search_sql
    from phivault.store.factory import open_store

    open_store(tmp_path, None).close()  # the schema, migrations included
    statement, params = search_sql(AuditQuery(terms=(b"x" * 16,), indexed=10, before=10))
    conn = sqlite3.connect(tmp_path / SQLITE_FILE)
    try:
        plan = " ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + statement, params))
    finally:
        conn.close()
    assert "SEARCH t USING PRIMARY KEY (term=? AND idx<?)" in plan
    assert "SEARCH i USING INTEGER PRIMARY KEY" in plan


def test_a_backlog_is_indexed_a_bounded_amount_per_search(
    vault: Vault, view: AuditView, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phivault.service.audit_view as audit_view

    monkeypatch.setattr(audit_view, "SEARCH_CATCH_UP", 400)
    want = expected(vault, actor="user-6")
    first = view.search(AUDITOR, [("agent", "user-6")], count=25, cursor=None)
    assert sql(vault, "SELECT upto FROM audit_terms_state")[0][0] == 400
    assert [int(e["id"]) for e in first.events] == want[:25]  # newest: in the scanned tail
    assert pages(view, "agent=user-6")[0] == want  # every page exact meanwhile


def test_the_index_command_catches_up(vault: Vault, data_dir: Path, key_file: Path) -> None:
    from tests.keys_support import run_cli

    append(vault, 0, 700)
    out = run_cli("audit", "index", "--data", str(data_dir), "--key-file", str(key_file))
    assert out.exit_code == 0, out.output  # type: ignore[attr-defined]
    assert sql(vault, "SELECT upto FROM audit_terms_state")[0][0] == vault.store.audit_size()
