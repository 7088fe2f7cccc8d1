"""Bulk import (CLI `import` and `demo`): many resources, one transaction per batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from phivault.audit.log import batched
from phivault.errors import InvalidResource, PhivaultError
from phivault.fhir import resources as fhir_types
from phivault.service.records import Context, ImportStats, Prepared
from phivault.types import Resource

if TYPE_CHECKING:
    from phivault.service.core import Service


def import_resources(
    service: Service, ctx: Context, resources: Iterable[Resource], *, batch_size: int = 500
) -> Iterator[ImportStats]:
    """Invalid resources are counted and skipped; they never reach the store."""
    stats = ImportStats()
    batch: list[Prepared] = []
    checked: set[str | None] = set()  # compartments whose data key this batch checked
    for resource in resources:
        try:
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            if not isinstance(rtype, str):
                raise InvalidResource(expression=["resourceType"])
            fhir_types.check_type(rtype)
            service._validate(rtype, resource)
            rid = resource.get("id")
            rid = fhir_types.check_id(rid) if isinstance(rid, str) else str(uuid.uuid4())
            batch.append(service.prepare(rtype, rid, resource, checked))
        except PhivaultError as exc:
            stats.failed += 1
            if len(stats.errors) < 20:
                stats.errors.append(exc.message)
        if len(batch) >= batch_size:
            _import_batch(service, ctx, batch, stats)
            batch, checked = [], set()
            yield stats
    if batch:
        _import_batch(service, ctx, batch, stats)
    if stats.created or stats.updated:
        service.store.refresh_statistics()  # plans for the data just loaded
    yield stats


def _import_batch(
    service: Service, ctx: Context, batch: Sequence[Prepared], stats: ImportStats
) -> None:
    """One transaction; its resources appended in bulk, a run of distinct identities at a
    time (a resource given twice gets its second version after its first)."""
    with service.store.write() as tx, batched(service.audit, tx):
        for run in _distinct_runs(batch):
            for result in service._write_many(ctx, tx, run, action="import"):
                if result.created:
                    stats.created += 1
                else:
                    stats.updated += 1


def _distinct_runs(batch: Sequence[Prepared]) -> Iterator[list[Prepared]]:
    run: list[Prepared] = []
    seen: set[tuple[str, str]] = set()
    for prepared in batch:
        key = (prepared.rtype, prepared.rid)
        if key in seen:
            yield run
            run, seen = [], set()
        run.append(prepared)
        seen.add(key)
    if run:
        yield run
