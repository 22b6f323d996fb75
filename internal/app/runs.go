package app

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/buildinfo"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/store"
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
	id, err := store.StartRun(ctx, pool, cfg.Source.Schema, cfg.Source.Slot, buildinfo.Get().Version)
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
func (a *App) keepRunCurrent(ctx context.Context, pool *pgxpool.Pool, id int64, sk *sink.Sink, tracker *checkpoint.Tracker) {
	if id == 0 {
		return
	}
	schema := a.opts.Config.Source.Schema
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
		err := store.UpdateRun(uctx, pool, schema, id, store.RunCounters{Delivered: int64(st.Delivered), DeadLettered: int64(st.DeadLettered), Position: pos})
		if err == nil {
			err = store.UpdateRunBacklog(uctx, pool, schema, id, st.OldestUnsent, int64(st.Stale))
		}
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
	a.mu.Lock()
	sk := a.sink
	a.mu.Unlock()
	if sk != nil {
		// A stopped run has nothing unsent: what it left is read again
		// by the next one.
		if err := store.UpdateRunBacklog(ctx, pool, cfg.Source.Schema, id, time.Time{}, int64(sk.Stats().Stale)); err != nil {
			a.log.Debug("could not record the run's backlog", zap.Error(err))
		}
	}
	err := store.FinishRun(ctx, pool, cfg.Source.Schema, id, store.RunCounters{Delivered: int64(sum.Delivered), DeadLettered: int64(sum.DeadLettered), Position: sum.Checkpoint}, reason)
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
	err := store.RecordGap(ctx, pool, cfg.Source.Schema, id, l.From, l.To)
	if err != nil {
		a.log.Warn("could not record the slot gap", zap.Error(err))
	}
}
