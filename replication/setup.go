package replication

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// TableRef names a source table.
type TableRef struct {
	Schema, Name string
}

// String returns "schema.name" (unquoted).
func (t TableRef) String() string { return t.Schema + "." + t.Name }

// Quoted returns the quoted SQL name.
func (t TableRef) Quoted() string { return pgcat.QuoteIdent(t.Schema) + "." + pgcat.QuoteIdent(t.Name) }

// PublishedTable is a table of the publication: its name, its row filter
// and whether its updates are published.
type PublishedTable struct {
	TableRef
	// Where is the row filter, a SQL boolean expression over the table's
	// columns (PostgreSQL 15 or later); "" publishes every row.
	Where string
	// Updates publishes the table's updates as well as its inserts (the
	// publication's publish option covers every table).
	Updates bool
	// Partitioned is set for a partitioned table: the publication then
	// publishes via the partition root (PostgreSQL 13 or later), so that
	// the rows of every partition, attached now or later, arrive under the
	// table's own name.
	Partitioned bool
}

// ForTable returns the table as it is written in FOR TABLE and ADD TABLE:
// the quoted name and the row filter.
func (t PublishedTable) ForTable() string {
	if t.Where == "" {
		return t.Quoted()
	}
	return t.Quoted() + " WHERE (" + t.Where + ")"
}

// PublicationSQL returns the statement that creates the publication for tables.
func PublicationSQL(publication string, tables []TableRef) string {
	pts := make([]PublishedTable, len(tables))
	for i, t := range tables {
		pts[i] = PublishedTable{TableRef: t}
	}
	return CreatePublicationSQL(publication, pts)
}

// CreatePublicationSQL returns the statement that creates the publication
// for tables, with their row filters; it publishes inserts, and updates
// when a table's are published.
func CreatePublicationSQL(publication string, tables []PublishedTable) string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.ForTable()
	}
	via := ""
	if anyPartitioned(tables) {
		via = ", publish_via_partition_root = true"
	}
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = '%s'%s);",
		pgcat.QuoteIdent(publication), strings.Join(names, ", "), publishOption(false, tables), via)
}

// publishOption returns the publish option: inserts, plus updates when any
// table's are published or have is set.
func publishOption(have bool, tables []PublishedTable) string {
	if have || anyUpdates(tables) {
		return "insert, update"
	}
	return "insert"
}

func anyUpdates(tables []PublishedTable) bool {
	for _, t := range tables {
		if t.Updates {
			return true
		}
	}
	return false
}

func anyFilter(tables []PublishedTable) bool {
	for _, t := range tables {
		if t.Where != "" {
			return true
		}
	}
	return false
}

// MinRowFilterVersion is the first server_version_num with row filters.
const MinRowFilterVersion = 150000

// CheckRowFilterVersion returns a permanent error when a table has a row
// filter and the server (server_version_num num, server_version version)
// is older than PostgreSQL 15.
func CheckRowFilterVersion(num int, version string, tables []PublishedTable) error {
	if num >= MinRowFilterVersion {
		return nil
	}
	var names []string
	for _, t := range tables {
		if t.Where != "" {
			names = append(names, t.String())
		}
	}
	if len(names) == 0 {
		return nil
	}
	return permanent("the where of table %s needs row filters, which PostgreSQL has from version 15 on; the server is PostgreSQL %s (server_version_num %d): remove where and filter in a SQL transform (tables[].transform) or in the application, or upgrade the server to PostgreSQL 15 or later",
		strings.Join(names, ", "), version, num)
}

// ErrPermanent marks errors that a reconnect cannot fix (configuration,
// privileges, missing objects).
var ErrPermanent = errors.New("permanent")

// permanentError wraps err so that errors.Is(err, ErrPermanent) holds.
type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() []error      { return []error{e.err, ErrPermanent} }
func permanent(format string, a ...any) error { return permanentError{fmt.Errorf(format, a...)} }

// PublicationResult says what SyncPublication changed.
type PublicationResult struct {
	// Created is set when the publication was created.
	Created bool
	// Altered holds the ALTER PUBLICATION statements run on an existing
	// publication (missing tables, changed row filters, publish option),
	// to be logged.
	Altered []string
}

