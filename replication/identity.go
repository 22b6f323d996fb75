package replication

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// UpdateIdentityProblems lists the tables whose UPDATEs PostgreSQL would
// reject were publication to publish updates: the publication's tables and
// extra (the configured ones, for a publication not created yet), with
// their partitions and inheritance children, that have no replica identity
// (REPLICA IDENTITY NOTHING, or DEFAULT without a primary key). Each is
// named quoted, schema.table.
func UpdateIdentityProblems(ctx context.Context, q querier, publication string, extra []TableRef) ([]string, error) {
	names := make([]string, len(extra))
	for i, t := range extra {
		names[i] = t.Quoted()
	}
	rows, err := q.Query(ctx, `WITH RECURSIVE members(rel) AS (
  SELECT pr.prrelid FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1
  UNION SELECT c.oid FROM pg_catalog.pg_publication_tables pt
    JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
    WHERE pt.pubname = $1
  UNION SELECT to_regclass(x)::oid FROM unnest($2::text[]) x WHERE to_regclass(x) IS NOT NULL
  UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN members m ON i.inhparent = m.rel)
SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM members m JOIN pg_catalog.pg_class c ON c.oid = m.rel JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND (c.relreplident = 'n'
  OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
  OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
ORDER BY 1`, publication, names)
	if err != nil {
		return nil, fmt.Errorf("check the replica identity of the publication's tables: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("check the replica identity of the publication's tables: %w", err)
	}
	return list, nil
}

// UpdateIdentityFix returns the statements that give tables a replica
// identity.
func UpdateIdentityFix(tables []string) string {
	var b strings.Builder
	for i, t := range tables {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "ALTER TABLE %s REPLICA IDENTITY FULL; -- or add a primary key", t)
	}
	return b.String()
}

// checkUpdateIdentity returns a permanent error when publication publishes
// updates and a table of it (or of extra) has no replica identity:
// PostgreSQL would reject every UPDATE of that table, the application's
// own. pgsignal never makes a user's write fail.
func checkUpdateIdentity(ctx context.Context, q querier, publication string, extra []TableRef) error {
	var update bool
	rows, err := q.Query(ctx, `SELECT pubupdate FROM pg_catalog.pg_publication WHERE pubname = $1`, publication)
	if err != nil {
		return fmt.Errorf("look up publication %q: %w", publication, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		return fmt.Errorf("look up publication %q: %w", publication, err)
	}
	if len(list) > 0 {
		update = list[0]
	}
	if !update {
		return nil
	}
	bad, err := UpdateIdentityProblems(ctx, q, publication, extra)
	if err != nil || len(bad) == 0 {
		return err
	}
	return permanent("publication %q publishes updates (a table has emit: [insert, update]), and PostgreSQL would then reject every UPDATE of %s, which has no replica identity: the application's own writes would fail. Give it one:\n  %s\nor emit only inserts",
		publication, strings.Join(bad, ", "), strings.ReplaceAll(UpdateIdentityFix(bad), "\n", "\n  "))
}
