package checkpoint

import (
	"sync"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// Tracker computes the checkpoint: the contiguous prefix of handled events
// and the LSN the slot may be confirmed to.
//
// The stream calls Begin, Assign and Commit in stream order from one
// goroutine; the sink calls Done from any goroutine, in any order. An event is
// handled when OneSignal accepted it or its dead letter is durably written.
// The confirmable LSN is the end LSN of the last transaction all of whose
// events (and all events before them) are handled; when the tracker is idle
// (no open transaction, nothing pending) a keepalive's WAL end may be
// confirmed too (AdvanceIdle).
type Tracker struct {
	mu      sync.Mutex
	base    uint64         // seq of pending[0]
	next    uint64         // next seq to assign
	done    []bool         // done[i] is seq base+i
	pos     []cdc.Position // pos[i] is the position of seq base+i
	txns    []txnMark      // committed transactions not yet confirmable
	inTxn   bool           // between Begin and Commit
	handled cdc.Position   // position of the last event of the handled prefix
	confirm cdc.LSN        // confirmable LSN
	changed chan struct{}  // signalled (non-blocking) when handled or confirm advance
	durable uint64         // every seq < durable is in the durable checkpoint
	room    chan struct{}  // signalled when durable advances
	// saved is the watermark last stored durably (full mode), see
	// MarkSaved.
	saved cdc.Position
	// multi holds the seqs that need more than one Done (a row that became
	// several events): the number of Done calls still missing.
	multi map[uint64]int
}

type txnMark struct {
	endSeq uint64 // every seq < endSeq belongs to this or an earlier transaction
	end    cdc.LSN
}

// NewTracker returns a tracker whose handled prefix starts at resume (the
// stored watermark; zero for none) and whose confirmable LSN starts at
// confirmed.
func NewTracker(resume cdc.Position, confirmed cdc.LSN) *Tracker {
	return &Tracker{
		handled: resume,
		saved:   resume,
		confirm: confirmed,
		changed: make(chan struct{}, 1),
		room:    make(chan struct{}, 1),
		base:    1,
		next:    1,
		durable: 1,
	}
}

// Begin marks the start of a transaction.
func (t *Tracker) Begin() {
	t.mu.Lock()
	t.inTxn = true
	t.mu.Unlock()
}

// Abort forgets an open transaction whose stream was interrupted (the server
// sends it again after a reconnect). Its assigned events stay pending.
func (t *Tracker) Abort() {
	t.mu.Lock()
	t.inTxn = false
	t.mu.Unlock()
}

// Assign gives the event at pos its sequence number.
func (t *Tracker) Assign(pos cdc.Position) uint64 {
	t.mu.Lock()
	seq := t.next
	t.next++
	t.done = append(t.done, false)
	t.pos = append(t.pos, pos)
	t.mu.Unlock()
	return seq
}

// Commit marks the end of the current transaction, whose commit record ends
// at end.
func (t *Tracker) Commit(end cdc.LSN) {
	t.mu.Lock()
	t.inTxn = false
	t.txns = append(t.txns, txnMark{endSeq: t.next, end: end})
	advanced := t.advance()
	t.mu.Unlock()
	if advanced {
		t.signal()
	}
}

// Expect makes seq count as handled only after n calls of Done with it: the
// row it was assigned to became n events, which share the seq. Call it
// before any of them is submitted.
func (t *Tracker) Expect(seq uint64, n int) {
	if n <= 1 {
		return
	}
	t.mu.Lock()
	if t.multi == nil {
		t.multi = map[uint64]int{}
	}
	t.multi[seq] = n
	t.mu.Unlock()
}

// Attach gives evs, the events one row became, the row's seq: the row is
// handled at once when there are none, else once all are (Expect). Call it
// before any of them is submitted.
func (t *Tracker) Attach(seq uint64, evs []*cdc.Event) {
	if len(evs) == 0 {
		t.Done(seq)
		return
	}
	t.Expect(seq, len(evs))
	for _, ev := range evs {
		ev.Seq = seq
	}
}

// Done marks events handled. It may be called from any goroutine.
func (t *Tracker) Done(seqs ...uint64) {
	t.mu.Lock()
	for _, s := range seqs {
		if n, ok := t.multi[s]; ok {
			if n > 1 {
				t.multi[s] = n - 1
				continue
			}
			delete(t.multi, s)
		}
		if s >= t.base && s < t.next {
			t.done[s-t.base] = true
		}
	}
	advanced := t.advance()
	t.mu.Unlock()
	if advanced {
		t.signal()
	}
}

// advance moves the handled prefix and the confirmable LSN; t.mu is held.
func (t *Tracker) advance() bool {
	n := 0
	for n < len(t.done) && t.done[n] {
		n++
	}
	advanced := false
	if n > 0 {
		t.handled = t.pos[n-1]
		t.base += uint64(n)
		t.done = t.done[n:]
		t.pos = t.pos[n:]
		if cap(t.done) > 4096 && len(t.done) < cap(t.done)/4 {
			t.done = append([]bool(nil), t.done...)
			t.pos = append([]cdc.Position(nil), t.pos...)
		}
		advanced = true
	}
	m := 0
	for m < len(t.txns) && t.txns[m].endSeq <= t.base {
		if t.txns[m].end > t.confirm {
			t.confirm = t.txns[m].end
			advanced = true
		}
		m++
	}
	if m > 0 {
		t.txns = t.txns[m:]
	}
	return advanced
}

// AdvanceIdle confirms walEnd (from a keepalive) when nothing is pending and
// no transaction is open, so an idle event table does not pin WAL.
func (t *Tracker) AdvanceIdle(walEnd cdc.LSN) bool {
	t.mu.Lock()
	ok := !t.inTxn && len(t.done) == 0 && len(t.txns) == 0 && walEnd > t.confirm
	if ok {
		t.confirm = walEnd
	}
	t.mu.Unlock()
	if ok {
		t.signal()
	}
	return ok
}

// Checkpoint returns the position of the last event of the handled prefix
// and the confirmable LSN.
func (t *Tracker) Checkpoint() (cdc.Position, cdc.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.handled, t.confirm
}

// Watermark is Checkpoint plus the sequence number that ends the handled
// prefix (every seq below it is handled), to pass to MarkDurable.
func (t *Tracker) Watermark() (cdc.Position, cdc.LSN, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.handled, t.confirm, t.base
}

// MarkDurable records that every event below seq is in the durable
// checkpoint: a restart will not send them again.
func (t *Tracker) MarkDurable(seq uint64) {
	t.mu.Lock()
	advanced := seq > t.durable
	if advanced {
		t.durable = seq
	}
	t.mu.Unlock()
	if advanced {
		select {
		case t.room <- struct{}{}:
		default:
		}
	}
}

// MarkSaved records that the watermark pos is stored durably (full mode):
// a restart skips every event at or before it.
func (t *Tracker) MarkSaved(pos cdc.Position) {
	t.mu.Lock()
	if t.saved.Less(pos) {
		t.saved = pos
	}
	t.mu.Unlock()
}

// Saved returns the watermark last stored durably (MarkSaved).
func (t *Tracker) Saved() cdc.Position {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.saved
}

// Outstanding returns the number of assigned events that are not yet in the
// durable checkpoint: at most this many would be sent again after a crash.
// The stream keeps it below the configured bound.
func (t *Tracker) Outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(t.next - t.durable)
}

// Room is signalled when the durable checkpoint advances.
func (t *Tracker) Room() <-chan struct{} { return t.room }

// Pending returns the number of assigned events not yet in the handled prefix.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.done)
}

// Drained reports whether every assigned event is handled and every
// committed transaction is confirmable.
func (t *Tracker) Drained() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.done) == 0 && len(t.txns) == 0
}

// Changed is signalled when the checkpoint advances.
func (t *Tracker) Changed() <-chan struct{} { return t.changed }

func (t *Tracker) signal() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}
