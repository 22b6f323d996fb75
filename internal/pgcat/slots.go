package pgcat

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs one query: a *pgx.Conn, a *pgxpool.Pool or a pgx.Tx.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Execer runs one statement: a *pgx.Conn, a *pgxpool.Pool or a pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SlotInfo describes a replication slot, as pg_replication_slots shows it.
type SlotInfo struct {
	Exists            bool
	Plugin, Database  string
	SlotType          string
	Active            bool
	ActivePID         int32
	ConfirmedFlushLSN string
	// WALStatus is "" before PostgreSQL 13.
	WALStatus string
	// SafeWALSize is nil when unknown (before 13, or max_slot_wal_keep_size
	// is -1).
	SafeWALSize *int64
	// Failover is true for a failover slot (PostgreSQL 17+).
	Failover bool
	// LagBytes is the WAL between the server's current position (its replay
	// position on a standby) and confirmed_flush_lsn; RetainedBytes the WAL
	// from restart_lsn. Nil when the slot has no such position.
	LagBytes, RetainedBytes *int64
}

// slotQuery reads every column through to_jsonb where a column is newer than
// PostgreSQL 12, so that the query runs on every supported version.
const slotQuery = `SELECT plugin, slot_type, database::text, active, active_pid, confirmed_flush_lsn::text,
  to_jsonb(s) ->> 'wal_status', (to_jsonb(s) ->> 'safe_wal_size')::bigint,
  coalesce(to_jsonb(s) ->> 'failover', 'false') = 'true',
  (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END - confirmed_flush_lsn)::bigint,
  (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END - restart_lsn)::bigint
FROM pg_catalog.pg_replication_slots s WHERE slot_name = $1`

// LookupSlot reads slot from pg_replication_slots; a missing slot is
// SlotInfo{Exists: false} and no error.
func LookupSlot(ctx context.Context, q Querier, slot string) (SlotInfo, error) {
	var si SlotInfo
	var plugin, db, confirmed, walStatus *string
	var pid *int32
	err := q.QueryRow(ctx, slotQuery, slot).Scan(&plugin, &si.SlotType, &db, &si.Active, &pid, &confirmed,
		&walStatus, &si.SafeWALSize, &si.Failover, &si.LagBytes, &si.RetainedBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return SlotInfo{}, nil
	}
	if err != nil {
		return SlotInfo{}, fmt.Errorf("look up slot %q: %w", slot, err)
	}
	si.Exists = true
	si.Plugin, si.Database, si.ConfirmedFlushLSN, si.WALStatus = deref(plugin), deref(db), deref(confirmed), deref(walStatus)
	if pid != nil {
		si.ActivePID = *pid
	}
	return si, nil
}

// DropSlot drops slot if it exists and no one reads it.
func DropSlot(ctx context.Context, e Execer, slot string) error {
	_, err := e.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, slot)
	if err != nil {
		return fmt.Errorf("drop replication slot %q: %w", slot, err)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
