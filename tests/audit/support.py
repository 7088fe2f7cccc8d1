"""Helpers for the audit tests: SQL behind the store's back (both backends), a small
audited workload, and an attacker's tools (rebuilding the tree, re-signing with a stolen
key)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
import psycopg

from phivault.audit.checkpoint import CheckpointSigner, tree_root
from phivault.audit.entry import index_row_of
from phivault.audit.merkle import leaf_hash, new_nodes_for_append
from phivault.audit.seal import LogSeal
from phivault.service import Context
from phivault.store.factory import SQLITE_FILE
from phivault.vault import Vault

CTX = Context(actor="dr-audit", client="10.1.2.3", purpose="TREAT")


def raw_sql(vault: Vault, *statements: tuple[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Run statements in one transaction on the database behind the store (`?` params);
    returns the rows of the last one."""
    store: Any = vault.store
    rows: list[tuple[Any, ...]] = []
    if store.backend == "sqlite":
        conn = sqlite3.connect(vault.settings.data_dir / SQLITE_FILE, timeout=30)
        try:
            for sql, params in statements:
                rows = conn.execute(sql, params).fetchall()
            conn.commit()
        finally:
            conn.close()
        return rows
    with psycopg.connect(store.url) as pg:
        pg.execute(f'SET search_path TO "{store.schema}"')
        for sql, params in statements:
            cur = pg.execute(sql.replace("?", "%s").encode(), params)
            rows = cur.fetchall() if cur.description else []
    return rows


def sql(vault: Vault, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    return raw_sql(vault, (statement, params))


def patient(family: str = "Zzaudit") -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"}


def workload(vault: Vault, patients: int = 3) -> dict[str, Any]:
    """Creates, reads, updates, a delete and history; returns what it touched."""
    svc = vault.service
    patients = max(patients, 3)
    ids = [svc.create(CTX, "Patient", patient(f"Zz{n}")).version.rid for n in range(patients)]
    obs = svc.create(
        CTX,
        "Observation",
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{ids[0]}"},
        },
    ).version.rid
    for rid in ids:
        svc.read(CTX, "Patient", rid)
    svc.update(CTX, "Patient", ids[1], {**patient("Zzchanged"), "id": ids[1]})
    svc.vread(CTX, "Patient", ids[1], 1)
    svc.delete(CTX, "Patient", ids[2])
    svc.history(CTX, "Patient", ids[1], since=None, count=10, cursor=None)
    return {"patients": ids, "observation": obs}


def entries(vault: Vault) -> list[bytes]:
    return [bytes(e) for _, e in vault.store.audit_entries(0, vault.store.audit_size())]


def decoded(vault: Vault) -> list[dict[str, Any]]:
    return [orjson.loads(e) for e in entries(vault)]


def write_entry_index(vault: Vault, rtype: str, rid: str, version: int) -> int:
    for index, entry in enumerate(decoded(vault)):
        if (entry.get("type"), entry.get("id"), entry.get("version")) == (rtype, rid, version):
            if entry["action"] in ("create", "update", "delete"):
                return index
    raise AssertionError("no write entry")


def rebuild_tree(vault: Vault) -> None:
    """What an intruder with database access does after editing entries: recompute every
    Merkle node so that the tree agrees with the edited entries."""
    rows = entries(vault)
    nodes = new_nodes_for_append(0, [leaf_hash(e) for e in rows], lambda keys: {})
    raw_sql(
        vault,
        ("DELETE FROM audit_nodes", ()),
        *[
            ("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", (lv, ix, h))
            for (lv, ix), h in nodes.items()
        ],
    )


def resign(vault: Vault, *, keep_old: bool = False) -> bytes:
    """Sign the current (rewritten) tree with the stolen key and make it the only
    checkpoint, and seal it, as an intruder who also holds the KEK would."""
    signer = CheckpointSigner(vault.keyring.audit_signing_seed())
    size = vault.store.audit_size()
    root = tree_root(vault.store.audit_nodes, size)
    checkpoint = signer.sign(size, root)
    seal = LogSeal.of(signer)
    assert seal is not None
    statements: list[tuple[str, tuple[Any, ...]]] = [
        ("UPDATE audit_seal SET size = ?, mac = ?", (size, seal.mac(size, root)))
    ]
    if not keep_old:
        statements.append(("DELETE FROM audit_checkpoints", ()))
    statements.append(
        ("INSERT INTO audit_checkpoints (size, checkpoint) VALUES (?, ?)", (size, checkpoint.blob))
    )
    raw_sql(vault, *statements)
    return checkpoint.blob


def edit_entry(vault: Vault, index: int, **changes: Any) -> None:
    """Change an entry the way a careful intruder would: its search columns too."""
    entry = orjson.loads(entries(vault)[index])
    entry.update(changes)
    blob = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    row = index_row_of(entry)
    sql(
        vault,
        "UPDATE audit_entries SET entry = ?, time = ?, action = ?, outcome = ?, actor = ?, "
        "rtype = ?, rid = ?, patient = ? WHERE idx = ?",
        blob,
        *row.values(),
        index,
    )
