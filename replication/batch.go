package replication

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// BatchMapper maps the rows of some tables in batches: a SQL transform that
// PostgreSQL evaluates once per batch.
type BatchMapper interface {
	// Batched reports whether rel's inserted rows (update false) or updated
	// rows (update true) go through MapBatch.
	Batched(rel *Relation, update bool) bool
	// MapBatch returns, for each change in order, its events: none (the row
	// is filtered out), one, or several. Events carry Pos, Table,
	// IdempotencyKey and CommitTime; a row that cannot become an event is
	// an event with Reject set. An error means the batch could not be
	// evaluated for a reason that is not the rows' (the connection was
	// lost, the server is shutting down): the stream retries it.
	MapBatch(ctx context.Context, chs []*Change) ([][]*cdc.Event, error)
}

// maxPendingBytes bounds the row values buffered for a batch evaluation.
const maxPendingBytes = 4 << 20

// pendingRow is a row buffered until the next batch evaluation. A row of a
// batched table holds a copy of its change; any other row was mapped when
// it arrived and holds its event (nil when it maps to none).
type pendingRow struct {
	seq     uint64
	ch      *Change // batched row
	missing int     // batched update: unchanged TOAST column, or -1
	ev      *cdc.Event
}

// buffer queues a row for the next batch evaluation. Once a row waits,
// every later row waits behind it, so events leave in commit order.
func (s *Stream) buffer(ctx context.Context, conn *pgconn.PgConn, rel *Relation, vals [][]byte, pos cdc.Position, update bool, missing int) error {
	s.received.Add(1)
	row := pendingRow{missing: -1}
	if s.cfg.Batch.Batched(rel, update) {
		row.ch = s.change(rel, CloneValues(vals), pos)
		if update {
			row.missing = missing
		}
		for _, v := range vals {
			s.pendingBytes += len(v) + 64
		}
	} else {
		row.ev = s.mapChange(rel, vals, pos, update, missing)
		if row.ev != nil {
			row.ev.Pos, row.ev.CommitTime = pos, s.commitTime
			s.pendingBytes += row.ev.Size()
		}
	}
	row.seq = s.tracker.Assign(pos)
	if len(s.pending) == 0 {
		s.pendingSince = time.Now()
	}
	s.pending = append(s.pending, row)
	s.last = pos
	if len(s.pending) >= s.batchRows() || s.pendingBytes >= maxPendingBytes {
		return s.flush(ctx, conn)
	}
	return nil
}

// batchRows is the number of rows the next batch may hold: BatchRows, or
// fewer when the last batch's rows became several events each, so that a
// batch's events stay about BatchRows whatever the transform's fan-out.
func (s *Stream) batchRows() int {
	return max(1, s.cfg.BatchRows/max(1, s.fanout))
}

// FanOut returns the events per row of an evaluated batch (results holds
// each row's events), rounded up; at least 1.
func FanOut(results [][]*cdc.Event) int {
	n := 0
	for _, evs := range results {
		n += len(evs)
	}
	return max(1, (n+len(results)-1)/max(1, len(results)))
}

// CloneValues copies a row's values (nil stays NULL, empty stays empty)
// into one allocation, for rows kept beyond the receive buffer's life.
func CloneValues(vals [][]byte) [][]byte {
	size := 0
	for _, v := range vals {
		size += len(v)
	}
	buf := make([]byte, 0, size)
	cp := make([][]byte, len(vals))
	for i, v := range vals {
		if v != nil {
			start := len(buf)
			buf = append(buf, v...)
			cp[i] = buf[start:len(buf):len(buf)]
		}
	}
	return cp
}

