"""`backup prune`: forget old snapshots by a keep-last/daily/weekly/monthly policy, then
remove the chunks no remaining snapshot needs, and the key-sets the newest one supersedes
(backup/keysets.py: that is how a crypto-shred reaches the backups).

It runs only from the operator's side: it needs the backup private key file (proof of
being the operator; the server never has it) and an operator backend, which for S3 means
credentials other than the server's. With Object Lock, objects whose COMPLIANCE retention
has not expired cannot be deleted by anyone; prune counts them as retained and a later
prune takes them. The newest snapshot is always kept. A backup running meanwhile heals:
it re-uploads any chunk prune removed under it (see create.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from phivault.backup.keys import BackupPrivateKey
from phivault.backup.keysets import KEYSETS, superseded
from phivault.backup.repository import SNAPSHOTS, Repository, chunk_object_name
from phivault.backup.restore import check_key, parse_time
from phivault.errors import ConfigError, PhivaultError, PruneRefused


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def empty(self) -> bool:
        return not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly)


@dataclass(slots=True)
class PruneResult:
    kept: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    chunks_deleted: int = 0
    keysets_deleted: int = 0
    retained: int = 0  # objects whose retention has not expired yet
    problems: list[str] = field(default_factory=list)


def _buckets() -> list[tuple[str, Callable[[datetime], object]]]:
    return [
        ("keep_daily", lambda t: t.date()),
        ("keep_weekly", lambda t: t.isocalendar()[:2]),
        ("keep_monthly", lambda t: (t.year, t.month)),
    ]


def select_kept(snapshots: list[tuple[str, datetime]], policy: RetentionPolicy) -> set[str]:
    """Ids to keep: the newest `keep_last`, and for each period kind the newest snapshot
    of each of the `keep_*` most recent periods that have one (restic's rules)."""
    if policy.empty():
        raise ConfigError("give at least one --keep-* option (prune never removes everything)")
    ordered = sorted(snapshots, key=lambda s: (s[1], s[0]), reverse=True)
    kept = {sid for sid, _ in ordered[: policy.keep_last]}
    for name, period in _buckets():
        limit = int(getattr(policy, name))
        seen: set[object] = set()
        for sid, when in ordered:
            if len(seen) >= limit:
                break
            bucket = period(when)
            if bucket not in seen:
                seen.add(bucket)
                kept.add(sid)
    if ordered:
        kept.add(ordered[0][0])  # never the newest
    return kept


def prune(
    repo: Repository,
    key: BackupPrivateKey,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
) -> PruneResult:
    if not getattr(repo.backend, "operator", False):
        raise PruneRefused()  # the server's append-only access: it can never delete
    check_key(repo, key)
    result = PruneResult()
    headers = {}
    for snapshot_id in repo.snapshot_ids():
        try:
            headers[snapshot_id] = repo.read_header(snapshot_id)
        except PhivaultError as exc:
            # An unverifiable manifest is left alone: evidence, not garbage.
            result.problems.append(f"snapshot {snapshot_id}: {exc.message}")
    kept = select_kept([(i, parse_time(h.time)) for i, h in headers.items()], policy)
    # An incremental snapshot restores through the full one and the deltas before it.
    kept |= {member for sid in kept for member in headers[sid].chain if member in headers}
    result.kept = sorted(kept)
    result.forgotten = sorted(set(headers) - kept)
    needed = {c for sid in kept for c in headers[sid].chunks}
    keysets = {name.rsplit("/", 1)[-1] for name in repo.backend.list(KEYSETS)}
    stale_keysets = superseded([headers[sid] for sid in kept], keysets)
    if dry_run:
        return result
    delete = repo.backend.delete  # type: ignore[attr-defined]
    for snapshot_id in result.forgotten:
        if not delete(SNAPSHOTS + snapshot_id):
            result.retained += 1
    # Superseded key-sets go (no retention on them): a shredded patient's key with them.
    for snapshot_id in stale_keysets:
        if delete(KEYSETS + snapshot_id):
            result.keysets_deleted += 1
        else:
            result.retained += 1
    if result.problems:
        # A snapshot that failed to verify still protects its chunks: nothing it may need
        # is removed until an operator has looked at it.
        result.problems.append("no chunk was removed while a manifest does not verify")
        return result
    for chunk_id in sorted(repo.chunk_ids() - needed):
        if delete(chunk_object_name(chunk_id)):
            result.chunks_deleted += 1
        else:
            result.retained += 1
    repo.backend.flush()
    return result
