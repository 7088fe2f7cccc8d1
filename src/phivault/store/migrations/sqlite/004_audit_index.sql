-- phivault schema v4 (SQLite): searchable columns derived from each audit entry, for the
-- AuditEvent view. They live in the entry's own row, so they are written by the same
-- INSERT as the entry (one statement per group commit, no second table to keep in step).
-- They are never trusted for content: results are rendered from `entry`, and
-- `audit verify` checks every row's columns against its entry.
ALTER TABLE audit_entries ADD COLUMN time TEXT;
ALTER TABLE audit_entries ADD COLUMN action TEXT;
ALTER TABLE audit_entries ADD COLUMN outcome TEXT;
ALTER TABLE audit_entries ADD COLUMN actor TEXT;
ALTER TABLE audit_entries ADD COLUMN rtype TEXT;
ALTER TABLE audit_entries ADD COLUMN rid TEXT;
ALTER TABLE audit_entries ADD COLUMN patient TEXT;

-- Entries written before this migration.
UPDATE audit_entries SET
    time = json_extract(CAST(entry AS TEXT), '$.time'),
    action = json_extract(CAST(entry AS TEXT), '$.action'),
    outcome = json_extract(CAST(entry AS TEXT), '$.outcome'),
    actor = json_extract(CAST(entry AS TEXT), '$.actor'),
    rtype = json_extract(CAST(entry AS TEXT), '$.type'),
    rid = json_extract(CAST(entry AS TEXT), '$.id'),
    patient = json_extract(CAST(entry AS TEXT), '$.patient');

-- Only time is indexed: it grows with idx, so the index is appended to, never written at
-- random, and it bounds every AuditEvent search to an idx range. Indexes on actor, entity or
-- patient would take a random page write per entry in the durable append path; searches
-- on those scan the derived columns instead, a bounded window per page (see
-- service/audit_view.py).
CREATE INDEX audit_entries_time ON audit_entries (time);
