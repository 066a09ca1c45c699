-- Runs once, as POSTGRES_USER in POSTGRES_DB, when the postgres-data volume is first
-- created (the postgres image runs /docker-entrypoint-initdb.d/*.sql with ON_ERROR_STOP).
-- The schema is not made here: `nexus migrate` owns it.
--
-- Names come from the session, not from this file, so POSTGRES_DB and POSTGRES_USER can
-- change without editing it.
DO $$
BEGIN
    -- Timestamps compare the same whatever the host's zone.
    EXECUTE format('ALTER DATABASE %I SET timezone TO %L', current_database(), 'UTC');
    -- Only the owner connects; other roles made later must be granted CONNECT.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    -- A session left idle inside a transaction holds its locks: end it.
    EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout TO %L',
                   current_user, '60s');
END
$$;

-- PostgreSQL 15 and later already keep PUBLIC from creating objects in schema public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
