package checkpoint

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

func pos(lsn cdc.LSN, ord uint32) cdc.Position { return cdc.Position{CommitLSN: lsn, Ordinal: ord} }

// checkpoint asserts the tracker's checkpoint.
func checkpoint(t *testing.T, tr *Tracker, wantPos cdc.Position, wantLSN cdc.LSN) {
	t.Helper()
	p, l := tr.Checkpoint()
	if p != wantPos || l != wantLSN {
		t.Fatalf("Checkpoint() = %v, %v; want %v, %v", p, l, wantPos, wantLSN)
	}
}

// signalled reports whether ch holds a signal, consuming it.
func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestTrackerStart(t *testing.T) {
	tr := NewTracker(pos(0x50, 2), 0x60)
	checkpoint(t, tr, pos(0x50, 2), 0x60)
	p, l, seq := tr.Watermark()
	if p != pos(0x50, 2) || l != 0x60 || seq != 1 {
		t.Errorf("Watermark() = %v, %v, %d; want 0/50#2, 0/60, 1", p, l, seq)
	}
	if tr.Pending() != 0 || tr.Outstanding() != 0 || !tr.Drained() {
		t.Errorf("new tracker: Pending %d, Outstanding %d, Drained %v; want 0, 0, true", tr.Pending(), tr.Outstanding(), tr.Drained())
	}
	if signalled(tr.Changed()) || signalled(tr.Room()) {
		t.Error("a new tracker is signalled")
	}
}

func TestTrackerSequenceNumbers(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	tr.Begin()
	for want := uint64(1); want <= 5; want++ {
		if got := tr.Assign(pos(0x100, uint32(want-1))); got != want {
			t.Fatalf("Assign #%d = %d", want, got)
		}
	}
	tr.Commit(0x110)
	tr.Begin()
	if got := tr.Assign(pos(0x200, 0)); got != 6 {
		t.Fatalf("Assign in the next transaction = %d, want 6", got)
	}
}

func TestTrackerOutOfOrderDone(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0x10)
	// T1: commit 0x100, end 0x110, three events.
	tr.Begin()
	s1 := tr.Assign(pos(0x100, 0))
	s2 := tr.Assign(pos(0x100, 1))
	s3 := tr.Assign(pos(0x100, 2))
	tr.Commit(0x110)
	// T2: commit 0x200, end 0x210, two events.
	tr.Begin()
	s4 := tr.Assign(pos(0x200, 0))
	s5 := tr.Assign(pos(0x200, 1))
	tr.Commit(0x210)
	signalled(tr.Changed())

	steps := []struct {
		done    []uint64
		pos     cdc.Position
		confirm cdc.LSN
		pending int
		changed bool
	}{
		{[]uint64{s5}, cdc.Position{}, 0x10, 5, false},        // later transaction first: nothing moves
		{[]uint64{s2, s3}, cdc.Position{}, 0x10, 5, false},    // the head is still missing
		{[]uint64{s1}, pos(0x100, 2), 0x110, 2, true},         // T1 complete; s4 and s5 are pending
		{[]uint64{s1, s2}, pos(0x100, 2), 0x110, 2, false},    // repeated Done is ignored
		{[]uint64{999}, pos(0x100, 2), 0x110, 2, false},       // unknown seq is ignored
		{[]uint64{s4}, pos(0x200, 1), 0x210, 0, true},         // everything handled
		{[]uint64{s4, s5, 0}, pos(0x200, 1), 0x210, 0, false}, // nothing left
	}
	for i, st := range steps {
		tr.Done(st.done...)
		p, l := tr.Checkpoint()
		if p != st.pos || l != st.confirm {
			t.Fatalf("step %d: Done(%v): Checkpoint() = %v, %v; want %v, %v", i, st.done, p, l, st.pos, st.confirm)
		}
		if got := tr.Pending(); got != st.pending {
			t.Errorf("step %d: Pending() = %d, want %d", i, got, st.pending)
		}
		if got := signalled(tr.Changed()); got != st.changed {
			t.Errorf("step %d: Changed signalled = %v, want %v", i, got, st.changed)
		}
	}
	if !tr.Drained() {
		t.Error("Drained() = false after every event was handled")
	}
}

