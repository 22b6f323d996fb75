package sink

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/config/defaults"
)

// TestSinkIdleLaneSendsAtOnceAndBatchesWhileBusy: with the default linger
// (5 ms), an event that finds its lane idle is sent alone at once, and what
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
	// A batch size far above what is sent.
	s, h := startSink(t, Config{BatchSize: 100, Linger: defaults.Linger, Concurrency: 1}, rec, nil)
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

// TestSinkZeroLingerMeansNoWait: Linger 0 (sink.linger: 0s) is kept as no
// pacing at all; the sink used to replace it by 20 ms, so that "0s" in the
// configuration still lingered.
func TestSinkZeroLingerMeansNoWait(t *testing.T) {
	for _, in := range []time.Duration{0, -time.Second} {
		if s := New(Config{Linger: in}, funcSender{}, nil, func(...uint64) {}); s.cfg.Linger != 0 {
			t.Errorf("Linger %v became %v, want 0", in, s.cfg.Linger)
		}
	}
}

// TestSinkPacesABusyLane: the events that arrive while a request is in
// flight go together in the next request, which starts no sooner than
// Linger after the previous one.
func TestSinkPacesABusyLane(t *testing.T) {
	const linger = 300 * time.Millisecond
	inFlight := make(chan struct{}, 1)
	release := make(chan struct{})
	first := true
	gate := funcSender{send: func(ctx context.Context, _ []byte) (Result, error) {
		if first {
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
	s, h := startSink(t, Config{BatchSize: 100, Linger: linger, Concurrency: 1}, rec, nil)
	submit(t, s, newEvent(1, "u", 0))
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("the first event was not sent")
	}
	for seq := uint64(2); seq <= 4; seq++ {
		submit(t, s, newEvent(seq, "u", 0))
	}
	close(release)
	exactlyOnce(t, h.wait(t, 4, 10*time.Second), seqRange(1, 4))
	reqs := rec.requests()
	if len(reqs) != 2 || reqs[0].events != 1 || reqs[1].events != 3 {
		t.Fatalf("requests %+v, want one of 1 event and one of 3", reqs)
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < linger {
		t.Errorf("the second request started %v after the first, want at least the linger (%v)", gap, linger)
	}
}

// TestSinkPacesAContinuouslyBusyLaneLonger: once two requests in a row
// ended with events already waiting, the lane waits 4 × Linger between
// partial batches (a sustained stream makes larger requests).
func TestSinkPacesAContinuouslyBusyLaneLonger(t *testing.T) {
	const linger = 100 * time.Millisecond
	inFlight := make(chan struct{})
	release := make(chan struct{})
	gate := funcSender{send: func(ctx context.Context, _ []byte) (Result, error) {
		select {
		case inFlight <- struct{}{}:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		select {
		case <-release:
			return Result{}, nil
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}}
	rec := &recordingSender{next: gate}
	s, h := startSink(t, Config{BatchSize: 100, Linger: linger, Concurrency: 1}, rec, nil)
	waitInFlight := func() {
		t.Helper()
		select {
		case <-inFlight:
		case <-time.After(10 * time.Second):
			t.Fatal("no request was sent")
		}
	}
	// Each request is held until the next event is queued: every one ends
	// with an event waiting.
	for seq := uint64(1); seq <= 3; seq++ {
		submit(t, s, newEvent(seq, "u", 0))
		if seq > 1 {
			release <- struct{}{}
		}
		waitInFlight()
	}
	release <- struct{}{}
	exactlyOnce(t, h.wait(t, 3, 10*time.Second), seqRange(1, 3))
	reqs := rec.requests()
	if len(reqs) != 3 {
		t.Fatalf("requests %+v, want 3 of one event", reqs)
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < linger {
		t.Errorf("second request %v after the first, want at least %v", gap, linger)
	}
	if gap := reqs[2].at.Sub(reqs[1].at); gap < heavyPace*linger {
		t.Errorf("third request %v after the second, want at least %v", gap, heavyPace*linger)
	}
}

// TestSinkPacesLongerWhileTheSourceReadsABacklog: while the source reports a
// backlog, a lane waits 4 × Linger between partial batches from the first.
func TestSinkPacesLongerWhileTheSourceReadsABacklog(t *testing.T) {
	const linger = 100 * time.Millisecond
	inFlight := make(chan struct{}, 1)
	release := make(chan struct{})
	first := true
	gate := funcSender{send: func(ctx context.Context, _ []byte) (Result, error) {
		if first {
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
	s, h := startSink(t, Config{BatchSize: 100, Linger: linger, Concurrency: 1}, rec, nil)
	s.SetBacklog(true)
	submit(t, s, newEvent(1, "u", 0))
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("the first event was not sent")
	}
	submit(t, s, newEvent(2, "u", 0), newEvent(3, "u", 0))
	close(release)
	exactlyOnce(t, h.wait(t, 3, 10*time.Second), seqRange(1, 3))
	reqs := rec.requests()
	if len(reqs) != 2 || reqs[0].events != 1 || reqs[1].events != 2 {
		t.Fatalf("requests %+v, want one of 1 event and one of 2", reqs)
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < heavyPace*linger {
		t.Errorf("the second request started %v after the first, want at least %v", gap, heavyPace*linger)
	}
}

// TestSinkHoldsAnIdleLaneUntilTheSourceFlushes: with a source that calls
// Flush (the replication stream, before each read of the network), an idle
// lane holds the events of the read being handled until its end, so that a
// transaction's rows leave in one request rather than the first alone and
// the rest a Linger later; without the Flush it sends after Linger.
func TestSinkHoldsAnIdleLaneUntilTheSourceFlushes(t *testing.T) {
	const linger = 2 * time.Second
	ok := funcSender{send: func(context.Context, []byte) (Result, error) { return Result{}, nil }}
	rec := &recordingSender{next: ok}
	s, h := startSink(t, Config{BatchSize: 100, Linger: linger, Concurrency: 1}, rec, nil)
	time.Sleep(linger + 100*time.Millisecond) // past the start's pacing
	s.Flush()                                 // the source flushes: the sink holds from now on

	submit(t, s, newEvent(1, "u", 0), newEvent(2, "u", 0), newEvent(3, "u", 0))
	time.Sleep(300 * time.Millisecond)
	if n := len(rec.requests()); n != 0 {
		t.Fatalf("%d requests before the source flushed, want 0 (the lane holds the read's events)", n)
	}
	flushed := time.Now()
	s.Flush()
	exactlyOnce(t, h.wait(t, 3, 10*time.Second), seqRange(1, 3))
	reqs := rec.requests()
	if len(reqs) != 1 || reqs[0].events != 3 {
		t.Fatalf("requests %+v, want one of 3 events", reqs)
	}
	if d := reqs[0].at.Sub(flushed); d > linger/2 {
		t.Errorf("the request started %v after the Flush, want at once (the lane missed the wake-up)", d)
	}

	// No Flush: the hold ends after Linger.
	time.Sleep(linger + 100*time.Millisecond)
	submitted := time.Now()
	submit(t, s, newEvent(4, "v", 0))
	exactlyOnce(t, h.wait(t, 4, 10*time.Second), seqRange(1, 4))
	reqs = rec.requests()
	if len(reqs) != 2 || reqs[1].events != 1 {
		t.Fatalf("requests %+v, want a second one of 1 event", reqs)
	}
	if d := reqs[1].at.Sub(submitted); d < linger/2 {
		t.Errorf("the held event left %v after it was submitted, want about Linger (%v)", d, linger)
	}
}
