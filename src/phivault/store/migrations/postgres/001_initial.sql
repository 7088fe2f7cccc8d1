-- phivault schema v1 (PostgreSQL). Bodies are opaque blobs; the store never parses them.
CREATE TABLE versions (
    seq          BIGSERIAL PRIMARY KEY,
    rtype        TEXT    NOT NULL,
    rid          TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated TEXT    NOT NULL,
    deleted      BOOLEAN NOT NULL,
    body         BYTEA,
    compartment  TEXT,
    method       TEXT    NOT NULL,  -- POST, PUT, PATCH or DELETE: how this version came to be
    UNIQUE (rtype, rid, version)
);
CREATE INDEX versions_type_lu ON versions (rtype, last_updated);
CREATE INDEX versions_lu ON versions (last_updated);

CREATE TABLE resources (
    rtype        TEXT    NOT NULL,
    rid          TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    seq          BIGINT  NOT NULL,
    deleted      BOOLEAN NOT NULL,
    last_updated TEXT    NOT NULL,
    compartment  TEXT,
    PRIMARY KEY (rtype, rid)
);
CREATE INDEX resources_compartment ON resources (compartment, rtype) WHERE compartment IS NOT NULL;
CREATE INDEX resources_type_lu ON resources (rtype, last_updated);

CREATE TABLE idx_token (rtype TEXT NOT NULL, param TEXT NOT NULL, system TEXT, value TEXT, text TEXT, rid TEXT NOT NULL);
CREATE INDEX idx_token_lookup ON idx_token (rtype, param, value, system);
CREATE INDEX idx_token_rid ON idx_token (rtype, rid);

CREATE TABLE idx_string (rtype TEXT NOT NULL, param TEXT NOT NULL, value TEXT, text TEXT, rid TEXT NOT NULL);
CREATE INDEX idx_string_lookup ON idx_string (rtype, param, value);
CREATE INDEX idx_string_rid ON idx_string (rtype, rid);

CREATE TABLE idx_date (rtype TEXT NOT NULL, param TEXT NOT NULL, lo DOUBLE PRECISION, hi DOUBLE PRECISION, rid TEXT NOT NULL);
CREATE INDEX idx_date_lo ON idx_date (rtype, param, lo);
CREATE INDEX idx_date_hi ON idx_date (rtype, param, hi);
CREATE INDEX idx_date_rid ON idx_date (rtype, rid);

CREATE TABLE idx_reference (rtype TEXT NOT NULL, param TEXT NOT NULL, system TEXT, value TEXT, text TEXT, rid TEXT NOT NULL);
CREATE INDEX idx_reference_lookup ON idx_reference (value, system, param, rtype);
CREATE INDEX idx_reference_rid ON idx_reference (rtype, rid);

CREATE TABLE idx_quantity (rtype TEXT NOT NULL, param TEXT NOT NULL, system TEXT, value TEXT, lo DOUBLE PRECISION, hi DOUBLE PRECISION, rid TEXT NOT NULL);
CREATE INDEX idx_quantity_lookup ON idx_quantity (rtype, param, value, lo);
CREATE INDEX idx_quantity_rid ON idx_quantity (rtype, rid);

CREATE TABLE idx_number (rtype TEXT NOT NULL, param TEXT NOT NULL, lo DOUBLE PRECISION, hi DOUBLE PRECISION, rid TEXT NOT NULL);
CREATE INDEX idx_number_lookup ON idx_number (rtype, param, lo);
CREATE INDEX idx_number_rid ON idx_number (rtype, rid);

CREATE TABLE idx_uri (rtype TEXT NOT NULL, param TEXT NOT NULL, value TEXT, rid TEXT NOT NULL);
CREATE INDEX idx_uri_lookup ON idx_uri (rtype, param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rtype, rid);

CREATE TABLE idx_composite (rtype TEXT NOT NULL, param TEXT NOT NULL, value TEXT, lo DOUBLE PRECISION, hi DOUBLE PRECISION, rid TEXT NOT NULL);
CREATE INDEX idx_composite_lookup ON idx_composite (rtype, param, value, lo);
CREATE INDEX idx_composite_rid ON idx_composite (rtype, rid);

-- Audit log: entries are RFC 9162 leaves; nodes hold every complete subtree's hash.
CREATE TABLE audit_entries (idx BIGINT PRIMARY KEY, entry BYTEA NOT NULL);
CREATE TABLE audit_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (level, idx));
CREATE TABLE audit_checkpoints (size BIGINT PRIMARY KEY, checkpoint BYTEA NOT NULL);

-- Data keys wrapped by the key-encryption key (which is never stored here).
CREATE TABLE wrapped_keys (key_id TEXT PRIMARY KEY, blob BYTEA NOT NULL);