// SyncPublication checks that the publication exists, publishes inserts
// (and updates when a table's are published), covers every table and has
// each table's row filter. When create is true (full mode) it creates the
// publication or alters it to match, in one transaction; otherwise a
// difference is a permanent error that prints the SQL to fix it.
//
// A row filter PostgreSQL rejects (syntax, unknown column, a volatile
// function) is a permanent error with PostgreSQL's message, and so is a
// row filter on a column outside the replica identity of a table whose
// updates or deletes the publication publishes (PostgreSQL would make
// every UPDATE of the table fail). Row filters need PostgreSQL 15.
func SyncPublication(ctx context.Context, pool *pgxpool.Pool, publication string, tables []PublishedTable, create bool) (res PublicationResult, err error) {
	if tables, err = markPartitioned(ctx, pool, tables); err != nil {
		return res, err
	}
	if anyPartitioned(tables) {
		var num int
		var version string
		if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`).Scan(&num, &version); err != nil {
			return res, fmt.Errorf("server version: %w", err)
		}
		if err := CheckPartitionVersion(num, version, tables); err != nil {
			return res, err
		}
	}
	if anyFilter(tables) {
		var num int
		var version string
		if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`).Scan(&num, &version); err != nil {
			return res, fmt.Errorf("server version: %w", err)
		}
		if err := CheckRowFilterVersion(num, version, tables); err != nil {
			return res, err
		}
		for _, t := range tables {
			if t.Where == "" {
				continue
			}
			if _, err := explainFilter(ctx, pool, t.TableRef, t.Where); err != nil {
				return res, permanent("row filter of table %s (where: %s) is not valid: %w", t, t.Where, err)
			}
		}
	}
	var pubinsert, pubupdate, puballtables, pubviaroot bool
	err = pool.QueryRow(ctx, `SELECT pubinsert, pubupdate, puballtables, coalesce(to_jsonb(p) ->> 'pubviaroot', 'false')::bool
  FROM pg_publication p WHERE pubname = $1`, publication).
		Scan(&pubinsert, &pubupdate, &puballtables, &pubviaroot)
	if errors.Is(err, pgx.ErrNoRows) {
		stmt := CreatePublicationSQL(publication, tables)
		if !create {
			return res, permanent("publication %q does not exist and read-only mode does not create it; run as an owner of the tables:\n  %s", publication, stmt)
		}
		if err := applyPublication(ctx, pool, publication, []string{stmt}); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && (pgErr.Code == pgcat.DuplicateObject || pgErr.Code == pgcat.UniqueViolation) {
				// Created concurrently (another instance starting): check it.
				return SyncPublication(ctx, pool, publication, tables, create)
			}
			if errors.Is(err, ErrPermanent) {
				return res, err
			}
			return res, permanent("create publication %q (the user must own the tables, or create it as an owner with: %s): %w", publication, stmt, err)
		}
		res.Created = true
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("look up publication %q: %w", publication, err)
	}
	if !pubinsert {
		return res, permanent("publication %q does not publish inserts; fix it with:\n  ALTER PUBLICATION %s SET (publish = '%s');", publication, pgcat.QuoteIdent(publication), publishOption(pubupdate, tables))
	}
	have, err := publicationMembers(ctx, pool, publication)
	if err != nil {
		return res, err
	}
	stmts, err := alterStatements(ctx, pool, publication, tables, have, pubupdate, puballtables)
	if err != nil {
		return res, err
	}
	if anyPartitioned(tables) && !pubviaroot {
		// Without it, rows arrive under the partitions' names.
		stmts = append([]string{ViaRootSQL(publication)}, stmts...)
	}
	if len(stmts) == 0 {
		if anyUpdates(tables) {
			if err := checkUpdateIdentity(ctx, pool, publication, nil); err != nil {
				return res, err
			}
		}
		return res, checkReplicaIdentity(ctx, pool, publication)
	}
	if !create {
		return res, permanent("publication %q does not match the configuration (tables, row filters or publish option); fix it with:\n  %s", publication, strings.Join(stmts, "\n  "))
	}
	if err := applyPublication(ctx, pool, publication, stmts); err != nil {
		if errors.Is(err, ErrPermanent) {
			return res, err
		}
		return res, permanent("alter publication %q (%s): %w", publication, strings.Join(stmts, " "), err)
	}
	res.Altered = stmts
	return res, nil
}

// publishedTables returns the publication's tables and their row filters
// ("" for none; rowfilter exists from PostgreSQL 15 on, hence to_jsonb).
func publishedTables(ctx context.Context, pool *pgxpool.Pool, publication string) (map[TableRef]string, error) {
	rows, err := pool.Query(ctx, `SELECT schemaname, tablename, coalesce(to_jsonb(pt) ->> 'rowfilter', '')
  FROM pg_publication_tables pt WHERE pubname = $1`, publication)
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", publication, err)
	}
	have := map[TableRef]string{}
	for rows.Next() {
		var t TableRef
		var filter string
		if err := rows.Scan(&t.Schema, &t.Name, &filter); err != nil {
			return nil, fmt.Errorf("list tables of publication %q: %w", publication, err)
		}
		have[t] = filter
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", publication, err)
	}
	return have, nil
}