// flush evaluates the pending rows (one MapBatch call) and submits their
// events, then any events left from an interrupted flush. conn may be nil
// (disconnected); otherwise status updates keep flowing while it waits.
func (s *Stream) flush(ctx context.Context, conn *pgconn.PgConn) error {
	if len(s.pending) > 0 {
		var chs []*Change
		for _, r := range s.pending {
			if r.ch != nil && r.missing < 0 {
				chs = append(chs, r.ch)
			}
		}
		var results [][]*cdc.Event
		if len(chs) > 0 {
			var err error
			if results, err = s.mapBatch(ctx, conn, chs); err != nil {
				return err
			}
			s.fanout = FanOut(results)
		}
		k := 0
		for _, r := range s.pending {
			var evs []*cdc.Event
			switch {
			case r.ch != nil && r.missing >= 0:
				ev := &cdc.Event{Pos: r.ch.Pos, Table: r.ch.Rel.QualifiedName(), IdempotencyKey: r.ch.IdempotencyKey,
					CommitTime: r.ch.CommitTime}
				rejectMissingTOAST(ev, r.ch.Rel, r.missing)
				evs = []*cdc.Event{ev}
			case r.ch != nil:
				evs = results[k]
				k++
			case r.ev != nil:
				evs = []*cdc.Event{r.ev}
			}
			s.tracker.Attach(r.seq, evs)
			s.ready = append(s.ready, evs...)
		}
		clear(s.pending)
		s.pending = s.pending[:0]
		s.pendingBytes = 0
	}
	for len(s.ready) > 0 {
		if err := s.submit(ctx, conn, s.ready[0]); err != nil {
			return err
		}
		s.ready[0] = nil
		s.ready = s.ready[1:]
	}
	s.ready = nil
	return nil
}

// mapBatch calls MapBatch until it succeeds or ctx ends, sending status
// updates while it evaluates and while it waits to retry, so that a slow
// transform never lets wal_sender_timeout drop the connection.
func (s *Stream) mapBatch(ctx context.Context, conn *pgconn.PgConn, chs []*Change) ([][]*cdc.Event, error) {
	var idle func() error
	if conn != nil {
		idle = func() error { return s.maybeSendStatus(conn) }
	}
	return MapBatchRetrying(ctx, s.cfg.Batch, chs, s.log, &s.transformFailing, s.statusIvl/2+time.Millisecond, idle)
}

// MapBatchRetrying calls b.MapBatch until it succeeds or ctx ends, waiting
// with backoff (200 ms to 10 s) between attempts and logging each failure;
// failing (may be nil) is true from the first failure to the return. While
// it evaluates or waits it calls idle at least every tick (nil: never); an
// error from idle ends the call (after the evaluation under way stopped).
func MapBatchRetrying(ctx context.Context, b BatchMapper, chs []*Change, log *zap.Logger, failing *atomic.Bool,
	tick time.Duration, idle func() error) ([][]*cdc.Event, error) {
	if failing != nil {
		defer failing.Store(false)
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 10 * time.Second
	bo.MaxElapsedTime = 0
	for {
		results, err, idleErr := mapBatchIdle(ctx, b, chs, tick, idle)
		if idleErr != nil {
			return nil, idleErr
		}
		if err == nil {
			return results, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if failing != nil {
			failing.Store(true)
		}
		wait := bo.NextBackOff()
		log.Warn("transform could not be evaluated; retrying (the rows wait, nothing is skipped)",
			zap.Int("rows", len(chs)), zap.Error(err), zap.Float64("retry_in_seconds", wait.Seconds()))
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			step := time.Until(deadline)
			if idle != nil {
				step = min(step, tick)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(step):
			}
			if idle != nil {
				if err := idle(); err != nil {
					return nil, err
				}
			}
		}
	}
}

type batchResult struct {
	events [][]*cdc.Event
	err    error
}

// mapBatchIdle runs one MapBatch, calling idle every tick meanwhile. When
// idle fails, the evaluation is cancelled and awaited (the BatchMapper is
// used by one caller at a time), and idle's error is returned as idleErr.
func mapBatchIdle(ctx context.Context, b BatchMapper, chs []*Change, tick time.Duration, idle func() error) (evs [][]*cdc.Event, err, idleErr error) {
	if idle == nil {
		evs, err = b.MapBatch(ctx, chs)
		return evs, err, nil
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan batchResult, 1)
	go func() {
		evs, err := b.MapBatch(actx, chs)
		done <- batchResult{evs, err}
	}()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case r := <-done:
			return r.events, r.err, nil
		case <-t.C:
			if err := idle(); err != nil {
				cancel()
				<-done
				return nil, nil, err
			}
		}
	}
}

// sessionError finishes a session after err from handling the stream: a
// stop that cancelled the work drains instead.
func (s *Stream) sessionError(ctx context.Context, conn *pgconn.PgConn, err error) error {
	if s.stopping() && errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return s.waitDrained(ctx, conn)
	}
	return err
}
