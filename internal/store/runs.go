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
	// OldestUnsentAt is the commit time of the oldest event the running
	// run had queued or in flight at its last update (every few
	// seconds); nil when none, and once the run stopped.
	OldestUnsentAt *time.Time `json:"oldest_unsent_at,omitempty"`
	// StaleEvents counts the events the run did not send because they were
	// older than sink.max_event_age.
	StaleEvents int64 `json:"stale_events"`
	// BacklogAt is when the run last wrote OldestUnsentAt and
	// StaleEvents: a row of a running run that stopped reporting is that
	// of a process that died.
	BacklogAt *time.Time `json:"backlog_at,omitempty"`
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

// UpdateRunBacklog writes the sink's backlog to a run's row: the commit
// time of the oldest event queued or in flight (zero: none) and the stale
// events so far.
func UpdateRunBacklog(ctx context.Context, pool *pgxpool.Pool, schema string, id int64, oldest time.Time, stale int64) error {
	var at *time.Time
	if !oldest.IsZero() {
		at = &oldest
	}
	_, err := pool.Exec(ctx, `UPDATE `+runsTable(schema)+` SET oldest_unsent_at = $2, stale_events = $3, backlog_at = now() WHERE id = $1`, id, at, stale)
	if err != nil {
		return fmt.Errorf("update the run's backlog: %w", err)
	}
	return nil
}

// ListRuns returns slot's last n runs, newest first.
func ListRuns(ctx context.Context, pool *pgxpool.Pool, schema, slot string, n int) ([]Run, error) {
	// The backlog columns are read through to_jsonb: a schema an older
	// version created has them only once this version ran.
	rows, err := pool.Query(ctx, `SELECT id, started_at, stopped_at, events_delivered, dead_lettered, coalesce(last_position, ''), coalesce(stop_reason, ''),
  (to_jsonb(r)->>'oldest_unsent_at')::timestamptz, coalesce((to_jsonb(r)->>'stale_events')::bigint, 0),
  (to_jsonb(r)->>'backlog_at')::timestamptz
FROM `+runsTable(schema)+` r WHERE slot = $1 ORDER BY id DESC LIMIT $2`, slot, n)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var r Run
		if err := rows.Scan(&r.ID, &r.StartedAt, &r.StoppedAt, &r.EventsDelivered, &r.DeadLettered, &r.LastPosition, &r.StopReason, &r.OldestUnsentAt, &r.StaleEvents, &r.BacklogAt); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}
