"""Running one bulk export job: read the current resources it covers, write them to
encrypted NDJSON files (one per type), and record the outcome in the job's row.

Runs in a background thread of the worker that accepted the job. Every so often it
writes a heartbeat (its progress) to the job's row; that update also tells it whether
the job was cancelled meanwhile (by any worker), in which case it stops and removes
what it wrote.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from phivault.audit.events import AccessEvent
from phivault.errors import BadRequest, DecryptionError, Gone, KeyShredded, NotFound
from phivault.fhir import json as fhir_json
from phivault.fhir.outcome import issue, operation_outcome
from phivault.fhir.resources import instant_text, now_instant, parse_instant
from phivault.fhir.search.model import SearchRequest
from phivault.fhir.search.query import MAX_PARAMS, parse_search
from phivault.service.access_guard import type_allowed, visible
from phivault.service.export_files import SealedFileWriter
from phivault.store.base import VersionRecord
from phivault.store.compartment_sql import CompartmentQuery
from phivault.store.export_jobs import COMPLETED, FAILED, RUNNING, ExportJobRecord

if TYPE_CHECKING:
    from phivault.service.core import Context, Service

log = logging.getLogger("phivault.export")

HEARTBEAT_EVERY = 500  # resources between heartbeats (and cancellation checks)
PAGE = 500
ERROR_FILE = "OperationOutcome"


class Cancelled(Exception):
    """The job's row disappeared: it was cancelled (or expired) while running."""


