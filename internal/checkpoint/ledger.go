package checkpoint

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// ledgerInterval is the shortest time between two writes of the ledger:
// acceptances that arrive meanwhile are written together.
const ledgerInterval = 10 * time.Millisecond

// ledgerTrimInterval is how often the ledger is looked at for ranges the
// watermark passed when nothing new was accepted.
const ledgerTrimInterval = 500 * time.Millisecond

// ledgerWriteTimeout bounds one write of the ledger.
const ledgerWriteTimeout = 10 * time.Second

// Range is one entry of the delivery ledger: every event of lane Lane (of
// Lanes lanes, see cdc.Lane) whose position is in [From, To] and whose
// commit was written on Timeline is handled (OneSignal accepted it, or its
// dead letter is durable). Events counts the events the range records.
//
// A lane hands its events to OneSignal one batch at a time in commit order
// and reports them handled in that order, so what one lane has handled since
// the start of a run is one range: the ledger is a few ranges per lane,
// whatever the number of events.
type Range struct {
	Timeline uint32       `json:"timeline"`
	Lanes    int          `json:"lanes"`
	Lane     int          `json:"lane"`
	From     cdc.Position `json:"from"`
	To       cdc.Position `json:"to"`
	Events   int64        `json:"events"`
}

// covers reports whether r records the event ev of lane lane.
func (r Range) covers(lane int, ev *cdc.Event) bool {
	return r.Lane == lane && r.Timeline == ev.Timeline && !ev.Pos.Less(r.From) && !r.To.Less(ev.Pos)
}

// LedgerStore keeps the delivery ledger durably: internal/store's
// LedgerTable in full mode, a section of source.state_file in read-only
// mode (StateFileLedger).
type LedgerStore interface {
	// Load returns the stored ranges.
	Load(ctx context.Context) ([]Range, error)
	// Write durably replaces the stored ranges with ranges.
	Write(ctx context.Context, ranges []Range) error
}

// LedgerStats is what the ledger holds and did, for metrics and status.
type LedgerStats struct {
	// Ranges and Events are the ranges last written and the events they
	// record.
	Ranges int
	Events int64
	// Skipped is the events this run did not send because the ledger of an
	// earlier run had them.
	Skipped uint64
	// Writes and WriteFailures count the ledger's writes.
	Writes, WriteFailures uint64
	// Failing is set while the last write failed.
	Failing bool
}

// Ledger is the delivery ledger: what OneSignal accepted above the durable
// watermark, recorded as it is accepted, so that a restart does not send it
// again; a crash resends only the requests in flight at that instant.
//
// The sink reports each handled batch with Record (sink.Config.OnHandled);
// Run writes the ledger (at most one small write every ledgerInterval) and
// trims the ranges the durable watermark passed. The stream asks Covers for
// every event it is about to submit: an event an earlier run's ledger
// records is handled without being sent.
//
// The ledger only ever saves work: acceptance by OneSignal is what makes an
// event handled for the checkpoint, so a ledger write that is lost or fails
// costs a resend (absorbed by idempotency keys within OneSignal's window),
// never an event. A failing write is logged and counted; nothing waits for
// it.
type Ledger struct {
	store   LedgerStore
	lanes   int
	log     *zap.Logger
	durable func() (cdc.Position, cdc.LSN)

	// old is the earlier runs' ledger, read-only after NewLedger; oldMax is
	// the highest position it records.
	old     []Range
	oldMax  cdc.Position
	skipped atomic.Uint64
	passed  atomic.Bool
	// OnPassed, when set, is called once, from the stream, when it passed
	// every position of the earlier runs' ledger, with the events skipped.
	OnPassed func(skipped uint64)

	mu     sync.Mutex
	cur    []*Range // per lane: the range this run's lane is extending
	closed []Range  // this run's ranges that ended (timeline change, backfill)
	signal chan struct{}

	wmu      sync.Mutex // serializes writes
	written  []Range
	ranges   atomic.Int64
	events   atomic.Int64
	writes   atomic.Uint64
	failures atomic.Uint64
	failing  atomic.Bool
}

// NewLedger loads the ledger from store for a sink of lanes lanes. durable
// returns the durable watermark: the stored position (full mode; zero in
// read-only mode) and the LSN the slot was confirmed to; a range below
// either is trimmed. A ledger that cannot be read is an error: starting
// without it would resend what it records.
func NewLedger(ctx context.Context, store LedgerStore, lanes int, durable func() (cdc.Position, cdc.LSN), log *zap.Logger) (*Ledger, error) {
	if log == nil {
		log = zap.NewNop()
	}
	l := &Ledger{store: store, lanes: max(lanes, 1), log: log, durable: durable,
		cur: make([]*Range, max(lanes, 1)), signal: make(chan struct{}, 1)}
	ranges, err := store.Load(ctx)
	if err != nil {
		return nil, err
	}
	l.written = ranges
	for _, r := range ranges {
		if r.Lanes != l.lanes || r.Lane < 0 || r.Lane >= l.lanes {
			continue // written with another sink.concurrency: its lanes mean nothing now
		}
		l.old = append(l.old, r)
		if l.oldMax.Less(r.To) {
			l.oldMax = r.To
		}
	}
	l.old = l.trim(l.old)
	var n int64
	for _, r := range ranges {
		n += r.Events
	}
	l.ranges.Store(int64(len(ranges)))
	l.events.Store(n)
	if len(l.old) == 0 {
		l.passed.Store(true)
	}
	return l, nil
}

