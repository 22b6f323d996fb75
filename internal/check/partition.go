package check

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/setupsql"
	"github.com/pgsignal/pgsignal/replication"
)

// addDirectMembers adds to have the tables the publication names itself
// (pg_publication_rel): pg_publication_tables lists the partitions of a
// partitioned member instead of the member when the publication does not
// publish via the root.
func addDirectMembers(ctx context.Context, d *db, publication string, have map[setupsql.Table]pubTable) error {
	rows, err := d.conn.Query(ctx, `SELECT n.nspname::text, c.relname::text
FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE p.pubname = $1`, publication)
	if err != nil {
		return err
	}
	var t setupsql.Table
	_, err = pgx.ForEachRow(rows, []any{&t.Schema, &t.Name}, func() error {
		if _, ok := have[t]; !ok {
			have[t] = pubTable{}
		}
		return nil
	})
	return err
}

// viaRoot checks that the publication publishes via the partition root
// when a configured table is partitioned: without it, the rows arrive
// under the partitions' names and are not events. It returns the problem
// ("" when none) and its fix.
func viaRoot(ctx context.Context, d *db, publication string) (problem, fix string, err error) {
	if d.version < replication.MinPartitionRootVersion {
		return "", "", nil // selectTable already fails a partitioned table
	}
	var parts []string
	for _, t := range d.tables {
		if !t.exists {
			continue
		}
		var kind string
		if err := d.conn.QueryRow(ctx, `SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = $1`, t.oid).Scan(&kind); err != nil {
			return "", "", err
		}
		if kind == "p" {
			parts = append(parts, t.quoted())
		}
	}
	if len(parts) == 0 {
		return "", "", nil
	}
	var via bool
	if err := d.conn.QueryRow(ctx, `SELECT pubviaroot FROM pg_catalog.pg_publication WHERE pubname = $1`, publication).Scan(&via); err != nil {
		return "", "", err
	}
	if via {
		return "", "", nil
	}
	return "it does not publish via the partition root, so the rows of partitioned " + strings.Join(parts, ", ") +
		" would arrive under their partitions' names and not become events", replication.ViaRootSQL(publication), nil
}