func TestTrackerNeverConfirmsPartialTransaction(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	tr.Begin()
	a := tr.Assign(pos(0x100, 0))
	b := tr.Assign(pos(0x100, 1))
	tr.Commit(0x180)
	tr.Done(a)
	// The handled prefix moves to a, but the slot may not be confirmed to
	// the end of a transaction whose b is not handled.
	checkpoint(t, tr, pos(0x100, 0), 0)
	if tr.Drained() {
		t.Error("Drained() with b pending")
	}
	tr.Done(b)
	// The END LSN of the transaction, not its commit LSN.
	checkpoint(t, tr, pos(0x100, 1), 0x180)
}

func TestTrackerDoneBeforeCommit(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	tr.Begin()
	a := tr.Assign(pos(0x100, 0))
	tr.Done(a)
	// Handled, but the transaction is not committed yet: the slot stays.
	checkpoint(t, tr, pos(0x100, 0), 0)
	b := tr.Assign(pos(0x100, 1))
	tr.Done(b)
	checkpoint(t, tr, pos(0x100, 1), 0)
	signalled(tr.Changed())
	tr.Commit(0x120)
	checkpoint(t, tr, pos(0x100, 1), 0x120)
	if !signalled(tr.Changed()) {
		t.Error("Commit of a handled transaction did not signal Changed")
	}
}

func TestTrackerEmptyTransactions(t *testing.T) {
	tr := NewTracker(pos(0x10, 0), 0x20)
	// An empty transaction (no published rows) is confirmable at once.
	tr.Begin()
	tr.Commit(0x100)
	checkpoint(t, tr, pos(0x10, 0), 0x100)
	if !signalled(tr.Changed()) {
		t.Error("empty transaction did not signal Changed")
	}

	// Behind a pending transaction it waits for it.
	tr.Begin()
	a := tr.Assign(pos(0x200, 0))
	tr.Commit(0x210)
	tr.Begin()
	tr.Commit(0x300)
	tr.Begin()
	tr.Commit(0x400)
	checkpoint(t, tr, pos(0x10, 0), 0x100)
	tr.Done(a)
	checkpoint(t, tr, pos(0x200, 0), 0x400)
	if !tr.Drained() {
		t.Error("not drained")
	}
}

func TestTrackerConfirmNeverGoesBack(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0x500)
	tr.Begin()
	a := tr.Assign(pos(0x100, 0))
	tr.Commit(0x110) // an end below the stored confirmed LSN
	tr.Done(a)
	checkpoint(t, tr, pos(0x100, 0), 0x500)
}

func TestTrackerAdvanceIdle(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0x100)
	if !tr.AdvanceIdle(0x200) {
		t.Fatal("AdvanceIdle refused on an idle tracker")
	}
	checkpoint(t, tr, cdc.Position{}, 0x200)
	if !signalled(tr.Changed()) {
		t.Error("AdvanceIdle did not signal Changed")
	}
	for _, lsn := range []cdc.LSN{0x200, 0x1ff, 0} {
		if tr.AdvanceIdle(lsn) {
			t.Errorf("AdvanceIdle(%v) accepted a WAL end not beyond the confirmed %v", lsn, cdc.LSN(0x200))
		}
	}
	checkpoint(t, tr, cdc.Position{}, 0x200)
	if signalled(tr.Changed()) {
		t.Error("a refused AdvanceIdle signalled Changed")
	}

	// Mid-transaction: refused, even with nothing assigned yet.
	tr.Begin()
	if tr.AdvanceIdle(0x300) {
		t.Error("AdvanceIdle accepted mid-transaction")
	}
	a := tr.Assign(pos(0x400, 0))
	if tr.AdvanceIdle(0x300) {
		t.Error("AdvanceIdle accepted mid-transaction with an event")
	}
	tr.Commit(0x410)
	// Committed but pending: refused.
	if tr.AdvanceIdle(0x500) {
		t.Error("AdvanceIdle accepted with a pending event")
	}
	checkpoint(t, tr, cdc.Position{}, 0x200)
	tr.Done(a)
	checkpoint(t, tr, pos(0x400, 0), 0x410)
	if !tr.AdvanceIdle(0x500) {
		t.Error("AdvanceIdle refused once idle again")
	}
	checkpoint(t, tr, pos(0x400, 0), 0x500)
}

func TestTrackerAdvanceIdleWithDoneUncommitted(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	tr.Begin()
	a := tr.Assign(pos(0x100, 0))
	tr.Done(a)
	// Everything assigned is handled, but the transaction is open.
	if tr.AdvanceIdle(0x200) {
		t.Error("AdvanceIdle accepted in an open transaction whose events are handled")
	}
	checkpoint(t, tr, pos(0x100, 0), 0)
}

