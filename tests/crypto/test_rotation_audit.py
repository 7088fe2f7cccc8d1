"""`keys rotate --data-keys` and the audit log, on SQLite and PostgreSQL: re-encryption
changes every stored body, so each swap is recorded (`rekey`, old and new hash) in the
same transaction, `audit verify` still passes, and an edited body is still caught."""

from __future__ import annotations

import hashlib

import orjson

from phivault.audit.verify import verify_log
from phivault.crypto.codec import KeyRingCodec
from phivault.service.keys import rotate_data_keys_recorded
from phivault.vault import Vault
from tests.audit.support import CTX, sql, workload


def verify(vault: Vault) -> list[str]:
    assert vault.audit.signer is not None
    report = verify_log(vault.store, vault.audit.signer.public_key, seal=vault.audit.seal)
    return [f.message for f in report.findings]


def test_data_key_rotation_keeps_the_audit_verifying(vault: Vault) -> None:
    touched = workload(vault)
    assert verify(vault) == []
    codec = vault.service.codec
    assert isinstance(codec, KeyRingCodec)
    report = rotate_data_keys_recorded(vault.store, codec, vault.audit, CTX, grace=0)
    assert report.resealed > 0
    entries = [orjson.loads(bytes(e)) for _, e in vault.store.audit_entries(0, 10**9)]
    rekeys = [e for e in entries if e["action"] == "rekey"]
    assert len(rekeys) == report.resealed
    stored = {
        (r[0], r[1], int(r[2])): hashlib.sha256(bytes(r[3])).hexdigest()
        for r in sql(vault, "SELECT rtype, rid, version, body FROM versions WHERE body IS NOT NULL")
    }
    for entry in rekeys:  # the new hash is the stored one; the old one differs
        assert stored[(entry["type"], entry["id"], entry["version"])] == entry["data_sha256"]
        assert entry["extra"]["from"] != entry["data_sha256"]
    assert verify(vault) == []
    # Reads after the rotation record the new hash and still agree.
    vault.service.read(CTX, "Patient", touched["patients"][0])
    assert verify(vault) == []
    # An edit outside phivault after the rotation is still caught.
    sql(vault, "UPDATE versions SET body = ? WHERE rid = ? AND version = 1", b"\x02junk",
        touched["patients"][0])  # fmt: skip
    found = verify(vault)
    assert any("no longer matches" in m for m in found), found
