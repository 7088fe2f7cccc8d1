"""The audit checks a drill runs on a restored data directory, behind one function.

It calls the audit package's own full verification (`phivault audit verify`) and then
checks that the restored log is a consistent extension of the checkpoint recorded in the
snapshot manifest, i.e. the one taken before the attack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phivault.audit.checkpoint import tree_root, verify_checkpoint
from phivault.audit.seal import LogSeal
from phivault.audit.verify import verify_log
from phivault.crypto import primitives
from phivault.errors import CheckpointError, IntegrityError
from phivault.vault import Vault


@dataclass(slots=True)
class AuditCheck:
    size: int = 0
    checkpoint_size: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_public_key(vault: Vault) -> bytes:
    signer = vault.audit.signer
    if signer is not None:
        return signer.public_key
    return primitives.public_key_of(vault.keyring.audit_signing_seed())


def verify_restored_audit(vault: Vault, expected_checkpoint: str | None) -> AuditCheck:
    public_key = audit_public_key(vault)
    report = verify_log(vault.store, public_key, seal=LogSeal.of(vault.audit.signer))
    result = AuditCheck(size=report.size, seconds=report.seconds)
    result.problems.extend(f.message for f in report.findings[:20])
    if expected_checkpoint:
        try:
            checkpoint = verify_checkpoint(public_key, expected_checkpoint.encode())
            result.checkpoint_size = checkpoint.size
            if checkpoint.size > report.size:
                raise IntegrityError()
            if tree_root(vault.store.audit_nodes, checkpoint.size) != checkpoint.root:
                raise IntegrityError()
        except (CheckpointError, IntegrityError):
            result.problems.append(
                "the restored audit log is not consistent with the checkpoint in the snapshot"
            )
    return result
