package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/store"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
)

// backfillRows is the number of rows mapped (and transformed) at once.
const backfillRows = 500

// backfillTables returns the backfill settings of the configured tables
// that have one, with windows starting at now less their since, or at the
// start recorded by an interrupted backfill (windows, by "schema.table").
func backfillTables(cfg *config.Config, now time.Time, windows map[string]time.Time) []replication.BackfillTable {
	var out []replication.BackfillTable
	for _, t := range cfg.Tables {
		if t.Backfill == nil {
			continue
		}
		from, ok := windows[t.QualifiedName()]
		if !ok {
			from = now.Add(-t.Backfill.Since)
		}
		out = append(out, replication.BackfillTable{
			Table:  replication.TableRef{Schema: t.Schema, Name: t.Name},
			Column: t.BackfillColumn(), From: from,
			Zone: t.TimestampZone, Unit: t.TimestampUnit, Where: t.Where,
		})
	}
	return out
}

// backfill is a backfill about to run: its snapshot is imported, and it
// holds the backfill lock of the slot.
type backfill struct {
	src   *replication.Backfill
	cp    cdc.LSN // the slot's consistent point
	names []string
	lock  *pgxpool.Conn
}

// close ends the backfill's transaction and releases its lock. It may be
// called more than once.
func (b *backfill) close(ctx context.Context) {
	if b == nil {
		return
	}
	b.src.Close(ctx)
	releaseBackfillLock(ctx, b.lock)
	b.lock = nil
}

// backfillLockSQL is the key of the advisory lock that lets one instance
// at a time decide about and run a slot's backfill.
const backfillLockSQL = `hashtextextended('pgsignal backfill ' || $1, 0)`

// backfillLockSQL10 is backfillLockSQL for PostgreSQL 10, which has no
// hashtextextended (11+): a 32-bit hash of the same text.
const backfillLockSQL10 = `hashtext('pgsignal backfill ' || $1)::bigint`

// lockBackfill takes the slot's backfill lock, waiting while another
// instance (high availability) holds it: that one is backfilling, and its
// slot is inactive meanwhile.
func (a *App) lockBackfill(ctx context.Context, pool *pgxpool.Pool, slot string) (*pgxpool.Conn, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("backfill lock: %w", err)
	}
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		conn.Release()
		return nil, fmt.Errorf("backfill lock: server version: %w", err)
	}
	key := backfillLockSQL
	if version < 110000 {
		key = backfillLockSQL10
	}
	for logged := false; ; logged = true {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+key+`)`, slot).Scan(&ok); err != nil {
			conn.Release()
			return nil, fmt.Errorf("backfill lock: %w", err)
		}
		if ok {
			return conn, nil
		}
		if !logged {
			a.log.Info("another pgsignal instance is backfilling this slot; waiting for it", zap.String("slot", slot))
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			conn.Release()
			return nil, ctx.Err()
		case <-a.stopCh:
			conn.Release()
			return nil, errors.New("stopped while waiting for another instance's backfill")
		}
	}
}

