package app

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/replication"
)

// startRun records the start of a run in <schema>.runs (full mode) and
// returns its id, or 0.
func (a *App) startRun(ctx context.Context, pool *pgxpool.Pool, full bool) int64 {
	if !full {
		return 0
	}
	cfg := a.opts.Config
	var id int64
	err := pool.QueryRow(ctx, `INSERT INTO `+pgx.Identifier{cfg.Source.Schema, "runs"}.Sanitize()+
		` (slot) VALUES ($1) RETURNING id`, cfg.Source.Slot).Scan(&id)
	if err != nil {
		a.log.Warn("could not record the run", zap.Error(err))
		return 0
	}
	return id
}

// finishRun records how the run ended.
func (a *App) finishRun(ctx context.Context, pool *pgxpool.Pool, id int64, sum Summary, reason string) {
	if id == 0 {
		return
	}
	cfg := a.opts.Config
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := pool.Exec(ctx, `UPDATE `+pgx.Identifier{cfg.Source.Schema, "runs"}.Sanitize()+`
SET stopped_at = now(), events_delivered = $2, dead_lettered = $3, last_position = $4, stop_reason = $5
WHERE id = $1`, id, int64(sum.Delivered), int64(sum.DeadLettered), sum.Checkpoint.String(), reason)
	if err != nil {
		a.log.Warn("could not record the end of the run", zap.Error(err))
	}
}

// recordGap records a lost slot's gap in the run's row.
func (a *App) recordGap(ctx context.Context, pool *pgxpool.Pool, id int64, l replication.SlotLoss) {
	if id == 0 {
		return
	}
	cfg := a.opts.Config
	_, err := pool.Exec(ctx, `UPDATE `+pgx.Identifier{cfg.Source.Schema, "runs"}.Sanitize()+`
SET slot_lost_from = $2::pg_lsn, slot_lost_to = $3::pg_lsn WHERE id = $1`, id, l.From.String(), l.To.String())
	if err != nil {
		a.log.Warn("could not record the slot gap", zap.Error(err))
	}
}
