-- phivault schema v4 (PostgreSQL): searchable columns derived from each audit entry, for
-- the AuditEvent view. They live in the entry's own row, so they are written by the same
-- INSERT as the entry (one statement per group commit, no second table to keep in step).
-- They are never trusted for content: results are rendered from `entry`, and
-- `audit verify` checks every row's columns against its entry.
ALTER TABLE audit_entries
    ADD COLUMN time TEXT,
    ADD COLUMN action TEXT,
    ADD COLUMN outcome TEXT,
    ADD COLUMN actor TEXT,
    ADD COLUMN rtype TEXT,
    ADD COLUMN rid TEXT,
    ADD COLUMN patient TEXT;

-- Entries written before this migration.
UPDATE audit_entries SET
    time = j ->> 'time', action = j ->> 'action', outcome = j ->> 'outcome',
    actor = j ->> 'actor', rtype = j ->> 'type', rid = j ->> 'id', patient = j ->> 'patient'
FROM (SELECT idx AS i, convert_from(entry, 'UTF8')::jsonb AS j FROM audit_entries) AS parsed
WHERE audit_entries.idx = parsed.i;

-- Only time is indexed: it grows with idx, so the index is appended to, never written at
-- random, and it bounds every AuditEvent search to an idx range. Indexes on actor, entity or
-- patient would take a random page write per entry in the durable append path; searches
-- on those scan the derived columns instead, a bounded window per page (see
-- service/audit_view.py).
CREATE INDEX audit_entries_time ON audit_entries (time);
