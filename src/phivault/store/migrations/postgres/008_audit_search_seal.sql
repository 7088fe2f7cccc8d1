-- phivault schema v8 (PostgreSQL): indexed AuditEvent search, and the audit log's seal.
--
-- Each index is keyed by one search column and then by idx, so a search walks one key's
-- entries newest first and stops after a page: no scan window. The columns hold no PHI
-- in clear (patients are keyed pseudonyms; actors are user or client ids; type/id name a
-- resource, not a person). Appends write each index at the right end of the key's range,
-- so the pages a group commit dirties are the few keys it touches, not random ones.
CREATE INDEX audit_entries_actor ON audit_entries (actor, idx);
CREATE INDEX audit_entries_patient ON audit_entries (patient, idx) WHERE patient IS NOT NULL;
CREATE INDEX audit_entries_entity ON audit_entries (rtype, rid, idx) WHERE rid IS NOT NULL;
CREATE INDEX audit_entries_action ON audit_entries (action, idx);
-- Failures are rare and are what auditors look for; successes are nearly every entry.
CREATE INDEX audit_entries_failed ON audit_entries (outcome, idx) WHERE outcome <> '0';

-- The seal: an HMAC, under a key derived from the KEK-protected audit key, of the log's
-- size and root, rewritten by every append in the append's own transaction. Entries that
-- someone with database access appends, edits or removes leave it behind: `audit verify`
-- names them, and the server refuses to extend (or sign) a log whose seal does not match.
CREATE TABLE audit_seal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    mac BYTEA NOT NULL
);
