"""`audit verify` against an intruder with database access, on SQLite and PostgreSQL:
every edit, deletion, reordering and insertion of audit rows and data rows is found, and
the first bad entry is named."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phivault.audit.verify import VerifyReport, _idle_cpus, verify_log
from phivault.errors import StoreError
from phivault.store.audit_scan import AuditScanSource
from phivault.vault import Vault
from tests.audit.support import (
    CTX,
    edit_entry,
    entries,
    rebuild_tree,
    resign,
    sql,
    workload,
    write_entry_index,
)


@pytest.fixture
def audited(vault: Vault) -> Iterator[tuple[Vault, dict[str, Any]]]:
    touched = workload(vault)
    assert vault.audit.checkpoint() is not None
    yield vault, touched


@pytest.fixture(params=[1, 2], ids=["in-process", "two-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    """verify_log in this process, or its pages checked by two worker processes (each
    with its own connection): the findings must be the same."""
    return int(request.param)


def check(vault: Vault, workers: int, *, data: bool = True) -> VerifyReport:
    assert vault.audit.signer is not None
    signer = vault.audit.signer
    return verify_log(
        vault.store,
        signer.public_key,
        check_data=data,
        page=4,  # pages of 4 entries: every test log spans several pages
        seal=vault.audit.seal,
        workers=workers,
    )


def test_untouched_log_verifies(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    report = check(vault, workers)
    assert report.ok, report.findings
    assert report.size == vault.store.audit_size() > 10
    assert report.checkpoints == 1 and report.latest_checkpoint == report.size
    assert report.sealed
    assert report.versions_checked >= 6
    assert report.nodes_checked == 2 * report.size - report.size.bit_count()  # perfect subtrees


def test_edited_entry(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    edit_entry(vault, 5, actor="someone-else")
    report = check(vault, workers)
    assert not report.ok
    assert report.first_bad_entry == 5


def test_deleted_entry(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    sql(vault, "DELETE FROM audit_entries WHERE idx = ?", 4)
    report = check(vault, workers)
    assert report.first_bad_entry == 4
    assert "missing" in report.findings[0].message


def test_reordered_entries(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    rows = entries(vault)
    sql(vault, "UPDATE audit_entries SET entry = ? WHERE idx = ?", rows[6], 3)
    sql(vault, "UPDATE audit_entries SET entry = ? WHERE idx = ?", rows[3], 6)
    assert check(vault, workers).first_bad_entry == 3


def test_inserted_entry_in_the_middle(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    rows = entries(vault)
    size = len(rows)
    # Shift entries 2.. up by one (through negative indexes, to keep the key unique) and
    # put a forged entry at 2.
    sql(vault, "UPDATE audit_entries SET idx = -idx - 1 WHERE idx >= ?", 2)
    sql(vault, "UPDATE audit_entries SET idx = -idx WHERE idx < 0")
    sql(vault, "INSERT INTO audit_entries (idx, entry) VALUES (?, ?)", 2, rows[0])
    report = check(vault, workers)
    assert report.size == size + 1
    assert report.first_bad_entry == 2


def test_appended_entry_without_its_nodes(
    audited: tuple[Vault, dict[str, Any]], workers: int
) -> None:
    vault, _ = audited
    size = vault.store.audit_size()
    sql(vault, "INSERT INTO audit_entries (idx, entry) VALUES (?, ?)", size, entries(vault)[0])
    assert check(vault, workers).first_bad_entry == size


def test_truncated_log(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    size = vault.store.audit_size()
    sql(vault, "DELETE FROM audit_entries WHERE idx >= ?", size - 3)
    report = check(vault, workers, data=False)
    assert report.first_bad_entry == size - 3
    assert any("removed" in f.message for f in report.findings)


def test_edited_node(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    sql(vault, "UPDATE audit_nodes SET hash = ? WHERE level = 2 AND idx = 1", b"\x07" * 32)
    report = check(vault, workers)
    assert report.first_bad_entry == 4  # node (2, 1) covers entries 4..7
    assert "node (2, 1)" in report.findings[0].message


def test_history_rewritten_with_its_nodes_is_caught_by_the_checkpoint(
    audited: tuple[Vault, dict[str, Any]],
    workers: int,
) -> None:
    vault, _ = audited
    first = vault.store.audit_size()
    vault.service.read(CTX, "Patient", audited[1]["patients"][0])
    assert vault.audit.checkpoint() is not None  # a second checkpoint, at first + 1
    edit_entry(vault, first, actor="nobody")  # the entry after the first checkpoint
    rebuild_tree(vault)
    report = check(vault, workers)
    assert not report.ok
    assert report.first_bad_entry == first  # between the good and the bad checkpoint
    assert "checkpoint" in report.findings[0].message


def test_forged_checkpoint(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    ((blob,),) = sql(vault, "SELECT checkpoint FROM audit_checkpoints")
    forged = bytes(blob).replace(b'"size":', b'"size":1')
    sql(vault, "UPDATE audit_checkpoints SET checkpoint = ?", forged)
    report = check(vault, workers)
    assert not report.ok
    assert "not validly signed" in report.findings[-1].message


def test_edited_search_columns(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    sql(vault, "UPDATE audit_entries SET actor = ? WHERE idx = ?", "innocent", 7)
    report = check(vault, workers)
    assert report.first_bad_entry == 7
    assert "index" in report.findings[0].message


# -- data rows ------------------------------------------------------------------------------


def test_edited_data_row(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, touched = audited
    rid = touched["patients"][0]
    ((body,),) = sql(vault, "SELECT body FROM versions WHERE rid = ? AND version = 1", rid)
    changed = bytes(body)[:-1] + bytes([bytes(body)[-1] ^ 1])
    sql(vault, "UPDATE versions SET body = ? WHERE rid = ? AND version = 1", changed, rid)
    report = check(vault, workers)
    assert report.first_bad_entry == write_entry_index(vault, "Patient", rid, 1)
    assert "no longer matches" in report.findings[0].message


def test_deleted_data_row(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, touched = audited
    rid = touched["patients"][1]  # updated: version 1 is history, not current
    sql(vault, "DELETE FROM versions WHERE rid = ? AND version = 1", rid)
    report = check(vault, workers)
    assert report.first_bad_entry == write_entry_index(vault, "Patient", rid, 1)
    assert "missing from the store" in report.findings[0].message


def test_inserted_data_row(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, touched = audited
    rid = touched["patients"][0]
    sql(
        vault,
        "INSERT INTO versions (rtype, rid, version, last_updated, deleted, body, compartment, "
        "method) SELECT rtype, rid, 7, last_updated, deleted, body, compartment, method "
        "FROM versions WHERE rid = ? AND version = 1",
        rid,
    )
    report = check(vault, workers)
    assert not report.ok
    assert any("has no audit entry" in f.message for f in report.findings)


def test_swapped_data_rows(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, touched = audited
    a, b = touched["patients"][:2]
    ((body_a,),) = sql(vault, "SELECT body FROM versions WHERE rid = ? AND version = 1", a)
    ((body_b,),) = sql(vault, "SELECT body FROM versions WHERE rid = ? AND version = 1", b)
    sql(vault, "UPDATE versions SET body = ? WHERE rid = ? AND version = 1", body_b, a)
    sql(vault, "UPDATE versions SET body = ? WHERE rid = ? AND version = 1", body_a, b)
    report = check(vault, workers)
    assert report.first_bad_entry == min(
        write_entry_index(vault, "Patient", a, 1), write_entry_index(vault, "Patient", b, 1)
    )


def test_rolled_back_current_pointer(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, touched = audited
    rid = touched["patients"][1]
    sql(
        vault,
        "UPDATE resources SET version = 1, seq = (SELECT seq FROM versions WHERE rid = ? "
        "AND version = 1) WHERE rid = ?",
        rid,
        rid,
    )
    report = check(vault, workers)
    assert report.first_bad_entry == write_entry_index(vault, "Patient", rid, 2)
    assert "rolled back" in report.findings[0].message


def test_verify_reports_a_resigned_rewrite_as_consistent(
    audited: tuple[Vault, dict[str, Any]],
    workers: int,
) -> None:
    """The limit of a local check: with the stolen key, a rewrite that also recomputes the
    nodes and re-signs verifies locally. Only a witness catches it (test_witness.py)."""
    vault, _ = audited
    edit_entry(vault, 2, actor="nobody")
    rebuild_tree(vault)
    resign(vault)
    assert check(vault, workers, data=False).ok


def test_verify_reads_a_large_log_in_pages(vault: Vault, tmp_path: Path, workers: int) -> None:
    for _ in range(3):
        workload(vault, patients=5)
    vault.audit.checkpoint()
    assert check(vault, workers).ok


# -- several bad entries: the lowest is named, however the pages are checked -----------------


def test_the_first_of_several_bad_entries_is_named(
    audited: tuple[Vault, dict[str, Any]], workers: int
) -> None:
    vault, _ = audited
    size = vault.store.audit_size()
    # The later pages go wrong first: a worker may finish them before the page of entry 2.
    edit_entry(vault, size - 2, actor="late")
    sql(vault, "UPDATE audit_entries SET actor = ? WHERE idx = ?", "moved", 9)
    sql(vault, "UPDATE audit_nodes SET hash = ? WHERE level = 1 AND idx = 3", b"\x05" * 32)
    edit_entry(vault, 2, actor="early")
    report = check(vault, workers)
    assert report.first_bad_entry == 2
    named = {f.index for f in report.findings}
    assert {2, 6, 9, size - 2} <= named  # node (1, 3) covers entries 6..7


def test_a_gap_and_later_bad_entries(audited: tuple[Vault, dict[str, Any]], workers: int) -> None:
    vault, _ = audited
    last = vault.store.audit_size() - 1
    edit_entry(vault, last, actor="later")
    sql(vault, "DELETE FROM audit_entries WHERE idx = ?", 6)
    edit_entry(vault, 3, actor="earlier")
    report = check(vault, workers)
    assert report.first_bad_entry == 3
    assert any(f.index == 6 and "missing" in f.message for f in report.findings)
    assert any(f.index == last for f in report.findings)  # past the gap: leaf checked alone


def test_workers_find_what_one_process_finds(audited: tuple[Vault, dict[str, Any]]) -> None:
    vault, _ = audited
    edit_entry(vault, 1, actor="someone")
    sql(vault, "UPDATE audit_entries SET actor = ? WHERE idx = ?", "innocent", 7)
    sql(vault, "UPDATE audit_nodes SET hash = ? WHERE level = 2 AND idx = 2", b"\x07" * 32)
    alone, parallel = check(vault, 1), check(vault, 2)
    assert not alone.ok
    assert parallel.findings == alone.findings
    assert (parallel.nodes_checked, parallel.root) == (alone.nodes_checked, alone.root)


def test_parallel_verify_opens_its_own_connections(vault: Vault) -> None:
    source = vault.store.audit_scan_source()
    assert source is not None
    scan = source.open()
    try:
        size = vault.store.audit_size()
        assert scan.audit_rows(0, size) == vault.store.audit_rows(0, size)
        assert scan.audit_nodes_range(0, 0, size) == vault.store.audit_nodes_range(0, 0, size)
    finally:
        scan.close()


def test_verify_without_its_worker_connections_gives_no_verdict(
    audited: tuple[Vault, dict[str, Any]], workers: int, tmp_path: Path
) -> None:
    """Workers that cannot open their connection fail the run (no partial verdict)."""
    vault, _ = audited
    store: Any = vault.store
    nowhere = AuditScanSource(store.backend, str(tmp_path / "missing" / "phivault.db"), "x")
    if store.backend == "postgresql":
        nowhere = AuditScanSource(store.backend, "postgresql://nobody@127.0.0.1:1/none", "x")
    store.audit_scan_source = lambda: nowhere  # this store's pages, read from nowhere
    with pytest.raises(StoreError):
        check(vault, workers)


def test_the_default_uses_only_idle_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert _idle_cpus() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (2.7, 0.0, 0.0))
    assert _idle_cpus() == 1  # workers would cost more CPU than they save
    monkeypatch.setattr(os, "getloadavg", lambda: (15.0, 0.0, 0.0))
    assert _idle_cpus() == 1