@dataclass(frozen=True, slots=True)
class ExportParams:
    level: str  # system, patient or group
    types: tuple[str, ...] | None = None
    since: str | None = None
    # group level, or a kick-off naming patients: the patients' ids
    patients: tuple[str, ...] | None = None
    # _typeFilter: per type, search queries ("status=active"); a resource of such a type is
    # exported when it matches one of them
    type_filters: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "level": self.level,
                "types": list(self.types) if self.types is not None else None,
                "since": self.since,
                "patients": list(self.patients) if self.patients is not None else None,
                "type_filters": {t: list(q) for t, q in self.type_filters.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ExportParams:
        data = json.loads(text)
        types = data.get("types")
        patients = data.get("patients")
        filters = data.get("type_filters") or {}
        return cls(
            level=data["level"],
            types=tuple(types) if types is not None else None,
            since=data.get("since"),
            patients=tuple(patients) if patients is not None else None,
            type_filters={t: tuple(q) for t, q in filters.items()},
        )


def parse_type_filter(rtype: str, query: str) -> SearchRequest:
    """One _typeFilter query, parsed strictly (a filter the server ignored would export
    more than was asked): search parameters only."""
    pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    request = parse_search(rtype, pairs, strict=True)
    if request.has_results_controls or not request.filters:
        raise BadRequest("a _typeFilter takes search parameters only")
    return request


def file_name(rtype: str) -> str:
    return f"{rtype}.ndjson"


def file_identity(job_id: str, name: str) -> str:
    return f"{job_id}/{name}"


class ExportRun:
    def __init__(
        self, service: Service, ctx: Context, job: ExportJobRecord, folder: Path, ttl: timedelta
    ) -> None:
        self.service = service
        self.ctx = ctx
        self.job = job
        self.folder = folder
        self.ttl = ttl
        self.params = ExportParams.from_json(job.params)
        self.writers: dict[str, SealedFileWriter] = {}
        self.counts: dict[str, int] = {}
        self.unreadable = 0
        self.allowed_types: dict[str, bool] = {}
        self.done = 0

    def run(self) -> None:
        """Never raises: a failure is recorded in the job's row (PHI-free), not thrown."""
        try:
            self._heartbeat(RUNNING)
            self.service.codec.prepare(None)
            for record in self._records():
                self._write(record)
            self._finish()
        except Cancelled:
            self._discard()
        except Exception as exc:
            log.warning("export job failed: %s", type(exc).__name__)
            self._discard()
            self._fail(type(exc).__name__)

    # -- what the job covers --------------------------------------------------------------
    def _records(self) -> Iterator[VersionRecord]:
        params = self.params
        since = params.since
        filtered = params.type_filters
        if params.patients is not None:
            for patient_id in params.patients:
                for record in self._compartment(f"Patient/{patient_id}"):
                    if record.rtype not in filtered:
                        yield record
                for filtered_type in sorted(filtered):
                    yield from self._matching(filtered_type, patient_id)
            return
        type_lists: list[str | None] = list(params.types) if params.types else [None]
        for rtype in type_lists:
            if rtype is not None and rtype in filtered:
                continue
            for record in self.service.store.iter_current(rtype):
                if since is not None and record.last_updated < since:
                    continue
                if params.level == "patient" and record.compartment is None:
                    continue
                if record.rtype not in filtered:
                    yield record
        for filtered_type in sorted(filtered):
            yield from self._matching(filtered_type, None)

    def _matching(self, rtype: str, patient_id: str | None) -> Iterator[VersionRecord]:
        """Current resources of `rtype` that match one of its _typeFilter queries (in
        Patient/`patient_id`'s compartment when given), each once, through the search
        engine and the same access narrowing as a search by this caller."""
        searcher = self.service.searcher
        since = self.params.since
        seen: set[str] = set()
        for query in self.params.type_filters[rtype]:
            request = parse_type_filter(rtype, query)
            try:
                spec, keep = searcher.prepare(self.ctx, request, compartment=patient_id)
            except (NotFound, Gone):
                return  # a group member deleted meanwhile: nothing in its compartment
            spec = replace(spec, limit=PAGE)
            while True:
                page = searcher._page(spec, keep)
                for found in page.found:
                    record = found.row.record
                    if record.rid in seen or (since is not None and record.last_updated < since):
                        continue
                    if self.params.level == "patient" and record.compartment is None:
                        continue
                    seen.add(record.rid)
                    yield record
                if not page.more or page.edge is None:
                    break
                spec = replace(spec, after=page.edge)

    def _compartment(self, compartment: str) -> Iterator[VersionRecord]:
        after: tuple[str, str] | None = None
        while True:
            query = CompartmentQuery(
                compartment,
                rtypes=self.params.types,
                since=self.params.since,
                after=after,
                limit=PAGE,
            )
            rows = self.service.store.compartment(query)
            yield from rows
            if len(rows) < PAGE:
                return
            after = (rows[-1].rtype, rows[-1].rid)

    # -- writing --------------------------------------------------------------------------
    def _write(self, record: VersionRecord) -> None:
        if not self._type_allowed(record.rtype):
            return
        try:
            body = self.service._open(record).body
        except (KeyShredded, DecryptionError):
            self.unreadable += 1  # reported as a count in the error file, never the ids
            return
        if body is None:
            return
        rtype, rid, compartment = record.rtype, record.rid, record.compartment
        if not visible(self.service, self.ctx, "read", rtype, rid, compartment, body):
            return  # the access policy hides it from this caller: left out silently
        self._writer(record.rtype).write(body + b"\n")
        self.counts[record.rtype] = self.counts.get(record.rtype, 0) + 1
        self.done += 1
        if self.done % HEARTBEAT_EVERY == 0:
            self._heartbeat(RUNNING)

    def _type_allowed(self, rtype: str) -> bool:
        allowed = self.allowed_types.get(rtype)
        if allowed is None:
            allowed = type_allowed(self.service, self.ctx, "search", rtype)
            self.allowed_types[rtype] = allowed
        return allowed

    def _writer(self, rtype: str) -> SealedFileWriter:
        writer = self.writers.get(rtype)
        if writer is None:
            name = file_name(rtype)
            writer = SealedFileWriter(
                self.service.codec,
                self.folder / f"{name}.enc",
                file_identity(self.job.job_id, name),
            )
            self.writers[rtype] = writer
        return writer

    def _finish(self) -> None:
        for writer in self.writers.values():
            writer.close()
        output = [
            {"type": rtype, "file": file_name(rtype), "count": self.counts[rtype]}
            for rtype in sorted(self.counts)
        ]
        errors = []
        if self.unreadable:
            outcome = operation_outcome(
                [
                    issue(
                        "error",
                        "security",
                        f"{self.unreadable} resources could not be read "
                        "(their patient's data key was destroyed or they failed their "
                        "integrity check) and were left out",
                    )
                ]
            )
            name = file_name(ERROR_FILE)
            writer = SealedFileWriter(
                self.service.codec,
                self.folder / f"{name}.enc",
                file_identity(self.job.job_id, name),
            )
            writer.write(fhir_json.dumps(outcome) + b"\n")
            writer.close()
            errors.append({"type": ERROR_FILE, "file": name, "count": 1})
        expires = parse_instant(now_instant()) + self.ttl
        finished = self._update(
            replace(
                self.job,
                state=COMPLETED,
                progress="completed",
                output=json.dumps(output),
                error=json.dumps(errors),
                expires=instant_text(expires),
            )
        )
        if not finished:
            raise Cancelled()
        self.service.audit.record(
            AccessEvent(
                action="export",
                actor=self.ctx.actor,
                client=self.ctx.client,
                purpose=self.ctx.purpose,
                extra={
                    "step": "completed",
                    "job": self.job.job_id,
                    "level": self.params.level,
                    "counts": ",".join(f"{t}={n}" for t, n in sorted(self.counts.items())),
                },
            )
        )

    # -- the job's row ------------------------------------------------------------------
    def _heartbeat(self, state: str) -> None:
        if not self._update(replace(self.job, state=state, progress=f"{self.done} resources")):
            raise Cancelled()

    def _update(self, job: ExportJobRecord) -> bool:
        job = replace(job, updated=now_instant())
        with self.service.store.write() as tx:
            ok = tx.export_job_update(job)
        self.job = job
        return ok

    def _fail(self, reason: str) -> None:
        expires = parse_instant(now_instant()) + self.ttl
        try:
            self._update(
                replace(
                    self.job,
                    state=FAILED,
                    progress="failed",
                    error=json.dumps([{"reason": reason}]),
                    expires=instant_text(expires),
                )
            )
        except Exception as exc:  # the store itself is gone: nothing more to record
            log.warning("export job state not recorded: %s", type(exc).__name__)

    def _discard(self) -> None:
        for writer in self.writers.values():
            try:
                writer.abort()
            except OSError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