// Covers reports whether an earlier run's ledger records ev (the stream has
// set its Pos and Timeline): it was handled before the restart and is not
// sent again. It is called from the stream's goroutine only.
func (l *Ledger) Covers(ev *cdc.Event) bool {
	if l == nil || l.passed.Load() {
		return false
	}
	if l.oldMax.Less(ev.Pos) {
		l.passed.Store(true)
		n := l.skipped.Load()
		l.log.Info("passed the delivery ledger: events OneSignal had accepted before the restart were not sent again",
			zap.Uint64("skipped", n), zap.Stringer("ledger_end", l.oldMax))
		if l.OnPassed != nil {
			l.OnPassed(n)
		}
		return false
	}
	lane := cdc.Lane(ev.ExternalID, l.lanes)
	for _, r := range l.old {
		if r.covers(lane, ev) {
			l.skipped.Add(1)
			return true
		}
	}
	return false
}

// Record records that lane handled evs, in order (sink.Config.OnHandled).
// It never blocks on the store.
func (l *Ledger) Record(lane int, evs []*cdc.Event) {
	if lane < 0 || lane >= len(l.cur) || len(evs) == 0 {
		return
	}
	l.mu.Lock()
	r := l.cur[lane]
	for _, ev := range evs {
		if r != nil && r.Timeline != ev.Timeline {
			l.closed = append(l.closed, *r)
			r = nil
		}
		if ev.Timeline == 0 {
			continue // not from the stream (a backfill): not recorded, and a range does not span it
		}
		if r == nil {
			r = &Range{Timeline: ev.Timeline, Lanes: l.lanes, Lane: lane, From: ev.Pos}
		}
		r.To = ev.Pos
		r.Events++
	}
	l.cur[lane] = r
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// trim drops the ranges the durable watermark passed.
func (l *Ledger) trim(rs []Range) []Range {
	if l.durable == nil {
		return rs
	}
	pos, lsn := l.durable()
	return slices.DeleteFunc(rs, func(r Range) bool {
		return !pos.Less(r.To) || r.To.CommitLSN < lsn
	})
}

// snapshot returns the ranges to write, trimmed.
func (l *Ledger) snapshot() []Range {
	pos, lsn := cdc.Position{}, cdc.LSN(0)
	if l.durable != nil {
		pos, lsn = l.durable()
	}
	passed := func(r *Range) bool { return !pos.Less(r.To) || r.To.CommitLSN < lsn }
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = slices.DeleteFunc(l.closed, func(r Range) bool { return passed(&r) })
	out := make([]Range, 0, len(l.old)+len(l.closed)+len(l.cur))
	for _, r := range l.old {
		if !passed(&r) {
			out = append(out, r)
		}
	}
	out = append(out, l.closed...)
	for i, r := range l.cur {
		if r == nil {
			continue
		}
		if passed(r) {
			l.cur[i] = nil // the lane's next event starts a new range
			continue
		}
		out = append(out, *r)
	}
	return out
}

// Run writes the ledger as events are recorded and trims it as the
// watermark advances, until ctx ends. Call Flush after it returned for the
// last write.
func (l *Ledger) Run(ctx context.Context) {
	trim := time.NewTicker(ledgerTrimInterval)
	defer trim.Stop()
	var wait time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.signal:
		case <-trim.C:
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		start := time.Now()
		// The write is not cut short when ctx ends (it has its own
		// timeout): cancelled midway, it could still commit after the
		// final write that follows Run (Flush), and leave its ranges.
		if err := l.Flush(context.WithoutCancel(ctx)); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = min(max(2*wait, time.Second), 30*time.Second)
			continue
		}
		wait = max(ledgerInterval-time.Since(start), 0)
	}
}

// Flush writes the ledger now when it changed since the last write. A
// failed write is logged (once per failing spell), counted and returned.
func (l *Ledger) Flush(ctx context.Context) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	rs := l.snapshot()
	// After a failed write the store may hold it or not (a write that
	// timed out can still commit): write again even what looks unchanged.
	if !l.failing.Load() && slices.Equal(rs, l.written) {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, ledgerWriteTimeout)
	err := l.store.Write(wctx, rs)
	cancel()
	if err != nil {
		l.failures.Add(1)
		if !l.failing.Swap(true) && ctx.Err() == nil {
			l.log.Warn("writing the delivery ledger failed; retrying. No event is lost, but until it is written a crash sends again what OneSignal accepted above the checkpoint",
				zap.Error(err), zap.String("fix", "make the ledger's store writable: <schema>.delivered in full mode (connection, permissions, disk space), source.state_file in read-only mode (directory, permissions, disk space)"))
		}
		return err
	}
	if l.failing.Swap(false) {
		l.log.Info("delivery ledger written again")
	}
	l.writes.Add(1)
	l.written = rs
	var n int64
	for _, r := range rs {
		n += r.Events
	}
	l.ranges.Store(int64(len(rs)))
	l.events.Store(n)
	return nil
}

// Stats returns what the ledger holds and did.
func (l *Ledger) Stats() LedgerStats {
	if l == nil {
		return LedgerStats{}
	}
	return LedgerStats{Ranges: int(l.ranges.Load()), Events: l.events.Load(), Skipped: l.skipped.Load(),
		Writes: l.writes.Load(), WriteFailures: l.failures.Load(), Failing: l.failing.Load()}
}
