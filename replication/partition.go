package replication

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgcat"
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
	return fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true);", pgcat.QuoteIdent(publication))
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

// refilterStatements returns the statements that give the configured
// tables whose row filter changed their new filter, touching nothing else
// of a shared publication: each such table is dropped and added again (with
// the column list it had), and the missing tables added. A table the
// publication holds only through TABLES IN SCHEMA cannot get a filter that
// way: that is a permanent error with the statements to review.
func refilterStatements(ctx context.Context, pool *pgxpool.Pool, publication string, tables []PublishedTable, have map[TableRef]string, missing []PublishedTable) ([]string, error) {
	pub := pgcat.QuoteIdent(publication)
	var stmts []string
	for _, t := range tables {
		cur, ok := have[t.TableRef]
		if !ok {
			continue
		}
		same, err := sameFilter(ctx, pool, t.TableRef, t.Where, cur)
		if err != nil {
			return nil, err
		}
		if same {
			continue
		}
		direct, cols, err := directMember(ctx, pool, publication, t.TableRef)
		if err != nil {
			return nil, err
		}
		if !direct {
			return nil, permanent("publication %q holds table %s through TABLES IN SCHEMA (or FOR ALL TABLES), and pgsignal changes only the tables it owns; give the table its row filter yourself, as the owner of the publication, after checking what the other subscribers of the publication need:\n  ALTER PUBLICATION %s ADD TABLE %s;\nor set source.publication to a publication pgsignal may create",
				publication, t.Display(), pub, t.ForTable())
		}
		add := t.Quoted()
		if len(cols) > 0 {
			q := make([]string, len(cols))
			for i, c := range cols {
				q[i] = pgcat.QuoteIdent(c)
			}
			add += " (" + strings.Join(q, ", ") + ")"
		}
		if t.Where != "" {
			add += " WHERE (" + t.Where + ")"
		}
		stmts = append(stmts, fmt.Sprintf("ALTER PUBLICATION %s DROP TABLE %s;", pub, t.Quoted()),
			fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s;", pub, add))
	}
	if len(missing) > 0 {
		names := make([]string, len(missing))
		for i, t := range missing {
			names[i] = t.ForTable()
		}
		sort.Strings(names)
		stmts = append(stmts, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s;", pub, strings.Join(names, ", ")))
	}
	return stmts, nil
}

// directMember reports whether the publication names t itself (not only
// through its schema), and the column list it has there (none before
// PostgreSQL 15, or without one).
func directMember(ctx context.Context, pool *pgxpool.Pool, publication string, t TableRef) (bool, []string, error) {
	rows, err := pool.Query(ctx, `SELECT coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = pr.prrelid AND a.attnum::text = ANY (string_to_array(to_jsonb(pr) ->> 'prattrs', ' '))), '{}')
FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE p.pubname = $1 AND n.nspname = $2 AND c.relname = $3`, publication, t.Schema, t.Name)
	if err != nil {
		return false, nil, fmt.Errorf("look up table %s in publication %q: %w", t.Display(), publication, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return false, nil, fmt.Errorf("look up table %s in publication %q: %w", t.Display(), publication, err)
	}
	if len(list) == 0 {
		return false, nil, nil
	}
	return true, list[0], nil
}
