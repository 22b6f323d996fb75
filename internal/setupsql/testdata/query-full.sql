-- pgsignal setup (full mode, query method): user "census", 3 tables.
-- The query method reads the tables with SELECT: no REPLICATION right, publication or slot.
-- Run it as a superuser (or the platform's admin user, or an owner of the tables) connected to
-- the database pgsignal reads. Every statement is idempotent: running the script again is safe.

-- The user pgsignal logs in as.
-- An existing user keeps its password.
-- The password was generated for this script and is shown only here: store it now
-- (e.g. as PGPASSWORD, or in source.dsn through ${VAR}).
DO $pgsignal$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'census') THEN
    CREATE ROLE "census" LOGIN PASSWORD 's3cr''et';
  END IF;
END
$pgsignal$;

-- CONNECT on this database (PUBLIC has it unless it was revoked).
DO $pgsignal$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), 'census');
END
$pgsignal$;

-- Bookkeeping schema (full mode): pgsignal keeps its checkpoint, dead letters and run history
-- here, in tables it creates at its first start.
CREATE SCHEMA IF NOT EXISTS "census";
GRANT USAGE, CREATE ON SCHEMA "census" TO "census";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "census" TO "census";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "census" TO "census";

-- Schema "analytics": read the configured tables.
GRANT USAGE ON SCHEMA "analytics" TO "census";
GRANT SELECT ON "analytics"."user_events" TO "census";

-- "analytics"."page_views" has a transform: grant SELECT on the tables it reads as well
-- (GRANT SELECT ON <table> TO "census";), or run setup with --schema-grants.
GRANT SELECT ON "analytics"."page_views" TO "census";

-- Schema "Billing": read the configured tables.
GRANT USAGE ON SCHEMA "Billing" TO "census";
GRANT SELECT ON "Billing"."odd; name" TO "census";

-- Query method, full mode: pgsignal keeps its position, dead letters and run history in the
-- bookkeeping schema; it needs a primary (a standby cannot be written to: use read-only mode).
