package replication

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MinPartitionRootVersion is the first server_version_num that publishes a
// partitioned table (through publish_via_partition_root).
const MinPartitionRootVersion = 130000

// markPartitioned returns a copy of tables with Partitioned set on the
// partitioned ones, read from the catalog (a table that does not exist is
// left as it is: creating the publication reports it).
func markPartitioned(ctx context.Context, pool *pgxpool.Pool, tables []PublishedTable) ([]PublishedTable, error) {
	out := make([]PublishedTable, len(tables))
	copy(out, tables)
	for i, t := range out {
		var kind string
		err := pool.QueryRow(ctx, `SELECT c.relkind::text FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).Scan(&kind)
		if err == pgx.ErrNoRows {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up table %s: %w", t.Display(), err)
		}
		out[i].Partitioned = kind == "p"
	}
	return out, nil
}

// anyPartitioned reports whether a table is partitioned.
func anyPartitioned(tables []PublishedTable) bool {
	for _, t := range tables {
		if t.Partitioned {
			return true
		}
	}
	return false
}

// CheckPartitionVersion returns a permanent error when a table is
// partitioned and the server (server_version_num num) is older than
// PostgreSQL 13, which cannot publish a partitioned table.
func CheckPartitionVersion(num int, version string, tables []PublishedTable) error {
	if num >= MinPartitionRootVersion {
		return nil
	}
	var names []string
	for _, t := range tables {
		if t.Partitioned {
			names = append(names, t.Display())
		}
	}
	if len(names) == 0 {
		return nil
	}
	return permanent("table %s is partitioned: PostgreSQL publishes a partitioned table (under its own name, with publish_via_partition_root) from version 13 on, and the server is PostgreSQL %s (server_version_num %d); upgrade the server, or configure the partitions as tables of their own",
		strings.Join(names, ", "), version, num)
}

// ViaRootSQL returns the statement that makes the publication publish the
// changes of partitions as changes of their partitioned table.
func ViaRootSQL(publication string) string {
	return fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true);", quoteIdent(publication))
}

// publicationMembers returns the publication's tables and their row
// filters ("" for none): the tables listed in pg_publication_tables (which
// also covers FOR ALL TABLES and TABLES IN SCHEMA, but lists the partitions
// of a partitioned table instead of the table itself unless the
// publication publishes via the root), and the tables it names itself
// (pg_publication_rel), so that a partitioned member is seen as a member.
func publicationMembers(ctx context.Context, pool *pgxpool.Pool, publication string) (map[TableRef]string, error) {
	have, err := publishedTables(ctx, pool, publication)
	if err != nil {
		return nil, err
	}
	filter := `''`
	var num int
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}
	if num >= MinRowFilterVersion {
		filter = `coalesce(pg_catalog.pg_get_expr(pr.prqual, pr.prrelid), '')`
	}
	rows, err := pool.Query(ctx, `SELECT n.nspname::text, c.relname::text, `+filter+`
FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE p.pubname = $1`, publication)
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", publication, err)
	}
	var t TableRef
	var f string
	_, err = pgx.ForEachRow(rows, []any{&t.Schema, &t.Name, &f}, func() error {
		have[t] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", publication, err)
	}
	return have, nil
}
