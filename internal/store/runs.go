package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// Run is one row of <schema>.runs, as `pgsignal status` shows it.
type Run struct {
	ID              int64      `json:"id"`
	StartedAt       time.Time  `json:"started_at"`
	StoppedAt       *time.Time `json:"stopped_at,omitempty"`
	EventsDelivered int64      `json:"events_delivered"`
	DeadLettered    int64      `json:"dead_lettered"`
	LastPosition    string     `json:"last_position,omitempty"`
	StopReason      string     `json:"stop_reason,omitempty"`
}

// RunCounters are what a run has done so far.
type RunCounters struct {
	Delivered, DeadLettered int64
	Position                cdc.Position
}

func runsTable(schema string) string { return pgx.Identifier{schema, "runs"}.Sanitize() }

// StartRun records the start of a run of slot by pgsignal version and
// returns its id.
func StartRun(ctx context.Context, pool *pgxpool.Pool, schema, slot, version string) (int64, error) {
	var id int64
	err := pool.QueryRow(ctx, `INSERT INTO `+runsTable(schema)+` (slot, version) VALUES ($1, $2) RETURNING id`, slot, version).Scan(&id)
	return id, err
}

// UpdateRun writes a running run's counters to its row.
func UpdateRun(ctx context.Context, pool *pgxpool.Pool, schema string, id int64, c RunCounters) error {
	_, err := pool.Exec(ctx, `UPDATE `+runsTable(schema)+` SET events_delivered = $2, dead_lettered = $3, last_position = $4 WHERE id = $1 AND stopped_at IS NULL`,
		id, c.Delivered, c.DeadLettered, c.Position.String())
	return err
}

// FinishRun records how a run ended.
func FinishRun(ctx context.Context, pool *pgxpool.Pool, schema string, id int64, c RunCounters, reason string) error {
	_, err := pool.Exec(ctx, `UPDATE `+runsTable(schema)+`
SET stopped_at = now(), events_delivered = $2, dead_lettered = $3, last_position = $4, stop_reason = $5
WHERE id = $1`, id, c.Delivered, c.DeadLettered, c.Position.String(), reason)
	return err
}

// RecordGap records a lost slot's gap (from, to) in a run's row.
func RecordGap(ctx context.Context, pool *pgxpool.Pool, schema string, id int64, from, to cdc.LSN) error {
	_, err := pool.Exec(ctx, `UPDATE `+runsTable(schema)+`
SET slot_lost_from = $2::pg_lsn, slot_lost_to = $3::pg_lsn WHERE id = $1`, id, from.String(), to.String())
	return err
}

// ListRuns returns slot's last n runs, newest first.
func ListRuns(ctx context.Context, pool *pgxpool.Pool, schema, slot string, n int) ([]Run, error) {
	rows, err := pool.Query(ctx, `SELECT id, started_at, stopped_at, events_delivered, dead_lettered, coalesce(last_position, ''), coalesce(stop_reason, '')
FROM `+runsTable(schema)+` WHERE slot = $1 ORDER BY id DESC LIMIT $2`, slot, n)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var r Run
		if err := rows.Scan(&r.ID, &r.StartedAt, &r.StoppedAt, &r.EventsDelivered, &r.DeadLettered, &r.LastPosition, &r.StopReason); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}
