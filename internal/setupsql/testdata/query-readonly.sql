-- pgsignal setup (read-only mode, query method): user "census", 3 tables.
-- The query method reads the tables with SELECT: no REPLICATION right, publication or slot.
-- Run it as a superuser (or the platform's admin user, or an owner of the tables) connected to
-- the database pgsignal reads. Every statement is idempotent: running the script again is safe.
-- Run it on the primary, even when pgsignal reads a standby: a standby cannot be written to.

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

-- Schema "analytics": read its tables and call its functions, now and later (--schema-grants).
-- ALTER DEFAULT PRIVILEGES covers what the user running this script creates later; for
-- objects other users create, repeat it with FOR ROLE <creator> after ALTER DEFAULT PRIVILEGES.
GRANT USAGE ON SCHEMA "analytics" TO "census";
GRANT SELECT ON ALL TABLES IN SCHEMA "analytics" TO "census";
ALTER DEFAULT PRIVILEGES IN SCHEMA "analytics" GRANT SELECT ON TABLES TO "census";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "analytics" TO "census";
ALTER DEFAULT PRIVILEGES IN SCHEMA "analytics" GRANT EXECUTE ON FUNCTIONS TO "census";

-- Schema "Billing": read its tables and call its functions, now and later (--schema-grants).
GRANT USAGE ON SCHEMA "Billing" TO "census";
GRANT SELECT ON ALL TABLES IN SCHEMA "Billing" TO "census";
ALTER DEFAULT PRIVILEGES IN SCHEMA "Billing" GRANT SELECT ON TABLES TO "census";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "Billing" TO "census";
ALTER DEFAULT PRIVILEGES IN SCHEMA "Billing" GRANT EXECUTE ON FUNCTIONS TO "census";

-- Query method, read-only mode: pgsignal writes nothing to the database; it keeps its position
-- in source.state_file on its own host. The grants reach a standby through replication.
