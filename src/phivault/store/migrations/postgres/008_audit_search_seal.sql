-- phivault schema v8 (PostgreSQL): AuditEvent search terms, and the audit log's seal.
--
-- AuditEvent search terms: one row per (term, entry), the term a keyed hash (HMAC under a
-- key derived from the KEK-protected audit key) of "agent", "entity", "patient", "action"
-- or a failed "outcome" and its value, so the table names no one in clear. A search on one
-- of them walks (term, idx) backwards and stops after a page: no scan window.
-- Filled behind the log, in large sorted batches (audit/terms.py), never on the durable
-- append path: a random index write per entry there would cost most of the append rate.
-- `upto`: entries below it are indexed; a search also scans the few entries above it.
CREATE TABLE audit_terms (
    term BYTEA NOT NULL,
    idx BIGINT NOT NULL,
    PRIMARY KEY (term, idx)
);
CREATE TABLE audit_terms_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    upto BIGINT NOT NULL
);
INSERT INTO audit_terms_state (id, upto) VALUES (1, 0);

-- The seal: an HMAC, under a key derived from the KEK-protected audit key, of the log's
-- size and root, rewritten by every append in the append's own transaction. Entries that
-- someone with database access appends, edits or removes leave it behind: `audit verify`
-- names them, and the server refuses to extend (or sign) a log whose seal does not match.
CREATE TABLE audit_seal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    mac BYTEA NOT NULL
);
