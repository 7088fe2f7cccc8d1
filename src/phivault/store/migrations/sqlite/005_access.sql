-- Identity and access control (SQLite): users, registered clients, sessions, refresh
-- tokens, authorization codes, login throttling and seen client-assertion ids.
-- Times are epoch seconds. No secret is stored in clear: passwords are argon2id hashes,
-- TOTP secrets are AES-GCM ciphertext under a key derived from the key ring, and codes
-- and tokens are stored as keyed hashes only.
CREATE TABLE access_users (
    user_id        TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    roles          TEXT NOT NULL,          -- space-separated role names
    practitioner   TEXT,                   -- "Practitioner/<id>" the user acts as
    password_hash  TEXT NOT NULL,          -- argon2id (PHC string)
    totp_secret    BLOB,                   -- sealed, NULL: not enrolled
    totp_last_step INTEGER NOT NULL DEFAULT 0,  -- replay guard
    mfa_required   INTEGER NOT NULL DEFAULT 1,
    recovery_codes TEXT NOT NULL DEFAULT '[]',  -- JSON list of keyed hashes
    disabled       INTEGER NOT NULL DEFAULT 0,
    created        REAL NOT NULL,
    updated        REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE access_clients (
    client_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,           -- public (SMART app, PKCE) or backend (private_key_jwt)
    redirect_uris TEXT NOT NULL DEFAULT '[]',
    scope         TEXT NOT NULL,           -- the most it may ever be granted
    jwks          TEXT,                    -- backend clients: their public JWKS (JSON)
    disabled      INTEGER NOT NULL DEFAULT 0,
    created       REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE access_sessions (
    session_id         TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    client_id          TEXT,
    scope              TEXT NOT NULL,
    patient            TEXT,
    created            REAL NOT NULL,
    last_seen          REAL NOT NULL,
    expires            REAL NOT NULL,      -- absolute lifetime
    idle_timeout       REAL NOT NULL,
    revoked            INTEGER NOT NULL DEFAULT 0,
    break_glass_until  REAL,
    break_glass_reason TEXT
) WITHOUT ROWID;
CREATE INDEX access_sessions_user ON access_sessions (user_id);
CREATE TABLE access_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    scope      TEXT NOT NULL,
    expires    REAL NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX access_refresh_session ON access_refresh_tokens (session_id);
CREATE TABLE access_auth_codes (
    code_hash      TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    patient        TEXT,
    code_challenge TEXT NOT NULL,
    expires        REAL NOT NULL,
    used           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE access_throttle (
    throttle_key TEXT PRIMARY KEY,          -- "account:<keyed hash of username>"
    failures     INTEGER NOT NULL,
    last_failure REAL NOT NULL,
    locked_until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE access_seen_jti (
    jti     TEXT PRIMARY KEY,              -- client assertion ids, against replay
    expires REAL NOT NULL
) WITHOUT ROWID;