// alterStatements returns the statements that make an existing publication
// match tables: ADD TABLE for missing tables when no row filter differs,
// else SET TABLE with every table (those pgsignal does not stream keep
// their filters); and SET (publish) when updates are needed.
func alterStatements(ctx context.Context, pool *pgxpool.Pool, publication string, tables []PublishedTable, have map[TableRef]string, pubupdate, allTables bool) ([]string, error) {
	var stmts []string
	pub := pgcat.QuoteIdent(publication)
	var missing []PublishedTable
	changed := false
	for _, t := range tables {
		cur, ok := have[t.TableRef]
		if !ok {
			missing = append(missing, t)
			continue
		}
		same, err := sameFilter(ctx, pool, t.TableRef, t.Where, cur)
		if err != nil {
			return nil, err
		}
		changed = changed || !same
	}
	switch {
	case changed && allTables:
		return nil, permanent("publication %q is FOR ALL TABLES, which cannot have row filters; set source.publication to a publication pgsignal may create", publication)
	case changed:
		// Only the configured tables are touched: SET TABLE would rebuild
		// the others (their column lists, TABLES IN SCHEMA) from their
		// row filters alone.
		var err error
		if stmts, err = refilterStatements(ctx, pool, publication, tables, have, missing); err != nil {
			return nil, err
		}
	case len(missing) > 0:
		names := make([]string, len(missing))
		for i, t := range missing {
			names[i] = t.ForTable()
		}
		sort.Strings(names)
		stmts = append(stmts, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s;", pub, strings.Join(names, ", ")))
	}
	if anyUpdates(tables) && !pubupdate {
		var publish string
		if err := pool.QueryRow(ctx, `SELECT concat_ws(', ', CASE WHEN pubinsert THEN 'insert' END, 'update',
  CASE WHEN pubdelete THEN 'delete' END, CASE WHEN to_jsonb(p) ->> 'pubtruncate' = 'true' THEN 'truncate' END)
  FROM pg_publication p WHERE pubname = $1`, publication).Scan(&publish); err != nil {
			return nil, fmt.Errorf("look up publication %q: %w", publication, err)
		}
		stmts = append(stmts, fmt.Sprintf("ALTER PUBLICATION %s SET (publish = '%s');", pub, publish))
	}
	return stmts, nil
}

// sameFilter reports whether the configured filter want and the
// publication's deparsed filter have are the same expression, by comparing
// PostgreSQL's plans of both (which deparse them alike). It writes nothing,
// so it also works on a standby.
func sameFilter(ctx context.Context, pool *pgxpool.Pool, t TableRef, want, have string) (bool, error) {
	if want == "" || have == "" {
		return want == have, nil
	}
	a, err := explainFilter(ctx, pool, t, want)
	if err != nil {
		return false, permanent("row filter of table %s (where: %s) is not valid: %w", t, want, err)
	}
	b, err := explainFilter(ctx, pool, t, have)
	if err != nil {
		return false, fmt.Errorf("read the row filter of %s in the publication: %w", t, err)
	}
	return a == b, nil
}

// explainFilter returns PostgreSQL's plan of a query filtered by filter:
// it checks the filter's syntax and columns and normalizes its text.
func explainFilter(ctx context.Context, pool *pgxpool.Pool, t TableRef, filter string) (string, error) {
	rows, err := pool.Query(ctx, "EXPLAIN (VERBOSE, COSTS OFF) SELECT 1 FROM ONLY "+t.Quoted()+" WHERE ("+filter+")")
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

// applyPublication runs stmts in one transaction and commits them only when
// no row filter of the publication uses a column outside its table's
// replica identity while updates or deletes are published.
func applyPublication(ctx context.Context, pool *pgxpool.Pool, publication string, stmts []string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && (strings.Contains(s, " WHERE (") && pgErr.Code != pgcat.InsufficientPrivilege && pgErr.Code != pgcat.DuplicateObject) {
				return permanent("publication %q: PostgreSQL rejects a row filter (%s): %w", publication, s, err)
			}
			return err
		}
	}
	if err := checkReplicaIdentity(ctx, tx, publication); err != nil {
		return err
	}
	if err := checkUpdateIdentity(ctx, tx, publication, nil); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// querier is what checkReplicaIdentity needs of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// checkReplicaIdentity returns a permanent error when a row filter of the
// publication uses a column outside its table's replica identity while the
// publication publishes updates or deletes: PostgreSQL would then reject
// every UPDATE or DELETE of the table.
func checkReplicaIdentity(ctx context.Context, q querier, publication string) error {
	rows, err := q.Query(ctx, `WITH f AS (
  SELECT pr.prrelid AS rel, (regexp_matches(to_jsonb(pr) ->> 'prqual', ':varattno (\d+)', 'g'))[1]::int2 AS attnum
  FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
  WHERE p.pubname = $1 AND (p.pubupdate OR p.pubdelete) AND to_jsonb(pr) ->> 'prqual' IS NOT NULL)
SELECT DISTINCT n.nspname, c.relname, a.attname
FROM f JOIN pg_class c ON c.oid = f.rel JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = f.rel AND a.attnum = f.attnum
WHERE c.relreplident <> 'f' AND NOT EXISTS (
  SELECT 1 FROM pg_index i WHERE i.indrelid = f.rel AND f.attnum = ANY (i.indkey)
    AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)))
ORDER BY 1, 2, 3`, publication)
	if err != nil {
		return fmt.Errorf("check the replica identity of filtered tables: %w", err)
	}
	type bad struct{ schema, table, column string }
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (bad, error) {
		var b bad
		return b, r.Scan(&b.schema, &b.table, &b.column)
	})
	if err != nil {
		return fmt.Errorf("check the replica identity of filtered tables: %w", err)
	}
	if len(list) == 0 {
		return nil
	}
	b := list[0]
	t := TableRef{Schema: b.schema, Name: b.table}
	return permanent("the row filter of table %s uses column %q, which is not in the table's replica identity, and publication %q publishes updates or deletes: PostgreSQL would reject every UPDATE and DELETE of the table; filter only on replica identity columns (the primary key), or give the table REPLICA IDENTITY FULL (ALTER TABLE %s REPLICA IDENTITY FULL;)",
		t, b.column, publication, t.Quoted())
}

