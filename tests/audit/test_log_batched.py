"""Entries of one write transaction appended together (`AuditLog.batched`): same log, one
append per transaction, nothing appended when the transaction fails."""

from __future__ import annotations

import pytest

from phivault.audit.events import AccessEvent
from phivault.audit.verify import verify_log
from phivault.errors import PhivaultError
from phivault.service.bundles import BundleProcessor
from phivault.vault import Vault
from tests.audit.support import CTX
from tests.audit.test_log import public_key


def event(n: int) -> AccessEvent:
    return AccessEvent(action="create", actor="batched", rtype="Patient", rid=f"p{n}")


def test_entries_are_appended_when_the_block_ends(vault: Vault) -> None:
    size = vault.store.audit_size()
    with vault.store.write() as tx, vault.audit.batched(tx):
        for n in range(5):
            vault.audit.record(event(n), tx)
        assert tx.audit_size() == size  # collected, not yet appended
    assert vault.store.audit_size() == size + 5
    entries = vault.store.audit_entries(size, size + 5)
    assert [b'"p%d"' % n in entry for n, (_, entry) in enumerate(entries)] == [True] * 5
    vault.audit.checkpoint()
    assert verify_log(vault.store, public_key(vault)).ok


def test_a_failed_block_appends_nothing(vault: Vault) -> None:
    size = vault.store.audit_size()
    with pytest.raises(RuntimeError):
        with vault.store.write() as tx, vault.audit.batched(tx):
            vault.audit.record(event(1), tx)
            raise RuntimeError("the transaction fails")
    assert vault.store.audit_size() == size
    vault.audit.record(event(2))  # the log goes on
    assert vault.store.audit_size() == size + 1


def test_a_transaction_bundle_audits_each_entry_in_order(vault: Vault) -> None:
    size = vault.store.audit_size()
    entries = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{n}",
            "resource": {"resourceType": "Patient", "name": [{"family": f"Batch{n}"}]},
            "request": {"method": "POST", "url": "Patient"},
        }
        for n in range(4)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    BundleProcessor(vault.service).process(CTX, bundle, base_url="http://x/fhir", prefer="")
    assert vault.store.audit_size() == size + 4
    # A transaction that fails (an invalid entry) leaves no entry and no data behind.
    entries.append(
        {
            "resource": {"resourceType": "Patient", "active": "yes"},
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    with pytest.raises(PhivaultError):
        BundleProcessor(vault.service).process(CTX, bundle, base_url="http://x/fhir", prefer="")
    assert vault.store.audit_size() == size + 4
    vault.audit.checkpoint()
    assert verify_log(vault.store, public_key(vault)).ok
