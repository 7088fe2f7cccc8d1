"""The audit log's seal (audit/seal.py), on SQLite and PostgreSQL: entries an intruder
with database write access appends after the newest checkpoint, with correct Merkle
nodes, are named by `audit verify`, and the server refuses to extend or sign such a log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from phivault.audit.checkpoint import tree_root
from phivault.audit.entry import index_row_of
from phivault.audit.events import AccessEvent
from phivault.audit.merkle import leaf_hash, new_nodes_for_append
from phivault.audit.seal import seal_findings
from phivault.audit.verify import VerifyReport, verify_log
from phivault.errors import AuditUnavailable
from phivault.vault import Vault
from tests.audit.support import (
    CTX,
    decoded,
    edit_entry,
    patient,
    raw_sql,
    rebuild_tree,
    sql,
    workload,
)


@pytest.fixture
def sealed(vault: Vault) -> Iterator[Vault]:
    workload(vault)
    assert vault.audit.checkpoint() is not None
    for n in range(3):  # entries past the newest checkpoint: only the seal covers them
        vault.audit.record(AccessEvent(action="read", actor=f"late-{n}", rtype="Patient"))
    yield vault


def check(vault: Vault, *, with_seal: bool = True) -> VerifyReport:
    assert vault.audit.signer is not None
    seal = vault.audit.seal if with_seal else None
    return verify_log(vault.store, vault.audit.signer.public_key, check_data=False, seal=seal)


def forge_tail(vault: Vault, count: int = 2) -> int:
    """Append entries the way an intruder with database write access would: well formed,
    with their search columns and every Merkle node they complete. Returns the old size."""
    size = vault.store.audit_size()
    template = decoded(vault)[-1]
    forged = [
        orjson.dumps({**template, "actor": f"forger-{n}"}, option=orjson.OPT_SORT_KEYS)
        for n in range(count)
    ]
    nodes = new_nodes_for_append(size, [leaf_hash(e) for e in forged], vault.store.audit_nodes)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for n, entry in enumerate(forged):
        row = index_row_of(orjson.loads(entry))
        statements.append(
            (
                "INSERT INTO audit_entries (idx, entry, time, action, outcome, actor, rtype, "
                "rid, patient) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (size + n, entry, *row.values()),
            )
        )
    statements += [
        ("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", (lv, ix, h))
        for (lv, ix), h in nodes.items()
    ]
    raw_sql(vault, *statements)
    return size


def test_an_untouched_log_is_sealed_at_its_size(sealed: Vault) -> None:
    report = check(sealed)
    assert report.ok and report.sealed, report.findings
    stored = sealed.store.audit_seal()
    assert stored is not None and stored[0] == sealed.store.audit_size()
    assert report.latest_checkpoint < report.size  # the tail is covered by the seal only


def test_a_forged_tail_is_named_and_refused(sealed: Vault) -> None:
    size = forge_tail(sealed)
    # The limit without the key: nodes and checkpoints alone cannot tell.
    assert check(sealed, with_seal=False).ok
    report = check(sealed)
    assert report.first_bad_entry == size
    assert any("forged" in f.message for f in report.findings)
    # Fail closed: the server neither extends nor signs a log it cannot vouch for.
    versions = sql(sealed, "SELECT COUNT(*) FROM versions")
    with pytest.raises(AuditUnavailable):
        sealed.audit.record(AccessEvent(action="read", actor="after"))
    with pytest.raises(AuditUnavailable):
        sealed.service.create(CTX, "Patient", patient("Zzafter"))
    with pytest.raises(AuditUnavailable):
        sealed.audit.checkpoint()
    assert sealed.store.audit_size() == size + 2
    assert sql(sealed, "SELECT COUNT(*) FROM versions") == versions
    assert not any(d.get("actor") == "after" for d in decoded(sealed))


def test_a_deleted_seal_does_not_let_a_tail_in(sealed: Vault) -> None:
    size = forge_tail(sealed, 1)
    sql(sealed, "DELETE FROM audit_seal")
    report = check(sealed)
    assert report.first_bad_entry == report.latest_checkpoint < size
    assert any("no seal" in f.message for f in report.findings)
    with pytest.raises(AuditUnavailable):
        sealed.audit.record(AccessEvent(action="read", actor="after"))


def test_a_log_signed_whole_without_seal_is_adopted(vault: Vault) -> None:
    """A log written before seals existed: adopted when a checkpoint covers all of it."""
    workload(vault)
    assert vault.audit.checkpoint() is not None
    sql(vault, "DELETE FROM audit_seal")
    assert check(vault).ok
    vault.audit.record(AccessEvent(action="read", actor="after"))
    assert check(vault).ok
    assert vault.store.audit_seal() is not None


def test_a_rewritten_tail_with_rebuilt_nodes_is_caught(sealed: Vault) -> None:
    last = sealed.store.audit_size() - 1
    edit_entry(sealed, last, actor="someone-else")
    rebuild_tree(sealed)
    report = check(sealed)
    assert not report.ok
    assert report.first_bad_entry == report.latest_checkpoint <= last
    assert any("seal does not match" in f.message for f in report.findings)


def test_a_truncated_tail_with_its_nodes_is_caught(sealed: Vault) -> None:
    size = sealed.store.audit_size()
    sql(sealed, "DELETE FROM audit_entries WHERE idx >= ?", size - 2)
    rebuild_tree(sealed)
    report = check(sealed)
    assert report.first_bad_entry == size - 2
    assert any("removed from its end" in f.message for f in report.findings)


def test_a_live_log_that_grew_after_the_size_was_read(sealed: Vault) -> None:
    """verify reads the size, then the seal: a server that appended meanwhile sealed a
    larger log, which must extend the verified one."""
    seal = sealed.audit.seal
    assert seal is not None
    size = sealed.store.audit_size()
    earlier = size - 2
    root = tree_root(sealed.store.audit_nodes, earlier)
    assert seal_findings(sealed.store, seal, earlier, root, 0) == []
    wrong = seal_findings(sealed.store, seal, earlier, b"\x00" * 32, 0)
    assert wrong and "removed" in wrong[0][1]


def test_another_appender_without_the_key_is_refused(vault: Vault) -> None:
    """A second log on the same store without the key (a forger's tool) cannot append."""
    from phivault.audit.log import AuditLog

    workload(vault)
    intruder = AuditLog(vault.store, vault.audit.pseudonymize)  # no signer: no seal
    intruder.record(AccessEvent(action="read", actor="forger"))
    intruder.close()
    assert check(vault).first_bad_entry == vault.store.audit_size() - 1
