package sink

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestSinkIdleLaneSendsAtOnceAndBatchesWhileBusy: with the default linger
// (0), an event that finds its lane idle is sent alone at once, and what
// arrives while that request is in flight goes out together in the next
// one, without waiting for a timer.
func TestSinkIdleLaneSendsAtOnceAndBatchesWhileBusy(t *testing.T) {
	inFlight := make(chan struct{}, 1)
	release := make(chan struct{})
	first := true
	gate := funcSender{send: func(ctx context.Context, _ []byte) (Result, error) {
		if first { // one lane: Sends never overlap
			first = false
			inFlight <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
		}
		return Result{}, nil
	}}
	rec := &recordingSender{next: gate}
	// Linger left at 0 (the default); a batch size far above what is sent.
	s, h := startSink(t, Config{BatchSize: 100, Concurrency: 1}, rec, nil)
	submit(t, s, newEvent(1, "u", 0))
	select {
	case <-inFlight: // the first event went out alone, before any other arrived
	case <-time.After(10 * time.Second):
		t.Fatal("the first event was not sent")
	}
	for seq := uint64(2); seq <= 6; seq++ {
		submit(t, s, newEvent(seq, "u", 0))
	}
	close(release)
	exactlyOnce(t, h.wait(t, 6, 10*time.Second), seqRange(1, 6))
	var sizes []int
	for _, r := range rec.requests() {
		sizes = append(sizes, r.events)
	}
	if !slices.Equal(sizes, []int{1, 5}) {
		t.Errorf("requests carried %v events, want [1 5]", sizes)
	}
}

// TestSinkZeroLingerIsNotTheOldDefault: Linger 0 (sink.linger: 0s, the
// default) means no wait; it used to be replaced by a 20 ms default, so that
// "0s" in the configuration still lingered 20 ms.
func TestSinkZeroLingerIsNotTheOldDefault(t *testing.T) {
	s := New(Config{Linger: 0}, funcSender{}, nil, func(...uint64) {})
	if s.cfg.Linger != 0 {
		t.Errorf("Linger 0 became %v", s.cfg.Linger)
	}
	s = New(Config{Linger: -time.Second}, funcSender{}, nil, func(...uint64) {})
	if s.cfg.Linger != 0 {
		t.Errorf("a negative Linger became %v, want 0", s.cfg.Linger)
	}
}