func TestTrackerAbortThenResend(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0x10)
	tr.Begin()
	a := tr.Assign(pos(0x100, 0))
	b := tr.Assign(pos(0x100, 1))
	// The connection drops before the commit arrives.
	tr.Abort()
	if tr.Pending() != 2 || tr.Drained() {
		t.Fatalf("after Abort: Pending %d, Drained %v; want 2, false", tr.Pending(), tr.Drained())
	}
	// Nothing may be confirmed while the aborted events are pending.
	if tr.AdvanceIdle(0x50) {
		t.Error("AdvanceIdle accepted with the aborted transaction's events pending")
	}
	tr.Done(a, b)
	checkpoint(t, tr, pos(0x100, 1), 0x10)
	// The server sends the transaction again: the stream skips the rows it
	// handed on (a, b) and assigns the rest.
	tr.Begin()
	c := tr.Assign(pos(0x100, 2))
	tr.Commit(0x120)
	checkpoint(t, tr, pos(0x100, 1), 0x10)
	tr.Done(c)
	checkpoint(t, tr, pos(0x100, 2), 0x120)
	if !tr.Drained() {
		t.Error("not drained")
	}
}

func TestTrackerAbortKeepsEventsPendingUntilDone(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	tr.Begin()
	a := tr.Assign(pos(0x100, 0))
	tr.Abort()
	tr.Begin()
	b := tr.Assign(pos(0x100, 1))
	tr.Commit(0x110)
	tr.Done(b)
	checkpoint(t, tr, cdc.Position{}, 0)
	tr.Done(a)
	checkpoint(t, tr, pos(0x100, 1), 0x110)
}

func TestTrackerDurable(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	tr.Begin()
	for i := uint32(0); i < 5; i++ {
		tr.Assign(pos(0x100, i))
	}
	tr.Commit(0x110)
	if got := tr.Outstanding(); got != 5 {
		t.Fatalf("Outstanding() = %d, want 5", got)
	}
	tr.Done(1, 2, 3)
	p, l, seq := tr.Watermark()
	if p != pos(0x100, 2) || l != 0 || seq != 4 {
		t.Fatalf("Watermark() = %v, %v, %d; want 0/100#2, 0/0, 4", p, l, seq)
	}
	// Handled is not durable: Outstanding counts until MarkDurable.
	if got := tr.Outstanding(); got != 5 {
		t.Errorf("Outstanding() = %d after Done, want 5", got)
	}
	if signalled(tr.Room()) {
		t.Error("Room signalled before MarkDurable")
	}
	tr.MarkDurable(seq)
	if got := tr.Outstanding(); got != 2 {
		t.Errorf("Outstanding() = %d after MarkDurable(4), want 2", got)
	}
	if !signalled(tr.Room()) {
		t.Error("MarkDurable did not signal Room")
	}
	// Going back or standing still neither changes nor signals anything.
	for _, s := range []uint64{4, 2, 0} {
		tr.MarkDurable(s)
		if got := tr.Outstanding(); got != 2 {
			t.Errorf("Outstanding() = %d after MarkDurable(%d), want 2", got, s)
		}
		if signalled(tr.Room()) {
			t.Errorf("MarkDurable(%d) signalled Room", s)
		}
	}
	tr.Done(4, 5)
	_, l, seq = tr.Watermark()
	if l != 0x110 || seq != 6 {
		t.Fatalf("Watermark() confirm %v seq %d; want 0/110, 6", l, seq)
	}
	tr.MarkDurable(seq)
	if got := tr.Outstanding(); got != 0 {
		t.Errorf("Outstanding() = %d, want 0", got)
	}
}

func TestTrackerSignalsDoNotBlock(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	// Nobody reads Changed or Room: the tracker must not block.
	for i := 0; i < 100; i++ {
		tr.Begin()
		s := tr.Assign(pos(cdc.LSN(0x100*(i+1)), 0))
		tr.Commit(cdc.LSN(0x100*(i+1) + 0x10))
		tr.Done(s)
		tr.MarkDurable(s + 1)
		tr.AdvanceIdle(cdc.LSN(0x100*(i+1) + 0x20))
	}
	checkpoint(t, tr, pos(0x6400, 0), 0x6420)
	if !signalled(tr.Changed()) || signalled(tr.Changed()) {
		t.Error("Changed should hold exactly one pending signal")
	}
	if !signalled(tr.Room()) || signalled(tr.Room()) {
		t.Error("Room should hold exactly one pending signal")
	}
}

