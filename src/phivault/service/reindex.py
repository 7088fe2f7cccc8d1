"""Rebuild the search index rows of every current version (`phivault reindex`).

Needed when the search-parameter definitions or the extraction change: each current
version is decrypted, its rows extracted again, blinded by the index policy, and swapped
in for the old ones in a write transaction per batch. A resource updated meanwhile is left
alone (its update already wrote fresh rows). Crypto-shredded resources lose their rows.
One audit entry records that the whole store was read for this purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from phivault.audit.events import AccessEvent
from phivault.errors import DecryptionError, KeyShredded
from phivault.fhir import json as fhir_json
from phivault.fhir.indexing import index_rows, last_updated_rows
from phivault.service.core import Context, Service
from phivault.store.base import IndexRow, VersionRecord


@dataclass(slots=True)
class ReindexStats:
    seen: int = 0
    reindexed: int = 0
    skipped: int = 0  # changed meanwhile, or crypto-shredded
    failed: int = 0  # failed their integrity check: left as they were


def reindex(
    service: Service, ctx: Context, rtype: str | None = None, *, batch_size: int = 500
) -> Iterator[ReindexStats]:
    """Yield cumulative statistics after each batch."""
    stats = ReindexStats()
    batch: list[tuple[VersionRecord, list[IndexRow]]] = []
    for record in service.store.iter_current(rtype):
        stats.seen += 1
        rows = _rows(service, record, stats)
        if rows is not None:
            batch.append((record, rows))
        if len(batch) >= batch_size:
            _write(service, batch, stats)
            batch = []
            yield stats
    if batch:
        _write(service, batch, stats)
    service.audit.record(
        AccessEvent(
            action="reindex",
            actor=ctx.actor,
            client=ctx.client,
            purpose=ctx.purpose,
            rtype=rtype,
            extra={"reindexed": str(stats.reindexed), "failed": str(stats.failed)},
        )
    )
    yield stats


def _rows(service: Service, record: VersionRecord, stats: ReindexStats) -> list[IndexRow] | None:
    if record.body is None:
        return None
    try:
        body = service.codec.open(
            record.rtype, record.rid, record.version, record.compartment, record.body
        )
    except KeyShredded:
        return []  # the data is gone; so must be what could find it
    except DecryptionError:
        stats.failed += 1
        return None
    rows = [r for r in index_rows(fhir_json.loads(body)) if r.param != "_lastUpdated"]
    rows = service.index_policy.transform(record.rtype, rows)
    return rows + last_updated_rows(record.last_updated)


def _write(
    service: Service, batch: list[tuple[VersionRecord, list[IndexRow]]], stats: ReindexStats
) -> None:
    with service.store.write() as tx:
        for record, rows in batch:
            tx.lock_resource(record.rtype, record.rid)
            current = tx.current(record.rtype, record.rid)
            if current is None or current.seq != record.seq or current.deleted:
                stats.skipped += 1
                continue
            tx.replace_index(record.rtype, record.rid, rows)
            if rows:
                stats.reindexed += 1
            else:
                stats.skipped += 1
