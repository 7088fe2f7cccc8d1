-- Access-control cache epochs (PostgreSQL). Each worker caches care relationships,
-- consents and verified tokens; a write that could change an access decision bumps an
-- epoch here, in the writing transaction (visible exactly when its data is), and every
-- request compares the epochs before it trusts a cache (access/epochs.py). Triggers, so
-- that every write path and every worker process is covered.
CREATE TABLE access_epochs (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO access_epochs (name, value) VALUES ('care', 0), ('auth', 0);

CREATE FUNCTION access_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_epochs SET value = value + 1 WHERE name = TG_ARGV[0];
    RETURN NULL;
END
$$;

-- Care relationships and consents: the types in access/care.py FACT_TYPES.
CREATE TRIGGER access_epoch_care AFTER INSERT ON versions FOR EACH ROW
    WHEN (NEW.rtype IN ('Appointment', 'CareTeam', 'Consent', 'Encounter'))
    EXECUTE FUNCTION access_epoch_bump('care');

-- Who a token stands for: users, clients and sessions (not last_seen, touched every 30 s).
CREATE TRIGGER access_epoch_users AFTER UPDATE OF
    username, roles, practitioner, password_hash, totp_secret, mfa_required, disabled
    ON access_users FOR EACH ROW EXECUTE FUNCTION access_epoch_bump('auth');
CREATE TRIGGER access_epoch_users_gone AFTER DELETE ON access_users
    FOR EACH ROW EXECUTE FUNCTION access_epoch_bump('auth');
CREATE TRIGGER access_epoch_clients AFTER UPDATE OR DELETE ON access_clients
    FOR EACH ROW EXECUTE FUNCTION access_epoch_bump('auth');
CREATE TRIGGER access_epoch_sessions AFTER UPDATE OF
    user_id, client_id, scope, patient, expires, idle_timeout, revoked, break_glass_until
    ON access_sessions FOR EACH ROW EXECUTE FUNCTION access_epoch_bump('auth');
CREATE TRIGGER access_epoch_sessions_gone AFTER DELETE ON access_sessions
    FOR EACH ROW EXECUTE FUNCTION access_epoch_bump('auth');