func releaseBackfillLock(ctx context.Context, conn *pgxpool.Conn) {
	if conn == nil {
		return
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`); err != nil {
		_ = conn.Conn().Close(ctx) // closing the session releases the lock
	}
	conn.Release()
}

// prepareBackfill decides whether this run backfills and, if so, creates
// the slot with an exported snapshot and imports it. It runs before
// anything else uses conn (which would end the snapshot). A backfill runs
// when pgsignal creates its slot, or again (with a new slot) when the
// previous one was interrupted. The backfill is recorded as running before
// the slot is created, so that a failure at any later point is redone.
func (a *App) prepareBackfill(ctx context.Context, pool *pgxpool.Pool, conn *pgconn.PgConn, systemID string, confirmed cdc.LSN) (bf *backfill, err error) {
	cfg := a.opts.Config
	if len(backfillTables(cfg, time.Now(), nil)) == 0 {
		return nil, nil
	}
	slot, schema := cfg.Source.Slot, cfg.Source.Schema
	lock, err := a.lockBackfill(ctx, pool, slot)
	if err != nil {
		return nil, err
	}
	defer func() {
		if bf == nil {
			releaseBackfillLock(context.WithoutCancel(ctx), lock)
		}
	}()
	state, windows, err := store.BackfillState(ctx, pool, schema, slot)
	if err != nil {
		return nil, err
	}
	si, err := pgcat.LookupSlot(ctx, pool, slot)
	if err != nil {
		return nil, err
	}
	redo := state == store.BackfillRunning
	// keep: a redo keeps the slot of the interrupted attempt, which holds
	// every change committed since that attempt's snapshot, and reads the
	// windows in a new snapshot from a temporary slot; the stream then
	// starts where the kept slot does (see replication.Overlap).
	keep := false
	switch {
	case si.Exists && redo && si.WALStatus == "lost":
		loss, err := replication.CheckSlotLost(ctx, pool, slot, confirmed, true)
		if err != nil {
			return nil, err
		}
		if loss == nil {
			loss = &replication.SlotLoss{Slot: slot}
		}
		if a.opts.OnSlotLost != config.SlotLostRecreate {
			return nil, *loss
		}
		a.log.Error("the slot of the interrupted backfill was lost; redoing the backfill with a new slot: changes committed meanwhile outside its windows are lost",
			zap.String("slot", slot), zap.Stringer("gap_from", loss.From), zap.Stringer("gap_to", loss.To), zap.Int64("gap_bytes", loss.Bytes()))
	case si.Exists && redo:
		keep = true
		a.log.Warn("the previous backfill did not finish; redoing it with a new snapshot over the same windows, keeping the slot so that nothing committed meanwhile is lost (idempotency keys make the redo send nothing twice)", zap.String("slot", slot))
	case si.Exists:
		if a.opts.ForceBackfill {
			return nil, fmt.Errorf("slot %q exists: a backfill runs when pgsignal creates its slot, and this one has streamed since %s; to backfill again, stop pgsignal, drop the slot (SELECT pg_drop_replication_slot('%s');) and delete its checkpoint (DELETE FROM %s.sync_state WHERE slot = '%s';), knowing that events of the window already sent are sent again with other idempotency keys",
				slot, si.ConfirmedFlushLSN, slot, schema, slot)
		}
		if state == "" {
			a.log.Info("backfill skipped: the slot exists (a backfill runs when pgsignal creates its slot)", zap.String("slot", slot))
		}
		return nil, nil
	case confirmed > 0 && !redo:
		// The slot is gone although pgsignal streamed from it: that is a
		// lost slot (CheckSlotLost), not a first start.
		return nil, nil
	}
	if !redo {
		windows = nil
	}
	var now time.Time
	if err := pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return nil, fmt.Errorf("backfill: read the database's clock: %w", err)
	}
	tables := backfillTables(cfg, now, windows)
	windows = map[string]time.Time{}
	var names []string
	for _, t := range tables {
		names = append(names, t.Table.String())
		windows[t.Table.String()] = t.From
	}
	if err := store.StartBackfill(ctx, pool, schema, slot, names, windows); err != nil {
		return nil, err
	}
	var snap replication.SnapshotSlot
	var cp, overlap cdc.LSN
	if keep {
		// The kept slot streams from its confirmed position (its consistent
		// point: it never streamed); the backfill's rows sort before it.
		if cp, err = cdc.ParseLSN(si.ConfirmedFlushLSN); err != nil {
			return nil, fmt.Errorf("slot %q confirmed position: %w", slot, err)
		}
		if snap, err = replication.CreateTempSnapshot(ctx, conn, replication.TempSlotName(slot)); err != nil {
			return nil, err
		}
		overlap = snap.ConsistentPoint
	} else {
		if si.Exists {
			if err := pgcat.DropSlot(ctx, pool, slot); err != nil {
				return nil, err
			}
		}
		if snap, err = replication.CreateSlotWithSnapshot(ctx, conn, slot); err != nil {
			return nil, err
		}
		cp = snap.ConsistentPoint
	}
	src, err := replication.OpenBackfill(ctx, pool, systemID, snap.Snapshot, tables)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(store.SetBackfillOverlap(ctx, pool, schema, slot, overlap),
		store.SetBackfillTotal(ctx, pool, schema, slot, src.Total())); err != nil {
		src.Close(context.WithoutCancel(ctx)) // the lock goes with the deferred release
		return nil, err
	}
	b := &backfill{src: src, cp: cp, names: names, lock: lock}
	if keep {
		a.log.Info("took a new snapshot for the redone backfill; the slot streams from where the first attempt's snapshot ended",
			zap.String("slot", slot), zap.Stringer("stream_from", cp), zap.Stringer("snapshot_at", overlap),
			zap.Int64("rows", src.Total()), zap.Strings("tables", names))
	} else {
		a.log.Info("created replication slot with a snapshot for the backfill", zap.String("slot", slot),
			zap.Stringer("consistent_point", snap.ConsistentPoint), zap.Int64("rows", src.Total()), zap.Strings("tables", names))
	}
	return b, nil
}

// runBackfill sends the backfill's rows in time order, waits until every
// one is handled and records the backfill as done. It returns false when
// stopped before the end (the next start redoes it).
func (a *App) runBackfill(ctx context.Context, b *backfill, pool *pgxpool.Pool, mp *mapper.Mapper, batch replication.BatchMapper,
	sk *sink.Sink, tracker *checkpoint.Tracker) (finished bool, err error) {
	defer b.close(context.WithoutCancel(ctx))
	cfg := a.opts.Config
	log := a.log.Named("backfill")
	total := b.src.Total()
	start := time.Now()
	lastLog := start
	var rows int64
	var ord uint32
	fanout := 1
	progress := func(final bool) {
		elapsed := time.Since(start)
		rate := float64(rows) / max(elapsed.Seconds(), 1e-3)
		fields := []zap.Field{zap.Int64("rows_done", rows), zap.Int64("rows_total", total), zap.Float64("rows_per_second", float64(int64(rate*10))/10)}
		if !final && rate > 0 {
			fields = append(fields, zap.Duration("eta", time.Duration(float64(total-rows)/rate*float64(time.Second)).Round(time.Second)))
		}
		msg := "backfill progress"
		if final {
			msg = "backfill read every row; waiting for the last deliveries"
		}
		log.Info(msg, fields...)
		a.obs.backfillProgress(rows, total)
	}
	log.Info("backfill started", zap.Int64("rows_total", total), zap.Strings("tables", b.names))
	a.obs.backfillProgress(0, total)
	for {
		if a.stopping() {
			log.Info("stopped during the backfill; the next start redoes it", zap.Int64("rows_done", rows), zap.Int64("rows_total", total))
			return false, a.waitHandled(ctx, tracker)
		}
		// As many rows as make about backfillRows events.
		batchRows, err := b.src.Next(ctx, max(1, backfillRows/fanout))
		if err != nil {
			return false, err
		}
		if len(batchRows) == 0 {
			break
		}
		events, err := a.mapBackfill(ctx, batchRows, b.cp, &ord, mp, batch)
		if err != nil {
			return false, err
		}
		fanout = replication.FanOut(events)
		for i, evs := range events {
			tracker.Attach(tracker.Assign(batchRows[i].Change.Pos), evs)
			for _, ev := range evs {
				// Latency is measured from now: the row's time is its past.
				ev.CommitTime = time.Now()
				// History asked for: sink.max_event_age does not apply.
				ev.Backfill = true
				if err := a.submitBackfill(ctx, sk, ev); err != nil {
					return false, err
				}
			}
		}
		rows += int64(len(batchRows))
		if f := a.opts.OnBackfillProgress; f != nil {
			f(rows, total)
		}
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			progress(false)
			_ = store.ProgressBackfill(ctx, pool, cfg.Source.Schema, cfg.Source.Slot, rows, false)
		}
	}
	progress(true)
	if err := a.waitHandled(ctx, tracker); err != nil {
		return false, err
	}
	if a.stopping() && !tracker.Drained() {
		return false, nil
	}
	if err := store.ProgressBackfill(ctx, pool, cfg.Source.Schema, cfg.Source.Slot, rows, true); err != nil {
		return false, err
	}
	st := sk.Stats()
	log.Info("backfill done", zap.Int64("rows", rows), zap.Duration("took", time.Since(start).Round(time.Millisecond)),
		zap.Uint64("delivered", st.Delivered), zap.Uint64("dead_lettered", st.DeadLettered))
	return true, nil
}

// mapBackfill maps a chunk of backfilled rows: positions below the slot's
// consistent point, in order; rows of transformed tables evaluated in one
// batch (retried while the failure is not the rows').
func (a *App) mapBackfill(ctx context.Context, rows []replication.BackfillRow, cp cdc.LSN, ord *uint32,
	mp *mapper.Mapper, batch replication.BatchMapper) ([][]*cdc.Event, error) {
	chs := make([]*replication.Change, len(rows))
	for i, r := range rows {
		ch := r.Change
		// Every streamed transaction commits at or after the consistent
		// point, so these positions sort before all of them.
		ch.Pos = cdc.Position{CommitLSN: cp - 1, Ordinal: *ord}
		*ord++
		ch.CommitTime = r.Time
		chs[i] = ch
	}
	return a.mapRows(ctx, chs, mp, batch)
}

// submitBackfill hands ev to the sink, waiting while it is full.
func (a *App) submitBackfill(ctx context.Context, sk *sink.Sink, ev *cdc.Event) error {
	for !sk.TrySubmit(ev) {
		select {
		case <-sk.Ready():
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// waitHandled waits until every event given to the tracker is handled.
func (a *App) waitHandled(ctx context.Context, tracker *checkpoint.Tracker) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for tracker.Pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// backfillOverlap returns the check that skips the streamed inserts a
// redone backfill already sent, or nil when the slot is past the redo's
// snapshot (or there was no redo).
func (a *App) backfillOverlap(ctx context.Context, pool *pgxpool.Pool) (*replication.Overlap, error) {
	cfg := a.opts.Config
	if cfg.Source.Mode == config.ModeReadOnly || len(backfillTables(cfg, time.Now(), nil)) == 0 {
		return nil, nil
	}
	until, windows, err := store.BackfillOverlap(ctx, pool, cfg.Source.Schema, cfg.Source.Slot)
	if err != nil || until == 0 {
		return nil, err
	}
	si, err := pgcat.LookupSlot(ctx, pool, cfg.Source.Slot)
	if err != nil {
		return nil, err
	}
	if confirmed, err := cdc.ParseLSN(si.ConfirmedFlushLSN); !si.Exists || err != nil || confirmed >= until {
		return nil, nil
	}
	var tables []replication.BackfillTable
	for _, t := range backfillTables(cfg, time.Now(), windows) {
		if _, ok := windows[t.Table.String()]; ok {
			tables = append(tables, t)
		}
	}
	o, err := replication.NewOverlap(ctx, pool, tables, until)
	if err == nil {
		a.log.Info("streaming from the slot kept by the redone backfill: inserts committed before its snapshot that the backfill sent are skipped",
			zap.String("slot", cfg.Source.Slot), zap.String("confirmed", si.ConfirmedFlushLSN), zap.Stringer("snapshot_at", until))
	}
	return o, err
}

// stopping reports whether Stop was called.
func (a *App) stopping() bool {
	select {
	case <-a.stopCh:
		return true
	default:
		return false
	}
}
