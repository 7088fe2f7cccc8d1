"""The audit log's seal: a MAC over (size, root), rewritten by every append.

Signed checkpoints come once a second; between two of them, someone who can write the
database could append entries (with correct Merkle nodes) that nothing vouches for, and
the next checkpoint would sign them in. The seal closes that gap. Every append, in its
own transaction, replaces the one seal row with HMAC-SHA256(K, size || root), where K is
derived from the KEK-protected audit signing seed and never stored. So:

- the committed log always carries a seal of exactly its size and root;
- entries appended, edited or removed behind the server's back leave a seal that no
  longer matches: `audit verify` names the first entry past the sealed size (or the range
  since the newest checkpoint, if the sealed prefix itself was changed);
- before extending a log it has not just written itself, and before signing a checkpoint,
  the server checks the seal and refuses (fail closed) rather than vouch for forged
  entries.

What it cannot catch alone: rolling the database back to an earlier state together with
that state's seal (a replay). A witness (audit/witness.py) catches a rollback of anything
it has seen checkpointed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from phivault.audit.checkpoint import CheckpointSigner, tree_root, verify_checkpoint
from phivault.audit.merkle import EMPTY_ROOT, NodeKey, fold, perfect_subtrees
from phivault.audit.proofs import consistency_proof, verify_consistency
from phivault.audit.reader import StoreNodes
from phivault.crypto import primitives
from phivault.errors import AuditUnavailable, CheckpointError, IntegrityError, TreeRangeError
from phivault.store.base import ReadView, WriteTx

log = logging.getLogger("phivault.audit")

SEAL_INFO = b"phivault/audit-seal/v1"
_MAC_PREFIX = b"phivault-audit-seal/v1\n"

BROKEN_SEAL = (
    "the audit log's tail is not sealed by this server (entries were added, changed or "
    "removed outside phivault); run `phivault audit verify`"
)


def root_of(edge: Mapping[NodeKey, bytes], size: int) -> bytes:
    """The root of a tree of `size` leaves from its perfect subtrees (its right edge)."""
    keys = perfect_subtrees(0, size)
    return fold([edge[k] for k in keys]) if keys else EMPTY_ROOT


class LogSeal:
    """Makes and checks the seal. The key comes from the checkpoint signer's seed (HKDF),
    so it is as protected as that seed, and survives KEK rotation like it."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: bytes, public_key: bytes) -> None:
        self._key = key
        self.public_key = public_key  # of the checkpoint key: a log without seal yet

    @classmethod
    def of(cls, signer: CheckpointSigner | None) -> LogSeal | None:
        if signer is None:
            return None
        return cls(signer.derive_key(SEAL_INFO), signer.public_key)

    def mac(self, size: int, root: bytes) -> bytes:
        return primitives.hmac_sha256(self._key, _MAC_PREFIX + size.to_bytes(8, "big") + root)

    def matches(self, size: int, root: bytes, mac: bytes) -> bool:
        return primitives.constant_time_equal(self.mac(size, root), mac)

    def put(self, tx: WriteTx, size: int, edge: Mapping[NodeKey, bytes]) -> None:
        """Seal the log at `size` (edge: its perfect subtrees) in the caller's transaction."""
        tx.audit_put_seal(*self.of_edge(size, edge))

    def of_edge(self, size: int, edge: Mapping[NodeKey, bytes]) -> tuple[int, bytes]:
        """(size, mac): the seal row of the log at `size`, for `WriteTx.audit_append`."""
        return size, self.mac(size, root_of(edge, size))

    def check(self, view: ReadView, size: int, edge: Mapping[NodeKey, bytes]) -> None:
        """The stored seal covers exactly this log; AuditUnavailable otherwise (the caller
        must then neither extend the log nor sign it)."""
        stored = view.audit_seal()
        root = root_of(edge, size)
        if stored is None:
            if size == 0 or self._checkpointed(view, size, root):
                return  # an empty log, or one written before seals, all signed
        elif stored[0] == size and self.matches(size, root, stored[1]):
            return
        log.error("security: the audit log's seal does not match the log (size %d)", size)
        raise AuditUnavailable(BROKEN_SEAL)

    def _checkpointed(self, view: ReadView, size: int, root: bytes) -> bool:
        """A log from before seals existed is adopted only if a valid checkpoint covers it
        whole: a deleted seal row must not let a forged tail in."""
        newest = view.audit_checkpoints(1)
        if not newest:
            return False
        try:
            checkpoint = verify_checkpoint(self.public_key, newest[0])
        except CheckpointError:
            return False
        return checkpoint.size == size and checkpoint.root == root


def seal_findings(
    view: ReadView, seal: LogSeal, size: int, root: bytes, checkpointed: int
) -> list[tuple[int, str, bool]]:
    """What `audit verify` reports about the seal of a log it recomputed up to `size`
    (root: the recomputed root; checkpointed: the size the newest valid checkpoint covers),
    as (first entry concerned, message, vague: only a range is known).

    The caller reads the seal after the size: a live server only ever seals a larger log,
    so a seal below `size` always means entries that nobody sealed."""
    stored = view.audit_seal()
    if stored is None:
        if size == 0 or checkpointed == size:
            return []  # empty, or written before seals existed and signed whole
        message = (
            f"entries {checkpointed}..{size - 1} carry no seal: appended outside phivault "
            "(forged), or the seal was deleted"
        )
        return [(checkpointed, message, False)]
    sealed, mac = stored
    found: list[tuple[int, str, bool]] = []
    if sealed < size:
        message = (
            f"entries {sealed}..{size - 1} are not sealed by the server: appended outside "
            "phivault (forged)"
        )
        found.append((sealed, message, False))
    try:
        at = root if sealed == size else tree_root(view.audit_nodes, sealed)
        if 0 < size < sealed:  # the server appended meanwhile: ours must be a prefix
            proof = consistency_proof(size, sealed, StoreNodes(view))
            verify_consistency(size, sealed, proof, root, at)
    except (IntegrityError, TreeRangeError):
        message = (
            f"the seal covers {sealed} entries that the log no longer holds: entries were "
            "removed from its end"
        )
        return [*found, (size, message, False)]
    if not seal.matches(sealed, at, mac):
        # Past the newest checkpoint, only the seal vouches for entries. A checkpoint that
        # covers the sealed size yet disagrees was signed with the stolen key: all is open.
        since = checkpointed if checkpointed < sealed else 0
        message = (
            f"the seal does not match the log at size {sealed}: entries {since}.."
            f"{sealed - 1} were changed outside phivault"
        )
        found.append((since, message, True))
    return found
