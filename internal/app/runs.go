package app

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/buildinfo"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
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
		` (slot, version) VALUES ($1, $2) RETURNING id`, cfg.Source.Slot, buildinfo.Get().Version).Scan(&id)
	if err != nil {
		a.log.Warn("could not record the run", zap.Error(err))
		return 0
	}
	return id
}

// runCounterInterval is how often a running run's counters are written to
// its row, so that status shows them while it runs.
const runCounterInterval = 5 * time.Second

// keepRunCurrent writes the run's counters and checkpoint to its row every
// runCounterInterval until ctx ends.
func (a *App) keepRunCurrent(ctx context.Context, pool *pgxpool.Pool, id int64, sk *sink.Sink, tracker *replication.Tracker) {
	if id == 0 {
		return
	}
	table := pgx.Identifier{a.opts.Config.Source.Schema, "runs"}.Sanitize()
	t := time.NewTicker(runCounterInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := sk.Stats()
		pos, _ := tracker.Checkpoint()
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := pool.Exec(uctx, `UPDATE `+table+` SET events_delivered = $2, dead_lettered = $3, last_position = $4 WHERE id = $1 AND stopped_at IS NULL`,
			id, int64(st.Delivered), int64(st.DeadLettered), pos.String())
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Debug("could not update the run's counters", zap.Error(err))
		}
	}
}

// startFailure is the stop reason of a run that ended with err before its
// own finishRun: "start failed: ..." (or "stopped" for nil).
func startFailure(err error) string {
	if err == nil {
		return "stopped"
	}
	return "start failed: " + err.Error()
}

// finishRun records how the run ended; only its first call for a run
// writes.
func (a *App) finishRun(ctx context.Context, pool *pgxpool.Pool, id int64, sum Summary, reason string) {
	if id == 0 || !a.runFinished.CompareAndSwap(false, true) {
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
