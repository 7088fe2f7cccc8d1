-- Access-control cache epochs (SQLite). Each process caches care relationships, consents
-- and verified tokens; a write that could change an access decision bumps an epoch here,
-- in the writing transaction, and every request compares the epochs before it trusts a
-- cache (access/epochs.py). Triggers, so that every write path (REST, bundles, import,
-- another process) is covered.
CREATE TABLE access_epochs (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO access_epochs (name, value) VALUES ('care', 0), ('auth', 0);

-- Care relationships and consents: the types in access/care.py FACT_TYPES.
CREATE TRIGGER access_epoch_care AFTER INSERT ON versions
WHEN NEW.rtype IN ('Appointment', 'CareTeam', 'Consent', 'Encounter')
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = 'care';
END;

-- Who a token stands for: users, clients and sessions (not last_seen, touched every 30 s).
CREATE TRIGGER access_epoch_users AFTER UPDATE OF
    username, roles, practitioner, password_hash, totp_secret, mfa_required, disabled
    ON access_users
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = 'auth';
END;
CREATE TRIGGER access_epoch_users_gone AFTER DELETE ON access_users
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = 'auth';
END;
CREATE TRIGGER access_epoch_clients AFTER UPDATE ON access_clients
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = 'auth';
END;
CREATE TRIGGER access_epoch_clients_gone AFTER DELETE ON access_clients
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = 'auth';
END;
CREATE TRIGGER access_epoch_sessions AFTER UPDATE OF
    user_id, client_id, scope, patient, expires, idle_timeout, revoked, break_glass_until
    ON access_sessions
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = 'auth';
END;
CREATE TRIGGER access_epoch_sessions_gone AFTER DELETE ON access_sessions
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = 'auth';
END;
