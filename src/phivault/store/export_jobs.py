"""Bulk export jobs as the store keeps them (table `export_jobs`, migration 003).

The store only keeps the job's state so that any server worker can answer a status poll;
what a job means (levels, manifests, files) is the service's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

ACCEPTED = "accepted"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ExportJobRecord:
    job_id: str
    state: str
    owner: str
    request_url: str
    params: str  # JSON text
    transaction_time: str
    created: str
    updated: str
    progress: str | None = None
    output: str | None = None  # JSON text
    error: str | None = None  # JSON text
    expires: str | None = None


COLUMNS = tuple(f.name for f in fields(ExportJobRecord))
_COLS = ", ".join(COLUMNS)

INSERT = f"INSERT INTO export_jobs ({_COLS}) VALUES ({', '.join('?' for _ in COLUMNS)})"
# RETURNING tells the caller whether the row still exists: a job cancelled by another
# worker must not be brought back by its runner's next progress update.
UPDATE = (
    "UPDATE export_jobs SET "
    + ", ".join(f"{c} = ?" for c in COLUMNS if c != "job_id")
    + " WHERE job_id = ? RETURNING job_id"
)
GET = f"SELECT {_COLS} FROM export_jobs WHERE job_id = ?"
DELETE = "DELETE FROM export_jobs WHERE job_id = ?"
EXPIRED = "SELECT job_id FROM export_jobs WHERE expires IS NOT NULL AND expires < ? ORDER BY job_id"
COUNT_ACTIVE = "SELECT COUNT(*) FROM export_jobs WHERE state IN (?, ?)"


def insert_params(job: ExportJobRecord) -> tuple[Any, ...]:
    return astuple(job)


def update_params(job: ExportJobRecord) -> tuple[Any, ...]:
    values = astuple(job)
    return (*values[1:], values[0])


def row_to_job(row: Sequence[Any]) -> ExportJobRecord:
    return ExportJobRecord(*row)
