-- Bulk Data $export jobs (PostgreSQL). Any server worker answers a job's status from here;
-- the output files themselves are encrypted files in the data directory, never rows.
CREATE TABLE export_jobs (
    job_id           TEXT PRIMARY KEY,
    state            TEXT NOT NULL,     -- accepted, running, completed, failed
    owner            TEXT NOT NULL,     -- actor who kicked it off (the access-control hook)
    request_url      TEXT NOT NULL,
    params           TEXT NOT NULL,     -- JSON: level, group, types, since
    transaction_time TEXT NOT NULL,
    created          TEXT NOT NULL,
    updated          TEXT NOT NULL,     -- heartbeat of the worker running the job
    progress         TEXT,
    output           TEXT,              -- JSON: [{type, file, count}]
    error            TEXT,              -- JSON: [{type, file, count}] of OperationOutcome files
    expires          TEXT               -- files and row are removed after this instant
);
CREATE INDEX export_jobs_expires ON export_jobs (expires);
CREATE INDEX export_jobs_state ON export_jobs (state);