func TestTrackerConcurrentDone(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	const txns, per = 50, 40
	var seqs []uint64
	for i := 0; i < txns; i++ {
		tr.Begin()
		for j := 0; j < per; j++ {
			seqs = append(seqs, tr.Assign(pos(cdc.LSN(i+1)<<8, uint32(j))))
		}
		tr.Commit(cdc.LSN(i+1)<<8 | 0x80)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := w; i < len(seqs); i += 8 {
				tr.Done(seqs[i])
			}
		})
	}
	wg.Wait()
	checkpoint(t, tr, pos(txns<<8, per-1), txns<<8|0x80)
	if !tr.Drained() || tr.Pending() != 0 {
		t.Errorf("Drained %v, Pending %d", tr.Drained(), tr.Pending())
	}
}

// trackerModel is the reference: the checkpoint recomputed from scratch.
type trackerModel struct {
	resume    cdc.Position
	confirmed cdc.LSN
	events    []cdc.Position // by seq-1
	done      []bool
	txns      []modelTxn // committed, in order
	open      bool
	idleLSN   cdc.LSN // highest accepted AdvanceIdle
}

type modelTxn struct {
	end    cdc.LSN
	endSeq uint64 // events with seq < endSeq belong to it or earlier ones
}

func (m *trackerModel) checkpoint() (cdc.Position, cdc.LSN) {
	p := m.resume
	n := 0
	for n < len(m.done) && m.done[n] {
		p = m.events[n]
		n++
	}
	c := max(m.confirmed, m.idleLSN)
	for _, tx := range m.txns {
		if tx.endSeq-1 <= uint64(n) {
			c = max(c, tx.end)
		}
	}
	return p, c
}

// idle reports whether the model allows AdvanceIdle: no open transaction,
// every event handled and every committed transaction confirmable.
func (m *trackerModel) idle() bool {
	if m.open {
		return false
	}
	for _, d := range m.done {
		if !d {
			return false
		}
	}
	return true
}

func TestTrackerRandomizedAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		resume := pos(cdc.LSN(rng.IntN(3)), uint32(rng.IntN(2)))
		confirmed := cdc.LSN(rng.IntN(3))
		tr := NewTracker(resume, confirmed)
		m := &trackerModel{resume: resume, confirmed: confirmed}
		lsn := cdc.LSN(0x100)
		var commitLSN cdc.LSN
		var ord uint32
		var undone []uint64
		prevPos, prevLSN := tr.Checkpoint()
		for step := 0; step < 200; step++ {
			var op string
			switch r := rng.IntN(100); {
			case !m.open && r < 20:
				op = "begin"
				lsn += cdc.LSN(1 + rng.IntN(0x100))
				commitLSN, ord = lsn, 0
				tr.Begin()
				m.open = true
			case m.open && r < 45:
				op = "assign"
				p := pos(commitLSN, ord)
				ord++
				seq := tr.Assign(p)
				if want := uint64(len(m.events) + 1); seq != want {
					t.Fatalf("seed %d step %d: Assign = %d, want %d", seed, step, seq, want)
				}
				m.events = append(m.events, p)
				m.done = append(m.done, false)
				undone = append(undone, seq)
			case m.open && r < 60:
				op = "commit"
				end := commitLSN + cdc.LSN(1+rng.IntN(0x20))
				lsn = end
				tr.Commit(end)
				m.open = false
				m.txns = append(m.txns, modelTxn{end: end, endSeq: uint64(len(m.events) + 1)})
			case m.open && r < 63:
				// Abort: the stream reconnects and the server sends the
				// same transaction again; handed-on rows are skipped, so
				// the resent transaction continues at the same ordinal.
				op = "abort+resend"
				tr.Abort()
				tr.Begin()
			case len(undone) > 0 && r < 90:
				op = "done"
				k := 1 + rng.IntN(min(4, len(undone)))
				var seqs []uint64
				for i := 0; i < k; i++ {
					j := rng.IntN(len(undone))
					seqs = append(seqs, undone[j])
					m.done[undone[j]-1] = true
					undone = append(undone[:j], undone[j+1:]...)
				}
				if rng.IntN(5) == 0 && len(seqs) > 0 {
					seqs = append(seqs, seqs[0]) // a duplicate Done
				}
				tr.Done(seqs...)
			default:
				op = "advance-idle"
				walEnd := lsn + cdc.LSN(rng.IntN(0x40))
				_, before := m.checkpoint()
				want := m.idle() && walEnd > before
				if got := tr.AdvanceIdle(walEnd); got != want {
					t.Fatalf("seed %d step %d: AdvanceIdle(%v) = %v, want %v", seed, step, walEnd, got, want)
				}
				if want {
					m.idleLSN = walEnd
					lsn = walEnd // later transactions commit beyond it
				}
			}
			wantPos, wantLSN := m.checkpoint()
			gotPos, gotLSN := tr.Checkpoint()
			if gotPos != wantPos || gotLSN != wantLSN {
				t.Fatalf("seed %d step %d (%s): Checkpoint() = %v, %v; model %v, %v", seed, step, op, gotPos, gotLSN, wantPos, wantLSN)
			}
			// Changed is signalled exactly when the checkpoint moved.
			moved := gotPos != prevPos || gotLSN != prevLSN
			if got := signalled(tr.Changed()); got != moved {
				t.Fatalf("seed %d step %d (%s): Changed signalled = %v, checkpoint moved = %v", seed, step, op, got, moved)
			}
			prevPos, prevLSN = gotPos, gotLSN
			if m.open && gotLSN > commitLSN {
				t.Fatalf("seed %d step %d: confirm %v is beyond the commit LSN %v of the open transaction", seed, step, gotLSN, commitLSN)
			}
			// The invariant: the confirmable LSN never covers a
			// transaction with an unhandled event.
			for i, tx := range m.txns {
				for s := uint64(1); s < tx.endSeq; s++ {
					if !m.done[s-1] && gotLSN >= tx.end {
						t.Fatalf("seed %d step %d: confirm %v covers transaction %d (end %v) whose seq %d is not handled", seed, step, gotLSN, i, tx.end, s)
					}
				}
			}
			if got := tr.Pending(); got != pendingCount(m.done) {
				t.Fatalf("seed %d step %d: Pending() = %d, want %d", seed, step, got, pendingCount(m.done))
			}
			_, _, wseq := tr.Watermark()
			if want := uint64(len(m.done)-pendingCount(m.done)) + 1; wseq != want {
				t.Fatalf("seed %d step %d: Watermark seq = %d, want %d", seed, step, wseq, want)
			}
		}
	}
}

// pendingCount is the number of events after the handled prefix.
func pendingCount(done []bool) int {
	n := 0
	for n < len(done) && done[n] {
		n++
	}
	return len(done) - n
}

// A row that became three events (Expect) is handled only after its third
// Done; the prefix and the transaction's confirmation wait for it.
func TestTrackerExpectSeveralEvents(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	tr.Begin()
	a := tr.Assign(pos(0x10, 0))
	b := tr.Assign(pos(0x10, 1))
	tr.Expect(b, 3)
	tr.Expect(a, 1) // one event: nothing to count
	tr.Commit(0x20)
	tr.Done(a, b)
	checkpoint(t, tr, pos(0x10, 0), 0)
	tr.Done(b)
	checkpoint(t, tr, pos(0x10, 0), 0)
	tr.Done(b)
	checkpoint(t, tr, pos(0x10, 1), 0x20)
	if !tr.Drained() {
		t.Error("not drained after every event was handled")
	}
	// A Done beyond the expected count changes nothing.
	tr.Done(b)
	checkpoint(t, tr, pos(0x10, 1), 0x20)
}

// Attach: a row with no events is handled at once; one with several is
// handled after all, and each carries the row's seq.
func TestTrackerAttach(t *testing.T) {
	tr := NewTracker(cdc.Position{}, 0)
	a, b := tr.Assign(pos(0x10, 0)), tr.Assign(pos(0x10, 1))
	tr.Attach(a, nil)
	checkpoint(t, tr, pos(0x10, 0), 0)
	evs := []*cdc.Event{{}, {}}
	tr.Attach(b, evs)
	if evs[0].Seq != b || evs[1].Seq != b {
		t.Fatalf("seqs %d, %d; want %d", evs[0].Seq, evs[1].Seq, b)
	}
	tr.Done(b)
	checkpoint(t, tr, pos(0x10, 0), 0)
	tr.Done(b)
	checkpoint(t, tr, pos(0x10, 1), 0)
}
