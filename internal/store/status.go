package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// Exists reports whether the bookkeeping schema holds a sync_state table
// (pgsignal ran in full mode in this database).
func Exists(ctx context.Context, pool *pgxpool.Pool, schema string) (bool, error) {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, "sync_state"}.Sanitize()).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up %s.sync_state: %w", schema, err)
	}
	return exists, nil
}

// Watermark is slot's row of <schema>.sync_state, as `pgsignal status`
// shows it.
type Watermark struct {
	Position     string    `json:"position"`
	ConfirmedLSN string    `json:"confirmed_lsn"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// ReadWatermark returns slot's watermark, or nil when none is stored.
func ReadWatermark(ctx context.Context, pool *pgxpool.Pool, schema, slot string) (*Watermark, error) {
	w := &Watermark{}
	err := pool.QueryRow(ctx, `SELECT commit_lsn::text || '#' || ordinal, confirmed_lsn::text, updated_at FROM `+
		pgx.Identifier{schema, "sync_state"}.Sanitize()+` WHERE slot = $1`, slot).Scan(&w.Position, &w.ConfirmedLSN, &w.UpdatedAt)
	switch {
	case err == nil:
		return w, nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	default:
		return nil, fmt.Errorf("read watermark: %w", err)
	}
}

// Backfill is slot's row of <schema>.backfills, as `pgsignal status` shows
// it.
type Backfill struct {
	State      string     `json:"state"`
	Tables     []string   `json:"tables"`
	RowsDone   int64      `json:"rows_done"`
	RowsTotal  int64      `json:"rows_total"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// ReadBackfill returns slot's backfill, or nil when none ran (or the schema
// is from before backfills).
func ReadBackfill(ctx context.Context, pool *pgxpool.Pool, schema, slot string) (*Backfill, error) {
	bf := &Backfill{}
	err := pool.QueryRow(ctx, `SELECT state, tables, rows_done, rows_total, started_at, finished_at FROM `+
		pgx.Identifier{schema, "backfills"}.Sanitize()+` WHERE slot = $1`, slot).Scan(&bf.State, &bf.Tables, &bf.RowsDone, &bf.RowsTotal, &bf.StartedAt, &bf.FinishedAt)
	switch {
	case err == nil:
		return bf, nil
	case errors.Is(err, pgx.ErrNoRows), pgcat.Is(err, pgcat.UndefinedTable):
		return nil, nil
	default:
		return nil, fmt.Errorf("read backfill: %w", err)
	}
}

// CountDeadLetters returns the number of slot's stored dead letters.
func CountDeadLetters(ctx context.Context, pool *pgxpool.Pool, schema, slot string) (int, error) {
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "dead_letters"}.Sanitize()+` WHERE slot = $1`, slot).Scan(&n); err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}
