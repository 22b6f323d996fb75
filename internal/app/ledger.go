package app

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/config/defaults"
	"github.com/pgsignal/pgsignal/internal/statefile"
	"github.com/pgsignal/pgsignal/internal/store"
)

// ledgerSetup is what openLedger needs to know about the run.
type ledgerSetup struct {
	full     bool
	systemID string
	// fresh is set when the slot was created or recreated, or the
	// watermark reset (a backfill) in this start: an earlier ledger's
	// positions mean nothing for the new slot and it is cleared.
	fresh bool
	runID int64
	pool  *pgxpool.Pool
	// durable returns the durable watermark (see checkpoint.NewLedger).
	durable func() (cdc.Position, cdc.LSN)
}

// openLedger opens the delivery ledger: <schema>.delivered in full mode,
// the section "ledger" of source.state_file in read-only mode.
func (a *App) openLedger(ctx context.Context, ls ledgerSetup) (*checkpoint.Ledger, error) {
	cfg := a.opts.Config
	var st checkpoint.LedgerStore
	if ls.full {
		st = &store.LedgerTable{Pool: ls.pool, Schema: cfg.Source.Schema, Slot: cfg.Source.Slot}
	} else {
		f, err := statefile.Open(cfg.Source.StateFile)
		if err != nil {
			return nil, fmt.Errorf("source.state_file: %w", err)
		}
		st = &checkpoint.StateFileLedger{File: f, SystemID: ls.systemID, Slot: cfg.Source.Slot}
	}
	if ls.fresh {
		if err := st.Write(ctx, nil); err != nil {
			return nil, fmt.Errorf("clear the delivery ledger of the earlier slot: %w", err)
		}
	}
	lanes := cfg.Sink.Concurrency
	if lanes <= 0 {
		lanes = defaults.Concurrency
	}
	l, err := checkpoint.NewLedger(ctx, st, lanes, ls.durable, a.log.Named("ledger"))
	if err != nil {
		return nil, err
	}
	if sf, ok := st.(*checkpoint.StateFileLedger); ok {
		sf.Skipped = func() uint64 { return l.Stats().Skipped }
	}
	if s := l.Stats(); s.Ranges > 0 {
		a.log.Info("delivery ledger: events OneSignal accepted above the checkpoint before the restart are not sent again",
			zap.Int("ranges", s.Ranges), zap.Int64("events", s.Events))
	}
	if ls.full && ls.runID != 0 {
		l.OnPassed = func(skipped uint64) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := store.RecordLedgerSkipped(rctx, ls.pool, cfg.Source.Schema, ls.runID, skipped); err != nil {
				a.log.Debug("could not record the events the ledger skipped", zap.Error(err))
			}
		}
	}
	a.obs.ledger.l.Store(l)
	return l, nil
}

// ledgerMetrics exports the delivery ledger's size and work.
type ledgerMetrics struct {
	l atomic.Pointer[checkpoint.Ledger]
}

var (
	descLedgerRanges   = prometheus.NewDesc("pgsignal_ledger_ranges", "Ranges in the delivery ledger (what OneSignal accepted above the durable checkpoint).", nil, nil)
	descLedgerEvents   = prometheus.NewDesc("pgsignal_ledger_events", "Events the delivery ledger records above the durable checkpoint.", nil, nil)
	descLedgerSkipped  = prometheus.NewDesc("pgsignal_ledger_skipped_events", "Events not sent on this start because the delivery ledger had them.", nil, nil)
	descLedgerWrites   = prometheus.NewDesc("pgsignal_ledger_writes_total", "Writes of the delivery ledger.", nil, nil)
	descLedgerFailures = prometheus.NewDesc("pgsignal_ledger_write_failures_total", "Failed writes of the delivery ledger (a crash then resends more; nothing is lost).", nil, nil)
)

// Describe implements prometheus.Collector.
func (m *ledgerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLedgerRanges, descLedgerEvents, descLedgerSkipped, descLedgerWrites, descLedgerFailures} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *ledgerMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.l.Load().Stats()
	ch <- prometheus.MustNewConstMetric(descLedgerRanges, prometheus.GaugeValue, float64(s.Ranges))
	ch <- prometheus.MustNewConstMetric(descLedgerEvents, prometheus.GaugeValue, float64(s.Events))
	ch <- prometheus.MustNewConstMetric(descLedgerSkipped, prometheus.GaugeValue, float64(s.Skipped))
	ch <- prometheus.MustNewConstMetric(descLedgerWrites, prometheus.CounterValue, float64(s.Writes))
	ch <- prometheus.MustNewConstMetric(descLedgerFailures, prometheus.CounterValue, float64(s.WriteFailures))
}

// closeLedger writes the ledger a last time, trimmed to the final
// checkpoint (empty after a drained stop), and records in the run's row the
// events it skipped.
func (a *App) closeLedger(ctx context.Context, l *checkpoint.Ledger, full bool, pool *pgxpool.Pool, runID int64, slotConfirmed *atomic.Uint64) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if !full {
		a.readSlotConfirmed(fctx, pool, slotConfirmed) // the stream's last confirmation
	}
	if err := l.Flush(fctx); err != nil {
		a.log.Warn("final write of the delivery ledger failed: the next start may send again what OneSignal accepted last", zap.Error(err))
	}
	if s := l.Stats(); full && runID != 0 && s.Skipped > 0 {
		if err := store.RecordLedgerSkipped(fctx, pool, a.opts.Config.Source.Schema, runID, s.Skipped); err != nil {
			a.log.Debug("could not record the events the ledger skipped", zap.Error(err))
		}
	}
}

// watchSlotConfirmed keeps confirmed at the slot's confirmed_flush_lsn as
// the server holds it, read every second until ctx ends (read-only mode):
// the ledger's ranges below it are trimmed. What the server holds, not what
// the stream sent: a status update still unread when pgsignal dies is lost
// with the connection, and the server then sends those transactions again.
func (a *App) watchSlotConfirmed(ctx context.Context, pool *pgxpool.Pool, confirmed *atomic.Uint64) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.readSlotConfirmed(ctx, pool, confirmed) // on failure the next tick tries again; trimming waits
	}
}

// readSlotConfirmed raises confirmed to the slot's confirmed_flush_lsn.
func (a *App) readSlotConfirmed(ctx context.Context, pool *pgxpool.Pool, confirmed *atomic.Uint64) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var lsn *string
	err := pool.QueryRow(qctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, a.opts.Config.Source.Slot).Scan(&lsn)
	if err != nil || lsn == nil {
		return
	}
	if l, err := cdc.ParseLSN(*lsn); err == nil && uint64(l) > confirmed.Load() {
		confirmed.Store(uint64(l))
	}
}
