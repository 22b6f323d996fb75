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
)

// TableRef names a source table.
type TableRef struct {
	Schema, Name string
}

// String returns "schema.name" (unquoted).
func (t TableRef) String() string { return t.Schema + "." + t.Name }

// Quoted returns the quoted SQL name.
func (t TableRef) Quoted() string { return quoteIdent(t.Schema) + "." + quoteIdent(t.Name) }

// PublicationSQL returns the statement that creates the publication for tables.
func PublicationSQL(publication string, tables []TableRef) string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Quoted()
	}
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert');",
		quoteIdent(publication), strings.Join(names, ", "))
}

// ErrPermanent marks errors that a reconnect cannot fix (configuration,
// privileges, missing objects).
var ErrPermanent = errors.New("permanent")

// permanentError wraps err so that errors.Is(err, ErrPermanent) holds.
type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() []error      { return []error{e.err, ErrPermanent} }
func permanent(format string, a ...any) error { return permanentError{fmt.Errorf(format, a...)} }

// EnsurePublication checks that the publication exists, publishes inserts and
// covers every table. When create is true (full mode) it creates the
// publication or adds the missing tables; otherwise a missing piece is a
// permanent error that prints the SQL to fix it.
func EnsurePublication(ctx context.Context, pool *pgxpool.Pool, publication string, tables []TableRef, create bool) (created bool, err error) {
	var pubinsert bool
	err = pool.QueryRow(ctx, `SELECT pubinsert FROM pg_publication WHERE pubname = $1`, publication).Scan(&pubinsert)
	if errors.Is(err, pgx.ErrNoRows) {
		stmt := PublicationSQL(publication, tables)
		if !create {
			return false, permanent("publication %q does not exist and read-only mode does not create it; run as an owner of the tables:\n  %s", publication, stmt)
		}
		if _, err := pool.Exec(ctx, stmt); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42710" { // created concurrently
				return false, nil
			}
			return false, permanent("create publication %q (the user must own the tables, or create it as an owner with: %s): %w", publication, stmt, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up publication %q: %w", publication, err)
	}
	if !pubinsert {
		return false, permanent("publication %q does not publish inserts; fix it with:\n  ALTER PUBLICATION %s SET (publish = 'insert');", publication, quoteIdent(publication))
	}
	rows, err := pool.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, publication)
	if err != nil {
		return false, fmt.Errorf("list tables of publication %q: %w", publication, err)
	}
	have := map[TableRef]bool{}
	for rows.Next() {
		var t TableRef
		if err := rows.Scan(&t.Schema, &t.Name); err != nil {
			return false, fmt.Errorf("list tables of publication %q: %w", publication, err)
		}
		have[t] = true
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("list tables of publication %q: %w", publication, err)
	}
	var missing []string
	for _, t := range tables {
		if !have[t] {
			missing = append(missing, t.Quoted())
		}
	}
	if len(missing) == 0 {
		return false, nil
	}
	sort.Strings(missing)
	stmt := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s;", quoteIdent(publication), strings.Join(missing, ", "))
	if !create {
		return false, permanent("publication %q does not include %s; fix it with:\n  %s", publication, strings.Join(missing, ", "), stmt)
	}
	if _, err := pool.Exec(ctx, stmt); err != nil {
		return false, permanent("add tables to publication %q (%s): %w", publication, stmt, err)
	}
	return false, nil
}

// SlotInfo describes a replication slot.
type SlotInfo struct {
	Exists            bool
	Plugin, Database  string
	SlotType          string
	Active            bool
	ActivePID         int32
	ConfirmedFlushLSN string
	WALStatus         string
}

// LookupSlot reads pg_replication_slots.
func LookupSlot(ctx context.Context, pool *pgxpool.Pool, slot string) (SlotInfo, error) {
	var si SlotInfo
	var plugin, db, confirmed, walStatus *string
	var pid *int32
	// wal_status exists from PostgreSQL 13 on: read it through to_jsonb so
	// that the query also runs on 12.
	err := pool.QueryRow(ctx, `SELECT plugin, slot_type, database, active, active_pid,
  confirmed_flush_lsn::text, to_jsonb(s) ->> 'wal_status' FROM pg_replication_slots s WHERE slot_name = $1`, slot).
		Scan(&plugin, &si.SlotType, &db, &si.Active, &pid, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return si, nil
	}
	if err != nil {
		return si, fmt.Errorf("look up slot %q: %w", slot, err)
	}
	si.Exists = true
	si.Plugin, si.Database, si.ConfirmedFlushLSN, si.WALStatus = deref(plugin), deref(db), deref(confirmed), deref(walStatus)
	if pid != nil {
		si.ActivePID = *pid
	}
	return si, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// EnsureSlot creates the logical slot (pgoutput) when it is missing and
// checks an existing one. conn must be a replication connection.
func EnsureSlot(ctx context.Context, pool *pgxpool.Pool, conn *pgconn.PgConn, slot string) (created bool, err error) {
	si, err := LookupSlot(ctx, pool, slot)
	if err != nil {
		return false, err
	}
	if !si.Exists {
		_, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication})
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42710" { // created concurrently
				return false, nil
			}
			return false, permanent("create replication slot %q (the user needs the REPLICATION attribute and a free slot in max_replication_slots): %w", slot, err)
		}
		return true, nil
	}
	if si.SlotType != "logical" || si.Plugin != "pgoutput" {
		return false, permanent("slot %q exists but is a %s slot with plugin %q; pgsignal needs a logical pgoutput slot: choose another source.slot or drop it with SELECT pg_drop_replication_slot(%s);",
			slot, si.SlotType, si.Plugin, quoteLiteral(slot))
	}
	var db string
	if err := pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return false, fmt.Errorf("current database: %w", err)
	}
	if si.Database != db {
		return false, permanent("slot %q belongs to database %q, not %q; choose another source.slot", slot, si.Database, db)
	}
	if si.WALStatus == "lost" {
		return false, permanent("slot %q is invalidated (wal_status = lost): the WAL it needed was removed and events were lost; drop and recreate it with SELECT pg_drop_replication_slot(%s); then restart pgsignal", slot, quoteLiteral(slot))
	}
	return false, nil
}
