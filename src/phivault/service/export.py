"""Bulk Data Access $export (FHIR Bulk Data Access IG v2, asynchronous pattern).

kick-off -> job row (state in the database, so any worker answers status) -> a background
thread of the accepting worker writes encrypted NDJSON files under
<data>/exports/<job>/ -> status polls see progress, then the manifest -> downloads are
decrypted while streamed -> DELETE (or expiry) removes the row and the files.

Every kick-off, status poll, cancellation and download is audited ("export",
"export-download"), the kick-off in the same transaction that creates the job.

Access control: `_authorize` is the one hook for who may export and who may see a job
(only the actor who kicked it off); the job's runner applies the access policy to each
record it writes. Job ids are 128 random bits (uuid4: 122), so a job cannot be guessed.
With access control off (loopback, in-process tools), every caller is trusted.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phivault.audit.events import AccessEvent
from phivault.errors import BadRequest, ExportFailed, Gone, NotFound, TooManyExports
from phivault.fhir import json as fhir_json
from phivault.fhir import resources as fhir_types
from phivault.fhir.bundle_entries import iter_references
from phivault.service.access_guard import audit_refusal, released_ndjson, require_type
from phivault.service.export_files import read_sealed_file
from phivault.service.export_run import (
    ExportParams,
    ExportRun,
    file_identity,
    parse_type_filter,
)
from phivault.store.export_jobs import ACCEPTED, COMPLETED, FAILED, ExportJobRecord

if TYPE_CHECKING:
    from phivault.service.core import Context, Service

log = logging.getLogger("phivault.export")

EXPORTS_DIR = "exports"
DEFAULT_TTL = timedelta(hours=24)
MAX_ACTIVE_JOBS = 4
# A running job whose worker has not written a heartbeat for this long is reported as
# failed: the worker that ran it stopped (crash, restart).
STALE_AFTER = timedelta(minutes=10)
LEVELS = ("system", "patient", "group")


@dataclass(frozen=True, slots=True)
class ExportStatus:
    state: str  # accepted, running, completed, failed
    progress: str | None
    manifest: dict[str, Any] | None  # when completed
    expires: str | None


class ExportService:
    def __init__(self, service: Service, data_dir: Path, *, ttl: timedelta = DEFAULT_TTL) -> None:
        self.service = service
        self.folder = data_dir / EXPORTS_DIR
        self.ttl = ttl

    # -- kick-off -----------------------------------------------------------------------
    def kick_off(
        self,
        ctx: Context,
        *,
        level: str,
        request_url: str,
        group_id: str | None = None,
        types: Sequence[str] | None = None,
        since: str | None = None,
        type_filters: Sequence[str] = (),
        patients: Sequence[str] | None = None,
    ) -> str:
        """Start a job; `type_filters` are `_typeFilter` values (`Type?query`), `patients`
        the kick-off's `patient` references' ids (Patient and Group level only)."""
        if level not in LEVELS:
            raise BadRequest("unknown export level")
        checked = tuple(fhir_types.check_type(t) for t in types) if types else None
        filters = _type_filters(type_filters, checked)
        self._authorize(ctx, level, None, tuple(dict.fromkeys([*(checked or ()), *filters])))
        since_text = fhir_types.instant_text(fhir_types.parse_instant(since)) if since else None
        members = self._patients(level, group_id, patients)
        self.sweep()
        store = self.service.store
        if store.export_jobs_active() >= MAX_ACTIVE_JOBS:
            raise TooManyExports()
        now = fhir_types.now_instant()
        params = ExportParams(
            level=level, types=checked, since=since_text, patients=members, type_filters=filters
        )
        job = ExportJobRecord(
            job_id=uuid.uuid4().hex,
            state=ACCEPTED,
            owner=ctx.actor,
            request_url=request_url,
            params=params.to_json(),
            transaction_time=now,
            created=now,
            updated=now,
        )
        folder = self.folder / job.job_id
        folder.mkdir(parents=True, mode=0o700)
        try:
            with store.write() as tx:
                tx.export_job_insert(job)
                self.service.audit.record(self._event(ctx, "kick-off", job, level=level), tx)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        runner = ExportRun(self.service, ctx, job, folder, self.ttl)
        thread = threading.Thread(target=runner.run, name="phivault-export", daemon=True)
        thread.start()
        return job.job_id

    def _patients(
        self, level: str, group_id: str | None, named: Sequence[str] | None
    ) -> tuple[str, ...] | None:
        """The patients whose compartments the job covers; None: every one (or, at
        system level, none in particular)."""
        if named is not None:
            if level == "system":
                raise BadRequest("the patient parameter is for Patient and Group level exports")
            named = tuple(dict.fromkeys(fhir_types.check_id(p) for p in named))
        if level != "group":
            return named
        members = self._group_members(group_id)
        return members if named is None else tuple(p for p in members if p in named)

    def _group_members(self, group_id: str | None) -> tuple[str, ...]:
        if group_id is None:
            raise BadRequest("a group export needs the Group's id")
        fhir_types.check_id(group_id)
        record = self.service.store.current("Group", group_id)
        if record is None:
            raise NotFound(f"Group/{group_id} is not known")
        if record.deleted:
            raise Gone(f"Group/{group_id} was deleted")
        body = self.service._open(record).body or b"{}"
        group = fhir_json.loads(body)
        members: list[str] = []
        for member in group.get("member") or []:
            if not isinstance(member, dict) or member.get("inactive") is True:
                continue
            for _where, reference in iter_references(member.get("entity") or {}):
                rtype, _, rid = reference.partition("/")
                if rtype == "Patient" and rid and rid not in members:
                    members.append(fhir_types.check_id(rid))
        return tuple(members)

    # -- status -------------------------------------------------------------------------
    def status(self, ctx: Context, job_id: str, base_url: str) -> ExportStatus:
        self.sweep()
        job = self._job(ctx, job_id)
        self.service.audit.record(self._event(ctx, "status", job))
        if job.state == FAILED:
            raise ExportFailed()
        if job.state != COMPLETED:
            if _age(job.updated) > STALE_AFTER:
                self._mark_stale(job)
                raise ExportFailed("the bulk export stopped: its server worker is gone")
            return ExportStatus(job.state, job.progress, None, None)
        # The poll itself came with a token exactly when the server asks for one on every
        # FHIR route, the file URLs included.
        manifest = self._manifest(job, base_url, requires_token=ctx.principal is not None)
        return ExportStatus(job.state, job.progress, manifest, job.expires)

    def _manifest(
        self, job: ExportJobRecord, base_url: str, requires_token: bool
    ) -> dict[str, Any]:
        def files(text: str | None) -> list[dict[str, Any]]:
            return [
                {
                    "type": item["type"],
                    "url": f"{base_url}/$export-file/{job.job_id}/{item['file']}",
                    "count": item["count"],
                }
                for item in json.loads(text or "[]")
            ]

        return {
            "transactionTime": job.transaction_time,
            "request": job.request_url,
            # Downloads need the same bearer token as every FHIR route once access control
            # is on (the Bulk Data IG: true when the file URLs need the access token).
            "requiresAccessToken": requires_token,
            "output": files(job.output),
            "error": files(job.error),
        }

    # -- download -------------------------------------------------------------------------
    def open_file(self, ctx: Context, job_id: str, name: str) -> Iterator[bytes]:
        """The plaintext NDJSON of one output file, decrypted chunk by chunk."""
        job = self._job(ctx, job_id)
        if job.state != COMPLETED:
            raise NotFound("the export has no such file")
        outputs = {item["file"]: item["type"] for item in json.loads(job.output or "[]")}
        known = set(outputs) | {item["file"] for item in json.loads(job.error or "[]")}
        if name not in known:  # also what keeps `name` from walking out of the folder
            raise NotFound("the export has no such file")
        path = self.folder / job_id / f"{name}.enc"
        chunks = read_sealed_file(self.service.codec, path, file_identity(job_id, name))
        if name in outputs:  # the same policy again, as it is now (the error file has no PHI)
            chunks = released_ndjson(self.service, ctx, outputs[name], chunks)
        event = self._event(ctx, "download", job, action="export-download", file=name)
        self.service.audit.record(event)
        return chunks

    # -- cancel, expiry -------------------------------------------------------------------
    def cancel(self, ctx: Context, job_id: str) -> None:
        job = self._job(ctx, job_id)
        with self.service.store.write() as tx:
            tx.export_job_delete(job_id)
            self.service.audit.record(self._event(ctx, "cancel", job), tx)
        # A runner still writing notices at its next heartbeat and removes its files too.
        shutil.rmtree(self.folder / job_id, ignore_errors=True)

    def _mark_stale(self, job: ExportJobRecord) -> None:
        """A job whose worker is gone: failed, and removed (with its partial files) once
        it expires."""
        expires = fhir_types.parse_instant(fhir_types.now_instant()) + self.ttl
        stale = replace(
            job,
            state=FAILED,
            progress="failed",
            error=json.dumps([{"reason": "stale"}]),
            expires=fhir_types.instant_text(expires),
        )
        with self.service.store.write() as tx:
            tx.export_job_update(stale)

    def sweep(self) -> int:
        """Remove expired jobs (row and files); return how many."""
        store = self.service.store
        expired = store.export_jobs_expired(fhir_types.now_instant())
        for job_id in expired:
            with store.write() as tx:
                tx.export_job_delete(job_id)
            shutil.rmtree(self.folder / _safe_id(job_id), ignore_errors=True)
        return len(expired)

    # -- helpers --------------------------------------------------------------------------
    def _job(self, ctx: Context, job_id: str) -> ExportJobRecord:
        job = self.service.store.export_job(_safe_id(job_id))
        if job is None:
            raise NotFound("no such export job")
        self._authorize(ctx, ExportParams.from_json(job.params).level, job)
        return job

    def _authorize(
        self,
        ctx: Context,
        level: str,
        job: ExportJobRecord | None,
        types: Sequence[str] | None = None,
    ) -> None:
        """The access-control hook. A job is visible only to the actor who kicked it off
        (others get "no such job"); explicitly requested types must be searchable by the
        caller (403 otherwise). What each record may contain is decided per record while
        the job runs (ExportRun), by the same access policy as every other read."""
        if ctx.principal is None:
            return
        if job is not None and job.owner != ctx.actor:
            audit_refusal(self.service, ctx, "export", "not-job-owner")
            raise NotFound("no such export job")
        for rtype in types or ():
            require_type(self.service, ctx, "search", rtype)  # 403, audited

    def _event(
        self,
        ctx: Context,
        step: str,
        job: ExportJobRecord,
        *,
        action: str = "export",
        **extra: str,
    ) -> AccessEvent:
        return AccessEvent(
            action=action,
            actor=ctx.actor,
            client=ctx.client,
            purpose=ctx.purpose,
            extra={"step": step, "job": job.job_id, **extra},
        )


def _type_filters(
    values: Sequence[str], types: tuple[str, ...] | None
) -> dict[str, tuple[str, ...]]:
    """`_typeFilter` values (`Type?query`, the queries of one type ORed), each checked now
    by the strict search parser, so that a bad filter is a 400 at kick-off."""
    found: dict[str, list[str]] = {}
    for value in values:
        rtype, mark, query = value.partition("?")
        if not mark or not query:
            raise BadRequest("_typeFilter takes Type?search-parameters")
        fhir_types.check_type(rtype)
        if types is not None and rtype not in types:
            raise BadRequest("_typeFilter names a type that _type leaves out")
        parse_type_filter(rtype, query)
        found.setdefault(rtype, []).append(query)
    return {t: tuple(q) for t, q in found.items()}


def _safe_id(job_id: str) -> str:
    if not (len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)):
        raise NotFound("no such export job")
    return job_id


def _age(instant: str) -> timedelta:
    return fhir_types.parse_instant(fhir_types.now_instant()) - fhir_types.parse_instant(instant)
