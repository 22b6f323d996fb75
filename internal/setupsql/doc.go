// Package setupsql generates, and applies, the SQL that prepares a
// PostgreSQL database for pgsignal: the user it logs in as, its REPLICATION
// right (or the platform's equivalent), the bookkeeping schema (full mode),
// read access to every schema holding a configured table, and the
// publication of the configured tables' inserts.
//
// Contract: every statement Generate returns is idempotent, so a script may
// be run again after a partial failure or a change of the configured tables.
// Every identifier is quoted and every value is a quoted literal, so a table
// named `"odd; name"` injects nothing. A statement that holds the password is
// marked Secret and shown redacted by Statement.Display; only Script.SQL (the
// script a user asked for) contains it.
package setupsql