// EnsureSlot creates the logical slot (pgoutput) when it is missing and
// checks an existing one. conn must be a replication connection.
func EnsureSlot(ctx context.Context, pool *pgxpool.Pool, conn *pgconn.PgConn, slot string) (created bool, err error) {
	si, err := pgcat.LookupSlot(ctx, pool, slot)
	if err != nil {
		return false, err
	}
	if !si.Exists {
		_, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication})
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == pgcat.DuplicateObject { // created concurrently
				return false, nil
			}
			return false, slotCreateError(fmt.Sprintf("create replication slot %q", slot), err)
		}
		return true, nil
	}
	if si.SlotType != "logical" || si.Plugin != "pgoutput" {
		return false, permanent("slot %q exists but is a %s slot with plugin %q; pgsignal needs a logical pgoutput slot: choose another source.slot or drop it with SELECT pg_drop_replication_slot(%s);",
			slot, si.SlotType, si.Plugin, pgcat.QuoteReplLiteral(slot))
	}
	var db string
	if err := pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return false, fmt.Errorf("current database: %w", err)
	}
	if si.Database != db {
		return false, permanent("slot %q belongs to database %q, not %q; choose another source.slot", slot, si.Database, db)
	}
	// A lost slot (wal_status = lost) is CheckSlotLost's to report.
	return false, nil
}

// EnsureFailover makes slot a failover slot (PostgreSQL 17+), so that it is
// synchronized to standbys and survives a promotion. conn must be a
// replication connection.
func EnsureFailover(ctx context.Context, pool *pgxpool.Pool, conn *pgconn.PgConn, slot string) (changed bool, err error) {
	var num int
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		return false, fmt.Errorf("server version: %w", err)
	}
	if num < 170000 {
		return false, permanent("source.failover needs PostgreSQL 17 or later (the server is %d.%d); remove it, or rely on pgsignal's slot-loss handling after a failover", num/10000, num%10000/100)
	}
	si, err := pgcat.LookupSlot(ctx, pool, slot)
	if err != nil {
		return false, err
	}
	if si.Failover {
		return false, nil
	}
	if err := conn.Exec(ctx, "ALTER_REPLICATION_SLOT "+pgcat.QuoteIdent(slot)+" ( FAILOVER true )").Close(); err != nil {
		return false, fmt.Errorf("make slot %q a failover slot: %w", slot, err)
	}
	return true, nil
}
