"""SQLite's group commit (store/sqlite.py `SqliteStore.write`): blocks of several writers
share one transaction, and a block that raises undoes only its own work, whether it began
the transaction (no savepoint: it rolls the transaction back) or joined it (a SAVEPOINT)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phivault.store.base import NewVersion
from phivault.store.sqlite import SqliteStore

T0 = "2024-01-01T00:00:00.000Z"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "group.db")
    opened.migrate()
    yield opened
    opened.close()


def _version(rid: str) -> NewVersion:
    return NewVersion("Basic", rid, 1, T0, False, rid.encode())


class _Failed(Exception):
    pass


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the other writer never got in line"
        time.sleep(0.001)


def _two_writers(store: SqliteStore, fail_first: bool) -> tuple[list[str], list[str]]:
    """Writer "a" begins the transaction and, while "b" waits in line to join it, either
    fails or finishes; then "b" does the other. Returns the SQL the writer connection ran
    and the names whose after_commit callbacks ran."""
    statements: list[str] = []
    ran: list[str] = []
    errors: list[BaseException] = []
    store._writer.set_trace_callback(statements.append)

    def b() -> None:
        try:
            with store.write() as tx:
                tx.append_version(_version("b"))
                tx.after_commit(lambda: ran.append("b"))
                if not fail_first:
                    raise _Failed()
        except _Failed:
            pass
        except BaseException as exc:
            errors.append(exc)

    joiner = threading.Thread(target=b)
    try:
        with store.write() as tx:
            tx.append_version(_version("a"))
            tx.after_commit(lambda: ran.append("a"))
            joiner.start()
            _until(lambda: store._waiting == 1)  # "b" holds on for the writer lock
            if fail_first:
                raise _Failed()
    except _Failed:
        pass
    joiner.join()
    store._writer.set_trace_callback(None)
    assert not errors
    return statements, ran


def test_a_failing_first_block_rolls_back_alone(store: SqliteStore) -> None:
    statements, ran = _two_writers(store, fail_first=True)
    assert store.current("Basic", "a") is None
    assert store.current("Basic", "b") is not None  # the writer in line still committed
    assert ran == ["b"]
    # The block that began a transaction ran without a savepoint: it rolled back the
    # whole transaction, and the next writer began one of its own.
    assert not any("SAVEPOINT" in sql for sql in statements)
    assert statements.count("BEGIN IMMEDIATE") == 2 and "ROLLBACK" in statements


def test_a_failing_joined_block_rolls_back_to_its_savepoint(store: SqliteStore) -> None:
    statements, ran = _two_writers(store, fail_first=False)
    assert store.current("Basic", "a") is not None  # the block before it is kept
    assert store.current("Basic", "b") is None
    assert ran == ["a"]
    # One transaction: "a" began it without a savepoint, "b" joined it inside one.
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("SAVEPOINT phivault_write") == 1
    assert "ROLLBACK TO phivault_write" in statements and statements.count("COMMIT") == 1


def test_a_lone_block_runs_without_a_savepoint(store: SqliteStore) -> None:
    statements: list[str] = []
    store._writer.set_trace_callback(statements.append)
    with store.write() as tx:
        tx.append_version(_version("alone"))
    store._writer.set_trace_callback(None)
    assert store.current("Basic", "alone") is not None
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert not any("SAVEPOINT" in sql or "RELEASE" in sql for sql in statements)
    with pytest.raises(_Failed), store.write() as tx:
        tx.append_version(_version("undone"))
        raise _Failed()
    assert store.current("Basic", "undone") is None
    assert not store._writer.in_transaction  # nothing left open for the next writer
    with store.write() as tx:
        tx.append_version(_version("after"))
    assert store.current("Basic", "after") is not None
