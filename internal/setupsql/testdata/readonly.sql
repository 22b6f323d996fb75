-- pgsignal setup (read-only mode): user "census", publication "pgsignal", 3 tables.
-- Run it as a superuser (or the platform's admin user) connected to the database pgsignal
-- streams from. Every statement is idempotent: running the script again is safe.
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

-- REPLICATION lets it open a logical replication stream and create its slot.
-- The server needs wal_level = logical. On Amazon RDS or Aurora use instead
--   GRANT "rds_replication" TO "census";  (pgsignal setup --platform rds).
ALTER ROLE "census" WITH REPLICATION;

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

-- The publication: the inserts of the configured tables. Creating it, or adding a table to it,
-- must be done by the owner of every table (or a superuser). An existing publication gets the
-- tables it lacks. A partitioned table is published under its own name (publish_via_partition_root,
-- PostgreSQL 13 or later), whichever partition a row is in.
DO $pgsignal$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'pgsignal') THEN
    CREATE PUBLICATION "pgsignal" FOR TABLE "analytics"."user_events", "Billing"."odd; name", "analytics"."page_views" WITH (publish = 'insert');
  END IF;
  IF current_setting('server_version_num')::int >= 130000 AND EXISTS (SELECT FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'p' AND (n.nspname::text, c.relname::text) IN (('analytics', 'user_events'), ('Billing', 'odd; name'), ('analytics', 'page_views'))) THEN
    ALTER PUBLICATION "pgsignal" SET (publish_via_partition_root = true);
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication_tables WHERE pubname = 'pgsignal'
      AND schemaname = 'analytics' AND tablename = 'user_events') THEN
    ALTER PUBLICATION "pgsignal" ADD TABLE "analytics"."user_events";
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication_tables WHERE pubname = 'pgsignal'
      AND schemaname = 'Billing' AND tablename = 'odd; name') THEN
    ALTER PUBLICATION "pgsignal" ADD TABLE "Billing"."odd; name";
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication_tables WHERE pubname = 'pgsignal'
      AND schemaname = 'analytics' AND tablename = 'page_views') THEN
    ALTER PUBLICATION "pgsignal" ADD TABLE "analytics"."page_views";
  END IF;
END
$pgsignal$;

-- Read-only mode: pgsignal creates no schema, table or publication. Create its slot up front,
-- on the server pgsignal connects to (a standby needs PostgreSQL 16 or later), so that the
-- inserts made before its first start are streamed too:
--   SELECT pg_create_logical_replication_slot('pgsignal', 'pgoutput');
