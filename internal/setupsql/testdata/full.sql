-- pgsignal setup (full mode): user "census", publication "pgsignal", 3 tables.
-- Run it as a superuser (or the platform's admin user) connected to the database pgsignal
-- streams from. Every statement is idempotent: running the script again is safe.

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
