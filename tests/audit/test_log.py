"""The audit log's append path: group commit with a cached right edge, mixed with
in-transaction appends and with another appender on the same database, and the
checkpoints its writer signs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

import phivault.audit.append
from phivault.audit.checkpoint import CheckpointSigner, verify_checkpoint
from phivault.audit.events import AccessEvent
from phivault.audit.log import AuditLog
from phivault.audit.verify import verify_log
from phivault.crypto import primitives
from phivault.errors import AuditUnavailable
from phivault.vault import Vault
from tests.audit.support import CTX, patient


def event(n: int) -> AccessEvent:
    return AccessEvent(action="read", actor=f"user-{n % 7}", rtype="Patient", rid=f"p{n}")


def public_key(vault: Vault) -> bytes:
    assert vault.audit.signer is not None
    return vault.audit.signer.public_key


def test_group_commit_mixed_with_writes_and_another_appender(vault: Vault) -> None:
    """Reads group-committed from many threads, writes appending in their own transactions,
    and a second AuditLog on the same store (as another worker process would be): the
    cached right edge must never be used once someone else has appended."""
    other = AuditLog(vault.store, vault.audit.pseudonymize, vault.audit.signer)
    errors: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            for i in range(40):
                (vault.audit if i % 3 else other).record(event(n * 100 + i))
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        try:
            for i in range(8):
                vault.service.create(CTX, "Patient", patient(f"Zz{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(12)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert not errors
    assert vault.store.audit_size() == 12 * 40 + 8
    vault.audit.checkpoint()
    report = verify_log(vault.store, public_key(vault))
    assert report.ok, report.findings[:3]


@contextmanager
def failing_writes(vault: Vault, times: int) -> Iterator[None]:
    store: Any = vault.store
    real = store.write
    left = [times]

    @contextmanager
    def write(**kwargs: Any) -> Iterator[Any]:
        with real(**kwargs) as tx:
            if left[0] > 0:
                left[0] -= 1
                raise OSError("disk on fire")
            yield tx

    store.write = write
    try:
        yield
    finally:
        store.write = real


def test_a_failed_group_commit_refuses_its_waiters_and_leaves_a_sound_tree(
    vault: Vault,
) -> None:
    vault.audit.record(event(1))
    size = vault.store.audit_size()
    with failing_writes(vault, 1):
        with pytest.raises(AuditUnavailable):
            vault.audit.record(event(2))
        assert vault.store.audit_size() == size
        vault.audit.record(event(3))  # the cached edge was dropped, the next commit works
    assert vault.store.audit_size() == size + 1
    vault.audit.checkpoint()
    assert verify_log(vault.store, public_key(vault)).ok


def test_the_writer_signs_checkpoints_while_the_log_grows_and_on_close(vault: Vault) -> None:
    signer = CheckpointSigner(vault.keyring.audit_signing_seed())
    log = AuditLog(vault.store, vault.audit.pseudonymize, signer, checkpoint_interval=0.05)
    for n in range(5):
        log.record(event(n))
    deadline = time.monotonic() + 10
    latest = None
    while time.monotonic() < deadline:
        stored = vault.store.audit_checkpoints(1)
        latest = verify_checkpoint(signer.public_key, stored[0]) if stored else None
        if latest is not None and latest.size == vault.store.audit_size():
            break
        time.sleep(0.02)
    assert latest is not None and latest.size == vault.store.audit_size()
    log.record(event(9))
    log.close()  # the last entry is covered by a checkpoint signed on the way out
    final = verify_checkpoint(signer.public_key, vault.store.audit_checkpoints(1)[0])
    assert final.size == vault.store.audit_size()
    with pytest.raises(AuditUnavailable):
        log.record(event(10))


def test_checkpoints_are_one_per_size_and_made_on_demand(vault: Vault) -> None:
    assert vault.audit.checkpoint() is None  # an empty log has no tree head
    vault.audit.record(event(1))
    first = vault.audit.checkpoint()
    assert first is not None
    assert vault.audit.checkpoint() == first  # nothing grew: the same checkpoint
    vault.audit.record(event(2))
    second = vault.audit.checkpoint()
    assert second != first
    assert len(vault.store.audit_all_checkpoints()) == 2


def test_a_log_without_a_signer_refuses_to_checkpoint(vault: Vault) -> None:
    log = AuditLog(vault.store, vault.audit.pseudonymize)
    with pytest.raises(AuditUnavailable):
        log.checkpoint()
    log.close()


def test_another_key_does_not_verify(vault: Vault) -> None:
    vault.audit.record(event(1))
    blob = vault.audit.checkpoint()
    assert blob is not None
    other = primitives.public_key_of(primitives.generate_signing_key())
    report = verify_log(vault.store, other)
    assert not report.ok


def test_a_data_write_hands_its_edge_over_once_committed(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write's audit entry goes in with the write's own transaction; once that has
    committed, the tree's new right edge is the appender's, so the next write and the
    next group commit read neither nodes nor seal. A write that rolls back hands over
    nothing, and the tree stays sound."""
    edge = vault.audit._edge
    vault.audit.record(event(1))
    vault.service.create(CTX, "Patient", patient("Zzfirst"))
    size = vault.store.audit_size()
    current = edge.current()
    assert current is not None and current[0] == size
    reads: list[int] = []
    real = phivault.audit.append._read_nodes
    monkeypatch.setattr(
        phivault.audit.append,
        "_read_nodes",
        lambda *args: reads.append(1) or real(*args),  # type: ignore[func-returns-value]
    )
    vault.service.create(CTX, "Patient", patient("Zzsecond"))
    vault.audit.record(event(2))
    assert reads == [] and vault.store.audit_size() == size + 2
    before = edge.current()
    with pytest.raises(RuntimeError):
        with vault.store.write() as tx:
            vault.audit.record(event(3), tx)
            raise RuntimeError("the write fails after its audit entry")
    assert edge.current() == before and vault.store.audit_size() == size + 2
    vault.service.create(CTX, "Patient", patient("Zzthird"))
    vault.audit.checkpoint()
    report = verify_log(vault.store, public_key(vault))
    assert report.ok, report.findings[:3]


def test_an_appender_whose_edge_went_stale_appends_again_from_the_tree(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its optimistic append (rows sent with the size check) lands on indexes another
    process took (PostgreSQL: a key conflict), or finds a larger log (SQLite): it rolls
    back and appends from the stored tree, without refusing its callers."""
    other = AuditLog(vault.store, vault.audit.pseudonymize, vault.audit.signer)
    vault.audit.record(event(1))  # the edge is now cached at this size
    for n in range(3):
        other.record(event(10 + n))  # more rows than the next append brings
    stale: list[bool] = []
    real = phivault.audit.append.StaleEdge.__init__
    monkeypatch.setattr(
        phivault.audit.append.StaleEdge, "__init__", lambda self: stale.append(True) or real(self)
    )
    vault.audit.record(event(2))
    assert stale == [True]  # the optimistic attempt was abandoned, not refused
    other.close()
    entries = vault.store.audit_entries(0, vault.store.audit_size())
    assert [orjson.loads(e)["id"] for _, e in entries][-5:] == ["p1", "p10", "p11", "p12", "p2"]
    vault.audit.checkpoint()
    report = verify_log(vault.store, public_key(vault))
    assert report.ok, report.findings[:3]
