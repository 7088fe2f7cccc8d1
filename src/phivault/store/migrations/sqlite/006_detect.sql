-- Threat detection (SQLite): alerts raised by the detectors over the audit log, the
-- engine's state (cursor, lease, last verified tree head) and the canary patients.
-- No PHI: patients are audit pseudonyms, evidence is audit entry indexes (JSON list).
CREATE TABLE detect_alerts (
    alert_id    TEXT PRIMARY KEY,
    detector    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    severity    TEXT NOT NULL,          -- low, medium, high, critical
    title       TEXT NOT NULL,          -- plain words, no PHI
    group_key   TEXT NOT NULL,          -- repeats of one group join one open alert
    actor       TEXT,                   -- user or client id
    patient     TEXT,                   -- audit pseudonym, never a patient id
    status      TEXT NOT NULL,          -- open, acknowledged, resolved
    first_seen  REAL NOT NULL,          -- time of the first triggering entry (epoch s)
    last_seen   REAL NOT NULL,
    created     REAL NOT NULL,          -- when the engine raised it
    updated     REAL NOT NULL,
    occurrences INTEGER NOT NULL,
    evidence    TEXT NOT NULL,          -- JSON list of audit entry indexes
    details     TEXT NOT NULL,          -- JSON object of counts and names, no PHI
    note        TEXT,                   -- the reviewer's note
    reviewer    TEXT
) WITHOUT ROWID;
CREATE INDEX detect_alerts_group ON detect_alerts (group_key, status);
CREATE INDEX detect_alerts_created ON detect_alerts (created);
CREATE TABLE detect_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE detect_canaries (
    pseudonym TEXT PRIMARY KEY,          -- audit pseudonym of a honeytoken patient
    created   REAL NOT NULL
) WITHOUT ROWID;
